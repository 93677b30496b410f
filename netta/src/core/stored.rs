//! Rows as the history store keeps them: pure data shared by the store, the
//! API, and the renderers. Times are wall-clock microseconds since the epoch.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::core::clock::Clock;
use crate::core::event::{Action, ConnEvent, Direction, OwnerSource, Proto, Who};
use crate::core::history_query::{action_name, ACTIONS};
use crate::core::sanitize::{Comm, Domain};

/// One ended connection, UDP flow or listener change, as stored. Source and
/// destination are the ECS ones: the side that started the connection is the source,
/// so both ends of a loopback connection have the same pair.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnRow {
    /// When it ended (or, for listener changes, when it happened).
    pub ts_us: i64,
    pub start_us: Option<i64>,
    pub action: String,
    pub proto: String,
    pub direction: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// 0 when the owner is unknown.
    pub pid: u32,
    /// Raw bytes of the process name: escape before showing (see `sanitize`).
    #[serde(with = "comm_bytes")]
    pub comm: Comm,
    pub owner: String,
    /// As the local socket counted them.
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub packets: u64,
    /// First seen mid-life: start and byte counts are incomplete.
    pub partial: bool,
    /// The name DNS gave the remote address when the connection began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
    /// Inode of the socket's network namespace (0: unknown).
    #[serde(default)]
    pub netns: u32,
    /// The owner's user, process (its start in wall-clock ns, as the row's other
    /// times) and container, as far as known.
    #[serde(default)]
    pub who: Who,
}

/// Comm bytes travel over the API as an array of numbers: names need not be UTF-8.
mod comm_bytes {
    use crate::core::sanitize::Comm;
    pub fn serialize<S: serde::Serializer>(c: &Comm, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(c.as_bytes())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
        let v: Vec<u8> = serde::Deserialize::deserialize(d)?;
        Ok(Comm::from_bytes(&v))
    }
}

impl ConnRow {
    /// The local socket's address: the source for outgoing, the destination for accepted.
    pub fn local(&self) -> SocketAddr {
        if self.direction == Direction::Ingress.name() {
            self.dst
        } else {
            self.src
        }
    }

    /// The other end's address.
    pub fn remote(&self) -> SocketAddr {
        if self.direction == Direction::Ingress.name() {
            self.src
        } else {
            self.dst
        }
    }

    pub fn duration_us(&self) -> Option<i64> {
        self.start_us
            .filter(|s| *s <= self.ts_us)
            .map(|s| self.ts_us - s)
    }

    /// Back to an event whose times are wall-clock nanoseconds (render it with
    /// `Clock::fixed(0)`): replayed history then looks like the live stream.
    pub fn to_event(&self) -> ConnEvent {
        let mut e = ConnEvent::lost((self.ts_us.max(0) as u64).saturating_mul(1000), 0);
        e.action = ACTIONS
            .iter()
            .find(|(_, n)| *n == self.action)
            .map_or(Action::Closed, |(a, _)| *a);
        e.proto = if self.proto == "udp" {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        e.direction = match self.direction.as_str() {
            "egress" => Direction::Egress,
            "ingress" => Direction::Ingress,
            _ => Direction::Unknown,
        };
        e.local = self.local();
        e.remote = self.remote();
        e.pid = self.pid;
        e.comm = self.comm;
        e.owner = match self.owner.as_str() {
            "hook" => OwnerSource::Hook,
            "listener" => OwnerSource::Listener,
            "proc" => OwnerSource::Proc,
            _ => OwnerSource::Unknown,
        };
        e.start_ns = self
            .start_us
            .map_or(0, |s| (s.max(0) as u64).saturating_mul(1000));
        e.bytes_sent = self.bytes_sent;
        e.bytes_recv = self.bytes_recv;
        e.count = self.packets;
        e.partial = self.partial;
        e.domain = self.domain.clone();
        e.netns = self.netns;
        e.who = self.who.clone();
        e
    }

    /// The row as the views' history shows it (wall-clock times: render with
    /// `Clock::fixed(0)`); `None` for listener changes.
    pub fn to_closed(&self) -> Option<crate::core::table::Closed> {
        crate::core::table::Closed::from_ended(&self.to_event())
    }

    /// A row for a stored kind of event; `None` for the others (opened, state changes, losses).
    pub fn from_event(ev: &ConnEvent, clock: &Clock) -> Option<ConnRow> {
        let action = action_name(ev.action)?;
        let (src, dst) = match ev.action {
            Action::ListenStarted | Action::ListenStopped => (
                ev.local,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            ),
            _ if ev.direction == Direction::Ingress => (ev.remote, ev.local),
            _ => (ev.local, ev.remote),
        };
        Some(ConnRow {
            ts_us: wall_us(clock, ev.ts_ns),
            start_us: (ev.start_ns != 0).then(|| wall_us(clock, ev.start_ns)),
            action: action.to_string(),
            proto: ev.proto.name().to_string(),
            direction: ev.direction.name().to_string(),
            src,
            dst,
            pid: ev.pid,
            comm: ev.comm,
            owner: ev.owner.name().to_string(),
            bytes_sent: ev.bytes_sent,
            bytes_recv: ev.bytes_recv,
            packets: ev.count,
            partial: ev.partial,
            domain: ev.domain.clone(),
            netns: ev.netns,
            who: Who {
                // Like the row's own times, the process's start in wall-clock time.
                process: ev.who.process.as_ref().map(|p| {
                    let mut p = crate::core::process::Process::clone(p);
                    if p.start_ns != 0 {
                        p.start_ns =
                            (wall_us(clock, p.start_ns).max(0) as u64).saturating_mul(1000);
                    }
                    Arc::new(p)
                }),
                ..ev.who.clone()
            },
        })
    }
}

/// One alert as published (an incident opening, growing or ending).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AlertRow {
    pub ts_us: i64,
    pub first_us: i64,
    pub rule: String,
    pub severity: String,
    pub key: String,
    pub message: String,
    pub src_ip: Option<IpAddr>,
    pub updates: u64,
    pub ended: bool,
    pub evidence: serde_json::Value,
}

