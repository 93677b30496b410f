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

/// Every this many samples, every socket's row is visited, changed or not
/// (what an idle socket skips in between is its row's bookkeeping).
const FULL_EVERY: u32 = 8;

/// What the refresh remembers between samples, per socket (by its kernel
/// cookie, unique for the socket's life): which row it updated and what the
/// kernel said then. A sample of idle connections then costs one lookup per
/// socket and touches no row: a socket whose counters did not change, and
/// whose row's rates are already 0, is skipped. Sockets not seen before (or
/// whose row was replaced) are matched by address, in one pass over the table;
/// every [`FULL_EVERY`] samples all rows are visited. A socket the table had no
/// row for (its event was still on its way) is looked for again whenever rows
/// were added since.
#[derive(Debug, Default)]
pub struct Sampler {
    seen: FxHashMap<u64, Seen>,
    round: u32,
    /// When the previous sample was applied.
    prev_ns: u64,
    /// The table's count of rows ever added at the last match by address.
    observed: u64,
    /// Indexes of the sample's sockets to match by address (kept allocated).
    unmatched: Vec<usize>,
}

#[derive(Debug)]
struct Seen {
    /// `None`: the table had no row for the socket.
    key: Option<Key>,
    round: u32,
    counters: Counters,
    /// The row's rates were 0 after its last update.
    still: bool,
}

/// The part of a socket's sample that changes its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    acked: u64,
    received: u64,
    rtt_us: u32,
    retrans: u32,
    state: Option<State>,
}

fn counters(s: &DiagSocket) -> Option<Counters> {
    let info = s.info?;
    Some(Counters {
        acked: info.bytes_acked?,
        received: info.bytes_received?,
        rtt_us: info.rtt_us,
        retrans: info.total_retrans,
        state: s.state,
    })
}

impl Sampler {
    /// Applies one sample taken at `now`; returns how many rows it brought up
    /// to date (skipped unchanged ones included).
    pub fn apply(&mut self, table: &mut Table, sample: &[DiagSocket], now: u64) -> usize {
        self.round = self.round.wrapping_add(1);
        let round = self.round;
        let full = round.is_multiple_of(FULL_EVERY);
        let new_rows = table.observed() != self.observed;
        let prev_ns = std::mem::replace(&mut self.prev_ns, now);
        let mut current = 0;
        self.unmatched.clear();
        for (i, s) in sample.iter().enumerate() {
            let Some(c) = counters(s) else { continue };
            let Some(seen) = self.seen.get_mut(&s.cookie) else {
                self.unmatched.push(i);
                continue;
            };
            let last_round = seen.round == round.wrapping_sub(1);
            seen.round = round;
            let Some(key) = seen.key else {
                if full || new_rows {
                    self.unmatched.push(i);
                }
                continue;
            };
            if !full && seen.still && seen.counters == c {
                current += 1;
                continue;
            }
            match table.row_mut(&key) {
                // The same socket: the row was not replaced since.
                Some(row) if row.local == s.local && row.remote == s.remote => {
                    // Unchanged since the previous sample, whether visited or not.
                    let since = if last_round {
                        prev_ns
                    } else {
                        row.live.sampled_ns
                    };
                    seen.still = update(row, s, c, since, now);
                    seen.counters = c;
                    current += 1;
                }
                _ => self.unmatched.push(i),
            }
        }
        if !self.unmatched.is_empty() {
            current += self.match_by_address(table, sample, now);
        }
        // Sockets gone since the last sample.
        if self.seen.len() > sample.len() {
            self.seen.retain(|_, seen| seen.round == round);
        }
        current
    }

