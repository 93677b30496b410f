//! The kernel/user event ABI of netta, defined once.
//!
//! The kernel program (`src/main.rs`, built for `bpfel-unknown-none`) writes
//! records into a ring buffer or perf array: connection records ([`Event`]) and
//! process records ([`TaskEvent`], [`ExecEvent`]). Every record starts with its
//! timestamp and then its [`Kind`] byte ([`record_kind`]), which tells the agent
//! which it is. Both sides compile this file, so a change to the layout cannot
//! reach one side only. The `const` assertions below pin the layout on every
//! target that builds it.
#![no_std]

/// Kinds of record the kernel emits. `Event::kind` holds the `u8` (any byte can
/// arrive from the ring); the agent reads it back with `Kind::try_from`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A TCP socket reached ESTABLISHED (emitted once its owner is known).
    Opened = 1,
    /// An established TCP socket reached CLOSE.
    Closed = 2,
    /// SYN_SENT went to CLOSE: refused, timed out or reset.
    Failed = 3,
    ListenStarted = 4,
    ListenStopped = 5,
    /// First datagram of a new UDP flow (socket, remote address, remote port).
    UdpFlow = 6,
    /// One raw `inet_sock_set_state` transition (only with `Config::all_states`).
    State = 7,
    /// The kernel sent a RST (closed port, or abort).
    ResetSent = 8,
    /// An accepted connection reached ESTABLISHED but no hook has run in its
    /// owner's context yet: the agent lists it now (owner provisional, from the
    /// listener) and reports it opened when `Opened` follows.
    Pending = 9,
    /// A process replaced its program ([`ExecEvent`]).
    Exec = 10,
    /// A new process, not a thread ([`TaskEvent`]): its parent's program, until it execs.
    Fork = 11,
    /// A process's main thread exited ([`TaskEvent`]).
    Exit = 12,
    /// A packet from port 53 that a socket received ([`DnsEvent`]).
    DnsAnswer = 13,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Opened,
        Kind::Closed,
        Kind::Failed,
        Kind::ListenStarted,
        Kind::ListenStopped,
        Kind::UdpFlow,
        Kind::State,
        Kind::ResetSent,
        Kind::Pending,
        Kind::Exec,
        Kind::Fork,
        Kind::Exit,
        Kind::DnsAnswer,
    ];

    /// A process record (not about a socket).
    pub fn is_process(self) -> bool {
        matches!(self, Kind::Exec | Kind::Fork | Kind::Exit)
    }
}

/// A byte that names no [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub u8);

impl TryFrom<u8> for Kind {
    type Error = UnknownKind;
    fn try_from(n: u8) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .into_iter()
            .find(|k| *k as u8 == n)
            .ok_or(UnknownKind(n))
    }
}

bitflags::bitflags! {
    /// Bits of `Event::flags` and `SockInfo::flags`. Any byte is a valid value
    /// (it comes from the ring); the agent rejects bits not named here.
    #[repr(transparent)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Flags: u8 {
        /// This socket made the connection (it went through SYN_SENT).
        const INITIATOR = 1 << 0;
        /// This socket was accepted from a listener (it came from SYN_RECV).
        const ACCEPTED = 1 << 1;
        /// The owner was taken from the listener, not from a hook on this socket.
        const OWNER_FROM_LISTENER = 1 << 2;
        /// The socket was first seen mid-life (netta started later, or the map
        /// evicted it): `start_ns` and the byte counters are incomplete.
        const PARTIAL = 1 << 3;
        /// No process-context hook has seen this socket: `pid`/`comm` are empty.
        const OWNER_UNKNOWN = 1 << 4;
    }
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

/// An address in network byte order: IPv4 fills the first 4 bytes, IPv6 all 16.
pub type Addr = [u8; 16];

/// One fixed-size connection record from kernel to user space. Addresses are in
/// network byte order; an IPv4 address fills the first 4 bytes. Ports are host
/// order. `local`/`remote` are from the socket's own point of view.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME: counts suspend, never steps) when
    /// the record was made.
    pub ts_ns: u64,
    /// A [`Kind`], as its byte (at [`KIND_OFFSET`] in every record).
    pub kind: u8,
    pub flags: Flags,
    pub old_state: u8,
    pub new_state: u8,
    pub protocol: u8,
    pub _pad: u8,
    pub family: u16,
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
    /// The owner's cgroup (v2 id: the inode of its directory in the cgroup file system).
    pub cgroup: u64,
    pub local_addr: Addr,
    pub remote_addr: Addr,
    /// Process id (tgid) of the owner.
    pub pid: u32,
    /// The owner's (real) user id.
    pub uid: u32,
    /// Inode of the socket's network namespace (0: not read).
    pub netns: u32,
    pub local_port: u16,
    pub remote_port: u16,
    /// Thread command of the owner, NUL-padded; not sanitised.
    pub comm: [u8; COMM_LEN],
}

