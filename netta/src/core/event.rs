//! Typed connection events, decoded from the kernel ABI (`netta_ebpf::Event`) or
//! synthesised by the /proc poller. Everything downstream (table, JSON, detection)
//! sees only these.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netta_ebpf::{flag, kind, tcp_state, AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};

use crate::core::sanitize::{Comm, Domain};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    pub fn upper(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

/// Connection state as shown to users. TCP states use netstat's names; UDP
/// sockets are `UNCONN` (bound, no peer) or `ESTABLISHED` (connected), and flows
/// seen by the send hook are `FLOW`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum State {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    Unconn,
    Flow,
}

impl State {
    pub const ALL: [State; 14] = [
        State::Established,
        State::SynSent,
        State::SynRecv,
        State::FinWait1,
        State::FinWait2,
        State::TimeWait,
        State::Close,
        State::CloseWait,
        State::LastAck,
        State::Listen,
        State::Closing,
        State::NewSynRecv,
        State::Unconn,
        State::Flow,
    ];

    /// From the kernel's TCP state number; `None` for numbers this build does not know.
    pub fn from_tcp(n: u8) -> Option<State> {
        Some(match n {
            tcp_state::ESTABLISHED => State::Established,
            tcp_state::SYN_SENT => State::SynSent,
            tcp_state::SYN_RECV => State::SynRecv,
            tcp_state::FIN_WAIT1 => State::FinWait1,
            tcp_state::FIN_WAIT2 => State::FinWait2,
            tcp_state::TIME_WAIT => State::TimeWait,
            tcp_state::CLOSE => State::Close,
            tcp_state::CLOSE_WAIT => State::CloseWait,
            tcp_state::LAST_ACK => State::LastAck,
            tcp_state::LISTEN => State::Listen,
            tcp_state::CLOSING => State::Closing,
            tcp_state::NEW_SYN_RECV => State::NewSynRecv,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTENING",
            State::Closing => "CLOSING",
            State::NewSynRecv => "NEW_SYN_RECV",
            State::Unconn => "UNCONN",
            State::Flow => "FLOW",
        }
    }

    /// Accepts netstat and ss spellings, any case, `-` or `_`.
    pub fn parse(s: &str) -> Option<State> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let aliases: &[(&str, State)] = &[
            ("ESTAB", State::Established),
            ("LISTEN", State::Listen),
            ("SYNRECEIVED", State::SynRecv),
        ];
        if let Some((_, st)) = aliases.iter().find(|(a, _)| *a == norm) {
            return Some(*st);
        }
        State::ALL
            .into_iter()
            .find(|st| st.name().replace('_', "") == norm)
    }

    /// A socket that is (still) a connection with a peer, for "Active" counts.
    /// Waiting for peers rather than connected to one: a TCP listener or an
    /// unconnected UDP socket. The one definition every view and count uses.
    pub fn is_listener(self) -> bool {
        State::LISTENERS.contains(&self)
    }

    /// The states [`State::is_listener`] accepts.
    pub const LISTENERS: [State; 2] = [State::Listen, State::Unconn];

    pub fn is_active(self) -> bool {
        !self.is_listener() && self != State::Close
    }
}

/// Which end started the connection, from this host's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// This host's socket made the connection (went through SYN_SENT), or sent the datagram.
    Egress,
    /// This host's socket was accepted from a listener.
    Ingress,
    Unknown,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
            Direction::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Opened,
    Closed,
    Failed,
    ListenStarted,
    ListenStopped,
    UdpFlow,
    StateChanged,
    ResetSent,
    EventsLost,
    /// The live table was full and refused rows (count in `ConnEvent::count`).
    TableEvicted,
    /// An accepted connection whose owner is not known yet (internal: the table
    /// lists it; `Opened` follows and is what gets reported).
    Pending,
    /// An open connection's interim totals (`connection-updated`), every
    /// `--update-interval` while it moves data.
    Updated,
}

