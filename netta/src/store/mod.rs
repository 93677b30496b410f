//! The persistent history: an embedded SQLite file (`history.db` in the state
//! directory) holding ended connections, UDP flows, listener changes, alerts and
//! incidents, and the connections still open with their totals so far (`open`). The agent writes it from one thread off the hot path (`writer`);
//! views and `netta history` read it (`query`), through the API or directly.
pub mod baseline;
pub mod bench;
pub mod open;
pub mod query;
pub mod retention;
pub mod row;
pub mod schema;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, CachedStatement, Connection, OpenFlags, ToSql};

use crate::core::history_query::OPEN;
pub use row::{ConnRow, Row};

/// The history file's name inside the state directory.
pub const FILE_NAME: &str = crate::settings::defaults::HISTORY_FILE;
pub const DEFAULT_STATE_DIR: &str = crate::settings::defaults::STATE_DIR;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot open the store {0}: {1}")]
    Open(PathBuf, rusqlite::Error),
    #[error("the store {0}: {1}")]
    Schema(PathBuf, schema::SchemaError),
    #[error("the store {path} is damaged and could not be moved aside: {err}")]
    MoveAside { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// A writable store (the agent's).
pub struct Store {
    db: Connection,
    path: PathBuf,
    open: open::OpenRows,
}

/// A connection that reads (views, the API, `--store FILE`).
pub struct Reader {
    pub(crate) db: Connection,
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Reading the schema touches the file header and the first pages: enough to
/// tell a store from something else without a full integrity scan.
fn check(db: &mut Connection) -> Result<(), schema::SchemaError> {
    db.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    schema::migrate(db)?;
    Ok(())
}

fn configure(db: &Connection) -> rusqlite::Result<()> {
    // auto_vacuum must be chosen before the first table; later it is a no-op.
    db.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: a crash of the agent loses nothing committed; a power cut
    // can lose the last commits (at most a batch interval).
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    db.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(())
}

impl Store {
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens (or creates) the store in `state_dir`. A damaged file is renamed to
    /// `history.db.corrupt-<unix seconds>` and a fresh one starts; the returned
    /// notice says so in one line.
    pub fn open(state_dir: &Path) -> Result<(Store, Option<String>), StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        // The history is as private as the API that serves it: no access for others.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(state_dir)
            .map_err(|e| StoreError::Dir(state_dir.into(), e))?;
        let path = Store::path_in(state_dir);
        match Store::open_file(&path) {
            Ok(s) => Ok((s, None)),
            Err(e) if e.damaged() => {
                let aside = path
                    .with_file_name(format!("{FILE_NAME}.corrupt-{}", row::now_us() / 1_000_000));
                std::fs::rename(&path, &aside).map_err(|err| StoreError::MoveAside {
                    path: path.clone(),
                    err,
                })?;
                for ext in ["-wal", "-shm"] {
                    let side = PathBuf::from(format!("{}{ext}", path.display()));
                    let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
                }
                let store = Store::open_file(&path)?;
                let notice = format!(
                    "the store {} was unreadable ({}); moved it to {} and started a fresh one",
                    path.display(),
                    e.reason(),
                    aside.display()
                );
                Ok((store, Some(notice)))
            }
            Err(e) => Err(e),
        }
    }

    fn open_file(path: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        // A new file is created 0640 (an empty file is an empty database); SQLite
        // gives the -wal and -shm files the same mode.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Open(
                    path.into(),
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(e.to_string()),
                    ),
                ))
            }
        }
        let mut db = Connection::open(path).map_err(|e| StoreError::Open(path.into(), e))?;
        configure(&db).map_err(|e| StoreError::Open(path.into(), e))?;
        check(&mut db).map_err(|e| StoreError::Schema(path.into(), e))?;
        let open = open::OpenRows::load(&db).map_err(|e| StoreError::Open(path.into(), e))?;
        Ok(Store {
            db,
            path: path.into(),
            open,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.path)
    }

    /// Writes rows in one transaction: all or nothing. An open connection's
    /// row is rewritten in place; an end replaces its connection's open row.
    pub fn insert(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        let result = self.insert_rows(rows);
        if result.is_err() {
            // Rolled back: which open row is where comes from the file again.
            let _ = self.open.reload(&self.db);
        }
        result
    }

    fn insert_rows(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        let Store { db, open, .. } = self;
        let tx = db.transaction()?;
        {
            let mut conn = tx.prepare_cached(
                "INSERT INTO conn (ts_us, start_us, action, proto, direction, src_ip, src_port,
                 dst_ip, dst_port, pid, uid, comm, owner, bytes_sent, bytes_recv, packets, partial,
                 domain, netns, user_name, exe, args, ppid, process_start_us, entity_id,
                 container, pod_uid, pod_name, pod_namespace)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
            )?;
            let mut reopen = tx.prepare_cached(
                "UPDATE conn SET ts_us = ?1, start_us = ?2, action = ?3, proto = ?4,
                 direction = ?5, src_ip = ?6, src_port = ?7, dst_ip = ?8, dst_port = ?9, pid = ?10,
                 uid = ?11, comm = ?12, owner = ?13, bytes_sent = ?14, bytes_recv = ?15,
                 packets = ?16, partial = ?17, domain = ?18, netns = ?19, user_name = ?20,
                 exe = ?21, args = ?22, ppid = ?23, process_start_us = ?24, entity_id = ?25,
                 container = ?26, pod_uid = ?27, pod_name = ?28, pod_namespace = ?29
                 WHERE id = ?30 AND action = 'open'",
            )?;
            let mut unopen =
                tx.prepare_cached("DELETE FROM conn WHERE id = ?1 AND action = 'open'")?;
            let mut alert = tx.prepare_cached(
                "INSERT INTO alert (ts_us, first_us, rule, severity, key, message, src_ip, updates,
                 ended, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut incident = tx.prepare_cached(
                "INSERT INTO incident (rule, key, first_us, last_us, severity, message, src_ip,
                 updates, ended, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (rule, key, first_us) DO UPDATE SET last_us = excluded.last_us,
                 severity = excluded.severity, message = excluded.message,
                 updates = excluded.updates, ended = excluded.ended, evidence = excluded.evidence",
            )?;
            for r in rows {
                match r {
                    Row::Conn(c) if c.action == OPEN => {
                        let k = open::key(c);
                        let id = match open.get(&k) {
                            Some(id) if write_conn(&mut reopen, c, Some(id))? == 1 => id,
                            // The first update, or its row went (retention): a new row.
                            _ => {
                                write_conn(&mut conn, c, None)?;
                                tx.last_insert_rowid()
                            }
                        };
                        open.set(k, id);
                    }
                    Row::Conn(c) => {
                        if open::ends(&c.action) {
                            if let Some(id) = open.take(&open::key(c)) {
                                unopen.execute([id])?;
                            }
                        }
                        write_conn(&mut conn, c, None)?;
                    }
                    Row::Alert(a) => {
                        let src = a.src_ip.map(|ip| ip.to_string());
                        let ev = a.evidence.to_string();
                        alert.execute(params![
                            a.ts_us,
                            a.first_us,
                            a.rule,
                            a.severity,
                            a.key,
                            a.message,
                            src,
                            a.updates as i64,
                            a.ended,
                            ev
                        ])?;
                        incident.execute(params![
                            a.rule,
                            a.key,
                            a.first_us,
                            a.ts_us,
                            a.severity,
                            a.message,
                            src,
                            a.updates as i64,
                            a.ended,
                            ev
                        ])?;
                    }
                }
            }
        }
        tx.commit()
    }

    /// Ends the open rows an earlier run left that this one did not continue
    /// (see [`open::OpenRows::finish_carried`]); returns how many.
    pub fn finish_carried(&mut self) -> rusqlite::Result<usize> {
        self.open.finish_carried(&mut self.db)
    }

    pub(crate) fn db(&mut self) -> &mut Connection {
        &mut self.db
    }
}

