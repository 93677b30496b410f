//! History queries: one filter value (what `netta history` flags and the API's
//! query string both become) turned into indexed SQL.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ToSql};

use super::row::{AlertRow, ConnRow};
use super::Reader;
use crate::core::cgroup::{Container, Pod};
use crate::core::event::Who;
pub use crate::core::history_query::{
    parse_action, parse_domain, parse_net, EndsQuery, Query, QueryError, DEFAULT_LIMIT,
};
use crate::core::owner_filter::User;
use crate::core::process::Process;
use crate::core::sanitize::{Comm, Domain, Text};

fn boxed<T: ToSql + 'static>(v: T) -> Box<dyn ToSql> {
    Box::new(v)
}

impl Query {
    /// Checks every field; the error is one line naming the bad value.
    pub fn validate(&self) -> Result<(), QueryError> {
        self.parts().map(|_| ())
    }

    fn parts(&self) -> Result<(String, Vec<Box<dyn ToSql>>), QueryError> {
        let mut w: Vec<String> = Vec::new();
        let mut p: Vec<Box<dyn ToSql>> = Vec::new();
        // Every `?` of one clause is the same parameter.
        let add =
            |w: &mut Vec<String>, p: &mut Vec<Box<dyn ToSql>>, clause: &str, v: Box<dyn ToSql>| {
                p.push(v);
                w.push(clause.replace('?', &format!("?{}", p.len())));
            };
        if let (Some(a), Some(b)) = (self.since_us, self.until_us) {
            if a > b {
                return Err(QueryError::Order);
            }
        }
        let o = &self.owner;
        let (user, user_name) = match &o.user {
            Some(User::Id(u)) => ("uid = ?", Some(boxed(*u))),
            Some(User::Name(n)) => ("user_name = ?", Some(boxed(n.clone()))),
            None => ("", None),
        };
        // `core::owner_filter::exe_matches`: the path, or (no `/`) the file name.
        let exe = match &o.exe {
            Some(v) if v.contains('/') => "exe = ?",
            _ => "(exe = ? OR substr(exe, -(length(?) + 1)) = '/' || ?)",
        };
        let fields: [(&str, Option<Box<dyn ToSql>>); 9] = [
            ("ts_us >= ?", self.since_us.map(boxed)),
            ("ts_us <= ?", self.until_us.map(boxed)),
            ("instr(comm, ?) > 0", o.process.clone().map(boxed)),
            ("pid = ?", o.pid.map(boxed)),
            (user, user_name),
            (exe, o.exe.clone().map(boxed)),
            ("netns = ?", o.netns.map(boxed)),
            // `core::owner_filter::container_matches`: an id prefix (hex: `g`
            // sorts after every digit, so the range is the prefix), a pod's UID or name.
            (
                "((container >= ? AND container < ? || 'g') OR pod_uid = ? OR pod_name = ?)",
                o.container.as_ref().map(|v| boxed(v.to_ascii_lowercase())),
            ),
            // Two indexed lookups (SQLite's OR optimisation), not a scan.
            ("(src_port = ? OR dst_port = ?)", self.port.map(boxed)),
        ];
        for (clause, v) in fields {
            if let Some(v) = v {
                add(&mut w, &mut p, clause, v);
            }
        }
        // The ECS ends as stored (the source started the connection); a row of
        // unknown direction (seen only in /proc, or a listener) may be either
        // way round, as the live filters have it (`core::filter::EndsFilter`).
        let (mut straight, mut swapped) = (Vec::new(), Vec::new());
        for (col, other, v) in [
            ("src_port", "dst_port", self.ends.sport),
            ("dst_port", "src_port", self.ends.dport),
        ] {
            if let Some(v) = v {
                p.push(Box::new(v));
                straight.push(format!("{col} = ?{}", p.len()));
                swapped.push(format!("{other} = ?{}", p.len()));
            }
        }
        for (col, other, val) in [
            ("src_ip", "dst_ip", &self.ends.src),
            ("dst_ip", "src_ip", &self.ends.dst),
        ] {
            if let Some(s) = val {
                let net = parse_net(s)?;
                let n = p.len() + 1;
                if net.prefix_len() == net.max_prefix_len() {
                    // One host: an indexed equality on the stored text form.
                    p.push(Box::new(net.addr().to_string()));
                    straight.push(format!("{col} = ?{n}"));
                    swapped.push(format!("{other} = ?{n}"));
                } else {
                    p.push(Box::new(net.to_string()));
                    straight.push(format!("netta_in_net({col}, ?{n})"));
                    swapped.push(format!("netta_in_net({other}, ?{n})"));
                }
            }
        }
        if !straight.is_empty() {
            w.push(format!(
                "(({}) OR (direction = 'unknown' AND {}))",
                straight.join(" AND "),
                swapped.join(" AND ")
            ));
        }
        if let Some(s) = &self.domain {
            // The name itself, or a name under it (an indexed equality, then a suffix).
            add(
                &mut w,
                &mut p,
                "(domain = ? OR substr(domain, -(length(?) + 1)) = '.' || ?)",
                Box::new(parse_domain(s)?),
            );
        }
        if let Some(s) = &self.proto {
            let v = s.to_ascii_lowercase();
            if v != "tcp" && v != "udp" {
                return Err(QueryError::Proto(crate::core::sanitize::escape(
                    s.as_bytes(),
                )));
            }
            add(&mut w, &mut p, "proto = ?", Box::new(v));
        }
        if let Some(s) = &self.action {
            let mut names = Vec::new();
            for a in s.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                names.push(parse_action(a).ok_or_else(|| {
                    QueryError::Action(crate::core::sanitize::escape(a.as_bytes()))
                })?);
            }
            if !names.is_empty() {
                let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>();
                // The names come from a fixed table, never from the input.
                w.push(format!("action IN ({})", list.join(", ")));
            }
        }
        let clause = if w.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", w.join(" AND "))
        };
        Ok((clause, p))
    }

    /// Matching rows, oldest first; with more than `limit`, the newest `limit`.
    pub fn run(&self, r: &Reader) -> Result<Vec<ConnRow>, RunError> {
        let (clause, params) = self.parts()?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).min(i64::MAX as u64) as i64;
        let sql = format!(
            "SELECT ts_us, start_us, action, proto, direction, src_ip, src_port, dst_ip, dst_port,
             pid, uid, comm, owner, bytes_sent, bytes_recv, packets, partial, domain, netns,
             user_name, exe, args, ppid, process_start_us, entity_id, container, pod_uid,
             pod_name, pod_namespace
             FROM conn{clause} ORDER BY ts_us DESC, id DESC LIMIT {limit}"
        );
        let mut stmt = r.db.prepare(&sql)?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|b| b.as_ref()).collect();
        let mut rows = stmt.query(refs.as_slice())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(conn_from_sql(row)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Number of matching rows (no limit).
    pub fn count(&self, r: &Reader) -> Result<u64, RunError> {
        let (clause, params) = self.parts()?;
        let refs: Vec<&dyn ToSql> = params.iter().map(|b| b.as_ref()).collect();
        let n: i64 = r.db.query_row(
            &format!("SELECT count(*) FROM conn{clause}"),
            refs.as_slice(),
            |row| row.get(0),
        )?;
        Ok(n as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("reading the store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

fn addr(ip: &str, port: u16) -> rusqlite::Result<SocketAddr> {
    let ip: IpAddr = ip.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!(
                "stored address `{}` is not an IP",
                crate::core::sanitize::escape(ip.as_bytes())
            )
            .into(),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

fn conn_from_sql(row: &rusqlite::Row<'_>) -> rusqlite::Result<ConnRow> {
    let comm = match row.get_ref(11)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => Comm::from_bytes(b),
        _ => Comm::EMPTY,
    };
    let src_ip: String = row.get(5)?;
    let dst_ip: String = row.get(7)?;
    Ok(ConnRow {
        ts_us: row.get(0)?,
        start_us: row.get(1)?,
        action: row.get(2)?,
        proto: row.get(3)?,
        direction: row.get(4)?,
        src: addr(&src_ip, row.get(6)?)?,
        dst: addr(&dst_ip, row.get(8)?)?,
        pid: row.get(9)?,
        comm,
        owner: row.get(12)?,
        bytes_sent: row.get::<_, i64>(13)? as u64,
        bytes_recv: row.get::<_, i64>(14)? as u64,
        packets: row.get::<_, i64>(15)? as u64,
        partial: row.get(16)?,
        domain: row
            .get::<_, Option<String>>(17)?
            .and_then(|d| Domain::parse(&d)),
        netns: row.get::<_, Option<u32>>(18)?.unwrap_or(0),
        who: who_from_sql(row)?,
    })
}

/// The owner's columns (`pid` 9, `uid` 10, then 19..=28) back into what the row knew.
fn who_from_sql(row: &rusqlite::Row<'_>) -> rusqlite::Result<Who> {
    let text = |i| -> rusqlite::Result<Option<Text>> {
        Ok(row
            .get::<_, Option<String>>(i)?
            .map(|s| Text::from_shown(&s)))
    };
    let uid: Option<u32> = row.get(10)?;
    let process = match row.get::<_, Option<String>>(24)? {
        Some(entity_id) => Some(Arc::new(Process {
            pid: row.get(9)?,
            ppid: row.get::<_, Option<u32>>(22)?.unwrap_or(0),
            start_ns: row
                .get::<_, Option<i64>>(23)?
                .map_or(0, |us| (us.max(0) as u64).saturating_mul(1000)),
            uid: uid.unwrap_or(0),
            cgroup: 0,
            entity_id: entity_id.into(),
            executable: text(20)?,
            args: row
                .get::<_, Option<String>>(21)?
                .and_then(|a| serde_json::from_str::<Vec<String>>(&a).ok())
                .map(|a| a.iter().map(|s| Text::from_shown(s)).collect()),
            args_truncated: false,
        })),
        None => None,
    };
    let pod = match row.get::<_, Option<String>>(26)? {
        Some(uid) => Some(Pod {
            uid: uid.into(),
            name: text(27)?,
            namespace: text(28)?,
        }),
        None => None,
    };
    let id: Option<String> = row.get(25)?;
    let container = (id.is_some() || pod.is_some()).then(|| {
        Arc::new(Container {
            id: id.map(Into::into),
            pod,
        })
    });
    Ok(Who {
        uid,
        user: text(19)?,
        cgroup: 0,
        process,
        container,
    })
}

/// Alerts (`incidents == false`) or incidents (their latest state), oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AlertQuery {
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub rule: Option<String>,
    pub limit: Option<u64>,
}

impl AlertQuery {
    pub fn run(&self, r: &Reader, incidents: bool) -> rusqlite::Result<Vec<AlertRow>> {
        let (table, ts) = if incidents {
            ("incident", "last_us")
        } else {
            ("alert", "ts_us")
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).min(i64::MAX as u64) as i64;
        let sql = format!(
            "SELECT {ts}, first_us, rule, severity, key, message, src_ip, updates, ended, evidence
             FROM {table} WHERE ({ts} >= ?1 OR ?1 IS NULL) AND ({ts} <= ?2 OR ?2 IS NULL)
             AND (rule = ?3 OR ?3 IS NULL) ORDER BY {ts} DESC LIMIT {limit}"
        );
        let mut stmt = r.db.prepare(&sql)?;
        let mut out = stmt
            .query_map(
                rusqlite::params![self.since_us, self.until_us, self.rule],
                |row| {
                    let src: Option<String> = row.get(6)?;
                    let ev: String = row.get(9)?;
                    Ok(AlertRow {
                        ts_us: row.get(0)?,
                        first_us: row.get(1)?,
                        rule: row.get(2)?,
                        severity: row.get(3)?,
                        key: row.get(4)?,
                        message: row.get(5)?,
                        src_ip: src.and_then(|s| s.parse().ok()),
                        updates: row.get::<_, i64>(7)? as u64,
                        ended: row.get(8)?,
                        evidence: serde_json::from_str(&ev).unwrap_or(serde_json::Value::Null),
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}

/// `netta_in_net(ip_text, cidr_text)`: whether a stored address is in a network.
/// The parsed network is cached per statement.
pub fn register_functions(db: &Connection) -> rusqlite::Result<()> {
    db.create_scalar_function(
        "netta_in_net",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let net: Arc<Option<IpNet>> = ctx.get_or_create_aux(1, |v| -> rusqlite::Result<_> {
                Ok(v.as_str().ok().and_then(|s| s.parse::<IpNet>().ok()))
            })?;
            let Some(net) = net.as_ref() else {
                return Ok(false);
            };
            let ip = match ctx.get_raw(0) {
                ValueRef::Text(b) => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<IpAddr>().ok()),
                _ => None,
            };
            Ok(ip.is_some_and(|ip| net.contains(&ip)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{conn_row, store_with};
    use super::*;

    fn ports(rows: &[ConnRow]) -> Vec<u16> {
        rows.iter().map(|r| r.src.port()).collect()
    }

    #[test]
    fn filters_combine_and_results_are_oldest_first() {
        let mut rows = Vec::new();
        for i in 0..20u16 {
            let mut r = conn_row(
                1_000 + i as i64,
                40_000 + i,
                if i % 2 == 0 { 443 } else { 53 },
                if i < 10 { "curl" } else { "wget" },
            );
            if i % 4 == 1 {
                r.proto = "udp".into();
                r.action = "udp-flow".into();
            }
            if i == 7 {
                r.dst = "192.168.1.9:53".parse().unwrap();
                r.pid = 99;
                r.who.uid = Some(0);
            }
            rows.push(r);
        }
        let (_d, s) = store_with(rows);
        let rd = s.reader().unwrap();
        // Each query as the API's query string gives it.
        let q = |qs: &str| {
            let query: Query = serde_urlencoded::from_str(qs).unwrap();
            ports(&query.run(&rd).unwrap())
        };
        assert_eq!(q("").len(), 20);
        assert_eq!(
            q("dport=443&process=url"),
            vec![40000, 40002, 40004, 40006, 40008]
        );
        assert_eq!(q("port=40003"), vec![40003]);
        assert_eq!(q("port=53").len(), 10);
        assert_eq!(q("sport=53").len(), 0);
        assert_eq!(q("since_us=1015&until_us=1017"), vec![40015, 40016, 40017]);
        assert_eq!(q("dst=192.168.0.0/16"), vec![40007]);
        assert_eq!(q("dst=192.168.1.9"), vec![40007]);
        assert_eq!(q("src=127.0.0.0/8").len(), 20);
        assert_eq!(q("dst=::1/128").len(), 0);
        assert_eq!(q("pid=99&uid=0"), vec![40007]);
        assert_eq!(q("sport=40007&dst=192.168.1.9"), vec![40007]);
        assert_eq!(q("sport=40007&dport=443").len(), 0);
        assert_eq!(q("proto=UDP"), vec![40001, 40005, 40009, 40013, 40017]);
        assert_eq!(q("action=udp-flow,%20connection-closed").len(), 20);
        assert_eq!(q("action=failed").len(), 0);
        // The newest rows when the limit cuts, still oldest first.
        assert_eq!(q("limit=2"), vec![40018, 40019]);
        assert_eq!(
            Query {
                port: Some(53),
                ..Default::default()
            }
            .count(&rd)
            .unwrap(),
            10
        );
    }

    /// A row of unknown direction passes the ends either way round, one way
    /// at a time, as a live row does.
    #[test]
    fn unknown_direction_rows_pass_the_ends_either_way_round() {
        let mut seen = conn_row(1_000, 22, 50_000, "sshd");
        seen.direction = "unknown".into();
        seen.dst = "10.1.2.3:50000".parse().unwrap();
        let known = conn_row(1_001, 40_000, 22, "ssh");
        let (_d, s) = store_with(vec![seen, known]);
        let rd = s.reader().unwrap();
        let q = |qs: &str| {
            let query: Query = serde_urlencoded::from_str(qs).unwrap();
            ports(&query.run(&rd).unwrap())
        };
        assert_eq!(q("dport=22"), vec![22, 40000]);
        assert_eq!(q("sport=22"), vec![22]);
        assert_eq!(q("src=10.1.2.3&dport=22"), vec![22]);
        assert_eq!(
            q("src=10.0.0.0/8&sport=22").len(),
            0,
            "10.1.2.3 is port 50000"
        );
        assert_eq!(
            q("sport=40000"),
            vec![40000],
            "a known direction is one way"
        );
        assert_eq!(q("dport=40000").len(), 0);
    }

    #[test]
    fn bad_filters_are_one_line_errors() {
        let (_d, s) = store_with(vec![]);
        let rd = s.reader().unwrap();
        for (qs, want) in [
            ("src=10.0.0.0/33", "CIDR"),
            ("dst=%1B%5B2Jhost", "CIDR"),
            ("proto=sctp", "protocol"),
            ("action=opened", "action"),
            ("since_us=5&until_us=1", "after"),
        ] {
            let q: Query = serde_urlencoded::from_str(qs).unwrap();
            let e = q.run(&rd).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains('\n') && !e.contains('\x1b'), "{e:?}");
        }
    }

    #[test]
    fn port_queries_use_indexes_not_a_scan() {
        let (_d, s) = store_with(vec![]);
        let rd = s.reader().unwrap();
        // A port, and the ends: both ways round, each way an indexed lookup.
        for qs in ["since_us=1&port=80", "since_us=1&dport=80"] {
            let q: Query = serde_urlencoded::from_str(qs).unwrap();
            let (clause, _) = q.parts().unwrap();
            let plan: Vec<String> = rd
                .db
                .prepare(&format!("EXPLAIN QUERY PLAN SELECT * FROM conn{clause}"))
                .unwrap()
                .query_map(rusqlite::params![1i64, 80u16], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let plan = plan.join("; ");
            assert!(!plan.contains("SCAN conn"), "{plan}");
            assert!(
                plan.contains("conn_dport") && plan.contains("conn_sport"),
                "{plan}"
            );
        }
    }
}
