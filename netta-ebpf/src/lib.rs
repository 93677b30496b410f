//! The kernel/user event ABI of netta, defined once.
//!
//! The kernel program (`src/main.rs`, built for `bpfel-unknown-none`) writes [`Event`]
//! records into a ring buffer or perf array; the agent reads them back with
//! [`Event::from_bytes`]. Both sides compile this file, so a change to the layout
//! cannot reach one side only. The `const` assertions below pin the layout on
//! every target that builds it.
#![no_std]

/// Kinds of record the kernel emits (`Event::kind`).
pub mod kind {
    /// A TCP socket reached ESTABLISHED (emitted once its owner is known).
    pub const OPENED: u8 = 1;
    /// An established TCP socket reached CLOSE.
    pub const CLOSED: u8 = 2;
    /// SYN_SENT went to CLOSE: refused, timed out or reset.
    pub const FAILED: u8 = 3;
    pub const LISTEN_STARTED: u8 = 4;
    pub const LISTEN_STOPPED: u8 = 5;
    /// First datagram of a new UDP flow (socket, remote address, remote port).
    pub const UDP_FLOW: u8 = 6;
    /// One raw `inet_sock_set_state` transition (only with `Config::all_states`).
    pub const STATE: u8 = 7;
    /// The kernel sent a RST (closed port, or abort).
    pub const RESET_SENT: u8 = 8;
    /// An accepted connection reached ESTABLISHED but no hook has run in its
    /// owner's context yet: the agent lists it now (owner provisional, from the
    /// listener) and reports it opened when `OPENED` follows.
    pub const PENDING: u8 = 9;
    pub const MAX: u8 = 9;
}

/// Bits of `Event::flags`.
pub mod flag {
    /// This socket made the connection (it went through SYN_SENT).
    pub const INITIATOR: u8 = 1 << 0;
    /// This socket was accepted from a listener (it came from SYN_RECV).
    pub const ACCEPTED: u8 = 1 << 1;
    /// The owner was taken from the listener, not from a hook on this socket.
    pub const OWNER_FROM_LISTENER: u8 = 1 << 2;
    /// The socket was first seen mid-life (netta started later, or the map
    /// evicted it): `start_ns` and the byte counters are incomplete.
    pub const PARTIAL: u8 = 1 << 3;
    /// No process-context hook has seen this socket: `pid`/`comm` are empty.
    pub const OWNER_UNKNOWN: u8 = 1 << 4;
}

/// Linux TCP states, as `include/net/tcp_states.h` numbers them.
pub mod tcp_state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const COMM_LEN: usize = 16;

/// One fixed-size record from kernel to user space. Addresses are in network
/// byte order; an IPv4 address fills the first 4 bytes. Ports are host order.
/// `local`/`remote` are from the socket's own point of view.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME: counts suspend, never steps) when
    /// the record was made.
    pub ts_ns: u64,
    /// Kernel address of the socket: the identity of a connection for its life.
    pub sock: u64,
    /// When the connection began (SYN_SENT / SYN_RECV / LISTEN / first datagram).
    pub start_ns: u64,
    /// Bytes this socket sent and the peer acknowledged (TCP), or datagram bytes (UDP flow).
    pub bytes_sent: u64,
    /// Bytes this socket received (TCP).
    pub bytes_recv: u64,
    /// UDP: datagrams in the flow so far.
    pub packets: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    /// Process id (tgid) of the owner.
    pub pid: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub kind: u8,
    pub flags: u8,
    pub old_state: u8,
    pub new_state: u8,
    pub protocol: u8,
    pub _pad: u8,
    /// Thread command of the owner, NUL-padded; not sanitised.
    pub comm: [u8; COMM_LEN],
}

pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();

const _: () = assert!(EVENT_SIZE == 112);
const _: () = assert!(core::mem::align_of::<Event>() == 8);
const _: () = assert!(core::mem::offset_of!(Event, local_addr) == 48);
const _: () = assert!(core::mem::offset_of!(Event, pid) == 80);
const _: () = assert!(core::mem::offset_of!(Event, kind) == 90);
const _: () = assert!(core::mem::offset_of!(Event, comm) == 96);

impl Event {
    pub const fn zeroed() -> Self {
        Event {
            ts_ns: 0,
            sock: 0,
            start_ns: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            packets: 0,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            pid: 0,
            local_port: 0,
            remote_port: 0,
            family: 0,
            kind: 0,
            flags: 0,
            old_state: 0,
            new_state: 0,
            protocol: 0,
            _pad: 0,
            comm: [0; COMM_LEN],
        }
    }

