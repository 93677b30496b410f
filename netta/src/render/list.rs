//! Connection lists in the original tool's layout (rows chosen by
//! `core::filter`). Rendering takes plain data, so it is snapshot-tested.
use std::fmt::Write as _;

use crate::core::event::Who;
use crate::core::format::{addr, duration, owner, remote};
use crate::core::table::{Closed, Conn};

pub const RULE_WIDTH: usize = 60;

pub fn heavy_rule() -> String {
    "═".repeat(RULE_WIDTH)
}

pub fn light_rule() -> String {
    "─".repeat(RULE_WIDTH)
}

/// The original tool's section header: a heavy rule, the title, a heavy rule.
pub fn header(out: &mut String, title: &str) {
    let _ = writeln!(out, "{}\n{title}\n{}", heavy_rule(), heavy_rule());
}

/// Column widths that fit the heads and every row.
pub(super) fn widths<const N: usize>(head: [&str; N], rows: &[[String; N]]) -> [usize; N] {
    let mut w = head.map(|h| h.chars().count());
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    w
}

/// A row without column `i`: for a column shown only when some row fills it.
pub(super) fn without<T: Default, const N: usize, const M: usize>(row: [T; N], i: usize) -> [T; M] {
    let mut rest = row
        .into_iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, c)| c);
    std::array::from_fn(|_| rest.next().unwrap_or_default())
}

/// One row, columns two spaces apart, no trailing blanks.
pub(super) fn push_row<const N: usize>(out: &mut String, cells: &[String; N], w: &[usize; N]) {
    let start = out.len();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < N {
            let pad = w[i] + 2 - cell.chars().count();
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let end = start + out[start..].trim_end().len();
    out.truncate(end);
    out.push('\n');
}

/// The original's "ACTIVE NETWORK CONNECTIONS" table; columns widen to fit
/// (IPv6 addresses) instead of breaking the layout. When DNS named some remote
/// address, a DOMAIN column follows the original's five.
pub fn render_list(title: &str, rows: &[Conn]) -> String {
    const HEAD: [&str; 6] = [
        "PROTO",
        "LOCAL ADDRESS",
        "REMOTE ADDRESS",
        "STATE",
        "PID/PROCESS",
        "DOMAIN",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|c| {
            [
                c.proto.upper().to_string(),
                addr(c.local),
                remote(c),
                c.state.name().to_string(),
                owner(c.pid, &c.comm),
                c.domain.as_ref().map_or("-".into(), |d| d.to_string()),
            ]
        })
        .collect();
    let total = format!("Total: {} connections displayed", rows.len());
    if rows.iter().any(|c| c.domain.is_some()) {
        list_table(title, HEAD, &cells, &total)
    } else {
        let cells: Vec<[String; 5]> = cells.into_iter().map(|r| without(r, 5)).collect();
        list_table(title, without(HEAD, 5), &cells, &total)
    }
}

fn list_table<const N: usize>(
    title: &str,
    head: [&str; N],
    cells: &[[String; N]],
    total: &str,
) -> String {
    let mut w = widths(head, cells);
    // The original's minimum widths, so short tables look like it.
    for (i, min) in [5, 21, 21, 11, 11].into_iter().enumerate() {
        w[i] = w[i].max(min);
    }
    table(title, head, cells, &w, total)
}

/// The user, as a column shows it: the name, else the uid.
pub fn user_cell(who: &Who) -> String {
    match (&who.user, who.uid) {
        (Some(n), _) => n.to_string(),
        (None, Some(u)) => u.to_string(),
        (None, None) => "-".into(),
    }
}

/// The container, as a column shows it: the first 12 digits of its id, as
/// `docker ps` does.
pub fn container_cell(who: &Who) -> String {
    who.container_id()
        .map_or("-".into(), |id| id.chars().take(12).collect())
}

/// The pod, as a column shows it: `namespace/name`, else its UID.
pub fn pod_cell(who: &Who) -> String {
    let Some(p) = who.container.as_ref().and_then(|c| c.pod.as_ref()) else {
        return "-".into();
    };
    match (&p.namespace, &p.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        _ => p.uid.to_string(),
    }
}

/// The owner columns `--wide` adds: user, parent, executable, network namespace,
/// container and pod (the last two when some row has one).
fn owner_columns<'a>(rows: impl Iterator<Item = (&'a Who, u32)> + Clone) -> Vec<Column> {
    vec![
        Column::new("USER", rows.clone().map(|(w, _)| user_cell(w))),
        Column::new(
            "PPID",
            rows.clone().map(|(w, _)| {
                w.process
                    .as_ref()
                    .filter(|p| p.ppid != 0)
                    .map_or("-".into(), |p| p.ppid.to_string())
            }),
        ),
        Column::new(
            "EXECUTABLE",
            rows.clone()
                .map(|(w, _)| w.executable().unwrap_or("-").to_string()),
        ),
        Column::new(
            "NETNS",
            rows.clone()
                .map(|(_, ns)| if ns == 0 { "-".into() } else { ns.to_string() }),
        ),
        Column::new("CONTAINER", rows.clone().map(|(w, _)| container_cell(w))).optional(),
        Column::new("POD", rows.map(|(w, _)| pod_cell(w))).optional(),
    ]
}