pub fn wall_us(clock: &Clock, mono_ns: u64) -> i64 {
    clock
        .to_system(mono_ns)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One destination the `new-destination` baseline has learned, as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaselineRow {
    /// Raw bytes of the process name (empty once the executable is known):
    /// escape before showing.
    pub comm: Comm,
    /// The executable, when the baseline knows the program by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<crate::core::sanitize::Text>,
    /// `203.0.113.0/24`.
    pub network: String,
    pub port: u16,
    pub proto: String,
    pub first_us: i64,
    pub last_us: i64,
    pub count: u64,
}

impl BaselineRow {
    /// The program: its executable, else its process name (escaped).
    pub fn program(&self) -> String {
        match &self.exe {
            Some(e) => e.to_string(),
            None => self.comm.to_string(),
        }
    }
}

/// The baseline as `netta baseline show` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaselineReport {
    /// When learning started (the store's creation or the last reset), wall µs.
    pub started_us: i64,
    /// When alerting starts, wall µs.
    pub learning_until_us: i64,
    pub destinations: Vec<BaselineRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: Action, dir: Direction) -> ConnEvent {
        let mut e = ConnEvent::lost(3_000_000_000, 0);
        e.action = action;
        e.direction = dir;
        e.local = "127.0.0.1:8080".parse().unwrap();
        e.remote = "127.0.0.1:45000".parse().unwrap();
        e.pid = 7;
        e.comm = Comm::from_bytes(b"srv");
        e.start_ns = 1_000_000_000;
        e
    }

    #[test]
    fn accepted_rows_put_the_client_in_source() {
        let clock = Clock::fixed(1_000_000_000_000_000_000);
        let r = ConnRow::from_event(&ev(Action::Closed, Direction::Ingress), &clock).unwrap();
        assert_eq!(r.src, "127.0.0.1:45000".parse().unwrap());
        assert_eq!(r.dst, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(r.local(), r.dst);
        assert_eq!(r.ts_us, 1_000_000_000_000_000 + 3_000_000);
        assert_eq!(r.duration_us(), Some(2_000_000));
        assert_eq!(r.action, "closed");
        let out = ConnRow::from_event(&ev(Action::Closed, Direction::Egress), &clock).unwrap();
        assert_eq!(out.src, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(out.local(), out.src);
    }

    #[test]
    fn only_ended_and_listener_events_are_rows() {
        let clock = Clock::fixed(0);
        for a in [
            Action::Opened,
            Action::StateChanged,
            Action::EventsLost,
            Action::Pending,
        ] {
            assert!(ConnRow::from_event(&ev(a, Direction::Egress), &clock).is_none());
        }
        let l =
            ConnRow::from_event(&ev(Action::ListenStarted, Direction::Unknown), &clock).unwrap();
        assert_eq!(l.src.port(), 8080);
        assert_eq!(l.dst.port(), 0);
    }

    #[test]
    fn updates_are_open_rows_with_their_totals_so_far() {
        let mut e = ev(Action::Updated, Direction::Ingress);
        e.bytes_sent = 5_000;
        e.bytes_recv = 70;
        let r = ConnRow::from_event(&e, &Clock::fixed(0)).unwrap();
        assert_eq!(r.action, "open");
        assert_eq!((r.bytes_sent, r.bytes_recv), (5_000, 70));
        assert_eq!((r.local(), r.remote()), (e.local, e.remote));
        assert_eq!(r.duration_us(), Some(2_000_000), "its age so far");
        assert_eq!(r.to_event().action, Action::Updated);
        assert!(r.to_closed().is_none(), "not a closed connection");
    }

    #[test]
    fn rows_survive_json_with_hostile_names() {
        let mut e = ev(Action::Closed, Direction::Egress);
        e.comm = Comm::from_bytes(b"a\n\x1b[31m\xff");
        let r = ConnRow::from_event(&e, &Clock::fixed(0)).unwrap();
        let back: ConnRow = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        // And back to an event: the same socket, seen from the same side.
        let ev = r.to_event();
        assert_eq!((ev.local, ev.remote, ev.comm), (e.local, e.remote, e.comm));
        assert_eq!(ev.action, Action::Closed);
    }
}