    /// Reads one record from untrusted bytes. `None` if the slice is shorter
    /// than a record; longer slices (perf pads its samples) are accepted.
    pub fn from_bytes(buf: &[u8]) -> Option<Event> {
        if buf.len() < EVENT_SIZE {
            return None;
        }
        // SAFETY: Event is repr(C), every bit pattern is a valid value of every
        // field, and the length was checked; read_unaligned needs no alignment.
        Some(unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const Event) })
    }

    pub fn as_bytes(&self) -> &[u8; EVENT_SIZE] {
        // SAFETY: repr(C) with explicit padding fields, so no uninitialised bytes.
        unsafe { &*(self as *const Event as *const [u8; EVENT_SIZE]) }
    }
}

/// Per-TCP-socket state the kernel keeps in `TCP_SOCKS` (keyed by socket address).
/// The 4-tuple is kept because the send/recv hooks that find the owner carry only
/// the socket pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockInfo {
    pub start_ns: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub pid: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub flags: u8,
    /// 1 once the `OPENED` record went out.
    pub opened_sent: u8,
    pub established: u8,
    /// 1 once this side queued a FIN (it went to FIN_WAIT1 or LAST_ACK).
    pub fin_sent: u8,
    pub _pad: [u8; 2],
    pub comm: [u8; COMM_LEN],
}

impl SockInfo {
    pub const fn zeroed() -> Self {
        SockInfo {
            start_ns: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            pid: 0,
            local_port: 0,
            remote_port: 0,
            family: 0,
            flags: 0,
            opened_sent: 0,
            established: 0,
            fin_sent: 0,
            _pad: [0; 2],
            comm: [0; COMM_LEN],
        }
    }
}

/// Owner of a listening port (`LISTENERS`, keyed by [`listener_key`]), used when an
/// accepted socket closes before any hook in its owner's context ran.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ListenerInfo {
    pub pid: u32,
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
}

/// Key of a UDP flow: the socket and where it sends to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    pub sock: u64,
    pub remote_addr: [u8; 16],
    pub remote_port: u16,
    pub family: u16,
    pub _pad: u32,
}

/// Counters of a UDP flow, updated in the kernel per datagram and read by the
/// agent by sweeping the map, so a busy flow costs one ring record, not one per datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UdpFlowStats {
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub local_addr: [u8; 16],
    pub pid: u32,
    pub local_port: u16,
    pub _pad: u16,
    pub comm: [u8; COMM_LEN],
}

/// Destination a thread passed to sendto/sendmsg, stashed until the
/// `sock_send_length` hook (which carries the socket, not the address) runs.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendDest {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u16,
    pub _pad: u32,
}

pub const fn listener_key(family: u16, port: u16) -> u32 {
    ((family as u32) << 16) | port as u32
}

/// Indexes of the `COUNTERS` per-CPU array.
pub mod counter {
    /// Records that did not fit in the ring buffer / perf array.
    pub const LOST: u32 = 0;
    /// Inserts into a bounded map that failed.
    pub const MAP_FULL: u32 = 1;
    pub const LEN: u32 = 4;
}

/// Map names, shared so the loader cannot drift from the program.
pub mod maps {
    pub const RING: &str = "EVENTS";
    pub const PERF: &str = "PERF_EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const UDP_FLOWS: &str = "UDP_FLOWS";
    /// SYN-ACK retransmissions per listening port ([`listener_key`]): each one is a
    /// half-open connection whose client never answered.
    pub const SYNACK_RETRANS: &str = "SYNACK_RETRANS";
    pub const TCP_SOCKS: &str = "TCP_SOCKS";
    pub const LISTENERS: &str = "LISTENERS";
    pub const SEND_DEST: &str = "SEND_DEST";
}

