//! Live counters of open connections: a sock_diag sample brings each open TCP
//! row's byte totals, rates, RTT and retransmits up to date, and the rows that
//! moved data since their last report become `connection-updated` events. Pure:
//! the agent reads the sample and passes the time in.
use std::net::SocketAddr;

use rustc_hash::FxHashMap;

use crate::core::event::{Action, ConnEvent, Direction, Proto, State};
use crate::core::sock_diag::DiagSocket;
use crate::core::table::{Conn, Key, Table};

const SEC: u64 = 1_000_000_000;

/// Payload bytes from the kernel's sequence counters: `bytes_acked` counts our SYN
/// when we connected, `bytes_received` the peer's FIN once it came (as at close,
/// in the kernel program).
fn payload(c: &Conn, acked: u64, received: u64) -> (u64, u64) {
    let sent = if c.direction == Direction::Egress {
        acked.saturating_sub(1)
    } else {
        acked
    };
    let fin_in = matches!(
        c.state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    );
    (sent, received.saturating_sub(u64::from(fin_in)))
}

/// `(now - then)` worth of growth as bytes per second.
fn rate(grown: u64, span_ns: u64) -> u64 {
    if span_ns == 0 {
        return 0;
    }
    (u128::from(grown) * u128::from(SEC) / u128::from(span_ns)) as u64
}

/// Applies one sample taken at `now`; returns how many rows it updated.
/// Totals only grow (a sample can race a close that already counted more).
pub fn apply_sample(table: &mut Table, sample: &[DiagSocket], now: u64) -> usize {
    let by_tuple: FxHashMap<(SocketAddr, SocketAddr), &DiagSocket> =
        sample.iter().map(|s| ((s.local, s.remote), s)).collect();
    let mut updated = 0;
    for row in table.rows_mut() {
        if row.proto != Proto::Tcp || !row.has_peer() {
            continue;
        }
        let Some(s) = by_tuple.get(&(row.local, row.remote)) else {
            continue;
        };
        let Some(info) = s.info else { continue };
        let (Some(acked), Some(received)) = (info.bytes_acked, info.bytes_received) else {
            continue;
        };
        let (sent, recv) = payload(row, acked, received);
        let (sent, recv) = (sent.max(row.bytes_sent), recv.max(row.bytes_recv));
        let l = &mut row.live;
        if l.sampled_ns != 0 && now > l.sampled_ns {
            let span = now - l.sampled_ns;
            l.rate_sent = rate(sent - row.bytes_sent, span);
            l.rate_recv = rate(recv - row.bytes_recv, span);
        }
        row.bytes_sent = sent;
        row.bytes_recv = recv;
        l.sampled_ns = now;
        l.rtt_us = info.rtt_us;
        l.retrans = info.total_retrans;
        let idle_ms = info.last_data_sent_ms.min(info.last_data_recv_ms);
        l.last_data_ns = now.saturating_sub(u64::from(idle_ms) * 1_000_000);
        if let Some(st) = s.state {
            if row.state != st && !st.is_listener() {
                row.state = st;
            }
        }
        updated += 1;
    }
    updated
}

/// One `connection-updated` event for every open connection whose totals grew
/// since its last report; marks them reported at `now`.
pub fn take_updates(table: &mut Table, now: u64, out: &mut Vec<ConnEvent>) {
    for row in table.rows_mut() {
        let carries = match row.key {
            Key::Flow { .. } => true,
            _ => row.proto == Proto::Tcp && row.has_peer() && !row.state.is_listener(),
        };
        let l = row.live;
        if !carries || (row.bytes_sent, row.bytes_recv) == (l.reported_sent, l.reported_recv) {
            continue;
        }
        out.push(update_event(row, now));
        row.live.reported_sent = row.bytes_sent;
        row.live.reported_recv = row.bytes_recv;
        row.live.reported_ns = now;
    }
}

