//! NETLINK_SOCK_DIAG messages (what `ss -ti` reads): the dump requests and the
//! parser of their untrusted answers. Pure: `host::sock_diag` does the socket I/O.
//!
//! Two requests: `SOCK_DIAG_BY_FAMILY` names one address family, so IPv4 and
//! IPv6 take two dumps, and each walks the kernel's whole established-socket
//! hash table (262,144 buckets on a machine with a few GiB). The older
//! `TCPDIAG_GETSOCK` request dumps both families in one walk (the kernel keeps
//! it for compatibility, and answers it with the same messages): half the
//! fixed cost of a refresh.
//! Only the few `tcp_info` fields netta shows are read, each by its fixed offset
//! in `struct tcp_info` (linux/tcp.h), and only when the kernel's copy is long
//! enough to hold it (older kernels send a shorter struct).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::event::{normalize, Proto, State};
use crate::core::proc_net::ProcSocket;

/// `SOCK_DIAG_BY_FAMILY`, the message type of requests and answers.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the compatibility request, all families; its answers
/// carry this type.
const TCPDIAG_GETSOCK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDR: usize = 16;
/// `struct inet_diag_msg`.
const DIAG_MSG: usize = 72;
/// `INET_DIAG_INFO`: the attribute that carries `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// Length of the request: header + `struct inet_diag_req_v2`.
pub const REQUEST_LEN: usize = NLMSG_HDR + 56;
/// Length of the compatibility request: header + `struct inet_diag_req`.
pub const COMPAT_REQUEST_LEN: usize = NLMSG_HDR + 60;

/// The kernel's TCP states worth a live sample: connections that carry data.
/// (Listeners, TIME_WAIT and SYN states have no counters to show.)
pub const LIVE_STATES: u32 = (1 << 1) // ESTABLISHED
    | (1 << 4) // FIN_WAIT1
    | (1 << 5) // FIN_WAIT2
    | (1 << 8) // CLOSE_WAIT
    | (1 << 9) // LAST_ACK
    | (1 << 11); // CLOSING

/// Every state `/proc/net/tcp` lists (`TCP_ESTABLISHED` to `TCP_NEW_SYN_RECV`;
/// not 6.5's `TCP_BOUND_INACTIVE`, which only the bind table holds).
pub const PROC_STATES: u32 = 0x1ffe;

/// What a dump asks for: the TCP sockets in `states` (a bit per kernel state),
/// with their `tcp_info` when `info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub states: u32,
    pub info: bool,
}

impl Query {
    /// The live refresh: the open connections and their counters.
    pub const LIVE: Query = Query {
        states: LIVE_STATES,
        info: true,
    };
    /// Reconciliation: what `/proc/net/tcp{,6}` lists, TIME_WAIT included,
    /// without counters (binary, so no text to format and parse).
    pub const PROC: Query = Query {
        states: PROC_STATES,
        info: false,
    };

    fn ext(self) -> u8 {
        if self.info {
            1 << (INET_DIAG_INFO - 1)
        } else {
            0
        }
    }
}

/// The counters of one TCP socket, from its `tcp_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `tcpi_bytes_acked`: sent and acknowledged (our SYN/FIN included).
    pub bytes_acked: Option<u64>,
    /// `tcpi_bytes_received` (the peer's FIN included).
    pub bytes_received: Option<u64>,
    /// Smoothed round-trip time, µs.
    pub rtt_us: u32,
    pub total_retrans: u32,
    /// Milliseconds since data was last sent / received.
    pub last_data_sent_ms: u32,
    pub last_data_recv_ms: u32,
}

/// One socket of a dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// The kernel's socket cookie: unique for the socket's life, never reused.
    pub cookie: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// `None` for kernel states this build does not know.
    pub state: Option<State>,
    pub inode: u64,
    pub uid: u32,
    pub info: Option<TcpCounters>,
}