impl Action {
    /// Every action that is reported (all but the internal `Pending`).
    pub const REPORTED: [Action; 11] = [
        Action::Opened,
        Action::Closed,
        Action::Failed,
        Action::ListenStarted,
        Action::ListenStopped,
        Action::UdpFlow,
        Action::StateChanged,
        Action::ResetSent,
        Action::EventsLost,
        Action::TableEvicted,
        Action::Updated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Opened => "connection-opened",
            Action::Closed => "connection-closed",
            Action::Failed => "connection-failed",
            Action::ListenStarted => "listen-started",
            Action::ListenStopped => "listen-stopped",
            Action::UdpFlow => "udp-flow",
            Action::StateChanged => "state-changed",
            Action::ResetSent => "reset-sent",
            Action::EventsLost => "events-lost",
            Action::TableEvicted => "table-evicted",
            Action::Pending => "connection-pending",
            Action::Updated => "connection-updated",
        }
    }
}

/// Where the owner of a socket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum OwnerSource {
    /// A hook running in the owner's own syscall (connect, send, recv, close).
    Hook,
    /// Inherited from the listening socket's owner.
    Listener,
    /// /proc/<pid>/fd holds the socket inode.
    Proc,
    Unknown,
}

impl OwnerSource {
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::Hook => "hook",
            OwnerSource::Listener => "listener",
            OwnerSource::Proc => "proc",
            OwnerSource::Unknown => "unknown",
        }
    }
}

/// One connection lifecycle event. Times are CLOCK_BOOTTIME nanoseconds
/// (the clock of `bpf_ktime_get_boot_ns`); see [`crate::core::clock::Clock`] for wall time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnEvent {
    pub action: Action,
    pub ts_ns: u64,
    /// Kernel socket address (0 when synthesised from /proc).
    pub sock: u64,
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub direction: Direction,
    pub pid: u32,
    pub comm: Comm,
    pub owner: OwnerSource,
    /// Start of the connection (0: unknown, it predates netta).
    pub start_ns: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// UDP datagrams, or the number of records lost for `EventsLost`.
    pub count: u64,
    pub old_state: Option<State>,
    pub new_state: Option<State>,
    /// Raw kernel state numbers, kept for states this build does not know.
    pub raw_states: (u8, u8),
    /// First seen mid-life: start time and byte counts are incomplete.
    pub partial: bool,
    /// Of the byte totals, what earlier `connection-updated` events already
    /// reported (updates and closes): the rest is new.
    #[serde(default)]
    pub prior_sent: u64,
    #[serde(default)]
    pub prior_recv: u64,
    /// Smoothed RTT (µs) and retransmissions, on `connection-updated` (0: unknown).
    #[serde(default)]
    pub rtt_us: u32,
    #[serde(default)]
    pub retrans: u32,
    /// The name DNS recently gave the remote address (`core::dns_cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event ({size} bytes)", size = netta_ebpf::EVENT_SIZE)]
    Short(usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u16),
    #[error("unknown protocol {0}")]
    Protocol(u8),
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes plain IPv4, so one host has one address.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A kernel address (`AF_INET` in the first 4 bytes, else IPv6) and port.
pub fn socket_addr(family: u16, raw: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        normalize(IpAddr::V6(Ipv6Addr::from(*raw)))
    };
    SocketAddr::new(ip, port)
}

impl ConnEvent {
    /// Decodes one untrusted kernel record.
    pub fn decode(buf: &[u8]) -> Result<ConnEvent, DecodeError> {
        let raw = netta_ebpf::Event::from_bytes(buf).ok_or(DecodeError::Short(buf.len()))?;
        ConnEvent::from_raw(&raw)
    }