pub const EVENT_SIZE: usize = core::mem::size_of::<Event>();
/// Where every record keeps its [`Kind`] byte: after its 8-byte timestamp.
pub const KIND_OFFSET: usize = 8;

const _: () = assert!(EVENT_SIZE == 128);
const _: () = assert!(core::mem::align_of::<Event>() == 8);
const _: () = assert!(core::mem::offset_of!(Event, kind) == KIND_OFFSET);
const _: () = assert!(core::mem::offset_of!(Event, sock) == 16);
const _: () = assert!(core::mem::offset_of!(Event, cgroup) == 56);
const _: () = assert!(core::mem::offset_of!(Event, local_addr) == 64);
const _: () = assert!(core::mem::offset_of!(Event, pid) == 96);
const _: () = assert!(core::mem::offset_of!(Event, netns) == 104);
const _: () = assert!(core::mem::offset_of!(Event, comm) == 112);

/// The [`Kind`] byte of a record (any record), `None` if it is too short to have one.
pub fn record_kind(buf: &[u8]) -> Option<u8> {
    buf.get(KIND_OFFSET).copied()
}

/// Who owns a socket: taken from the running task where it is the owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub cgroup: u64,
    pub pid: u32,
    pub uid: u32,
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(core::mem::size_of::<Owner>() == 32);

/// A process record: fork and exit, and the head of [`ExecEvent`]. The start
/// time (`task_struct.start_boottime`, what /proc's start time counts too) and the
/// pid name one process for its life, across execs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    pub ts_ns: u64,
    pub kind: u8,
    /// Exec: [`exec_flags`].
    pub flags: u8,
    /// Exec: bytes of `path` and `args` in use.
    pub path_len: u16,
    pub args_len: u16,
    pub _pad: u16,
    /// Process id (tgid); for a fork, the new process's.
    pub pid: u32,
    /// Its parent's process id.
    pub ppid: u32,
    /// CLOCK_BOOTTIME ns when the process was created.
    pub start_ns: u64,
    pub cgroup: u64,
    pub uid: u32,
    pub _pad2: u32,
    pub comm: [u8; COMM_LEN],
}

pub const TASK_EVENT_SIZE: usize = core::mem::size_of::<TaskEvent>();
const _: () = assert!(TASK_EVENT_SIZE == 64);
const _: () = assert!(core::mem::offset_of!(TaskEvent, kind) == KIND_OFFSET);

/// Longest executable path and argument list an exec record carries.
pub const EXEC_PATH_LEN: usize = 256;
pub const EXEC_ARGS_LEN: usize = 1024;

/// Bits of an exec record's `flags`.
pub mod exec_flags {
    /// The path given to execve was longer than `EXEC_PATH_LEN`.
    pub const PATH_TRUNCATED: u8 = 1 << 0;
    /// The arguments were longer than `EXEC_ARGS_LEN`.
    pub const ARGS_TRUNCATED: u8 = 1 << 1;
    /// The record carries arguments (`--process-args`), and is full size.
    pub const HAS_ARGS: u8 = 1 << 2;
}

/// An exec: the process, the path its program was started by (as given to execve)
/// and, with `--process-args`, its arguments (NUL-separated). Without arguments
/// only the first [`EXEC_SIZE_NO_ARGS`] bytes are sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecEvent {
    pub task: TaskEvent,
    pub path: [u8; EXEC_PATH_LEN],
    pub args: [u8; EXEC_ARGS_LEN],
}

pub const EXEC_SIZE_NO_ARGS: usize = core::mem::offset_of!(ExecEvent, args);
const _: () = assert!(EXEC_SIZE_NO_ARGS == 320);
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 1344);

/// Bytes of a received DNS packet a [`DnsEvent`] carries, from its IP header:
/// a UDP answer of the usual EDNS size (1232) with its headers, or the first TCP
/// segment of an answer.
pub const DNS_PACKET_LEN: usize = 2048;