/// `list --wide`: the live list with what is known of each owner.
pub fn render_list_wide(title: &str, rows: &[Conn]) -> String {
    let mut cols = vec![
        Column::new("PROTO", rows.iter().map(|c| c.proto.upper().to_string())).min(5),
        Column::new("LOCAL ADDRESS", rows.iter().map(|c| addr(c.local))).min(21),
        Column::new("REMOTE ADDRESS", rows.iter().map(remote)).min(21),
        Column::new("STATE", rows.iter().map(|c| c.state.name().to_string())).min(11),
        Column::new("PID/PROCESS", rows.iter().map(|c| owner(c.pid, &c.comm))).min(11),
    ];
    cols.extend(owner_columns(rows.iter().map(|c| (&c.who, c.netns))));
    cols.push(
        Column::new(
            "DOMAIN",
            rows.iter()
                .map(|c| c.domain.as_ref().map_or("-".into(), |d| d.to_string())),
        )
        .optional(),
    );
    let total = format!("Total: {} connections displayed", rows.len());
    dyn_table(title, cols, &total)
}

/// `list --history --wide`: closed connections with what was known of each owner.
pub fn render_history_wide(rows: &[Closed], clock: &crate::core::clock::Clock) -> String {
    let mut cols = vec![
        Column::new(
            "PROTO",
            rows.iter().map(|h| h.conn.proto.upper().to_string()),
        ),
        Column::new("LOCAL ADDRESS", rows.iter().map(|h| addr(h.conn.local))),
        Column::new("REMOTE ADDRESS", rows.iter().map(|h| remote(&h.conn))),
        Column::new(
            "START (UTC)",
            rows.iter().map(|h| start_cell(&h.conn, clock)),
        ),
        Column::new("DURATION", rows.iter().map(duration_cell)),
        Column::new("SENT", rows.iter().map(|h| h.conn.bytes_sent.to_string())),
        Column::new(
            "RECEIVED",
            rows.iter().map(|h| h.conn.bytes_recv.to_string()),
        ),
        Column::new(
            "PID/PROCESS",
            rows.iter().map(|h| owner(h.conn.pid, &h.conn.comm)),
        ),
    ];
    cols.extend(owner_columns(
        rows.iter().map(|h| (&h.conn.who, h.conn.netns)),
    ));
    let total = format!("Total: {} closed connections displayed", rows.len());
    dyn_table("CONNECTION HISTORY", cols, &total)
}

fn start_cell(c: &Conn, clock: &crate::core::clock::Clock) -> String {
    if c.start_ns == 0 {
        "-".to_string()
    } else {
        clock.rfc3339(c.start_ns)[..23].replace('T', " ")
    }
}

fn duration_cell(h: &Closed) -> String {
    match (h.failed, h.duration_ns()) {
        (true, _) => "FAILED".to_string(),
        (false, Some(d)) => duration(d),
        (false, None) => "-".to_string(),
    }
}

/// One column of a table whose columns are chosen at run time.
pub(super) struct Column {
    head: &'static str,
    cells: Vec<String>,
    min: usize,
    /// Left out when no row has a value (every cell `-`).
    optional: bool,
}

impl Column {
    pub(super) fn new(head: &'static str, cells: impl Iterator<Item = String>) -> Column {
        Column {
            head,
            cells: cells.collect(),
            min: 0,
            optional: false,
        }
    }

    fn min(mut self, w: usize) -> Column {
        self.min = w;
        self
    }

    pub(super) fn optional(mut self) -> Column {
        self.optional = true;
        self
    }
}

/// The lines of a table whose columns are chosen at run time: the heads, then
/// each row, columns two spaces apart (optional ones only when some row fills them).
pub(super) fn lay_out(cols: Vec<Column>) -> Vec<String> {
    let cols: Vec<Column> = cols
        .into_iter()
        .filter(|c| !c.optional || c.cells.iter().any(|v| v != "-"))
        .collect();
    let w: Vec<usize> = cols
        .iter()
        .map(|c| {
            c.cells
                .iter()
                .map(|v| v.chars().count())
                .chain([c.head.chars().count(), c.min])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            l.push_str(cell);
            if i + 1 < cells.len() {
                l.extend(std::iter::repeat_n(' ', w[i] + 2 - cell.chars().count()));
            }
        }
        l.trim_end().to_string()
    };
    let n = cols.first().map_or(0, |c| c.cells.len());
    let mut out = vec![line(cols.iter().map(|c| c.head).collect())];
    out.extend((0..n).map(|r| line(cols.iter().map(|c| c.cells[r].as_str()).collect())));
    out
}