    pub fn from_raw(raw: &netta_ebpf::Event) -> Result<ConnEvent, DecodeError> {
        let action = match raw.kind {
            kind::OPENED => Action::Opened,
            kind::CLOSED => Action::Closed,
            kind::FAILED => Action::Failed,
            kind::LISTEN_STARTED => Action::ListenStarted,
            kind::LISTEN_STOPPED => Action::ListenStopped,
            kind::UDP_FLOW => Action::UdpFlow,
            kind::STATE => Action::StateChanged,
            kind::PENDING => Action::Pending,
            kind::RESET_SENT => Action::ResetSent,
            k => return Err(DecodeError::Kind(k)),
        };
        if raw.family != AF_INET && raw.family != AF_INET6 {
            return Err(DecodeError::Family(raw.family));
        }
        let proto = match raw.protocol {
            IPPROTO_TCP => Proto::Tcp,
            IPPROTO_UDP => Proto::Udp,
            p => return Err(DecodeError::Protocol(p)),
        };
        let direction = if raw.flags & flag::INITIATOR != 0 {
            Direction::Egress
        } else if raw.flags & flag::ACCEPTED != 0 {
            Direction::Ingress
        } else {
            Direction::Unknown
        };
        let owner = if raw.flags & flag::OWNER_UNKNOWN != 0 || raw.pid == 0 {
            OwnerSource::Unknown
        } else if raw.flags & flag::OWNER_FROM_LISTENER != 0 {
            OwnerSource::Listener
        } else {
            OwnerSource::Hook
        };
        Ok(ConnEvent {
            action,
            ts_ns: raw.ts_ns,
            sock: raw.sock,
            proto,
            local: socket_addr(raw.family, &raw.local_addr, raw.local_port),
            remote: socket_addr(raw.family, &raw.remote_addr, raw.remote_port),
            direction,
            pid: raw.pid,
            comm: Comm::from_kernel(&raw.comm),
            owner,
            start_ns: raw.start_ns,
            bytes_sent: raw.bytes_sent,
            bytes_recv: raw.bytes_recv,
            count: raw.packets,
            old_state: State::from_tcp(raw.old_state),
            new_state: State::from_tcp(raw.new_state),
            raw_states: (raw.old_state, raw.new_state),
            partial: raw.flags & flag::PARTIAL != 0,
            prior_sent: 0,
            prior_recv: 0,
            rtt_us: 0,
            retrans: 0,
            domain: None,
        })
    }

    /// An event with nothing known but its action and time: the base that
    /// synthesised events (losses, /proc differences, UDP flows) fill in.
    pub fn blank(action: Action, ts_ns: u64) -> ConnEvent {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        ConnEvent {
            action,
            ts_ns,
            sock: 0,
            proto: Proto::Tcp,
            local: any,
            remote: any,
            direction: Direction::Unknown,
            pid: 0,
            comm: Comm::EMPTY,
            owner: OwnerSource::Unknown,
            start_ns: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            count: 0,
            old_state: None,
            new_state: None,
            raw_states: (0, 0),
            partial: false,
            prior_sent: 0,
            prior_recv: 0,
            rtt_us: 0,
            retrans: 0,
            domain: None,
        }
    }

    /// A record that says `n` events were lost (ring full, or a slow consumer).
    pub fn lost(ts_ns: u64, n: u64) -> ConnEvent {
        ConnEvent {
            count: n,
            ..ConnEvent::blank(Action::EventsLost, ts_ns)
        }
    }

    pub fn duration_ns(&self) -> Option<u64> {
        span_ns(self.start_ns, self.ts_ns)
    }
}

