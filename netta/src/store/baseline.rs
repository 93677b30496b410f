//! The `new-destination` baseline in the store: the `baseline` table (one row per
//! process, destination network, port and protocol) and the learning start in
//! `meta`. The writer upserts what each batch saw; the agent loads it at start.
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;

use super::{RawText, Reader};
use crate::core::event::Proto;
use crate::core::sanitize::{Comm, Text};
use crate::core::stored::BaselineRow;
use crate::detect::new_destination::Dest;

/// `meta` key: wall µs when learning started.
pub const STARTED: &str = "baseline_started_us";

/// First and last time (wall µs) and count of one destination within a batch.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    pub first_us: i64,
    pub last_us: i64,
    pub count: u64,
}

pub type Pending = FxHashMap<Dest, Seen>;

pub fn note(pending: &mut Pending, d: Dest, ts_us: i64) {
    let e = pending.entry(d).or_insert(Seen {
        first_us: ts_us,
        last_us: ts_us,
        count: 0,
    });
    e.first_us = e.first_us.min(ts_us);
    e.last_us = e.last_us.max(ts_us);
    e.count += 1;
}

pub fn started_us(db: &Connection) -> rusqlite::Result<Option<i64>> {
    db.query_row("SELECT value FROM meta WHERE key = ?1", [STARTED], |r| {
        r.get::<_, String>(0)
    })
    .optional()
    .map(|v| v.and_then(|s| s.parse().ok()))
}

/// The learning start, set to `now_us` if the store has none yet.
pub fn ensure_started(db: &Connection, now_us: i64) -> rusqlite::Result<i64> {
    db.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
        params![STARTED, now_us.to_string()],
    )?;
    Ok(started_us(db)?.unwrap_or(now_us))
}

pub fn upsert(db: &mut Connection, pending: &Pending) -> rusqlite::Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let tx = db.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO baseline (comm, exe, dst_net, dst_port, proto, first_us, last_us, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (comm, exe, dst_net, dst_port, proto) DO UPDATE SET
             first_us = min(first_us, excluded.first_us), last_us = max(last_us, excluded.last_us),
             count = count + excluded.count",
        )?;
        for (d, s) in pending {
            st.execute(params![
                RawText(d.comm.as_bytes()),
                d.exe.as_ref().map_or("", |e| e.as_str()),
                d.net.to_string(),
                d.port,
                d.proto.name(),
                s.first_us,
                s.last_us,
                s.count as i64
            ])?;
        }
    }
    tx.commit()
}

/// Forgets everything learned; learning starts again at `now_us`.
pub fn reset(db: &mut Connection, now_us: i64) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    tx.execute("DELETE FROM baseline", [])?;
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![STARTED, now_us.to_string()],
    )?;
    tx.commit()
}

fn rows(db: &Connection) -> rusqlite::Result<Vec<BaselineRow>> {
    let mut st = db.prepare(
        "SELECT comm, exe, dst_net, dst_port, proto, first_us, last_us, count FROM baseline
         ORDER BY exe, comm, dst_net, dst_port, proto",
    )?;
    let rows = st.query_map([], |r| {
        let exe: String = r.get(1)?;
        Ok(BaselineRow {
            comm: Comm::from_bytes(r.get_ref(0)?.as_bytes()?),
            exe: (!exe.is_empty()).then(|| Text::from_shown(&exe)),
            network: r.get(2)?,
            port: r.get(3)?,
            proto: r.get(4)?,
            first_us: r.get(5)?,
            last_us: r.get(6)?,
            count: r.get::<_, i64>(7)?.max(0) as u64,
        })
    })?;
    rows.collect()
}

/// What the agent loads at start: the learning start and every learned destination
/// (rows this build cannot read are skipped).
pub fn load(db: &Connection, now_us: i64) -> rusqlite::Result<(i64, Vec<Dest>)> {
    let started = ensure_started(db, now_us)?;
    let dests = rows(db)?
        .into_iter()
        .filter_map(|r| {
            Some(Dest {
                comm: r.comm,
                exe: r.exe,
                net: r.network.parse().ok()?,
                port: r.port,
                proto: match r.proto.as_str() {
                    "udp" => Proto::Udp,
                    "tcp" => Proto::Tcp,
                    _ => return None,
                },
            })
        })
        .collect();
    Ok((started, dests))
}

/// `netta baseline show` from a store file.
pub fn report(
    r: &Reader,
    learning: std::time::Duration,
) -> rusqlite::Result<crate::core::stored::BaselineReport> {
    let started_us = started_us(&r.db)?.unwrap_or(0);
    Ok(crate::core::stored::BaselineReport {
        started_us,
        learning_until_us: started_us.saturating_add(learning.as_micros() as i64),
        destinations: rows(&r.db)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn dest(comm: &[u8], net: &str, port: u16) -> Dest {
        Dest {
            comm: Comm::from_bytes(comm),
            exe: None,
            net: net.parse().unwrap(),
            port,
            proto: Proto::Tcp,
        }
    }

    #[test]
    fn learns_accumulates_survives_reopen_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path()).unwrap();
            assert_eq!(load(s.db(), 1_000).unwrap(), (1_000, vec![]));
            let mut p = Pending::default();
            note(&mut p, dest(b"curl\xff", "203.0.113.0/24", 443), 2_000);
            note(&mut p, dest(b"curl\xff", "203.0.113.0/24", 443), 3_000);
            upsert(s.db(), &p).unwrap();
            upsert(s.db(), &p).unwrap();
        }
        let (mut s, _) = Store::open(dir.path()).unwrap();
        // The learning start is kept from the first open.
        let (started, dests) = load(s.db(), 9_000).unwrap();
        assert_eq!(started, 1_000);
        assert_eq!(dests, vec![dest(b"curl\xff", "203.0.113.0/24", 443)]);
        let rep = report(&s.reader().unwrap(), std::time::Duration::from_millis(5)).unwrap();
        assert_eq!(rep.learning_until_us, 6_000);
        assert_eq!(rep.destinations[0].count, 4);
        assert_eq!(rep.destinations[0].first_us, 2_000);
        assert_eq!(rep.destinations[0].last_us, 3_000);
        // Programs known by executable are their own rows.
        let mut by_exe = dest(b"", "203.0.113.0/24", 443);
        by_exe.exe = Some(Text::escaped(b"/usr/bin/curl", 256));
        let mut p = Pending::default();
        note(&mut p, by_exe.clone(), 4_000);
        upsert(s.db(), &p).unwrap();
        let (_, dests) = load(s.db(), 9_000).unwrap();
        assert_eq!(dests.len(), 2);
        assert!(dests.contains(&by_exe));
        let rep = report(&s.reader().unwrap(), std::time::Duration::from_millis(5)).unwrap();
        assert_eq!(rep.destinations[1].program(), "/usr/bin/curl");
        reset(s.db(), 10_000).unwrap();
        assert_eq!(load(s.db(), 11_000).unwrap(), (10_000, vec![]));
    }
}