    /// The unmatched sockets' rows, found by address in one pass over the table.
    fn match_by_address(&mut self, table: &mut Table, sample: &[DiagSocket], now: u64) -> usize {
        let round = self.round;
        self.observed = table.observed();
        // Without a row until found below.
        for i in &self.unmatched {
            let s = &sample[*i];
            if let Some(c) = counters(s) {
                let seen = Seen {
                    key: None,
                    round,
                    counters: c,
                    still: true,
                };
                self.seen.insert(s.cookie, seen);
            }
        }
        let by_tuple: FxHashMap<(SocketAddr, SocketAddr), &DiagSocket> = self
            .unmatched
            .iter()
            .map(|i| ((sample[*i].local, sample[*i].remote), &sample[*i]))
            .collect();
        let mut found = 0;
        for row in table.rows_mut() {
            if row.proto != Proto::Tcp || !row.has_peer() {
                continue;
            }
            let Some(s) = by_tuple.get(&(row.local, row.remote)) else {
                continue;
            };
            let Some(c) = counters(s) else { continue };
            let since = row.live.sampled_ns;
            let still = update(row, s, c, since, now);
            self.seen.insert(
                s.cookie,
                Seen {
                    key: Some(row.key),
                    round,
                    counters: c,
                    still,
                },
            );
            found += 1;
        }
        found
    }
}

