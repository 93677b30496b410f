//! The CSV report, in the original tool's shape: two `#` comment lines, a blank
//! line, then a header and one row per connection. The original's eight columns
//! come first and keep their names and order; netta's extra columns follow them,
//! so readers written for the original still work.
//!
//! Process names are hostile input: they leave here escaped onto one line
//! ([`sanitize::escape`]) and defused against spreadsheet formulas
//! ([`sanitize::csv_cell`]); the csv crate quotes whatever needs quoting.
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::clock::Clock;
use crate::core::event::{Direction, Proto};
use crate::core::sanitize::{self, Comm, Domain};
use crate::core::table::{Closed, Conn, Snapshot};
use crate::core::tuple::unspecified_like;

/// The first line of every report.
pub const TITLE: &str = "# Network Traffic Analysis Report";

/// Column names. The first eight are the original tool's, in its order.
pub const HEADER: [&str; 14] = [
    "Protocol",
    "LocalAddress",
    "LocalPort",
    "RemoteAddress",
    "RemotePort",
    "State",
    "PID",
    "Process",
    "Direction",
    "BytesSent",
    "BytesReceived",
    "StartTime",
    "DurationSeconds",
    "Domain",
];

/// One report row: a live connection or a closed one from history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub proto: Proto,
    pub local: SocketAddr,
    /// `None` when there is no peer (listener, unconnected UDP socket); written as
    /// the unspecified address of the local family and port `*`.
    pub remote: Option<SocketAddr>,
    /// `State::name()` for live rows, `CLOSED` / `FAILED` for history rows.
    pub state: &'static str,
    /// `None` when the owner is unknown.
    pub pid: Option<u32>,
    /// Raw name bytes; escaped only when written.
    pub process: Comm,
    /// `None` when unknown (listeners, rows only /proc knows).
    pub direction: Option<Direction>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Wall time the connection started; `None` when it predates netta.
    pub start: Option<SystemTime>,
    /// How long a closed connection lived; `None` for live rows or an unknown start.
    pub duration: Option<Duration>,
    /// The name DNS gave the remote address.
    pub domain: Option<Domain>,
}

impl Row {
    pub fn live(c: &Conn, clock: &Clock) -> Row {
        Row {
            proto: c.proto,
            local: c.local,
            remote: c.has_peer().then_some(c.remote),
            state: c.state.name(),
            pid: (c.pid != 0).then_some(c.pid),
            process: c.comm,
            direction: (c.direction != Direction::Unknown).then_some(c.direction),
            bytes_sent: c.bytes_sent,
            bytes_recv: c.bytes_recv,
            start: (c.start_ns != 0).then(|| clock.to_system(c.start_ns)),
            duration: None,
            domain: c.domain.clone(),
        }
    }

    pub fn closed(h: &Closed, clock: &Clock) -> Row {
        Row {
            state: if h.failed { "FAILED" } else { "CLOSED" },
            duration: h.duration_ns().map(Duration::from_nanos),
            ..Row::live(&h.conn, clock)
        }
    }

    /// The row's cells, in [`HEADER`] order.
    pub fn cells(&self) -> [String; 14] {
        let (remote_ip, remote_port) = match self.remote {
            Some(r) => (r.ip().to_string(), r.port().to_string()),
            None => (unspecified_like(self.local).ip().to_string(), "*".into()),
        };
        let (pid, process) = match self.pid {
            Some(p) => (
                p.to_string(),
                sanitize::csv_cell(&sanitize::escape(self.process.as_bytes())).into_owned(),
            ),
            None => (String::new(), String::new()),
        };
        [
            self.proto.upper().into(),
            self.local.ip().to_string(),
            self.local.port().to_string(),
            remote_ip,
            remote_port,
            self.state.into(),
            pid,
            process,
            self.direction.map_or("", |d| d.name()).into(),
            self.bytes_sent.to_string(),
            self.bytes_recv.to_string(),
            self.start.map(utc_seconds).unwrap_or_default(),
            self.duration.map(seconds).unwrap_or_default(),
            self.domain
                .as_ref()
                .map(|d| sanitize::csv_cell(d.as_str()).into_owned())
                .unwrap_or_default(),
        ]
    }
}

