//! The store's schema, as numbered migrations. `PRAGMA user_version` holds the
//! number applied; opening a store applies the missing ones in one transaction.
//! docs/operations.md documents the tables for people reading the file with `sqlite3`.
use rusqlite::Connection;

/// The baseline's destination and counter columns: the same in migrations 2 and
/// 5 (5 adds `exe` to the key). Frozen like every migration's text.
macro_rules! baseline_columns {
    () => {
        "dst_net TEXT NOT NULL,
        dst_port INTEGER NOT NULL,
        proto TEXT NOT NULL,
        first_us INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        count INTEGER NOT NULL,
"
    };
}

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: connections, alerts, incidents.
    "CREATE TABLE conn (
        id INTEGER PRIMARY KEY,
        ts_us INTEGER NOT NULL,
        start_us INTEGER,
        action TEXT NOT NULL,
        proto TEXT NOT NULL,
        direction TEXT NOT NULL,
        src_ip TEXT NOT NULL,
        src_port INTEGER NOT NULL,
        dst_ip TEXT NOT NULL,
        dst_port INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        uid INTEGER,
        comm TEXT NOT NULL,
        owner TEXT NOT NULL,
        bytes_sent INTEGER NOT NULL,
        bytes_recv INTEGER NOT NULL,
        packets INTEGER NOT NULL,
        partial INTEGER NOT NULL
    );
    CREATE INDEX conn_ts ON conn(ts_us);
    CREATE INDEX conn_dport ON conn(dst_port, ts_us);
    CREATE INDEX conn_sport ON conn(src_port, ts_us);
    CREATE INDEX conn_dst ON conn(dst_ip, ts_us);
    CREATE TABLE alert (
        id INTEGER PRIMARY KEY,
        ts_us INTEGER NOT NULL,
        first_us INTEGER NOT NULL,
        rule TEXT NOT NULL,
        severity TEXT NOT NULL,
        key TEXT NOT NULL,
        message TEXT NOT NULL,
        src_ip TEXT,
        updates INTEGER NOT NULL,
        ended INTEGER NOT NULL,
        evidence TEXT NOT NULL
    );
    CREATE INDEX alert_ts ON alert(ts_us);
    CREATE TABLE incident (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        first_us INTEGER NOT NULL,
        last_us INTEGER NOT NULL,
        severity TEXT NOT NULL,
        message TEXT NOT NULL,
        src_ip TEXT,
        updates INTEGER NOT NULL,
        ended INTEGER NOT NULL,
        evidence TEXT NOT NULL,
        PRIMARY KEY (rule, key, first_us)
    );
    CREATE INDEX incident_last ON incident(last_us);",
    // 2: what the baseline rules have learned, and when learning started.
    concat!(
        "CREATE TABLE baseline (
        comm TEXT NOT NULL,
        ",
        baseline_columns!(),
        "        PRIMARY KEY (comm, dst_net, dst_port, proto)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    ),
    // 3: the name DNS gave the destination (NULL: none known).
    "ALTER TABLE conn ADD COLUMN domain TEXT;
    CREATE INDEX conn_domain ON conn(domain, ts_us);",
    // 4: connections still open (action 'open', one row each, replaced by their
    // end): found at open without a scan of the whole table.
    "CREATE INDEX conn_open ON conn(id) WHERE action = 'open';",
    // 5: who owned the connection and where (NULL: not known): its network
    // namespace, the user's name, the process (executable, arguments, parent,
    // start, entity id), the container and the pod; and the baseline learns per
    // executable (`exe`, '' while only the process name is known).
    concat!(
        "ALTER TABLE conn ADD COLUMN netns INTEGER;
    ALTER TABLE conn ADD COLUMN user_name TEXT;
    ALTER TABLE conn ADD COLUMN exe TEXT;
    ALTER TABLE conn ADD COLUMN args TEXT;
    ALTER TABLE conn ADD COLUMN ppid INTEGER;
    ALTER TABLE conn ADD COLUMN process_start_us INTEGER;
    ALTER TABLE conn ADD COLUMN entity_id TEXT;
    ALTER TABLE conn ADD COLUMN container TEXT;
    ALTER TABLE conn ADD COLUMN pod_uid TEXT;
    ALTER TABLE conn ADD COLUMN pod_name TEXT;
    ALTER TABLE conn ADD COLUMN pod_namespace TEXT;
    CREATE INDEX conn_exe ON conn(exe, ts_us) WHERE exe IS NOT NULL;
    CREATE INDEX conn_container ON conn(container, ts_us) WHERE container IS NOT NULL;
    CREATE TABLE baseline5 (
        comm TEXT NOT NULL,
        exe TEXT NOT NULL,
        ",
        baseline_columns!(),
        "        PRIMARY KEY (comm, exe, dst_net, dst_port, proto)
    );
    INSERT INTO baseline5
        SELECT comm, '', dst_net, dst_port, proto, first_us, last_us, count FROM baseline;
    DROP TABLE baseline;
    ALTER TABLE baseline5 RENAME TO baseline;"
    ),
    // `--src`, and `--dst` on rows of unknown direction (either way round), would
    // otherwise scan the whole table.
    "CREATE INDEX conn_src ON conn(src_ip, ts_us);",
];

/// The schema version this build writes.
pub const VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the store's schema version {0} is newer than this netta ({VERSION}); upgrade netta")]
    Newer(u32),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub fn version(db: &Connection) -> rusqlite::Result<u32> {
    db.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema up to [`VERSION`]; returns the version it found.
pub fn migrate(db: &mut Connection) -> Result<u32, SchemaError> {
    let found = version(db)?;
    if found > VERSION {
        return Err(SchemaError::Newer(found));
    }
    if found == VERSION {
        return Ok(found);
    }
    let tx = db.transaction()?;
    for m in &MIGRATIONS[found as usize..] {
        tx.execute_batch(m)?;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_from_empty_and_from_each_older_version() {
        for start in 0..VERSION {
            let mut db = Connection::open_in_memory().unwrap();
            let tx = db.transaction().unwrap();
            for m in &MIGRATIONS[..start as usize] {
                tx.execute_batch(m).unwrap();
            }
            tx.pragma_update(None, "user_version", start).unwrap();
            tx.commit().unwrap();
            assert_eq!(migrate(&mut db).unwrap(), start);
            assert_eq!(version(&db).unwrap(), VERSION);
            // Every table of the newest schema is there.
            for t in ["conn", "alert", "incident", "baseline", "meta"] {
                let n: i64 = db
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [t],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(n, 1, "table {t} from version {start}");
            }
            let open: i64 = db
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'conn_open'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(open, 1, "the open rows' index from version {start}");
            // A second open changes nothing.
            assert_eq!(migrate(&mut db).unwrap(), VERSION);
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut db = Connection::open_in_memory().unwrap();
        db.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut db).unwrap_err();
        assert!(e.to_string().contains("newer than this netta"), "{e}");
    }
}