impl StoreError {
    fn damaged(&self) -> bool {
        match self {
            StoreError::Open(_, e) | StoreError::Sqlite(e) => is_damage(e),
            StoreError::Schema(_, schema::SchemaError::Sqlite(e)) => is_damage(e),
            _ => false,
        }
    }

    fn reason(&self) -> String {
        match self {
            StoreError::Open(_, e) | StoreError::Sqlite(e) => e.to_string(),
            StoreError::Schema(_, e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

impl Reader {
    /// Opens a store file read-only (a copy from another disk works too).
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open(
                path.into(),
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some("no such file".into()),
                ),
            ));
        }
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Open(path.into(), e))?;
        db.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(|e| StoreError::Open(path.into(), e))?;
        let v = schema::version(&db).map_err(|e| StoreError::Open(path.into(), e))?;
        if v > schema::VERSION {
            return Err(StoreError::Schema(
                path.into(),
                schema::SchemaError::Newer(v),
            ));
        }
        if v == 0 {
            return Err(StoreError::Open(
                path.into(),
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                    Some("not a netta store (no schema)".into()),
                ),
            ));
        }
        query::register_functions(&db).map_err(|e| StoreError::Open(path.into(), e))?;
        Ok(Reader { db })
    }
}

/// One `conn` row's 18 values in column order, for the INSERT, or with the
/// row's id as `?19` for the rewrite of an open row.
fn write_conn(
    st: &mut CachedStatement<'_>,
    c: &ConnRow,
    id: Option<i64>,
) -> rusqlite::Result<usize> {
    let (src_ip, dst_ip) = (c.src.ip().to_string(), c.dst.ip().to_string());
    let (src_port, dst_port) = (c.src.port(), c.dst.port());
    let comm = RawText(c.comm.as_bytes());
    let (sent, recv, packets) = (c.bytes_sent as i64, c.bytes_recv as i64, c.packets as i64);
    let domain = c.domain.as_ref().map(|d| d.as_str());
    // What was known of the owner.
    let p = c.who.process.as_deref();
    let pod = c.who.container.as_ref().and_then(|c| c.pod.as_ref());
    let netns = (c.netns != 0).then_some(c.netns);
    let user = c.who.user.as_ref().map(|u| u.as_str());
    let exe = p.and_then(|p| p.executable.as_ref()).map(|e| e.as_str());
    let args = p.and_then(|p| p.args.as_ref()).map(|a| {
        serde_json::to_string(&a.iter().map(|a| a.as_str()).collect::<Vec<_>>()).unwrap_or_default()
    });
    let ppid = p.map(|p| p.ppid).filter(|n| *n != 0);
    let start = p
        .filter(|p| p.start_ns != 0)
        .map(|p| (p.start_ns / 1000) as i64);
    let entity = p.map(|p| &*p.entity_id);
    let container = c.who.container_id();
    let pod_uid = pod.map(|p| &*p.uid);
    let pod_name = pod.and_then(|p| p.name.as_ref()).map(|n| n.as_str());
    let pod_ns = pod.and_then(|p| p.namespace.as_ref()).map(|n| n.as_str());
    let id_value = id.unwrap_or(0);
    let values: [&dyn ToSql; 30] = [
        &c.ts_us,
        &c.start_us,
        &c.action,
        &c.proto,
        &c.direction,
        &src_ip,
        &src_port,
        &dst_ip,
        &dst_port,
        &c.pid,
        &c.who.uid,
        &comm,
        &c.owner,
        &sent,
        &recv,
        &packets,
        &c.partial,
        &domain,
        &netns,
        &user,
        &exe,
        &args,
        &ppid,
        &start,
        &entity,
        &container,
        &pod_uid,
        &pod_name,
        &pod_ns,
        &id_value,
    ];
    let n = if id.is_some() { 30 } else { 29 };
    st.execute(&values[..n])
}