impl DiagSocket {
    /// The row `/proc/net/tcp{,6}` shows for this socket (the reader sets its
    /// namespace); `None` for a state this build does not know.
    pub fn proc_socket(&self) -> Option<ProcSocket> {
        Some(ProcSocket {
            proto: Proto::Tcp,
            local: self.local,
            remote: self.remote,
            state: self.state?,
            inode: self.inode,
            uid: self.uid,
            netns: 0,
        })
    }
}

/// What one datagram of the answer held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The dump is complete (`NLMSG_DONE`).
    pub done: bool,
    /// The kernel answered with this errno.
    pub error: Option<i32>,
    /// Messages too short or malformed, skipped.
    pub bad: u32,
}

/// The dump request for `family` (`AF_INET`/`AF_INET6`) TCP sockets.
pub fn request(family: u8, q: Query, seq: u32) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // struct inet_diag_req_v2
    b[16] = family;
    b[17] = libc::IPPROTO_TCP as u8;
    b[18] = q.ext();
    b[20..24].copy_from_slice(&q.states.to_ne_bytes());
    b
}

/// The compatibility dump request: TCP sockets of every family.
pub fn request_all_families(q: Query, seq: u32) -> [u8; COMPAT_REQUEST_LEN] {
    let mut b = [0u8; COMPAT_REQUEST_LEN];
    b[0..4].copy_from_slice(&(COMPAT_REQUEST_LEN as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    b[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // struct inet_diag_req: family (0: all), src_len, dst_len, ext, the
    // 48-byte socket id, states, dbs.
    b[19] = q.ext();
    b[68..72].copy_from_slice(&q.states.to_ne_bytes());
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses one datagram of a dump answer, appending its sockets to `out`.
/// Never panics, whatever the bytes.
pub fn parse(buf: &[u8], out: &mut Vec<DiagSocket>) -> Parsed {
    let mut p = Parsed::default();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at + 4)) else {
            break;
        };
        let len = len as usize;
        if len < NLMSG_HDR || at + len > buf.len() {
            p.bad += 1;
            break;
        }
        let body = &buf[at + NLMSG_HDR..at + len];
        match kind {
            NLMSG_DONE => {
                p.done = true;
                break;
            }
            NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                p.error = Some(errno.saturating_neg());
                p.done = true;
                break;
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match socket(body) {
                Some(s) => out.push(s),
                None => p.bad += 1,
            },
            _ => {}
        }
        at += (len + 3) & !3;
    }
    p
}

/// One `inet_diag_msg` and its attributes.
fn socket(b: &[u8]) -> Option<DiagSocket> {
    if b.len() < DIAG_MSG {
        return None;
    }
    let family = b[0];
    let addr = |off: usize, port_off: usize| -> Option<SocketAddr> {
        let port = u16::from_be_bytes([b[port_off], b[port_off + 1]]);
        let ip = match i32::from(family) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])),
            libc::AF_INET6 => {
                let raw: [u8; 16] = b[off..off + 16].try_into().ok()?;
                normalize(IpAddr::V6(Ipv6Addr::from(raw)))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    };
    // inet_diag_sockid starts at 4: sport(2) dport(2) src(16) dst(16) if(4) cookie(8).
    let local = addr(8, 4)?;
    let remote = addr(24, 6)?;
    let cookie = u64::from(u32_at(b, 44)?) | u64::from(u32_at(b, 48)?) << 32;
    let uid = u32_at(b, 64)?;
    let inode = u32_at(b, 68)?;
    let mut info = None;
    let mut at = DIAG_MSG;
    while at + 4 <= b.len() {
        let len = usize::from(u16_at(b, at)?);
        let kind = u16_at(b, at + 2)?;
        if len < 4 || at + len > b.len() {
            break;
        }
        if kind & 0x3fff == INET_DIAG_INFO {
            info = Some(tcp_info(&b[at + 4..at + len]));
        }
        at += (len + 3) & !3;
    }
    Some(DiagSocket {
        cookie,
        local,
        remote,
        state: State::from_tcp(b[1]),
        inode: u64::from(inode),
        uid,
        info,
    })
}

