//! Typed connection events, decoded from the kernel ABI (`netta_ebpf::Event`) or
//! synthesised by the /proc poller. Everything downstream (table, JSON, detection)
//! sees only these.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use netta_ebpf::{exec_flags, tcp_state, Flags, Kind, AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP};

use crate::core::cgroup::Container;
use crate::core::process::{ProcAction, ProcEvent, Process};
use crate::core::sanitize::{Comm, Domain, Text};

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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Who owns a socket, beyond pid and comm: the user and the cgroup (from the
/// kernel record, or /proc), and what the process cache and the cgroup map know
/// of them (`core::process`, `core::cgroup`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Who {
    /// The owner's user id (a /proc row: the socket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Its name on this host (escaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Text>,
    /// The owner's cgroup v2 id (0: unknown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cgroup: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Arc<Process>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<Container>>,
}

impl Who {
    /// The executable, if known.
    pub fn executable(&self) -> Option<&str> {
        Some(self.process.as_ref()?.executable.as_ref()?.as_str())
    }

    /// The container id, if the owner runs in one.
    pub fn container_id(&self) -> Option<&str> {
        self.container.as_ref()?.id.as_deref()
    }

    /// Takes from `other` (the same owner, known earlier) what this lacks.
    pub fn fill_from(&mut self, other: &Who) {
        if self.uid.is_none() {
            self.uid = other.uid;
        }
        if self.user.is_none() && self.uid == other.uid {
            self.user = other.user.clone();
        }
        if self.cgroup == 0 {
            self.cgroup = other.cgroup;
        }
        if self.process.is_none() {
            self.process = other.process.clone();
        }
        if self.container.is_none() {
            self.container = other.container.clone();
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
    /// Inode of the socket's network namespace (0: unknown).
    #[serde(default)]
    pub netns: u32,
    #[serde(default)]
    pub who: Who,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its kind's ({1} bytes)")]
    Short(usize, usize),
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("unknown record flags {0:#04x}")]
    Flags(u8),
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

/// Whether an untrusted kernel record is about a process (else about a
/// connection): the kind byte says which decoder takes it.
pub fn is_process_record(buf: &[u8]) -> Result<bool, DecodeError> {
    let kind = netta_ebpf::record_kind(buf)
        .ok_or(DecodeError::Short(buf.len(), netta_ebpf::TASK_EVENT_SIZE))?;
    Ok(Kind::try_from(kind).is_ok_and(|k| k.is_process()))
}

impl ProcEvent {
    /// Decodes one untrusted process record (fork, exit, or exec with its path).
    pub fn decode(buf: &[u8]) -> Result<ProcEvent, DecodeError> {
        use netta_ebpf::{EXEC_ARGS_LEN, EXEC_PATH_LEN, EXEC_SIZE_NO_ARGS, TASK_EVENT_SIZE};
        let short = |need| DecodeError::Short(buf.len(), need);
        let raw = netta_ebpf::TaskEvent::from_bytes(buf).ok_or(short(TASK_EVENT_SIZE))?;
        let action = match Kind::try_from(raw.kind).map_err(|k| DecodeError::Kind(k.0))? {
            Kind::Exec => ProcAction::Exec,
            Kind::Fork => ProcAction::Fork,
            Kind::Exit => ProcAction::Exit,
            _ => return Err(DecodeError::Kind(raw.kind)),
        };
        let mut ev = ProcEvent {
            action,
            ts_ns: raw.ts_ns,
            pid: raw.pid,
            ppid: raw.ppid,
            uid: raw.uid,
            start_ns: raw.start_ns,
            cgroup: raw.cgroup,
            comm: Comm::from_kernel(&raw.comm),
            path: Vec::new(),
            path_truncated: false,
            args: None,
            args_truncated: false,
        };
        if action != ProcAction::Exec {
            return Ok(ev);
        }
        let body = buf
            .get(TASK_EVENT_SIZE..EXEC_SIZE_NO_ARGS)
            .ok_or(short(EXEC_SIZE_NO_ARGS))?;
        let n = usize::from(raw.path_len).min(EXEC_PATH_LEN);
        ev.path = body[..n].to_vec();
        ev.path_truncated = raw.flags & exec_flags::PATH_TRUNCATED != 0;
        if raw.flags & exec_flags::HAS_ARGS != 0 {
            let full = EXEC_SIZE_NO_ARGS + EXEC_ARGS_LEN;
            let args = buf.get(EXEC_SIZE_NO_ARGS..full).ok_or(short(full))?;
            let n = usize::from(raw.args_len).min(EXEC_ARGS_LEN);
            ev.args = Some(args[..n].to_vec());
            ev.args_truncated = raw.flags & exec_flags::ARGS_TRUNCATED != 0;
        }
        Ok(ev)
    }
}

impl ConnEvent {
    /// Decodes one untrusted connection record.
    pub fn decode(buf: &[u8]) -> Result<ConnEvent, DecodeError> {
        let raw = netta_ebpf::Event::from_bytes(buf)
            .ok_or(DecodeError::Short(buf.len(), netta_ebpf::EVENT_SIZE))?;
        ConnEvent::from_raw(&raw)
    }

    pub fn from_raw(raw: &netta_ebpf::Event) -> Result<ConnEvent, DecodeError> {
        let kind = Kind::try_from(raw.kind).map_err(|k| DecodeError::Kind(k.0))?;
        let action = match kind {
            Kind::Opened => Action::Opened,
            Kind::Closed => Action::Closed,
            Kind::Failed => Action::Failed,
            Kind::ListenStarted => Action::ListenStarted,
            Kind::ListenStopped => Action::ListenStopped,
            Kind::UdpFlow => Action::UdpFlow,
            Kind::State => Action::StateChanged,
            Kind::Pending => Action::Pending,
            Kind::ResetSent => Action::ResetSent,
            Kind::Exec | Kind::Fork | Kind::Exit | Kind::DnsAnswer => {
                return Err(DecodeError::Kind(raw.kind))
            }
        };
        let flags =
            Flags::from_bits(raw.flags.bits()).ok_or(DecodeError::Flags(raw.flags.bits()))?;
        if raw.family != AF_INET && raw.family != AF_INET6 {
            return Err(DecodeError::Family(raw.family));
        }
        let proto = match raw.protocol {
            IPPROTO_TCP => Proto::Tcp,
            IPPROTO_UDP => Proto::Udp,
            p => return Err(DecodeError::Protocol(p)),
        };
        let direction = if flags.contains(Flags::INITIATOR) {
            Direction::Egress
        } else if flags.contains(Flags::ACCEPTED) {
            Direction::Ingress
        } else {
            Direction::Unknown
        };
        let owner = if flags.contains(Flags::OWNER_UNKNOWN) || raw.pid == 0 {
            OwnerSource::Unknown
        } else if flags.contains(Flags::OWNER_FROM_LISTENER) {
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
            partial: flags.contains(Flags::PARTIAL),
            prior_sent: 0,
            prior_recv: 0,
            rtt_us: 0,
            retrans: 0,
            domain: None,
            netns: raw.netns,
            who: Who {
                // The owner's, where a hook in its context took it.
                uid: (owner != OwnerSource::Unknown).then_some(raw.uid),
                user: None,
                cgroup: if owner == OwnerSource::Unknown {
                    0
                } else {
                    raw.cgroup
                },
                process: None,
                container: None,
            },
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
            netns: 0,
            who: Who::default(),
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
        e.flags = Flags::INITIATOR;
        e.ts_ns = 2_000;
        e.start_ns = 500;
        e
    }

    #[test]
    fn decodes_a_closed_ipv4_record() {
        let mut r = raw(Kind::Closed as u8);
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
        let mut r = raw(Kind::Opened as u8);
        r.family = AF_INET6;
        r.local_addr = Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets();
        r.remote_addr = Ipv6Addr::LOCALHOST.octets();
        let ev = ConnEvent::decode(r.as_bytes()).unwrap();
        assert_eq!(ev.local.ip(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(ev.remote.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn rejects_short_and_unknown_records() {
        let r = raw(Kind::Opened as u8);
        assert_eq!(
            ConnEvent::decode(&r.as_bytes()[..50]),
            Err(DecodeError::Short(50, netta_ebpf::EVENT_SIZE))
        );
        assert_eq!(
            ConnEvent::decode(raw(99).as_bytes()),
            Err(DecodeError::Kind(99))
        );
        // Bits the ABI does not name are an error too, not silently dropped.
        let mut bad = raw(Kind::Opened as u8);
        bad.flags = Flags::from_bits_retain(0x80);
        assert_eq!(
            ConnEvent::decode(bad.as_bytes()),
            Err(DecodeError::Flags(0x80))
        );
        let mut bad = raw(Kind::Opened as u8);
        bad.family = 1;
        assert_eq!(
            ConnEvent::decode(bad.as_bytes()),
            Err(DecodeError::Family(1))
        );
        // Unknown kernel TCP states decode, but as "unknown", not as garbage.
        let mut st = raw(Kind::State as u8);
        st.new_state = 200;
        let ev = ConnEvent::decode(st.as_bytes()).unwrap();
        assert_eq!(ev.new_state, None);
        assert_eq!(ev.raw_states.1, 200);
    }

    #[test]
    fn every_kind_is_its_own_byte() {
        for k in Kind::ALL {
            assert_eq!(Kind::try_from(k as u8), Ok(k));
        }
        assert_eq!(Kind::try_from(0), Err(netta_ebpf::UnknownKind(0)));
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
    fn decodes_the_owners_user_cgroup_and_namespace() {
        let mut r = raw(Kind::Opened as u8);
        r.uid = 1000;
        r.cgroup = 0x1234;
        r.netns = 4026531840;
        let ev = ConnEvent::decode(r.as_bytes()).unwrap();
        assert_eq!(
            (ev.who.uid, ev.who.cgroup, ev.netns),
            (Some(1000), 0x1234, 4026531840)
        );
        // An owner no hook took has no user either (the fields are zero, not root).
        r.flags = Flags::INITIATOR | Flags::OWNER_UNKNOWN;
        let ev = ConnEvent::decode(r.as_bytes()).unwrap();
        assert_eq!((ev.who.uid, ev.who.cgroup), (None, 0));
    }

    fn task(kind: Kind) -> netta_ebpf::ExecEvent {
        let mut e = netta_ebpf::ExecEvent::zeroed();
        e.task.kind = kind as u8;
        e.task.ts_ns = 9_000;
        e.task.pid = 77;
        e.task.ppid = 1;
        e.task.uid = 1000;
        e.task.start_ns = 8_000;
        e.task.cgroup = 99;
        e.task.comm[..7].copy_from_slice(b"python3");
        e
    }

    #[derive(Debug, PartialEq)]
    enum Decoded {
        Conn(ConnEvent),
        Proc(ProcEvent),
    }

    /// One record through the pipeline's decoder.
    fn decode_record(buf: &[u8]) -> Result<Decoded, DecodeError> {
        let (mut batch, mut procs) = (Vec::new(), Vec::new());
        crate::core::pipeline::decode_into(&mut batch, &mut procs, buf)?;
        Ok(match (batch.pop(), procs.pop()) {
            (Some(ev), None) => Decoded::Conn(ev),
            (None, Some((_, p))) => Decoded::Proc(p),
            _ => unreachable!("one record, one value"),
        })
    }

    fn bytes(e: &netta_ebpf::ExecEvent, len: usize) -> Vec<u8> {
        // SAFETY: a repr(C) record of plain integers and bytes.
        let all = unsafe {
            std::slice::from_raw_parts(
                e as *const _ as *const u8,
                std::mem::size_of::<netta_ebpf::ExecEvent>(),
            )
        };
        all[..len].to_vec()
    }

    #[test]
    fn decodes_process_records_by_their_kind() {
        use netta_ebpf::{EXEC_SIZE_NO_ARGS, TASK_EVENT_SIZE};
        let fork = task(Kind::Fork);
        let Ok(Decoded::Proc(p)) = decode_record(&bytes(&fork, TASK_EVENT_SIZE)) else {
            panic!("a fork record");
        };
        assert_eq!(
            (p.action, p.pid, p.ppid, p.start_ns),
            (ProcAction::Fork, 77, 1, 8_000)
        );
        let mut exec = task(Kind::Exec);
        exec.path[..15].copy_from_slice(b"/usr/bin/python");
        exec.task.path_len = 15;
        let Ok(Decoded::Proc(p)) = decode_record(&bytes(&exec, EXEC_SIZE_NO_ARGS)) else {
            panic!("an exec record");
        };
        assert_eq!(p.path, b"/usr/bin/python");
        assert_eq!(p.args, None);
        // With arguments the record is full size; cut short, it is an error.
        exec.task.flags = exec_flags::HAS_ARGS | exec_flags::ARGS_TRUNCATED;
        exec.args[..6].copy_from_slice(b"py\0-c\0");
        exec.task.args_len = 6;
        let full = std::mem::size_of::<netta_ebpf::ExecEvent>();
        let Ok(Decoded::Proc(p)) = decode_record(&bytes(&exec, full)) else {
            panic!("an exec record with arguments");
        };
        assert_eq!(p.args.as_deref(), Some(&b"py\0-c\0"[..]));
        assert!(p.args_truncated);
        assert_eq!(
            decode_record(&bytes(&exec, EXEC_SIZE_NO_ARGS)),
            Err(DecodeError::Short(EXEC_SIZE_NO_ARGS, full))
        );
        // Lengths past the buffers are bounded, not trusted.
        exec.task.path_len = u16::MAX;
        exec.task.args_len = u16::MAX;
        let Ok(Decoded::Proc(p)) = decode_record(&bytes(&exec, full)) else {
            panic!("bounded");
        };
        assert_eq!(p.path.len(), netta_ebpf::EXEC_PATH_LEN);
        // A connection record is a connection event; nothing is a short error.
        let conn = raw(Kind::Opened as u8);
        assert!(matches!(
            decode_record(conn.as_bytes()),
            Ok(Decoded::Conn(_))
        ));
        assert!(decode_record(&[]).is_err());
        assert_eq!(
            ConnEvent::decode(&bytes(&fork, TASK_EVENT_SIZE)),
            Err(DecodeError::Short(TASK_EVENT_SIZE, netta_ebpf::EVENT_SIZE))
        );
    }

    #[test]
    fn abi_layout_is_what_the_kernel_writes() {
        // The kernel program compiles the same struct; these pin the wire format.
        use core::mem::{offset_of, size_of};
        use netta_ebpf::Event as E;
        assert_eq!(size_of::<E>(), 128);
        assert_eq!(offset_of!(E, ts_ns), 0);
        assert_eq!(offset_of!(E, kind), 8);
        assert_eq!(offset_of!(E, family), 14);
        assert_eq!(offset_of!(E, sock), 16);
        assert_eq!(offset_of!(E, start_ns), 24);
        assert_eq!(offset_of!(E, packets), 48);
        assert_eq!(offset_of!(E, cgroup), 56);
        assert_eq!(offset_of!(E, local_addr), 64);
        assert_eq!(offset_of!(E, remote_addr), 80);
        assert_eq!(offset_of!(E, pid), 96);
        assert_eq!(offset_of!(E, uid), 100);
        assert_eq!(offset_of!(E, netns), 104);
        assert_eq!(offset_of!(E, local_port), 108);
        assert_eq!(offset_of!(E, comm), 112);
        assert_eq!(size_of::<netta_ebpf::TaskEvent>(), 64);
        assert_eq!(offset_of!(netta_ebpf::TaskEvent, kind), 8);
        assert_eq!(size_of::<netta_ebpf::ExecEvent>(), 1344);
        assert_eq!(size_of::<netta_ebpf::SockInfo>(), 104);
        assert_eq!(size_of::<netta_ebpf::UdpFlowKey>(), 32);
        assert_eq!(size_of::<netta_ebpf::UdpFlowStats>(), 32);
        assert_eq!(size_of::<netta_ebpf::Config>(), 160);
    }
}