/// Process names are raw bytes: stored as TEXT without UTF-8 conversion, so
/// nothing is lost and `sqlite3` still shows them.
struct RawText<'a>(&'a [u8]);

impl rusqlite::ToSql for RawText<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::sanitize::Comm;

    pub fn conn_row(ts_us: i64, sport: u16, dport: u16, comm: &str) -> ConnRow {
        ConnRow {
            ts_us,
            start_us: Some(ts_us - 1000),
            action: "closed".into(),
            proto: "tcp".into(),
            direction: "egress".into(),
            src: format!("127.0.0.1:{sport}").parse().unwrap(),
            dst: format!("10.0.0.1:{dport}").parse().unwrap(),
            pid: 42,
            comm: Comm::from_bytes(comm.as_bytes()),
            owner: "hook".into(),
            bytes_sent: 10,
            bytes_recv: 20,
            packets: 0,
            partial: false,
            domain: None,
            netns: 0,
            who: crate::core::event::Who {
                uid: Some(1000),
                ..Default::default()
            },
        }
    }

    /// A store in a new directory (removed when dropped), holding `rows`.
    pub fn store_with(rows: Vec<ConnRow>) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path()).unwrap();
        s.insert(&rows.into_iter().map(Row::Conn).collect::<Vec<_>>())
            .unwrap();
        (dir, s)
    }

    /// A row with everything known of its owner (`fixture::owned`).
    pub fn owned_row(ts_us: i64, sport: u16) -> ConnRow {
        let mut r = conn_row(ts_us, sport, 443, "python3");
        r.netns = 4026531840;
        r.who = crate::fixture::owned();
        r
    }

    #[test]
    fn owners_round_trip_and_filter() {
        let owned = owned_row(5_000_000, 40001);
        let plain = conn_row(5_000_001, 40002, 443, "curl");
        let (_dir, s) = store_with(vec![owned.clone(), plain.clone()]);
        let rd = s.reader().unwrap();
        assert_eq!(
            query::Query::default().run(&rd).unwrap(),
            vec![owned.clone(), plain.clone()]
        );
        let q = |f: fn(&mut query::Query)| {
            let mut q = query::Query::default();
            f(&mut q);
            q.run(&rd).unwrap()
        };
        // Each filter the views have finds the owned row and not the other.
        let one = vec![owned];
        assert_eq!(q(|q| q.owner.exe = Some("/usr/bin/python3".into())), one);
        assert_eq!(q(|q| q.owner.exe = Some("python3".into())), one);
        assert_eq!(q(|q| q.owner.exe = Some("python".into())), vec![]);
        assert_eq!(
            q(|q| { q.owner.user = Some(crate::core::owner_filter::User::Name("alice".into())) }),
            one
        );
        assert_eq!(q(|q| q.owner.netns = Some(4026531840)), one);
        assert_eq!(q(|q| q.owner.container = Some("3F2A8B".into())), one);
        assert_eq!(q(|q| q.owner.container = Some("web-0".into())), one);
        assert_eq!(
            q(|q| q.owner.container = Some("6a1b3c4d-1111-2222-3333-444455556666".into())),
            one
        );
        assert_eq!(q(|q| q.owner.container = Some("3f2a8c".into())), vec![]);
        assert_eq!(
            q(|q| q.owner.user = Some(crate::core::owner_filter::User::Id(1000))).len(),
            2
        );
    }

    #[test]
    fn rows_round_trip_with_raw_names() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, notice) = Store::open(dir.path()).unwrap();
        assert!(notice.is_none());
        let mut r = conn_row(5_000_000, 40000, 443, "x");
        r.comm = Comm::from_bytes(b"bad\xff\x1b[0m");
        s.insert(&[Row::Conn(r.clone())]).unwrap();
        let rd = s.reader().unwrap();
        let got = query::Query::default().run(&rd).unwrap();
        assert_eq!(got, vec![r]);
        let mode: String =
            s.db.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_new_store_is_closed_to_other_users() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (mut s, _) = Store::open(&state).unwrap();
        s.insert(&[Row::Conn(conn_row(1, 1, 2, "a"))]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state) & 0o007, 0, "{:o}", mode(&state));
        for f in [FILE_NAME, "history.db-wal"] {
            let m = mode(&state.join(f));
            assert_eq!(m & 0o137, 0, "{f}: {m:o}");
        }
    }

    #[test]
    fn a_damaged_file_is_moved_aside_and_a_fresh_store_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = Store::path_in(dir.path());
        std::fs::write(&path, b"this is not sqlite at all, just some bytes ....................................................................").unwrap();
        let (mut s, notice) = Store::open(dir.path()).unwrap();
        let notice = notice.expect("a notice");
        assert!(notice.contains("moved it to"), "{notice}");
        assert!(!notice.contains('\n'));
        s.insert(&[Row::Conn(conn_row(1, 1, 2, "a"))]).unwrap();
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("history.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read(dir.path().join(&aside[0])).unwrap()[..7],
            *b"this is"
        );
    }

    #[test]
    fn a_store_with_a_damaged_page_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path()).unwrap();
            let rows: Vec<Row> = (0..2000)
                .map(|i| Row::Conn(conn_row(i, 1000 + i as u16, 80, "c")))
                .collect();
            s.insert(&rows).unwrap();
            s.db.pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
        }
        // Overwrite the schema page (page 1 after the 100-byte header).
        let path = Store::path_in(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[100..4096] {
            *b = 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let (_s, notice) = Store::open(dir.path()).unwrap();
        assert!(notice.is_some());
    }

    #[test]
    fn reading_a_missing_or_foreign_file_is_a_one_line_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Reader::open(&dir.path().join("nope.db")).err().unwrap();
        assert!(e.to_string().contains("nope.db"));
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let e = Reader::open(&other).err().unwrap().to_string();
        assert!(e.contains("not a netta store"), "{e}");
        assert!(!e.contains('\n'));
    }
}
