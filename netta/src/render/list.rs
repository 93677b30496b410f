//! Connection lists in the original tool's layout (rows chosen by
//! `core::filter`). Rendering takes plain data, so it is snapshot-tested.
use std::fmt::Write as _;

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
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 == N {
            line.push_str(cell);
        } else {
            let pad = w[i] + 2 - cell.chars().count();
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    out.push_str(line.trim_end());
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
            let start = if c.start_ns == 0 {
                "-".to_string()
            } else {
                clock.rfc3339(c.start_ns)[..23].replace('T', " ")
            };
            let dur = match (h.failed, h.duration_ns()) {
                (true, _) => "FAILED".to_string(),
                (false, Some(d)) => duration(d),
                (false, None) => "-".to_string(),
            };
            [
                c.proto.upper().to_string(),
                addr(c.local),
                remote(c),
                start,
                dur,
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
    let mut out = String::new();
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
}