/// `end - start`, when the start is known (not 0) and not after the end.
pub fn span_ns(start: u64, end: u64) -> Option<u64> {
    (start != 0 && end >= start).then(|| end - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u8) -> netta_ebpf::Event {
        let mut e = netta_ebpf::Event::zeroed();
        e.kind = kind;
        e.family = AF_INET;
        e.protocol = IPPROTO_TCP;
        e.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.remote_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        e.local_port = 40000;
        e.remote_port = 443;
        e.pid = 42;
        e.comm[..4].copy_from_slice(b"curl");
        e.flags = flag::INITIATOR;
        e.ts_ns = 2_000;
        e.start_ns = 500;
        e
    }

    #[test]
    fn decodes_a_closed_ipv4_record() {
        let mut r = raw(kind::CLOSED);
        r.bytes_sent = 10;
        r.bytes_recv = 20;
        let ev = ConnEvent::decode(r.as_bytes()).unwrap();
        assert_eq!(ev.action, Action::Closed);
        assert_eq!(ev.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(ev.remote, "10.1.2.3:443".parse().unwrap());
        assert_eq!(ev.direction, Direction::Egress);
        assert_eq!(ev.owner, OwnerSource::Hook);
        assert_eq!(ev.comm.to_string(), "curl");
        assert_eq!(ev.duration_ns(), Some(1_500));
        assert_eq!((ev.bytes_sent, ev.bytes_recv), (10, 20));
    }

    #[test]
    fn maps_v4_mapped_ipv6_to_ipv4() {
        let mut r = raw(kind::OPENED);
        r.family = AF_INET6;
        r.local_addr = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets();
        r.remote_addr = Ipv6Addr::LOCALHOST.octets();
        let ev = ConnEvent::decode(r.as_bytes()).unwrap();
        assert_eq!(ev.local.ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(ev.remote.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let r = raw(kind::OPENED);
        assert_eq!(
            ConnEvent::decode(&r.as_bytes()[..50]),
            Err(DecodeError::Short(50))
        );
        assert_eq!(
            ConnEvent::decode(raw(99).as_bytes()),
            Err(DecodeError::Kind(99))
        );
        let mut bad = raw(kind::OPENED);
        bad.family = 1;
        assert_eq!(
            ConnEvent::decode(bad.as_bytes()),
            Err(DecodeError::Family(1))
        );
        // Unknown kernel TCP states decode, but as "unknown", not as garbage.
        let mut st = raw(kind::STATE);
        st.new_state = 200;
        let ev = ConnEvent::decode(st.as_bytes()).unwrap();
        assert_eq!(ev.new_state, None);
        assert_eq!(ev.raw_states.1, 200);
    }

    #[test]
    fn state_names_parse_back() {
        for st in State::ALL {
            assert_eq!(State::parse(st.name()), Some(st), "{}", st.name());
        }
        assert_eq!(State::parse("listen"), Some(State::Listen));
        assert_eq!(State::parse("time-wait"), Some(State::TimeWait));
        assert_eq!(State::parse("estab"), Some(State::Established));
        assert_eq!(State::parse("bogus"), None);
    }

    #[test]
    fn abi_layout_is_what_the_kernel_writes() {
        // The kernel program compiles the same struct; these pin the wire format.
        use core::mem::{offset_of, size_of};
        use netta_ebpf::Event as E;
        assert_eq!(size_of::<E>(), 112);
        assert_eq!(offset_of!(E, ts_ns), 0);
        assert_eq!(offset_of!(E, sock), 8);
        assert_eq!(offset_of!(E, start_ns), 16);
        assert_eq!(offset_of!(E, packets), 40);
        assert_eq!(offset_of!(E, local_addr), 48);
        assert_eq!(offset_of!(E, remote_addr), 64);
        assert_eq!(offset_of!(E, pid), 80);
        assert_eq!(offset_of!(E, local_port), 84);
        assert_eq!(offset_of!(E, family), 88);
        assert_eq!(offset_of!(E, kind), 90);
        assert_eq!(offset_of!(E, comm), 96);
        assert_eq!(size_of::<netta_ebpf::SockInfo>(), 88);
        assert_eq!(size_of::<netta_ebpf::UdpFlowKey>(), 32);
        assert_eq!(size_of::<netta_ebpf::UdpFlowStats>(), 72);
        assert_eq!(size_of::<netta_ebpf::Config>(), 80);
    }
}