/// The fields of `struct tcp_info` netta reads, where the kernel's copy has them.
fn tcp_info(t: &[u8]) -> TcpCounters {
    TcpCounters {
        bytes_acked: u64_at(t, 120),
        bytes_received: u64_at(t, 128),
        rtt_us: u32_at(t, 68).unwrap_or(0),
        total_retrans: u32_at(t, 100).unwrap_or(0),
        last_data_sent_ms: u32_at(t, 44).unwrap_or(0),
        last_data_recv_ms: u32_at(t, 52).unwrap_or(0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One answer message as the kernel writes it (tests and the fuzz corpus).
    pub fn message(local: &str, remote: &str, state: u8, info: &[u8]) -> Vec<u8> {
        let (local, remote): (SocketAddr, SocketAddr) =
            (local.parse().unwrap(), remote.parse().unwrap());
        let mut m = vec![0u8; NLMSG_HDR + DIAG_MSG];
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        let d = NLMSG_HDR;
        let put = |m: &mut Vec<u8>, off: usize, a: SocketAddr, port_off: usize| {
            m[d + port_off..d + port_off + 2].copy_from_slice(&a.port().to_be_bytes());
            match a.ip() {
                IpAddr::V4(v4) => m[d + off..d + off + 4].copy_from_slice(&v4.octets()),
                IpAddr::V6(v6) => m[d + off..d + off + 16].copy_from_slice(&v6.octets()),
            }
        };
        m[d] = if local.is_ipv4() {
            libc::AF_INET as u8
        } else {
            libc::AF_INET6 as u8
        };
        m[d + 1] = state;
        put(&mut m, 8, local, 4);
        put(&mut m, 24, remote, 6);
        // The cookie: the socket's port pair, so each test socket has its own.
        m[d + 44..d + 48].copy_from_slice(&u32::from(local.port()).to_ne_bytes());
        m[d + 48..d + 52].copy_from_slice(&u32::from(remote.port()).to_ne_bytes());
        m[d + 64..d + 68].copy_from_slice(&1000u32.to_ne_bytes());
        m[d + 68..d + 72].copy_from_slice(&4242u32.to_ne_bytes());
        let alen = 4 + info.len();
        m.extend_from_slice(&(alen as u16).to_ne_bytes());
        m.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        m.extend_from_slice(info);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    pub fn info(acked: u64, received: u64, rtt_us: u32, retrans: u32) -> Vec<u8> {
        let mut t = vec![0u8; 232];
        t[120..128].copy_from_slice(&acked.to_ne_bytes());
        t[128..136].copy_from_slice(&received.to_ne_bytes());
        t[68..72].copy_from_slice(&rtt_us.to_ne_bytes());
        t[100..104].copy_from_slice(&retrans.to_ne_bytes());
        t[44..48].copy_from_slice(&5u32.to_ne_bytes());
        t[52..56].copy_from_slice(&7u32.to_ne_bytes());
        t
    }

    /// An ESTABLISHED socket (kernel state 1) with its `tcp_info`.
    fn established(local: &str, remote: &str, info: &[u8]) -> Vec<u8> {
        message(local, remote, 1, info)
    }

    fn done() -> Vec<u8> {
        let mut m = vec![0u8; 20];
        m[0..4].copy_from_slice(&20u32.to_ne_bytes());
        m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        m
    }

    #[test]
    fn parses_sockets_and_their_tcp_info_until_done() {
        let mut buf = established("127.0.0.1:40000", "127.0.0.1:443", &info(1000, 20, 31, 2));
        buf.extend(message(
            "[::ffff:10.0.0.1]:22",
            "[2001:db8::1]:5555",
            8,
            &info(5, 6, 0, 0)[..100],
        ));
        buf.extend(done());
        let mut out = Vec::new();
        let p = parse(&buf, &mut out);
        assert!(p.done && p.error.is_none() && p.bad == 0, "{p:?}");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(out[0].remote.port(), 443);
        assert_eq!(out[0].state, Some(State::Established));
        assert_eq!((out[0].inode, out[0].uid), (4242, 1000));
        assert_eq!(out[0].cookie, 40000 | 443 << 32);
        let i = out[0].info.unwrap();
        assert_eq!((i.bytes_acked, i.bytes_received), (Some(1000), Some(20)));
        assert_eq!((i.rtt_us, i.total_retrans), (31, 2));
        assert_eq!((i.last_data_sent_ms, i.last_data_recv_ms), (5, 7));
        // v4-mapped becomes IPv4; a short tcp_info has no byte counters.
        assert_eq!(out[1].local, "10.0.0.1:22".parse().unwrap());
        assert_eq!(out[1].state, Some(State::CloseWait));
        assert_eq!(out[1].info.unwrap().bytes_acked, None);
    }

    #[test]
    fn truncated_and_hostile_answers_are_refused_not_panicked_on() {
        let good = established("127.0.0.1:1", "127.0.0.1:2", &info(1, 2, 3, 4));
        for cut in 0..good.len() {
            let mut out = Vec::new();
            let _ = parse(&good[..cut], &mut out);
            assert!(out.len() <= 1);
        }
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        let p = parse(&err, &mut Vec::new());
        assert_eq!(p.error, Some(13));
        // A length that points past the end.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert_eq!(parse(&bad, &mut Vec::new()).bad, 1);
    }

    #[test]
    fn answers_to_the_compatibility_request_parse_the_same() {
        let mut m = established("[2001:db8::2]:443", "[2001:db8::1]:5555", &info(9, 8, 7, 6));
        m[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        m.extend(done());
        let mut out = Vec::new();
        let p = parse(&m, &mut out);
        assert!(p.done && p.bad == 0, "{p:?}");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].local.port(), 443);
        assert_eq!(out[0].info.unwrap().bytes_acked, Some(9));
        // Other message types are skipped, not taken for sockets.
        m[4..6].copy_from_slice(&19u16.to_ne_bytes());
        let mut out = Vec::new();
        parse(&m, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_compatibility_request_asks_for_every_family_in_one_dump() {
        let r = request_all_families(Query::LIVE, 3);
        assert_eq!(u32_at(&r, 0), Some(COMPAT_REQUEST_LEN as u32));
        assert_eq!(u16_at(&r, 4), Some(TCPDIAG_GETSOCK));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(r[16], 0, "AF_UNSPEC");
        assert_eq!(r[19], 2, "INET_DIAG_INFO only");
        assert_eq!(u32_at(&r, 68), Some(LIVE_STATES));
    }

    #[test]
    fn the_request_asks_for_tcp_info_of_live_states() {
        let r = request(libc::AF_INET as u8, Query::LIVE, 7);
        assert_eq!(u32_at(&r, 0), Some(REQUEST_LEN as u32));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(r[18], 2);
        assert_eq!(u32_at(&r, 20), Some(LIVE_STATES));
    }

    #[test]
    fn the_reconcile_request_asks_for_every_listed_state_without_counters() {
        let r = request_all_families(Query::PROC, 4);
        assert_eq!(r[19], 0, "no tcp_info");
        assert_eq!(u32_at(&r, 68), Some(PROC_STATES));
        // ESTABLISHED, LISTEN, TIME_WAIT and NEW_SYN_RECV, but not BOUND_INACTIVE.
        for st in [1, 6, 10, 12] {
            assert_ne!(PROC_STATES & (1 << st), 0, "state {st}");
        }
        assert_eq!(PROC_STATES & (1 << 13), 0);
    }

    #[test]
    fn a_dumped_socket_becomes_a_proc_row() {
        let m = message("10.0.0.1:80", "10.0.0.2:5000", 6, &[]);
        let mut out = Vec::new();
        parse(&m, &mut out);
        let row = out[0].proc_socket().unwrap();
        assert_eq!(row.state, State::TimeWait);
        assert_eq!((row.inode, row.uid, row.netns), (4242, 1000, 0));
        assert_eq!(row.local, "10.0.0.1:80".parse().unwrap());
        let unknown = DiagSocket {
            state: None,
            ..out[0]
        };
        assert_eq!(unknown.proc_socket(), None);
    }
}
