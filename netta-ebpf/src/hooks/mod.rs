//! One module per hook (or per family of hooks that share one job).
//!
//! | module | attaches to | job |
//! |---|---|---|
//! | `set_state` | `sock:inet_sock_set_state` | TCP lifecycle, connect/listen/close owners, bytes |
//! | `accept` | fexit `inet_csk_accept` | owner of an accepted socket (preferred) |
//! | `sock_length` | `sock:sock_{send,recv}_length` (6.3+) | accepted-socket owner and UDP sends (fallback) |
//! | `send_dest` | `cgroup/sendmsg{4,6}`, else `syscalls:sys_{enter,exit}_send{to,msg}` | UDP destination for `sock_length` |
//! | `udp_sendmsg` | fexit `udp_sendmsg`, `udpv6_sendmsg` | UDP sends with their destination (preferred) |
//! | `udp` | (shared) | per-flow accounting both UDP paths use |
//! | `reset` | `tcp:tcp_send_reset` | resets the kernel sends (scans) |
//! | `synack` | `tcp:tcp_retransmit_synack` | SYN-ACK retransmits per port (SYN floods) |
//! | `dns` | fentry `__udp_enqueue_schedule_skb`, `tcp_event_data_recv` (preferred); `cgroup_skb/ingress` (cgroup v2 root) | DNS answers any socket receives |
//! | `process` | `sched:sched_process_{exec,exit}`, `task:task_newtask` | process identity |
mod accept;
mod dns;
mod process;
mod reset;
mod send_dest;
mod set_state;
mod sock_length;
mod synack;
mod udp;
mod udp_sendmsg;