/// Brings one row up to date from its socket's counters, the previous ones
/// taken at `since` (0: none). Totals only grow (a sample can race a close
/// that already counted more). Returns whether the row's rates are 0.
fn update(row: &mut Conn, s: &DiagSocket, c: Counters, since: u64, now: u64) -> bool {
    let (sent, recv) = payload(row, c.acked, c.received);
    let (sent, recv) = (sent.max(row.bytes_sent), recv.max(row.bytes_recv));
    let l = &mut row.live;
    if since != 0 && now > since {
        let span = now - since;
        l.rate_sent = rate(sent - row.bytes_sent, span);
        l.rate_recv = rate(recv - row.bytes_recv, span);
    }
    row.bytes_sent = sent;
    row.bytes_recv = recv;
    l.sampled_ns = now;
    l.rtt_us = c.rtt_us;
    l.retrans = c.retrans;
    if let Some(info) = s.info {
        let idle_ms = info.last_data_sent_ms.min(info.last_data_recv_ms);
        l.last_data_ns = now.saturating_sub(u64::from(idle_ms) * 1_000_000);
    }
    if let Some(st) = c.state {
        if row.state != st && !st.is_listener() {
            row.state = st;
        }
    }
    l.rate_sent == 0 && l.rate_recv == 0
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
            cookie: 77,
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
        t.get(&Key::Sock(1)).unwrap().into_owned()
    }

    #[test]
    fn samples_give_totals_rates_and_rtt() {
        let mut t = table_with(Direction::Egress);
        let mut sm = Sampler::default();
        assert_eq!(sm.apply(&mut t, &sample(1_001, 50), SEC), 1);
        let r = row(&t);
        assert_eq!(
            (r.bytes_sent, r.bytes_recv),
            (1_000, 50),
            "our SYN comes off"
        );
        assert_eq!((r.live.rtt_us, r.live.retrans), (250, 1));
        assert_eq!(r.live.last_data_ns, SEC - 10_000_000);
        sm.apply(&mut t, &sample(1_000_001, 50), SEC + SEC / 2);
        let r = row(&t);
        assert_eq!(r.live.rate_sent, 1_998_000, "999000 B in 0.5 s");
        assert_eq!(r.live.rate_recv, 0);
        // Totals never go back, and the table's counters include open rows.
        sm.apply(&mut t, &sample(10, 10), 2 * SEC);
        assert_eq!(row(&t).bytes_sent, 1_000_000);
        assert_eq!(t.counters().bytes_sent, 1_000_000);
        let snap: Snapshot = t.snapshot();
        assert_eq!(snap.counters.bytes_recv, 50);
    }

    #[test]
    fn a_socket_sampled_before_its_event_is_matched_once_its_row_comes() {
        let mut t = Table::default();
        let mut sm = Sampler::default();
        assert_eq!(sm.apply(&mut t, &sample(2_000, 0), SEC), 0);
        assert_eq!(sm.seen[&77].key, None);
        let mut ev = ConnEvent::blank(Action::Opened, SEC);
        ev.sock = 1;
        ev.local = "127.0.0.1:40000".parse().unwrap();
        ev.remote = "127.0.0.1:8080".parse().unwrap();
        t.apply(&ev);
        assert_eq!(sm.apply(&mut t, &sample(4_000, 0), 2 * SEC), 1);
        assert_eq!(row(&t).bytes_sent, 4_000);
    }

    #[test]
    fn idle_sockets_skip_their_rows_and_rates_span_one_sample() {
        let mut t = table_with(Direction::Ingress);
        let mut sm = Sampler::default();
        sm.apply(&mut t, &sample(5_000, 0), SEC);
        sm.apply(&mut t, &sample(5_000, 0), 2 * SEC);
        assert_eq!(row(&t).live.rate_sent, 0);
        // Unchanged and still: the row is not visited (a mark put on it stays)...
        t.row_mut(&Key::Sock(1)).unwrap().live.rtt_us = 1;
        for round in 3..8 {
            assert_eq!(sm.apply(&mut t, &sample(5_000, 0), round * SEC), 1);
        }
        assert_eq!(row(&t).live.rtt_us, 1);
        // ...until every row is visited, every FULL_EVERY samples.
        sm.apply(&mut t, &sample(5_000, 0), 8 * SEC);
        assert_eq!(row(&t).live.rtt_us, 250);
        // Growth after skipped samples is a rate over the last second, not since
        // the row's last visit.
        sm.apply(&mut t, &sample(5_000, 0), 9 * SEC);
        sm.apply(&mut t, &sample(5_000, 0), 10 * SEC);
        sm.apply(&mut t, &sample(8_000, 0), 11 * SEC);
        let r = row(&t);
        assert_eq!((r.bytes_sent, r.live.rate_sent), (8_000, 3_000));
        // A moving row is visited until its rate is back to 0.
        sm.apply(&mut t, &sample(8_000, 0), 12 * SEC);
        assert_eq!(row(&t).live.rate_sent, 0);
    }

    #[test]
    fn sockets_are_found_by_cookie_then_by_address_when_their_row_changed() {
        use crate::core::proc_net::ProcSocket;
        // Seen first from /proc (netta started later): a row keyed by inode.
        let mut t = Table::default();
        let proc_row = ProcSocket {
            proto: Proto::Tcp,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8080".parse().unwrap(),
            state: State::Established,
            inode: 9,
            uid: 0,
            netns: 0,
        };
        t.reconcile(&[proc_row], &[0], 10, &mut |_| None);
        let mut sm = Sampler::default();
        assert_eq!(sm.apply(&mut t, &sample(100, 0), SEC), 1);
        assert_eq!(sm.seen[&77].key, Some(Key::Inode(9)));
        // No listener covers port 40000: connected out, so our SYN comes off.
        let seeded = t.get(&Key::Inode(9)).unwrap();
        assert_eq!(seeded.direction, Direction::Egress);
        assert_eq!(seeded.bytes_sent, 99);
        // An event replaces the row (same socket, now keyed by its address):
        // the cookie's row is gone, the address finds the new one.
        let mut ev = ConnEvent::blank(Action::Opened, 2 * SEC);
        ev.sock = 1;
        ev.local = proc_row.local;
        ev.remote = proc_row.remote;
        ev.direction = Direction::Egress;
        t.apply(&ev);
        let replaced = t.get(&Key::Sock(1)).unwrap();
        assert_eq!(replaced.bytes_sent, 99, "the counts so far carry over");
        assert_eq!(replaced.live.sampled_ns, SEC);
        assert_eq!(sm.apply(&mut t, &sample(300, 0), 3 * SEC), 1);
        assert_eq!(sm.seen[&77].key, Some(Key::Sock(1)));
        assert_eq!(t.get(&Key::Sock(1)).unwrap().bytes_sent, 299);
        // A socket that went is forgotten; one the table does not know updates nothing.
        assert_eq!(sm.apply(&mut t, &[], 4 * SEC), 0);
        assert!(sm.seen.is_empty());
        let mut stranger = sample(5, 5);
        stranger[0].remote = "127.0.0.1:9".parse().unwrap();
        assert_eq!(sm.apply(&mut t, &stranger, 5 * SEC), 0);
        assert_eq!(sm.seen[&77].key, None, "remembered as without a row");
    }

    #[test]
    fn updates_report_changed_rows_once_with_their_deltas() {
        let mut t = table_with(Direction::Ingress);
        let mut out = Vec::new();
        take_updates(&mut t, SEC, &mut out);
        assert!(out.is_empty(), "nothing moved yet");
        let mut sm = Sampler::default();
        sm.apply(&mut t, &sample(4_000, 100), SEC);
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
        sm.apply(&mut t, &sample(6_000, 100), 4 * SEC);
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