/// Bits of a DNS record's `flags`.
pub mod dns_flags {
    /// The packet was longer than [`super::DNS_PACKET_LEN`]: only its start is here.
    pub const TRUNCATED: u8 = 1 << 0;
}

/// A packet from source port 53 (UDP or TCP) that a socket received, in any
/// network namespace: its first `len` bytes from the IP header, as a packet
/// capture would hand them over. Only the first [`DNS_HEADER_SIZE`] + `len`
/// bytes are sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub ts_ns: u64,
    pub kind: u8,
    /// [`dns_flags`].
    pub flags: u8,
    /// Bytes of `packet` in use.
    pub len: u16,
    /// Inode of the receiving socket's network namespace (0: not read).
    pub netns: u32,
    /// The whole packet's length (from the IP header).
    pub wire_len: u32,
    pub _pad: u32,
    pub packet: [u8; DNS_PACKET_LEN],
}

pub const DNS_HEADER_SIZE: usize = core::mem::offset_of!(DnsEvent, packet);
const _: () = assert!(DNS_HEADER_SIZE == 24);
const _: () = assert!(core::mem::offset_of!(DnsEvent, kind) == KIND_OFFSET);

impl DnsEvent {
    /// The header and the packet bytes of one record from untrusted bytes
    /// (`None`: too short for its header or for the length it claims).
    pub fn parse(buf: &[u8]) -> Option<(DnsEvent, &[u8])> {
        if buf.len() < DNS_HEADER_SIZE {
            return None;
        }
        let mut ev = DnsEvent::zeroed();
        // SAFETY: the header fields are integers; DNS_HEADER_SIZE bytes checked above.
        unsafe {
            core::ptr::copy_nonoverlapping(
                buf.as_ptr(),
                &mut ev as *mut DnsEvent as *mut u8,
                DNS_HEADER_SIZE,
            )
        };
        let packet = buf.get(DNS_HEADER_SIZE..DNS_HEADER_SIZE + usize::from(ev.len))?;
        Some((ev, packet))
    }
}

/// The largest record: what a reader must be able to hold.
pub const MAX_RECORD_SIZE: usize = core::mem::size_of::<DnsEvent>();
const _: () = assert!(MAX_RECORD_SIZE >= core::mem::size_of::<ExecEvent>());

/// `from_bytes` and `as_bytes` of records that travel as their bytes: `repr(C)` of
/// integers and byte arrays with explicit padding fields, so every bit pattern is
/// a valid value and no byte is uninitialised.
macro_rules! plain_records {
    ($($t:ident),*) => {$(
        impl $t {
            /// Reads one record from untrusted bytes. `None` if the slice is shorter
            /// than a record; longer slices (perf pads its samples) are accepted.
            pub fn from_bytes(buf: &[u8]) -> Option<$t> {
                if buf.len() < core::mem::size_of::<$t>() {
                    return None;
                }
                // SAFETY: see the macro; the length was checked, and
                // read_unaligned needs no alignment.
                Some(unsafe { core::ptr::read_unaligned(buf.as_ptr() as *const $t) })
            }

            pub fn as_bytes(&self) -> &[u8; core::mem::size_of::<$t>()] {
                // SAFETY: see the macro: every byte is initialised.
                unsafe { &*(self as *const $t as *const [u8; core::mem::size_of::<$t>()]) }
            }
        }
    )*};
}

plain_records!(TaskEvent, Event);

impl Event {
    /// Takes `o` as the record's owner.
    #[inline(always)]
    pub fn set_owner(&mut self, o: &Owner) {
        self.pid = o.pid;
        self.uid = o.uid;
        self.cgroup = o.cgroup;
        self.comm = o.comm;
    }

    /// Copies a socket's addresses and ports into the record.
    #[inline(always)]
    pub fn set_ends(&mut self, e: &Endpoints) {
        self.family = e.family;
        self.local_addr = e.local_addr;
        self.remote_addr = e.remote_addr;
        self.local_port = e.local_port;
        self.remote_port = e.remote_port;
    }
}

/// The addresses and ports of a socket, from its own point of view: what a TCP
/// transition reports and what `SockInfo` keeps for the hooks that have only the
/// socket pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    pub local_addr: Addr,
    pub remote_addr: Addr,
    pub local_port: u16,
    pub remote_port: u16,
    pub family: u16,
    pub _pad: u16,
}