fn update_event(row: &Conn, now: u64) -> ConnEvent {
    let sock = match row.key {
        Key::Sock(s) | Key::Flow { sock: s, .. } => s,
        _ => 0,
    };
    ConnEvent {
        sock,
        bytes_sent: row.bytes_sent,
        bytes_recv: row.bytes_recv,
        count: row.packets,
        new_state: Some(row.state),
        prior_sent: row.live.reported_sent,
        prior_recv: row.live.reported_recv,
        rtt_us: row.live.rtt_us,
        retrans: row.live.retrans,
        partial: row.start_ns == 0,
        ..row.event(Action::Updated, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sock_diag::TcpCounters;
    use crate::core::table::Snapshot;

    fn table_with(dir: Direction) -> Table {
        let mut t = Table::default();
        let mut ev = ConnEvent::blank(Action::Opened, 100);
        ev.sock = 1;
        ev.local = "127.0.0.1:40000".parse().unwrap();
        ev.remote = "127.0.0.1:8080".parse().unwrap();
        ev.direction = dir;
        ev.start_ns = 100;
        t.apply(&ev);
        t
    }

    fn sample(acked: u64, received: u64) -> Vec<DiagSocket> {
        vec![DiagSocket {
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8080".parse().unwrap(),
            state: Some(State::Established),
            inode: 9,
            uid: 0,
            info: Some(TcpCounters {
                bytes_acked: Some(acked),
                bytes_received: Some(received),
                rtt_us: 250,
                total_retrans: 1,
                last_data_sent_ms: 10,
                last_data_recv_ms: 400,
            }),
        }]
    }

    fn row(t: &Table) -> Conn {
        t.get(&Key::Sock(1)).unwrap().clone()
    }

    #[test]
    fn samples_give_totals_rates_and_rtt() {
        let mut t = table_with(Direction::Egress);
        assert_eq!(apply_sample(&mut t, &sample(1_001, 50), SEC), 1);
        let r = row(&t);
        assert_eq!(
            (r.bytes_sent, r.bytes_recv),
            (1_000, 50),
            "our SYN comes off"
        );
        assert_eq!((r.live.rtt_us, r.live.retrans), (250, 1));
        assert_eq!(r.live.last_data_ns, SEC - 10_000_000);
        apply_sample(&mut t, &sample(1_000_001, 50), SEC + SEC / 2);
        let r = row(&t);
        assert_eq!(r.live.rate_sent, 1_998_000, "999000 B in 0.5 s");
        assert_eq!(r.live.rate_recv, 0);
        // Totals never go back, and the table's counters include open rows.
        apply_sample(&mut t, &sample(10, 10), 2 * SEC);
        assert_eq!(row(&t).bytes_sent, 1_000_000);
        assert_eq!(t.counters().bytes_sent, 1_000_000);
        let snap: Snapshot = t.snapshot();
        assert_eq!(snap.counters.bytes_recv, 50);
    }

    #[test]
    fn updates_report_changed_rows_once_with_their_deltas() {
        let mut t = table_with(Direction::Ingress);
        let mut out = Vec::new();
        take_updates(&mut t, SEC, &mut out);
        assert!(out.is_empty(), "nothing moved yet");
        apply_sample(&mut t, &sample(4_000, 100), SEC);
        take_updates(&mut t, 2 * SEC, &mut out);
        assert_eq!(out.len(), 1);
        let u = out[0].clone();
        assert_eq!(u.action, Action::Updated);
        assert_eq!((u.bytes_sent, u.bytes_recv), (4_000, 100));
        assert_eq!((u.prior_sent, u.prior_recv), (0, 0));
        assert_eq!(u.sock, 1);
        out.clear();
        take_updates(&mut t, 3 * SEC, &mut out);
        assert!(out.is_empty(), "unchanged since its last report");
        apply_sample(&mut t, &sample(6_000, 100), 4 * SEC);
        take_updates(&mut t, 4 * SEC, &mut out);
        assert_eq!((out[0].bytes_sent, out[0].prior_sent), (6_000, 4_000));
        // The close says what was already reported, so nothing is counted twice.
        let mut close = ConnEvent::blank(Action::Closed, 5 * SEC);
        close.sock = 1;
        close.local = "127.0.0.1:40000".parse().unwrap();
        close.remote = "127.0.0.1:8080".parse().unwrap();
        close.bytes_sent = 7_000;
        close.bytes_recv = 100;
        t.apply_noting(&mut close);
        assert_eq!((close.prior_sent, close.prior_recv), (6_000, 100));
        assert_eq!(t.counters().bytes_sent, 7_000);
    }
}