/// A titled table of `cols`, as [`table`] draws it.
fn dyn_table(title: &str, cols: Vec<Column>, total: &str) -> String {
    let lines = lay_out(cols);
    let mut out = String::new();
    header(&mut out, title);
    let _ = writeln!(out, "{}", lines[0]);
    let _ = writeln!(out, "{}", light_rule());
    for l in &lines[1..] {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "{}", light_rule());
    let _ = writeln!(out, "{total}");
    let _ = writeln!(out, "{}", heavy_rule());
    out
}

/// Closed connections: start, duration, bytes and process.
pub fn render_history(rows: &[Closed], clock: &crate::core::clock::Clock) -> String {
    const HEAD: [&str; 8] = [
        "PROTO",
        "LOCAL ADDRESS",
        "REMOTE ADDRESS",
        "START (UTC)",
        "DURATION",
        "SENT",
        "RECEIVED",
        "PID/PROCESS",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|h| {
            let c = &h.conn;
            [
                c.proto.upper().to_string(),
                addr(c.local),
                remote(c),
                start_cell(c, clock),
                duration_cell(h),
                c.bytes_sent.to_string(),
                c.bytes_recv.to_string(),
                owner(c.pid, &c.comm),
            ]
        })
        .collect();
    let w = widths(HEAD, &cells);
    let total = format!("Total: {} closed connections displayed", rows.len());
    table("CONNECTION HISTORY", HEAD, &cells, &w, &total)
}

/// A titled table: column heads, rows between light rules, and a total line.
fn table<const N: usize>(
    title: &str,
    head: [&str; N],
    cells: &[[String; N]],
    w: &[usize; N],
    total: &str,
) -> String {
    // The whole table at once: no copy as it grows.
    let line = w.iter().map(|n| n + 2).sum::<usize>() + 1;
    let mut out = String::with_capacity((cells.len() + 10) * line);
    header(&mut out, title);
    push_row(&mut out, &head.map(String::from), w);
    let _ = writeln!(out, "{}", light_rule());
    for r in cells {
        push_row(&mut out, r, w);
    }
    let _ = writeln!(out, "{}", light_rule());
    let _ = writeln!(out, "{total}");
    let _ = writeln!(out, "{}", heavy_rule());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Direction, Proto, State};
    use crate::core::sanitize::Domain;

    #[test]
    fn a_domain_column_follows_once_a_row_has_a_name() {
        let mut c = crate::fixture::conn(
            1,
            Proto::Tcp,
            "127.0.0.1:40000",
            "127.0.0.77:443",
            State::Established,
            Direction::Egress,
            7,
            b"curl",
        );
        let plain = render_list("ACTIVE NETWORK CONNECTIONS", std::slice::from_ref(&c));
        assert!(!plain.contains("DOMAIN"), "{plain}");
        c.domain = Domain::parse("bar-test.example");
        let named = render_list("ACTIVE NETWORK CONNECTIONS", &[c]);
        let head = named.lines().nth(3).unwrap();
        assert!(head.ends_with("PID/PROCESS  DOMAIN"), "{named}");
        assert!(
            named
                .lines()
                .any(|l| l.ends_with("7/curl       bar-test.example")),
            "{named}"
        );
    }

    #[test]
    fn wide_lists_show_what_is_known_of_each_owner() {
        let mut rows = crate::fixture::snapshot().conns;
        rows.sort_by_key(|c| (c.local, c.remote));
        let mut c = crate::fixture::conn(
            99,
            Proto::Tcp,
            "10.0.0.9:40001",
            "10.0.0.1:443",
            State::Established,
            Direction::Egress,
            42,
            b"python3",
        );
        c.netns = 4026531840;
        c.who = crate::fixture::owned();
        let owned = Closed {
            conn: c.clone(),
            end_ns: 200 * crate::fixture::SEC,
            failed: false,
        };
        // A hostile executable stays one escaped cell.
        let mut p = crate::core::process::Process::clone(c.who.process.as_ref().unwrap());
        p.executable = Some(crate::core::sanitize::Text::escaped(
            b"/tmp/x\x1b[2J\ny",
            64,
        ));
        c.who.process = Some(std::sync::Arc::new(p));
        rows.push(c);
        insta::assert_snapshot!(render_list_wide("ACTIVE NETWORK CONNECTIONS", &rows));
        let text = render_history_wide(&[owned], &crate::core::clock::Clock::fixed(0));
        assert!(text.contains("alice"), "{text}");
        assert!(text.contains("/usr/bin/python3"), "{text}");
        assert!(text.contains("default/web-0"), "{text}");
        assert!(text.contains("3f2a8b5c3f2a "), "{text}");
    }
}