/// Per-TCP-socket state the kernel keeps in `TCP_SOCKS` (keyed by socket address).
/// The endpoints are kept because the send/recv hooks that find the owner carry only
/// the socket pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockInfo {
    pub start_ns: u64,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub ends: Endpoints,
    pub owner: Owner,
    pub flags: Flags,
    /// 1 once the `Opened` record went out.
    pub opened_sent: u8,
    pub established: u8,
    /// The socket's network namespace, read with its first record (0: not yet).
    pub netns: u32,
}

const _: () = assert!(core::mem::size_of::<SockInfo>() == 104);

/// Owner of a listening port (`LISTENERS`, keyed by [`listener_key`]), used when an
/// accepted socket closes before any hook in its owner's context ran.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ListenerInfo {
    pub owner: Owner,
}

/// Key of a UDP flow: the socket and where it sends to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    pub sock: u64,
    pub remote_addr: Addr,
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
}

/// Destination a thread passed to an unconnected UDP send, stashed (per thread)
/// until the `sock_send_length` hook (which carries the socket, not the address)
/// runs in the same syscall.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SendDest {
    pub addr: Addr,
    pub port: u16,
    pub family: u16,
    pub _pad: u32,
    /// The sending socket's kernel address (0: not known, the syscall tracepoints):
    /// a stash for another socket is not used.
    pub sock: u64,
}

const _: () = assert!(core::mem::size_of::<SendDest>() == 32);

pub const fn listener_key(family: u16, port: u16) -> u32 {
    ((family as u32) << 16) | port as u32
}

/// Indexes of the `COUNTERS` per-CPU array.
pub mod counter {
    /// Records that did not fit in the ring buffer / perf array.
    pub const LOST: u32 = 0;
    /// Inserts into a bounded map that failed.
    pub const MAP_FULL: u32 = 1;
    /// Not a count: records this CPU sent since it last looked at the ring's fill
    /// level (see [`WAKE_CHECK_EVERY`]).
    pub const SINCE_WAKE_CHECK: u32 = 2;
    /// A CPU reads the ring's fill level (to force a wakeup) once per this many
    /// records: the read touches the reader's consumer position, a cache line the
    /// agent writes on every record it takes.
    pub const WAKE_CHECK_EVERY: u64 = 32;
    pub const LEN: u32 = 4;
}

