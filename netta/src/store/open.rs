//! Connections still open: each has one `conn` row (action `open`) holding its
//! totals so far, rewritten by every `connection-updated` and deleted when its
//! end (`closed`, `failed`, `udp-flow`) is stored, so the history counts each
//! byte once. Which row holds which connection is kept in memory (loaded at
//! open through the `conn_open` index): an end with no open row, as most have
//! (they never lived through an update), costs one hash lookup.
use std::net::{IpAddr, SocketAddr};

use rusqlite::Connection;
use rustc_hash::{FxHashMap, FxHashSet};

use super::row::ConnRow;
use crate::core::event::Direction;

/// One socket: UDP or TCP, its local and remote address.
type Key = (bool, SocketAddr, SocketAddr);

pub fn key(r: &ConnRow) -> Key {
    (r.proto == "udp", r.local(), r.remote())
}

/// The stored actions that end a connection (and its open row).
pub fn ends(action: &str) -> bool {
    matches!(action, "closed" | "failed" | "udp-flow")
}

#[derive(Debug, Default)]
pub struct OpenRows {
    rows: FxHashMap<Key, i64>,
    /// Rows an earlier run left open that no update of this run continued yet.
    carried: FxHashSet<i64>,
}

impl OpenRows {
    /// The open rows in the file (all carried over from an earlier run).
    pub fn load(db: &Connection) -> rusqlite::Result<OpenRows> {
        let mut st = db.prepare(
            "SELECT id, proto, direction, src_ip, src_port, dst_ip, dst_port FROM conn
             WHERE action = 'open'",
        )?;
        let mut open = OpenRows::default();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let ip = |i: usize| -> rusqlite::Result<Option<IpAddr>> {
                Ok(r.get::<_, String>(i)?.parse().ok())
            };
            // A row whose address does not parse stays as it is; retention takes it.
            let (Some(src), Some(dst)) = (ip(3)?, ip(5)?) else {
                continue;
            };
            let (src, dst) = (
                SocketAddr::new(src, r.get(4)?),
                SocketAddr::new(dst, r.get(6)?),
            );
            let ingress = r.get::<_, String>(2)? == Direction::Ingress.name();
            let (local, remote) = if ingress { (dst, src) } else { (src, dst) };
            open.rows
                .insert((r.get::<_, String>(1)? == "udp", local, remote), id);
            open.carried.insert(id);
        }
        Ok(open)
    }

    /// After a failed transaction: the ids again from the file (what was
    /// carried over and not continued stays so).
    pub fn reload(&mut self, db: &Connection) -> rusqlite::Result<()> {
        let fresh = OpenRows::load(db)?;
        let carried = std::mem::take(&mut self.carried);
        self.carried = fresh.carried.intersection(&carried).copied().collect();
        self.rows = fresh.rows;
        Ok(())
    }

    pub fn get(&self, k: &Key) -> Option<i64> {
        self.rows.get(k).copied()
    }

    /// `id` is the open row of `k` now.
    pub fn set(&mut self, k: Key, id: i64) {
        self.carried.remove(&id);
        if let Some(old) = self.rows.insert(k, id) {
            self.carried.remove(&old);
        }
    }

    /// The open row of `k`, which its end replaces.
    pub fn take(&mut self, k: &Key) -> Option<i64> {
        let id = self.rows.remove(k)?;
        self.carried.remove(&id);
        Some(id)
    }

    /// Ends the rows an earlier run left open and this one never continued:
    /// their connections ended while netta was stopped. They become ended
    /// rows marked partial (the end itself was not seen), keeping the last
    /// update's time and totals. Returns how many.
    pub fn finish_carried(&mut self, db: &mut Connection) -> rusqlite::Result<usize> {
        if self.carried.is_empty() {
            return Ok(0);
        }
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare(
                "UPDATE conn SET action = CASE proto WHEN 'udp' THEN 'udp-flow' ELSE 'closed' END,
                 partial = 1 WHERE id = ?1 AND action = 'open'",
            )?;
            for id in &self.carried {
                st.execute([id])?;
            }
        }
        tx.commit()?;
        let n = self.carried.len();
        let carried = std::mem::take(&mut self.carried);
        self.rows.retain(|_, id| !carried.contains(id));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::Query;
    use super::super::tests::{conn_row, store_with};
    use super::super::{Row, Store};
    use super::*;

    fn update(ts_us: i64, port: u16, dir: &str, sent: u64) -> ConnRow {
        let mut r = conn_row(ts_us, port, 443, "up");
        r.action = "open".into();
        r.direction = dir.into();
        r.bytes_sent = sent;
        r
    }

    fn all(s: &Store) -> Vec<ConnRow> {
        Query::default().run(&s.reader().unwrap()).unwrap()
    }

    #[test]
    fn an_open_row_is_rewritten_in_place_then_replaced_by_its_end() {
        // Both ends of one loopback connection: two sockets, two open rows.
        let (_dir, mut s) = store_with(vec![
            update(1_000, 40_000, "egress", 100),
            update(1_000, 40_000, "ingress", 5),
        ]);
        s.insert(&[Row::Conn(update(2_000, 40_000, "egress", 250))])
            .unwrap();
        let rows = all(&s);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let egress = rows.iter().find(|r| r.direction == "egress").unwrap();
        assert_eq!((egress.action.as_str(), egress.bytes_sent), ("open", 250));
        assert_eq!(egress.ts_us, 2_000, "the last update's time");
        // The end replaces the open row; the other end's row stays open.
        let mut end = conn_row(3_000, 40_000, 443, "up");
        end.bytes_sent = 300;
        s.insert(&[Row::Conn(end)]).unwrap();
        let rows = all(&s);
        let actions: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.direction.as_str(), r.action.as_str(), r.bytes_sent))
            .collect();
        assert_eq!(
            actions,
            [("ingress", "open", 5), ("egress", "closed", 300)],
            "{rows:?}"
        );
        // A connection that never had an update ends as one row, as before.
        s.insert(&[Row::Conn(conn_row(4_000, 40_001, 443, "up"))])
            .unwrap();
        assert_eq!(all(&s).len(), 3);
    }

    #[test]
    fn a_pruned_open_row_comes_back_at_the_next_update() {
        let (_dir, mut s) = store_with(vec![update(1_000, 40_000, "egress", 100)]);
        s.db.execute("DELETE FROM conn", []).unwrap();
        s.insert(&[Row::Conn(update(2_000, 40_000, "egress", 200))])
            .unwrap();
        let rows = all(&s);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].bytes_sent, 200);
    }

    #[test]
    fn rows_left_open_by_an_earlier_run_are_continued_or_ended() {
        let (dir, s) = store_with(vec![
            update(1_000, 40_000, "egress", 100),
            update(1_000, 40_001, "egress", 7),
        ]);
        drop(s);
        let (mut s, _) = Store::open(dir.path()).unwrap();
        // Still open after the restart: its row continues (the kernel's totals
        // are the connection's, so nothing is counted twice).
        s.insert(&[Row::Conn(update(5_000, 40_000, "egress", 900))])
            .unwrap();
        assert_eq!(s.finish_carried().unwrap(), 1);
        let rows = all(&s);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let gone = rows.iter().find(|r| r.src.port() == 40_001).unwrap();
        assert_eq!(
            (
                gone.action.as_str(),
                gone.partial,
                gone.bytes_sent,
                gone.ts_us
            ),
            ("closed", true, 7, 1_000),
            "ended while netta was stopped: partial, its last totals"
        );
        let open = rows.iter().find(|r| r.src.port() == 40_000).unwrap();
        assert_eq!((open.action.as_str(), open.bytes_sent), ("open", 900));
        assert_eq!(s.finish_carried().unwrap(), 0, "once");
        // A UDP flow left open ends as a flow.
        let mut flow = conn_row(6_000, 5353, 53, "dns");
        flow.action = "open".into();
        flow.proto = "udp".into();
        s.insert(&[Row::Conn(flow)]).unwrap();
        drop(s);
        let (mut s, _) = Store::open(dir.path()).unwrap();
        assert_eq!(s.finish_carried().unwrap(), 2);
        let actions: Vec<String> = all(&s).into_iter().map(|r| r.action).collect();
        assert_eq!(actions, ["closed", "closed", "udp-flow"]);
    }
}