/// Global `CONFIG` (set by the loader before load). Every struct offset here comes
/// from the running kernel's BTF: the program never assumes one kernel's layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// 1: emit every `inet_sock_set_state` transition as a `STATE` record.
    pub all_states: u8,
    /// 1: write to the perf array instead of the ring buffer.
    pub use_perf: u8,
    /// 1: `sock_send_length` counts UDP datagrams (the fexit of `udp_sendmsg` is
    /// not attached).
    pub udp_via_length: u8,
    pub _pad: u8,
    /// Force a ring-buffer wakeup once this many bytes are waiting; below it the
    /// agent's periodic drain picks records up, which saves a wakeup per record.
    pub wakeup_bytes: u32,
    /// `sock_common`: IPv4 peer and bound address, peer port (network order),
    /// bound port (host order), IPv6 peer and bound address, and `skc_family`.
    pub off_daddr: u32,
    pub off_rcv_saddr: u32,
    pub off_dport: u32,
    pub off_num: u32,
    pub off_v6_daddr: u32,
    pub off_v6_rcv_saddr: u32,
    pub off_family: u32,
    /// `sock_common.skc_flags` (`sk_flags`): SOCK_DONE says the peer's FIN arrived.
    pub off_sk_flags: u32,
    /// Offsets in `struct tcp_sock` of `bytes_acked` and `bytes_received`: the
    /// kernel's own byte counts, read at CLOSE. (Counting in the send/recv hooks
    /// would miss data still unread when the connection closes.)
    pub off_bytes_acked: u32,
    pub off_bytes_received: u32,
    /// `tcp_sock.snd_una` and `.write_seq`: equal once our FIN was acknowledged.
    pub off_snd_una: u32,
    pub off_write_seq: u32,
    /// `msghdr.msg_name`: the destination of an unconnected UDP send, in kernel
    /// memory by the time `udp_sendmsg` runs.
    pub off_msg_name: u32,
    /// `sock_common.skc_state`, and `sk_buff.head`, `.network_header` and
    /// `.transport_header`: the RST fentry reads the segment it answers.
    pub off_state: u32,
    pub off_skb_head: u32,
    pub off_skb_network_header: u32,
    pub off_skb_transport_header: u32,
    pub _pad2: u32,
}

/// Names of the programs in the object, shared with the loader.
pub mod prog {
    pub const SET_STATE: &str = "inet_sock_set_state";
    pub const SEND_LEN: &str = "sock_send_length";
    pub const RECV_LEN: &str = "sock_recv_length";
    pub const SENDTO_ENTER: &str = "sys_enter_sendto";
    pub const SENDMSG_ENTER: &str = "sys_enter_sendmsg";
    pub const SEND_EXIT: &str = "sys_exit_send";
    pub const SEND_RESET: &str = "tcp_send_reset";
    pub const SYNACK: &str = "tcp_retransmit_synack";
    /// fexit of `inet_csk_accept` with its two signatures: `(sk, flags, err, kern)`
    /// before Linux 6.10, `(sk, arg)` since. The return value follows the arguments.
    pub const ACCEPT_4: &str = "accept_exit_4";
    pub const ACCEPT_2: &str = "accept_exit_2";
    /// fexit of `udp_sendmsg` / `udpv6_sendmsg` (`sk, msg, len`).
    pub const UDP_SENDMSG: &str = "udp_sendmsg_exit";
    pub const UDPV6_SENDMSG: &str = "udpv6_sendmsg_exit";
    /// fentry of `tcp_v4_send_reset` / `tcp_v6_send_reset` (`sk, skb, ...`): the
    /// RST hook where `tcp:tcp_send_reset` lacks the no-socket case (before 6.10 its
    /// layout differs, and it only fired for resets on a full socket).
    pub const RESET_V4: &str = "tcp_v4_send_reset_entry";
    pub const RESET_V6: &str = "tcp_v6_send_reset_entry";
}

/// Kernel functions the fexit programs attach to.
pub mod func {
    pub const ACCEPT: &str = "inet_csk_accept";
    pub const UDP_SENDMSG: &str = "udp_sendmsg";
    pub const UDPV6_SENDMSG: &str = "udpv6_sendmsg";
    pub const RESET_V4: &str = "tcp_v4_send_reset";
    pub const RESET_V6: &str = "tcp_v6_send_reset";
}