/// Rows for the live table, in the snapshot's order.
pub fn rows_live(snap: &Snapshot, clock: &Clock) -> Vec<Row> {
    snap.conns.iter().map(|c| Row::live(c, clock)).collect()
}

/// Rows for the closed connections kept in history, oldest first.
pub fn rows_history(snap: &Snapshot, clock: &Clock) -> Vec<Row> {
    snap.history.iter().map(|h| Row::closed(h, clock)).collect()
}

/// RFC 3339 UTC to the second. Clamped to what RFC 3339 can spell (years
/// 1970..=9999), since `humantime` panics outside that range.
pub fn utc_seconds(t: SystemTime) -> String {
    // 9999-12-31T23:59:59Z
    let max = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    let t = t.clamp(UNIX_EPOCH, max);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Decimal seconds with microsecond precision: `0.001500`, `12.000000`.
fn seconds(d: Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

/// Writes the whole report: comment lines, blank line, header, rows.
pub fn write_csv<W: Write>(mut out: W, rows: &[Row], generated: SystemTime) -> io::Result<()> {
    write!(out, "{TITLE}\n# Generated: {}\n\n", utc_seconds(generated))?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out);
    w.write_record(HEADER)?;
    for r in rows {
        w.write_record(r.cells())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use std::net::IpAddr;

    fn export(rows: &[Row]) -> String {
        let mut out = Vec::new();
        let generated = UNIX_EPOCH + Duration::from_secs(1_729_002_625);
        write_csv(&mut out, rows, generated).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Parses a report back: the data records after the comment lines and header.
    fn parse(text: &str) -> Vec<csv::StringRecord> {
        let body: String = text.split_inclusive('\n').skip(3).collect();
        let mut r = csv::Reader::from_reader(body.as_bytes());
        assert_eq!(
            r.headers().unwrap(),
            &csv::StringRecord::from(HEADER.to_vec())
        );
        r.records().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn layout_matches_the_original() {
        let snap = fixture::snapshot();
        let text = export(&rows_live(&snap, &fixture::clock()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# Network Traffic Analysis Report");
        assert_eq!(lines[1], "# Generated: 2024-10-15T14:30:25Z");
        assert_eq!(lines[2], "");
        assert_eq!(
            lines[3],
            "Protocol,LocalAddress,LocalPort,RemoteAddress,RemotePort,State,PID,Process,\
             Direction,BytesSent,BytesReceived,StartTime,DurationSeconds,Domain"
        );
        assert_eq!(
            lines[4],
            "TCP,127.0.0.1,8080,0.0.0.0,*,LISTENING,1234,web-server,,0,0,2024-10-15T14:31:40Z,,"
        );
        assert_eq!(
            lines[7],
            "TCP,192.168.1.100,54321,93.184.216.34,443,ESTABLISHED,5678,chrome,egress,\
             1200,48000,2024-10-15T14:31:40Z,,"
        );
    }

    #[test]
    fn rows_round_trip_one_to_one() {
        let snap = fixture::snapshot();
        let recs = parse(&export(&rows_live(&snap, &fixture::clock())));
        assert_eq!(recs.len(), snap.conns.len());
        for (rec, c) in recs.iter().zip(&snap.conns) {
            assert_eq!(rec.len(), HEADER.len());
            assert_eq!(&rec[0], c.proto.upper());
            assert_eq!(rec[1].parse::<IpAddr>().unwrap(), c.local.ip());
            assert_eq!(rec[2].parse::<u16>().unwrap(), c.local.port());
            if c.has_peer() {
                assert_eq!(rec[3].parse::<IpAddr>().unwrap(), c.remote.ip());
                assert_eq!(rec[4].parse::<u16>().unwrap(), c.remote.port());
            } else {
                let any = if c.local.is_ipv4() { "0.0.0.0" } else { "::" };
                assert_eq!((&rec[3], &rec[4]), (any, "*"));
            }
            assert_eq!(&rec[5], c.state.name());
            if c.pid == 0 {
                assert_eq!((&rec[6], &rec[7]), ("", ""));
            } else {
                assert_eq!(rec[6].parse::<u32>().unwrap(), c.pid);
                assert_eq!(&rec[7], sanitize::escape(c.comm.as_bytes()));
            }
            assert_eq!(rec[9].parse::<u64>().unwrap(), c.bytes_sent);
            assert_eq!(rec[10].parse::<u64>().unwrap(), c.bytes_recv);
            assert_eq!(&rec[12], "", "live rows have no duration");
        }
        // The hostile name comes back as one escaped cell.
        let evil = recs.iter().find(|r| &r[6] == "77").unwrap();
        assert_eq!(&evil[7], "\\e[31mevil\\n,=1");
        assert!(!evil[7].chars().any(|c| c.is_control()));
        // IPv6, unbracketed; unknown owner; UDP rows.
        let v6 = recs
            .iter()
            .find(|r| &r[2] == "443" && &r[1] != "::")
            .unwrap();
        assert_eq!(
            (&v6[1], &v6[3], &v6[4], &v6[8]),
            (
                "2001:db8::10",
                "2001:db8:ffff:ffff:ffff:ffff:ffff:1",
                "51000",
                "ingress"
            )
        );
        let listen6 = recs.iter().find(|r| &r[1] == "::").unwrap();
        assert_eq!((&listen6[3], &listen6[4]), ("::", "*"));
        let udp: Vec<_> = recs.iter().filter(|r| &r[0] == "UDP").collect();
        assert_eq!(udp.len(), 2);
        assert_eq!(
            udp[0].iter().take(8).collect::<Vec<_>>(),
            [
                "UDP",
                "0.0.0.0",
                "5353",
                "0.0.0.0",
                "*",
                "UNCONN",
                "555",
                "avahi-daemon"
            ]
        );
        assert_eq!(
            udp[1].iter().take(10).collect::<Vec<_>>(),
            [
                "UDP",
                "10.0.0.5",
                "40001",
                "10.0.0.53",
                "53",
                "FLOW",
                "600",
                "resolver",
                "egress",
                "480"
            ]
        );
    }

    #[test]
    fn no_raw_control_bytes_reach_the_file() {
        let snap = fixture::snapshot();
        let text = export(&rows_live(&snap, &fixture::clock()));
        assert!(!text.contains('\x1b'));
        // Comment lines, blank line, header and exactly one line per row.
        assert_eq!(text.lines().count(), 4 + snap.conns.len());
    }

    #[test]
    fn history_rows_are_closed_or_failed_with_durations() {
        let snap = fixture::snapshot();
        let recs = parse(&export(&rows_history(&snap, &fixture::clock())));
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].iter().collect::<Vec<_>>(),
            [
                "TCP",
                "192.168.1.100",
                "50000",
                "93.184.216.34",
                "443",
                "CLOSED",
                "5678",
                "chrome",
                "egress",
                "500",
                "9000",
                "2024-10-15T14:31:40Z",
                "0.001500",
                "",
            ]
        );
        assert_eq!(&recs[1][5], "FAILED");
        assert_eq!(&recs[1][11], "2024-10-15T14:32:30Z");
        assert_eq!(&recs[1][12], "0.000300");
    }

    #[test]
    fn formulas_and_separators_are_defused() {
        let clock = fixture::clock();
        let mut c = fixture::conn(
            1,
            Proto::Tcp,
            "10.0.0.1:1",
            "10.0.0.2:2",
            crate::core::event::State::Established,
            Direction::Egress,
            7,
            b"=cmd",
        );
        let mut rows = vec![Row::live(&c, &clock)];
        c.comm = Comm::from_bytes(b"a,\"b\"\r\nc");
        rows.push(Row::live(&c, &clock));
        c.start_ns = 0;
        c.comm = Comm::EMPTY;
        rows.push(Row::live(&c, &clock));
        let text = export(&rows);
        assert!(text.contains(",'=cmd,"), "{text}");
        let recs = parse(&text);
        assert_eq!(&recs[0][7], "'=cmd");
        assert_eq!(&recs[1][7], "a,\"b\"\\r\\nc");
        assert_eq!((&recs[2][6], &recs[2][7], &recs[2][11]), ("7", "", ""));
    }

    #[test]
    fn out_of_range_times_do_not_panic() {
        assert_eq!(
            utc_seconds(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(utc_seconds(far), "9999-12-31T23:59:59Z");
    }
}