/// `pub const NAME: &str = "ident"` for each `NAME: ident`, and `ALL` of them:
/// the kernel side names a map or program by its Rust identifier, so the string
/// is written once, here, and a host test checks the object holds every one.
macro_rules! names {
    ($($(#[$doc:meta])* $name:ident: $ident:ident),* $(,)?) => {
        $($(#[$doc])* pub const $name: &str = stringify!($ident);)*
        pub const ALL: &[&str] = &[$($name),*];
    };
}

/// Map names (the kernel's `static`s), shared so the loader cannot drift from the program.
pub mod maps {
    names! {
        RING: EVENTS,
        PERF: PERF_EVENTS,
        COUNTERS: COUNTERS,
        UDP_FLOWS: UDP_FLOWS,
        /// SYN-ACK retransmissions per listening port ([`listener_key`]): each one is a
        /// half-open connection whose client never answered.
        ///
        /// [`listener_key`]: super::listener_key
        SYNACK_RETRANS: SYNACK_RETRANS,
        TCP_SOCKS: TCP_SOCKS,
        LISTENERS: LISTENERS,
        SEND_DEST: SEND_DEST,
        EXEC_SCRATCH: EXEC_SCRATCH,
        DNS_SCRATCH: DNS_SCRATCH,
    }
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
    /// 1: exec records carry the arguments (`--process-args`).
    pub capture_args: u8,
    /// 1: records carry no uid and cgroup (`NETTA_NO_IDENTITY`, the bench's
    /// measure of what process identity costs per record).
    pub no_owner_ids: u8,
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
    /// `sk_buff.data` and `.len`: where the DNS fentry programs' copy starts, and
    /// how much the packet holds from there.
    pub off_skb_data: u32,
    pub off_skb_len: u32,
    /// `sk_buff.data_len` (bytes in pages, not in the linear part), `.sk`, and
    /// where `tcp_skb_cb.seq` sits in `.cb`; `sock.sk_protocol`, `.sk_receive_queue`
    /// and that queue's tail (`.prev`); `tcp_sock.copied_seq`. The DNS BTF
    /// tracepoints read them.
    pub off_skb_data_len: u32,
    pub off_skb_sk: u32,
    pub off_skb_tcp_seq: u32,
    pub off_sk_protocol: u32,
    pub off_sk_receive_queue: u32,
    pub off_sk_receive_tail: u32,
    pub off_copied_seq: u32,
    /// `sock_common.skc_net` (the `struct net *`) and, in `struct net`, the
    /// namespace's inode (`ns.inum`): a record's network namespace.
    pub off_skc_net: u32,
    pub off_net_inum: u32,
    /// `task_struct`: `real_parent`, `tgid`, `pid`, `start_boottime`, `mm`,
    /// `children` and `sibling`; `mm_struct`: `arg_start`, `arg_end`. The process
    /// records read them (0: that capability is not attached).
    pub off_task_real_parent: u32,
    pub off_task_tgid: u32,
    pub off_task_pid: u32,
    pub off_task_start: u32,
    pub off_task_mm: u32,
    pub off_task_children: u32,
    pub off_task_sibling: u32,
    pub off_mm_arg_start: u32,
    pub off_mm_arg_end: u32,
}

const _: () = assert!(core::mem::size_of::<Config>() == 160);

/// Names of the programs in the object (the kernel's hook functions), shared with
/// the loader.
pub mod prog {
    names! {
        SET_STATE: inet_sock_set_state,
        SEND_LEN: sock_send_length,
        RECV_LEN: sock_recv_length,
        SENDTO_ENTER: sys_enter_sendto,
        SENDMSG_ENTER: sys_enter_sendmsg,
        SEND_EXIT: sys_exit_send,
        /// `cgroup/sendmsg{4,6}`: the destination of an unconnected UDP send, stashed
        /// for `sock_send_length` without a syscall tracepoint.
        CGROUP_SENDMSG4: cgroup_sendmsg4,
        CGROUP_SENDMSG6: cgroup_sendmsg6,
        SEND_RESET: tcp_send_reset,
        SYNACK: tcp_retransmit_synack,
        /// fexit of `inet_csk_accept` with its two signatures: `(sk, flags, err, kern)`
        /// before Linux 6.10, `(sk, arg)` since. The return value follows the arguments.
        ACCEPT_4: accept_exit_4,
        ACCEPT_2: accept_exit_2,
        /// fexit of `udp_sendmsg` / `udpv6_sendmsg` (`sk, msg, len`).
        UDP_SENDMSG: udp_sendmsg_exit,
        UDPV6_SENDMSG: udpv6_sendmsg_exit,
        /// fentry of `tcp_v4_send_reset` / `tcp_v6_send_reset` (`sk, skb, ...`): the
        /// RST hook where `tcp:tcp_send_reset` lacks the no-socket case (before 6.10 its
        /// layout differs, and it only fired for resets on a full socket).
        RESET_V4: tcp_v4_send_reset_entry,
        RESET_V6: tcp_v6_send_reset_entry,
        /// Process identity: exec, new process, exit.
        EXEC: sched_process_exec,
        NEWTASK: task_newtask,
        EXIT: sched_process_exit,
        /// fentry of `__udp_enqueue_schedule_skb` and `tcp_event_data_recv`: DNS
        /// answers as a socket queues them (preferred: UDP and TCP data only).
        DNS_UDP: dns_udp_queued,
        DNS_TCP: dns_tcp_data,
        /// BTF tracepoints `sock:sk_data_ready` and `skb:skb_copy_datagram_iovec`:
        /// a datagram as it arrives, a TCP segment (or a paged datagram) as it is
        /// read (where fentry is refused).
        DNS_DATA_READY: dns_data_ready,
        DNS_COPIED: dns_copied,
        /// `cgroup_skb/ingress` on the cgroup v2 root: DNS answers every socket
        /// receives (the fallback: it runs for every packet).
        DNS_INGRESS: dns_ingress,
    }
}

/// Kernel functions the fexit/fentry programs attach to. The loader attaches by
/// these names; the `function = ".."` in the kernel's attributes only labels the
/// ELF section (an attribute takes no constant).
pub mod func {
    names! {
        ACCEPT: inet_csk_accept,
        UDP_SENDMSG: udp_sendmsg,
        UDPV6_SENDMSG: udpv6_sendmsg,
        RESET_V4: tcp_v4_send_reset,
        RESET_V6: tcp_v6_send_reset,
        UDP_QUEUE: __udp_enqueue_schedule_skb,
        TCP_DATA: tcp_event_data_recv,
    }
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
        (EXEC, EXEC_FIELDS),
        (NEWTASK, NEWTASK_FIELDS),
    ];

    /// `layout! { module, LIST: field(offset, size), .. }`: one constant per field
    /// (`module::field`, its name the field's), and `LIST`, all of them in order.
    macro_rules! layout {
        ($(#[$doc:meta])* $module:ident, $list:ident: $($field:ident($off:literal, $size:literal)),+ $(,)?) => {
            $(#[$doc])*
            #[allow(non_upper_case_globals)]
            pub mod $module {
                $(pub const $field: super::Field = (stringify!($field), $off, $size);)+
            }
            pub const $list: Layout = &[$($module::$field),+];
        };
    }

    pub const SET_STATE: Tracepoint = ("sock", "inet_sock_set_state");
    layout! {
        set_state, SET_STATE_FIELDS:
        skaddr(8, 8), oldstate(16, 4), newstate(20, 4), sport(24, 2), dport(26, 2),
        family(28, 2), protocol(30, 2), saddr(32, 4), daddr(36, 4), saddr_v6(40, 16),
        daddr_v6(56, 16),
    }

    pub const SEND_LEN: Tracepoint = ("sock", "sock_send_length");
    pub const RECV_LEN: Tracepoint = ("sock", "sock_recv_length");
    layout! {
        sock_len, SOCK_LEN_FIELDS:
        sk(8, 8), family(16, 2), protocol(18, 2), ret(20, 4), flags(24, 4),
    }

    pub const SENDTO_ENTER: Tracepoint = ("syscalls", "sys_enter_sendto");
    layout! { sendto, SENDTO_FIELDS: addr(48, 8), addr_len(56, 8) }
    pub const SENDMSG_ENTER: Tracepoint = ("syscalls", "sys_enter_sendmsg");
    layout! { sendmsg, SENDMSG_FIELDS: msg(24, 8) }
    pub const SENDTO_EXIT: Tracepoint = ("syscalls", "sys_exit_sendto");
    pub const SENDMSG_EXIT: Tracepoint = ("syscalls", "sys_exit_sendmsg");

    pub const SYNACK: Tracepoint = ("tcp", "tcp_retransmit_synack");
    layout! {
        /// Stable since 4.x; the family (not in the 5.10 layout) comes from the listener.
        synack, SYNACK_FIELDS: skaddr(8, 8), sport(24, 2)
    }

    pub const EXEC: Tracepoint = ("sched", "sched_process_exec");
    layout! {
        /// `filename` is a `__data_loc`: offset (low 16 bits) and length of the string.
        exec, EXEC_FIELDS: filename(8, 4)
    }

    pub const NEWTASK: Tracepoint = ("task", "task_newtask");
    layout! { newtask, NEWTASK_FIELDS: pid(8, 4), clone_flags(32, 8) }

    /// No field is read: the program asks the running task.
    pub const EXIT: Tracepoint = ("sched", "sched_process_exit");

    /// BTF tracepoints of the DNS capture (their typed arguments are read, no field).
    pub const DATA_READY: Tracepoint = ("sock", "sk_data_ready");
    pub const DATAGRAM_COPY: Tracepoint = ("skb", "skb_copy_datagram_iovec");

    pub const SEND_RESET: Tracepoint = ("tcp", "tcp_send_reset");
    layout! {
        /// The 6.10+ layout (sockaddr addresses), from when it also fires without a socket.
        send_reset, SEND_RESET_FIELDS: skaddr(16, 8), state(24, 4), saddr(32, 28), daddr(60, 28)
    }
}

/// Plain repr(C) data, shared by both sides: all-zero is a valid value, and so is
/// any bit pattern, which lets aya copy it in and out of maps.
macro_rules! plain {
    ($($t:ty),* $(,)?) => {$(
        impl $t {
            pub const fn zeroed() -> Self {
                // SAFETY: integers, byte arrays and `Flags` (a u8) only.
                unsafe { core::mem::zeroed() }
            }
        }
        // SAFETY: as above, with explicit padding fields: any bit pattern is valid.
        #[cfg(feature = "user")]
        unsafe impl aya::Pod for $t {}
    )*};
}

plain!(
    Event,
    Owner,
    TaskEvent,
    ExecEvent,
    DnsEvent,
    Endpoints,
    SockInfo,
    ListenerInfo,
    UdpFlowKey,
    UdpFlowStats,
    SendDest,
    Config
);