/// Offsets of the tracepoint fields the program reads, checked by the agent
/// against `/sys/kernel/tracing/events/*/*/format` before it loads anything. The
/// kernel program reads each field through these same constants.
pub mod tp {
    /// (category, name) under tracefs `events/`.
    pub type Tracepoint = (&'static str, &'static str);
    /// (field, offset, size) as the tracepoint's `format` file lists it.
    pub type Field = (&'static str, usize, usize);
    pub type Layout = &'static [Field];

    /// Every tracepoint whose fields the program reads, with the layout it assumes.
    pub const CHECKED: &[(Tracepoint, Layout)] = &[
        (SET_STATE, SET_STATE_FIELDS),
        (SEND_LEN, SOCK_LEN_FIELDS),
        (RECV_LEN, SOCK_LEN_FIELDS),
        (SENDTO_ENTER, SENDTO_FIELDS),
        (SENDMSG_ENTER, SENDMSG_FIELDS),
        (SEND_RESET, SEND_RESET_FIELDS),
        (SYNACK, SYNACK_FIELDS),
    ];

    pub const SET_STATE: Tracepoint = ("sock", "inet_sock_set_state");
    pub mod set_state {
        use super::Field;
        pub const SKADDR: Field = ("skaddr", 8, 8);
        pub const OLDSTATE: Field = ("oldstate", 16, 4);
        pub const NEWSTATE: Field = ("newstate", 20, 4);
        pub const SPORT: Field = ("sport", 24, 2);
        pub const DPORT: Field = ("dport", 26, 2);
        pub const FAMILY: Field = ("family", 28, 2);
        pub const PROTOCOL: Field = ("protocol", 30, 2);
        pub const SADDR: Field = ("saddr", 32, 4);
        pub const DADDR: Field = ("daddr", 36, 4);
        pub const SADDR_V6: Field = ("saddr_v6", 40, 16);
        pub const DADDR_V6: Field = ("daddr_v6", 56, 16);
    }
    pub const SET_STATE_FIELDS: Layout = {
        use set_state::*;
        &[
            SKADDR, OLDSTATE, NEWSTATE, SPORT, DPORT, FAMILY, PROTOCOL, SADDR, DADDR, SADDR_V6,
            DADDR_V6,
        ]
    };

    pub const SEND_LEN: Tracepoint = ("sock", "sock_send_length");
    pub const RECV_LEN: Tracepoint = ("sock", "sock_recv_length");
    pub mod sock_len {
        use super::Field;
        pub const SK: Field = ("sk", 8, 8);
        pub const FAMILY: Field = ("family", 16, 2);
        pub const PROTOCOL: Field = ("protocol", 18, 2);
        pub const RET: Field = ("ret", 20, 4);
        pub const FLAGS: Field = ("flags", 24, 4);
    }
    pub const SOCK_LEN_FIELDS: Layout = {
        use sock_len::*;
        &[SK, FAMILY, PROTOCOL, RET, FLAGS]
    };

    pub const SENDTO_ENTER: Tracepoint = ("syscalls", "sys_enter_sendto");
    pub mod sendto {
        use super::Field;
        pub const ADDR: Field = ("addr", 48, 8);
        pub const ADDR_LEN: Field = ("addr_len", 56, 8);
    }
    pub const SENDTO_FIELDS: Layout = &[sendto::ADDR, sendto::ADDR_LEN];
    pub const SENDMSG_ENTER: Tracepoint = ("syscalls", "sys_enter_sendmsg");
    pub mod sendmsg {
        use super::Field;
        pub const MSG: Field = ("msg", 24, 8);
    }
    pub const SENDMSG_FIELDS: Layout = &[sendmsg::MSG];
    pub const SENDTO_EXIT: Tracepoint = ("syscalls", "sys_exit_sendto");
    pub const SENDMSG_EXIT: Tracepoint = ("syscalls", "sys_exit_sendmsg");

    pub const SYNACK: Tracepoint = ("tcp", "tcp_retransmit_synack");
    /// Stable since 4.x; the family (not in the 5.10 layout) comes from the listener.
    pub mod synack {
        use super::Field;
        pub const SKADDR: Field = ("skaddr", 8, 8);
        pub const SPORT: Field = ("sport", 24, 2);
    }
    pub const SYNACK_FIELDS: Layout = &[synack::SKADDR, synack::SPORT];

    pub const SEND_RESET: Tracepoint = ("tcp", "tcp_send_reset");
    /// The 6.10+ layout (sockaddr addresses), from when it also fires without a socket.
    pub mod send_reset {
        use super::Field;
        pub const SKADDR: Field = ("skaddr", 16, 8);
        pub const STATE: Field = ("state", 24, 4);
        pub const SADDR: Field = ("saddr", 32, 28);
        pub const DADDR: Field = ("daddr", 60, 28);
    }
    pub const SEND_RESET_FIELDS: Layout = {
        use send_reset::*;
        &[SKADDR, STATE, SADDR, DADDR]
    };
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain repr(C) data with explicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::UdpFlowKey {}
    unsafe impl aya::Pod for super::UdpFlowStats {}
    unsafe impl aya::Pod for super::SockInfo {}
}
