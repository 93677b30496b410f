//! Retention: rows older than the age limit go, then the oldest rows until the
//! store fits its size limit. Pruning runs in small transactions between the
//! writer's batches, so ingest never waits long behind it.
use std::time::Duration;

use rusqlite::Connection;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Duration,
    /// Bytes of live pages (free pages are reused and released by incremental vacuum).
    pub max_bytes: u64,
}

pub const DEFAULT_MAX_AGE: Duration = crate::settings::defaults::RETENTION_AGE;
pub const DEFAULT_MAX_BYTES: u64 = crate::settings::defaults::RETENTION_BYTES;

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// How often the writer prunes by age (a short age limit prunes more often).
pub const DEFAULT_PRUNE_EVERY: Duration = Duration::from_secs(30);

impl Retention {
    /// Often enough that rows outlive the age limit by a tenth of it at most
    /// (1 s to 30 s).
    pub fn prune_every(&self) -> Duration {
        (self.max_age / 10).clamp(Duration::from_secs(1), DEFAULT_PRUNE_EVERY)
    }
}

/// Rows deleted per transaction.
pub const CHUNK: i64 = 5_000;
/// Rows deleted per transaction over the size limit: small, so the store ends
/// close under the limit rather than far below it.
pub const SIZE_CHUNK: i64 = 1_000;

pub fn used_bytes(db: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = db.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// One bounded step; returns the rows it deleted (0: nothing left to prune).
pub fn prune_step(db: &mut Connection, r: &Retention, now_us: i64) -> rusqlite::Result<u64> {
    let cutoff = now_us.saturating_sub(r.max_age.as_micros().min(i64::MAX as u128) as i64);
    let tx = db.transaction()?;
    let mut n = tx.execute(
        "DELETE FROM conn WHERE id IN (SELECT id FROM conn WHERE ts_us < ?1 ORDER BY ts_us LIMIT ?2)",
        rusqlite::params![cutoff, CHUNK],
    )?;
    n += tx.execute(
        "DELETE FROM alert WHERE id IN (SELECT id FROM alert WHERE ts_us < ?1 LIMIT ?2)",
        rusqlite::params![cutoff, CHUNK],
    )?;
    n += tx.execute(
        "DELETE FROM incident WHERE rowid IN (SELECT rowid FROM incident WHERE last_us < ?1 LIMIT ?2)",
        rusqlite::params![cutoff, CHUNK],
    )?;
    if n == 0 && used_bytes(&tx)? > r.max_bytes {
        n += tx.execute(
            "DELETE FROM conn WHERE id IN (SELECT id FROM conn ORDER BY id LIMIT ?1)",
            [SIZE_CHUNK],
        )?;
        if n == 0 {
            n += tx.execute(
                "DELETE FROM alert WHERE id IN (SELECT id FROM alert ORDER BY id LIMIT ?1)",
                [SIZE_CHUNK],
            )?;
        }
    }
    tx.commit()?;
    Ok(n as u64)
}

/// Gives free pages back to the file system once pruning is done.
pub fn release(db: &Connection) -> rusqlite::Result<()> {
    // The pragma frees one page per step: step it to the end.
    let mut stmt = db.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::query::Query;
    use super::super::tests::conn_row;
    use super::super::{Row, Store};
    use super::*;

    #[test]
    fn short_age_limits_prune_more_often() {
        let r = |s| Retention {
            max_age: Duration::from_secs(s),
            ..Retention::default()
        };
        assert_eq!(Retention::default().prune_every(), DEFAULT_PRUNE_EVERY);
        assert_eq!(r(60).prune_every(), Duration::from_secs(6));
        assert_eq!(r(2).prune_every(), Duration::from_secs(1));
    }

    #[test]
    fn old_rows_go_and_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        let now = 100 * 86_400_000_000i64;
        let day = 86_400_000_000i64;
        let rows: Vec<Row> = (0..12_000)
            .map(|i| {
                let age = if i % 3 == 0 { 20 * day } else { day };
                Row::Conn(conn_row(
                    now - age + i as i64,
                    1000 + (i % 60000) as u16,
                    80,
                    "x",
                ))
            })
            .collect();
        s.insert(&rows).unwrap();
        let r = Retention::default();
        let mut total = 0;
        loop {
            let n = prune_step(s.db(), &r, now).unwrap();
            assert!(n as i64 <= 3 * CHUNK);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 4_000);
        let left = Query::default().run(&s.reader().unwrap()).unwrap();
        assert_eq!(left.len(), 8_000);
        assert!(left.iter().all(|c| c.ts_us >= now - 2 * day));
    }

    #[test]
    fn the_size_limit_drops_the_oldest_rows_and_the_file_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        let now = 1_000_000_000_000i64;
        for b in 0..10 {
            let rows: Vec<Row> = (0..10_000)
                .map(|i| {
                    Row::Conn(conn_row(
                        now + b * 10_000 + i,
                        (i % 60000) as u16,
                        443,
                        "filler",
                    ))
                })
                .collect();
            s.insert(&rows).unwrap();
        }
        let before = used_bytes(s.db()).unwrap();
        let r = Retention {
            max_age: DEFAULT_MAX_AGE,
            max_bytes: before / 3,
        };
        while prune_step(s.db(), &r, now).unwrap() > 0 {}
        release(s.db()).unwrap();
        s.db()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        let after = used_bytes(s.db()).unwrap();
        assert!(after <= before / 3, "{after} > {}", before / 3);
        let file = std::fs::metadata(s.path()).unwrap().len();
        assert!(file <= before / 2, "file {file} bytes");
        let rd = s.reader().unwrap();
        let left = Query {
            limit: Some(u64::MAX),
            ..Default::default()
        }
        .run(&rd)
        .unwrap();
        assert!(!left.is_empty());
        // What is left is the newest rows, contiguous up to the last one.
        assert_eq!(left.last().unwrap().ts_us, now + 99_999);
        assert_eq!(left[0].ts_us, now + 100_000 - left.len() as i64);
    }
}
