//! Kernel feature probing: which hook serves each capability on this kernel.
//!
//! Each capability has mechanisms in order of preference. A mechanism is usable when
//! its tracepoints exist with the layout the program reads, or its kernel functions
//! exist in BTF with the expected arity; the loader then attaches it, and a failed
//! attach rules it out too. No kernel version is ever compared.
use std::path::Path;

use netta_ebpf::{func, prog, tp};

use crate::host::{btf::Btf, tracefs};

/// What the agent gets from the kernel program, one hook family each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    Lifecycle,
    AcceptedOwner,
    UdpFlows,
    Resets,
    SynackRetransmits,
    ProcessIdentity,
    /// DNS answers for attribution (only planned when DNS is on).
    DnsAnswers,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Lifecycle,
        Capability::AcceptedOwner,
        Capability::UdpFlows,
        Capability::Resets,
        Capability::SynackRetransmits,
        Capability::ProcessIdentity,
        Capability::DnsAnswers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::Lifecycle => "TCP lifecycle",
            Capability::AcceptedOwner => "accepted-socket owner",
            Capability::UdpFlows => "UDP flows",
            Capability::Resets => "TCP resets sent",
            Capability::SynackRetransmits => "SYN-ACK retransmits",
            Capability::ProcessIdentity => "process identity",
            Capability::DnsAnswers => "DNS answers",
        }
    }

    /// What the user loses without it.
    pub fn without(self) -> &'static str {
        match self {
            Capability::Lifecycle => "no eBPF mode",
            Capability::AcceptedOwner => {
                "accepted connections are attributed to the listening process"
            }
            Capability::UdpFlows => "UDP flows are seen only by the /proc poll",
            Capability::Resets => "port-scan detection sees accepted handshakes only",
            Capability::SynackRetransmits => "syn-flood detection uses half-open pile-ups only",
            Capability::ProcessIdentity => {
                "executable, parent and arguments only for processes that /proc still shows"
            }
            Capability::DnsAnswers => "connections carry no domain",
        }
    }
}

/// How a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    Tracepoint(tp::Tracepoint),
    FExit(&'static str),
    FEntry(&'static str),
    /// A BTF tracepoint (`tp_btf`): typed arguments, no record marshalled.
    BtfTracepoint(tp::Tracepoint),
    /// A `cgroup_sock_addr` program on the root of the cgroup v2 hierarchy, by its
    /// attach point (`sendmsg4`); the object's section names the same.
    Cgroup(&'static str),
    /// A `cgroup_skb` program on the root of the cgroup v2 hierarchy (`ingress`).
    CgroupSkb(&'static str),
    /// No program: a capture in user space (`AF_PACKET`), the fallback.
    UserSpace(&'static str),
}

/// One way to provide a capability: programs and where each attaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mechanism {
    /// `tracepoint:sock:sock_send_length`, `fexit:inet_csk_accept`, ...
    pub label: String,
    pub programs: Vec<(&'static str, Attach)>,
    /// Struct members (struct, member) its programs read, which BTF must have.
    pub members: &'static [(&'static str, &'static str)],
}

/// What the DNS fentry programs read of a packet.
pub const DNS_SKB_MEMBERS: &[(&str, &str)] = &[
    ("sk_buff", "head"),
    ("sk_buff", "data"),
    ("sk_buff", "len"),
    ("sk_buff", "network_header"),
    ("sk_buff", "transport_header"),
];

/// What the DNS BTF tracepoints read: the packet, and the socket it is on.
pub const DNS_TP_BTF_MEMBERS: &[(&str, &str)] = &[
    ("sk_buff", "head"),
    ("sk_buff", "data"),
    ("sk_buff", "len"),
    ("sk_buff", "data_len"),
    ("sk_buff", "network_header"),
    ("sk_buff", "transport_header"),
    ("sk_buff", "sk"),
    ("sk_buff", "cb"),
    ("tcp_skb_cb", "seq"),
    ("sock", "sk_protocol"),
    ("sock", "sk_receive_queue"),
    ("sk_buff_head", "prev"),
    ("tcp_sock", "copied_seq"),
];

/// What the process records read of `task_struct` and `mm_struct`.
pub const PROCESS_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "real_parent"),
    ("task_struct", "tgid"),
    ("task_struct", "pid"),
    ("task_struct", "start_boottime"),
    ("task_struct", "mm"),
    ("task_struct", "children"),
    ("task_struct", "sibling"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
];

impl Mechanism {
    fn new(programs: Vec<(&'static str, Attach)>) -> Mechanism {
        let label = programs
            .iter()
            .map(|(_, a)| match a {
                Attach::Tracepoint((c, n)) => format!("tracepoint:{c}:{n}"),
                Attach::FExit(f) => format!("fexit:{f}"),
                Attach::FEntry(f) => format!("fentry:{f}"),
                Attach::BtfTracepoint((_, n)) => format!("tp_btf:{n}"),
                Attach::Cgroup(p) => format!("cgroup:{p}"),
                Attach::CgroupSkb(p) => format!("cgroup_skb:{p}"),
                Attach::UserSpace(what) => what.to_string(),
            })
            .fold(Vec::<String>::new(), |mut v, l| {
                if !v.contains(&l) {
                    v.push(l);
                }
                v
            })
            .join("+");
        Mechanism {
            label,
            programs,
            members: &[],
        }
    }

    fn reading(mut self, members: &'static [(&'static str, &'static str)]) -> Mechanism {
        self.members = members;
        self
    }

    fn is_tracing(&self) -> bool {
        self.programs
            .iter()
            .any(|(_, a)| matches!(a, Attach::FExit(_) | Attach::FEntry(_)))
    }
}

/// The result of probing one capability.
#[derive(Clone, Debug)]
pub struct Choice {
    pub capability: Capability,
    /// Index into `options` of the mechanism in use.
    pub chosen: Option<usize>,
    /// Every mechanism considered, with why it cannot be used (`None`: usable).
    pub options: Vec<(Mechanism, Option<String>)>,
}

impl Choice {
    pub fn chosen(&self) -> Option<&Mechanism> {
        self.chosen.map(|i| &self.options[i].0)
    }

    /// One line: why no mechanism is usable.
    pub fn reason(&self) -> String {
        self.options
            .iter()
            .filter_map(|(m, r)| r.as_ref().map(|r| format!("{}: {r}", m.label)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The DNS fallback's label: one `AF_PACKET` socket per network namespace.
pub const DNS_AF_PACKET: &str = "af_packet";

/// What the agent asks for beyond the connection hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wants {
    /// DNS attribution is on (not `--no-dns`).
    pub dns: bool,
    /// The ring buffer transport (the `cgroup_skb` DNS hook writes there only).
    pub ring: bool,
}

const SET_STATE: (&str, Attach) = (prog::SET_STATE, Attach::Tracepoint(tp::SET_STATE));
const SEND_LEN: (&str, Attach) = (prog::SEND_LEN, Attach::Tracepoint(tp::SEND_LEN));
const RECV_LEN: (&str, Attach) = (prog::RECV_LEN, Attach::Tracepoint(tp::RECV_LEN));

/// Mechanisms of a capability, best first. `accept_params` is the arity of
/// `inet_csk_accept` in BTF, which picks the fexit program of that signature.
pub fn mechanisms(cap: Capability, accept_params: Option<usize>) -> Vec<Mechanism> {
    match cap {
        Capability::Lifecycle => vec![Mechanism::new(vec![SET_STATE])],
        Capability::AcceptedOwner => {
            let accept = if accept_params == Some(2) {
                prog::ACCEPT_2
            } else {
                prog::ACCEPT_4
            };
            vec![
                Mechanism::new(vec![(accept, Attach::FExit(func::ACCEPT))]),
                Mechanism::new(vec![SEND_LEN, RECV_LEN]),
            ]
        }
        Capability::UdpFlows => vec![
            Mechanism::new(vec![
                (prog::UDP_SENDMSG, Attach::FExit(func::UDP_SENDMSG)),
                (prog::UDPV6_SENDMSG, Attach::FExit(func::UDPV6_SENDMSG)),
            ]),
            // The destination from cgroup/sendmsg{4,6}: no syscall tracepoint, so
            // no cost to every other syscall on the machine.
            Mechanism::new(vec![
                SEND_LEN,
                (prog::CGROUP_SENDMSG4, Attach::Cgroup("sendmsg4")),
                (prog::CGROUP_SENDMSG6, Attach::Cgroup("sendmsg6")),
            ]),
            Mechanism::new(vec![
                SEND_LEN,
                (prog::SENDTO_ENTER, Attach::Tracepoint(tp::SENDTO_ENTER)),
                (prog::SENDMSG_ENTER, Attach::Tracepoint(tp::SENDMSG_ENTER)),
                (prog::SEND_EXIT, Attach::Tracepoint(tp::SENDTO_EXIT)),
                (prog::SEND_EXIT, Attach::Tracepoint(tp::SENDMSG_EXIT)),
            ]),
        ],
        Capability::Resets => vec![
            Mechanism::new(vec![(prog::SEND_RESET, Attach::Tracepoint(tp::SEND_RESET))]),
            Mechanism::new(vec![
                (prog::RESET_V4, Attach::FEntry(func::RESET_V4)),
                (prog::RESET_V6, Attach::FEntry(func::RESET_V6)),
            ]),
        ],
        Capability::SynackRetransmits => vec![Mechanism::new(vec![(
            prog::SYNACK,
            Attach::Tracepoint(tp::SYNACK),
        )])],
        Capability::ProcessIdentity => vec![Mechanism::new(vec![
            (prog::EXEC, Attach::Tracepoint(tp::EXEC)),
            (prog::NEWTASK, Attach::Tracepoint(tp::NEWTASK)),
            (prog::EXIT, Attach::Tracepoint(tp::EXIT)),
        ])
        .reading(PROCESS_MEMBERS)],
        Capability::DnsAnswers => vec![
            Mechanism::new(vec![
                (prog::DNS_UDP, Attach::FEntry(func::UDP_QUEUE)),
                (prog::DNS_TCP, Attach::FEntry(func::TCP_DATA)),
            ])
            .reading(DNS_SKB_MEMBERS),
            Mechanism::new(vec![
                (prog::DNS_DATA_READY, Attach::BtfTracepoint(tp::DATA_READY)),
                (prog::DNS_COPIED, Attach::BtfTracepoint(tp::DATAGRAM_COPY)),
            ])
            .reading(DNS_TP_BTF_MEMBERS),
            Mechanism::new(vec![(prog::DNS_INGRESS, Attach::CgroupSkb("ingress"))]),
            Mechanism::new(vec![("", Attach::UserSpace(DNS_AF_PACKET))]),
        ],
    }
}

/// Parameters each traced kernel function must have (the program reads them).
fn expected_params(f: &str) -> &'static [usize] {
    match f {
        func::ACCEPT => &[2, 4],
        func::UDP_SENDMSG | func::UDPV6_SENDMSG => &[3],
        // (sk, skb) before 6.10, (sk, skb, reason) since: only the first two are read.
        func::RESET_V4 | func::RESET_V6 => &[2, 3],
        // (sk, skb) in every kernel that has them.
        func::UDP_QUEUE | func::TCP_DATA => &[2],
        _ => &[],
    }
}

/// Names hooks to rule out (see [`disabled_by_env`]).
pub const DISABLE_HOOKS_ENV: &str = "NETTA_DISABLE_HOOKS";

/// Turns process identity off: no exec, fork and exit hooks, no uid and cgroup in
/// records, no process lookup in the agent. Only to measure what identity costs
/// (`cargo xtask bench --only features`).
pub const NO_IDENTITY_ENV: &str = "NETTA_NO_IDENTITY";

/// The hooks that follow processes (what [`NO_IDENTITY_ENV`] rules out).
const IDENTITY_HOOKS: [&str; 2] = ["tracepoint:sched", "tracepoint:task"];

pub fn identity_off_by_env() -> bool {
    std::env::var_os(NO_IDENTITY_ENV).is_some_and(|v| v == "1")
}

/// Hooks the user ruled out: `NETTA_DISABLE_HOOKS`, comma-separated labels or
/// label prefixes (`fexit`, `tracepoint:sock:sock_send_length`). For testing the
/// fallbacks on a kernel that has everything.
pub fn disabled_by_env() -> Vec<String> {
    let mut out: Vec<String> = std::env::var(DISABLE_HOOKS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if identity_off_by_env() {
        out.extend(IDENTITY_HOOKS.map(String::from));
    }
    out
}

fn matches_disabled(label: &str, disabled: &[String]) -> bool {
    label.split('+').any(|part| {
        disabled
            .iter()
            .any(|d| part == d || part.starts_with(&format!("{d}:")))
    })
}

/// Why `m` cannot work here, from tracefs and BTF alone (`None`: worth attaching).
fn static_check(
    m: &Mechanism,
    tracefs_root: &Path,
    btf: &Btf,
    disabled: &[String],
) -> Option<String> {
    if matches_disabled(&m.label, disabled) {
        let identity = IDENTITY_HOOKS.map(String::from);
        let env = if identity_off_by_env() && matches_disabled(&m.label, &identity) {
            NO_IDENTITY_ENV
        } else {
            DISABLE_HOOKS_ENV
        };
        return Some(format!("disabled by {env}"));
    }
    if let Some((st, member)) = m
        .members
        .iter()
        .find(|(st, member)| btf.member_offset(st, member).is_none())
    {
        return Some(format!("the kernel's BTF has no {st}.{member}"));
    }
    for (_, a) in &m.programs {
        match a {
            Attach::BtfTracepoint(point) => {
                let f = tracefs_root.join("events").join(point.0).join(point.1);
                if !f.exists() {
                    return Some(format!(
                        "tracepoint {}:{} is not available",
                        point.0, point.1
                    ));
                }
            }
            Attach::Tracepoint(point) => {
                let layout = tp::CHECKED
                    .iter()
                    .find(|(p, _)| p == point)
                    .map(|(_, l)| *l)
                    .unwrap_or(&[]);
                let res = if layout.is_empty() {
                    let f = tracefs_root
                        .join("events")
                        .join(point.0)
                        .join(point.1)
                        .join("format");
                    if f.exists() {
                        Ok(())
                    } else {
                        Err(format!(
                            "tracepoint {}:{} is not available",
                            point.0, point.1
                        ))
                    }
                } else {
                    tracefs::check_layout(tracefs_root, *point, layout)
                };
                if let Err(e) = res {
                    return Some(e);
                }
            }
            Attach::FExit(f) | Attach::FEntry(f) => match btf.func_params(f) {
                None => return Some(format!("the kernel's BTF has no function {f}")),
                Some(n) if !expected_params(f).contains(&n) => {
                    return Some(format!(
                        "{f} takes {n} parameters here, which the program does not know"
                    ))
                }
                Some(_) => {}
            },
            // The cgroup v2 hierarchy is found (or mounted) when attaching.
            Attach::Cgroup(_) | Attach::CgroupSkb(_) | Attach::UserSpace(_) => {}
        }
    }
    None
}

/// Why this kernel takes no fentry/fexit programs (some kernels refuse them under
/// lockdown), from loading a two-instruction fexit program on `func`; `None` when
/// it takes one. Asked once, before attaching any of them for real.
fn tracing_refused(btf: &Btf, func: &str) -> Option<String> {
    let id = btf.func_id(func)?;
    // BPF_PROG_LOAD's attribute, up to attach_btf_id (the kernel takes a prefix).
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
        prog_btf_fd: u32,
        func_info_rec_size: u32,
        func_info: u64,
        func_info_cnt: u32,
        line_info_rec_size: u32,
        line_info: u64,
        line_info_cnt: u32,
        attach_btf_id: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FEXIT: u32 = 25;
    // r0 = 0; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"netta_probe\0\0\0\0\0",
        prog_ifindex: 0,
        expected_attach_type: BPF_TRACE_FEXIT,
        prog_btf_fd: 0,
        func_info_rec_size: 0,
        func_info: 0,
        func_info_cnt: 0,
        line_info_rec_size: 0,
        line_info: 0,
        line_info_cnt: 0,
        attach_btf_id: id,
    };
    // SAFETY: a valid attribute of the size passed; the pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>() as libc::c_uint,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Some(format!(
            "the kernel refuses fentry/fexit programs here (a trivial fexit of {func}: {e})"
        ));
    }
    // SAFETY: the descriptor the call just returned, closed once.
    unsafe { libc::close(fd as libc::c_int) };
    None
}

/// Probes every capability from tracefs and BTF, skipping `failed` mechanisms
/// (those whose attach already failed, with the reason) and disabled ones.
pub fn plan(
    tracefs_root: &Path,
    btf: &Btf,
    failed: &[(String, String)],
    disabled: &[String],
    wants: Wants,
) -> Vec<Choice> {
    let accept_params = btf.func_params(func::ACCEPT);
    let tracing = std::cell::OnceCell::new();
    Capability::ALL
        .iter()
        .filter(|&&cap| cap != Capability::DnsAnswers || wants.dns)
        .map(|&cap| {
            let options: Vec<(Mechanism, Option<String>)> = mechanisms(cap, accept_params)
                .into_iter()
                .map(|m| {
                    let why = failed
                        .iter()
                        .find(|(l, _)| *l == m.label)
                        .map(|(_, r)| r.clone())
                        .or_else(|| static_check(&m, tracefs_root, btf, disabled))
                        .or_else(|| {
                            m.is_tracing()
                                .then(|| tracing.get_or_init(|| tracing_refused(btf, func::ACCEPT)))
                                .and_then(Clone::clone)
                        })
                        .or_else(|| {
                            let kernel_dns = m
                                .programs
                                .iter()
                                .any(|(_, a)| matches!(a, Attach::CgroupSkb(_)));
                            (kernel_dns && !wants.ring)
                                .then(|| "the perf transport carries no DNS records".to_string())
                        });
                    (m, why)
                })
                .collect();
            let chosen = options.iter().position(|(_, why)| why.is_none());
            Choice {
                capability: cap,
                chosen,
                options,
            }
        })
        .collect()
}

/// True when the process records are attached.
pub fn process_identity(choices: &[Choice]) -> bool {
    choices
        .iter()
        .any(|c| c.capability == Capability::ProcessIdentity && c.chosen.is_some())
}

fn dns_mechanism(choices: &[Choice]) -> Option<&Mechanism> {
    choices
        .iter()
        .find(|c| c.capability == Capability::DnsAnswers)
        .and_then(Choice::chosen)
}

/// True when DNS answers come from the kernel program (not from `AF_PACKET`).
pub fn dns_in_kernel(choices: &[Choice]) -> bool {
    dns_mechanism(choices).is_some_and(|m| {
        m.programs
            .iter()
            .any(|(_, a)| !matches!(a, Attach::UserSpace(_)))
    })
}

/// True when the kernel's DNS records arrive in the perf array (the fentry and
/// BTF tracepoint programs), whatever the transport of the others.
pub fn dns_via_perf(choices: &[Choice]) -> bool {
    dns_mechanism(choices).is_some_and(|m| {
        m.programs
            .iter()
            .any(|(_, a)| matches!(a, Attach::FEntry(_) | Attach::BtfTracepoint(_)))
    })
}

/// True when UDP sends are counted by `sock_send_length` (not by the fexit).
pub fn udp_via_length(choices: &[Choice]) -> bool {
    choices
        .iter()
        .find(|c| c.capability == Capability::UdpFlows)
        .and_then(Choice::chosen)
        .is_some_and(|m| !m.is_tracing())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_each_hook_once() {
        let udp = mechanisms(Capability::UdpFlows, Some(2));
        assert_eq!(udp[0].label, "fexit:udp_sendmsg+fexit:udpv6_sendmsg");
        assert_eq!(
            udp[1].label,
            "tracepoint:sock:sock_send_length+cgroup:sendmsg4+cgroup:sendmsg6"
        );
        assert!(udp[2]
            .label
            .starts_with("tracepoint:sock:sock_send_length+"));
        assert_eq!(
            udp[2].label.matches("sys_exit_sendto").count(),
            1,
            "{}",
            udp[2].label
        );
        let acc = mechanisms(Capability::AcceptedOwner, Some(2));
        assert_eq!(acc[0].programs[0].0, prog::ACCEPT_2);
        let acc = mechanisms(Capability::AcceptedOwner, Some(4));
        assert_eq!(acc[0].programs[0].0, prog::ACCEPT_4);
    }

    #[test]
    fn disabling_matches_whole_labels_and_prefixes() {
        let d = vec!["fexit".to_string()];
        assert!(matches_disabled("fexit:inet_csk_accept", &d));
        assert!(!matches_disabled("fentry:tcp_v4_send_reset", &d));
        let d = vec!["tracepoint:sock:sock_send_length".to_string()];
        assert!(matches_disabled(
            "tracepoint:sock:sock_send_length+tracepoint:sock:sock_recv_length",
            &d
        ));
        assert!(!matches_disabled("tracepoint:sock:sock_send", &d));
    }

    #[test]
    fn this_kernel_plans_a_hook_for_every_capability() {
        let (Ok(btf), Ok(root)) = (Btf::from_sys_fs(), tracefs::ensure_mounted()) else {
            eprintln!("no BTF or tracefs here");
            return;
        };
        let wants = Wants {
            dns: true,
            ring: true,
        };
        let choices = plan(&root, &btf, &[], &[], wants);
        for c in &choices {
            assert!(
                c.chosen.is_some(),
                "{}: {}",
                c.capability.name(),
                c.reason()
            );
        }
        // Ruling out every fexit/fentry falls back to tracepoints, hook by hook.
        let choices = plan(&root, &btf, &[], &["fexit".into(), "fentry".into()], wants);
        let acc = &choices[1];
        assert_eq!(acc.capability, Capability::AcceptedOwner);
        if let Some(m) = acc.chosen() {
            assert!(m.label.starts_with("tracepoint:"), "{}", m.label);
        } else {
            assert!(acc.reason().contains("disabled by NETTA_DISABLE_HOOKS"));
        }
    }

    #[test]
    fn dns_answers_come_from_fentry_then_the_cgroup_program_then_af_packet() {
        let (Ok(btf), Ok(root)) = (Btf::from_sys_fs(), tracefs::ensure_mounted()) else {
            eprintln!("no BTF or tracefs here");
            return;
        };
        let dns = |wants: Wants, disabled: &[String]| {
            plan(&root, &btf, &[], disabled, wants)
                .into_iter()
                .find(|c| c.capability == Capability::DnsAnswers)
        };
        let ring = Wants {
            dns: true,
            ring: true,
        };
        let fentry = "fentry:__udp_enqueue_schedule_skb+fentry:tcp_event_data_recv";
        let tp_btf = "tp_btf:sk_data_ready+tp_btf:skb_copy_datagram_iovec";
        let c = dns(ring, &[]).unwrap();
        let first = c.chosen().unwrap().label.clone();
        // fentry, or the BTF tracepoints where this kernel refuses fentry.
        if first == tp_btf {
            let why = c.options[0].1.as_deref().unwrap();
            assert!(why.contains("refuses fentry"), "{why}");
        } else {
            assert_eq!(first, fentry);
        }
        assert!(dns_in_kernel(std::slice::from_ref(&c)));
        assert!(dns_via_perf(std::slice::from_ref(&c)));
        // They write to the perf array, so either transport has them.
        let perf = Wants {
            ring: false,
            ..ring
        };
        assert_eq!(dns(perf, &[]).unwrap().chosen().unwrap().label, first);
        // Without them, the cgroup program: with the ring buffer only.
        let no_perf_hooks = ["fentry".to_string(), "tp_btf".to_string()];
        let c = dns(ring, &no_perf_hooks).unwrap();
        assert_eq!(c.chosen().unwrap().label, "cgroup_skb:ingress");
        assert!(dns_in_kernel(std::slice::from_ref(&c)));
        assert!(!dns_via_perf(std::slice::from_ref(&c)));
        // The perf transport, or every program ruled out: AF_PACKET, with the reason.
        let c = dns(perf, &no_perf_hooks).unwrap();
        assert_eq!(c.chosen().unwrap().label, DNS_AF_PACKET);
        assert!(!dns_in_kernel(std::slice::from_ref(&c)));
        assert!(c.options[2]
            .1
            .as_deref()
            .unwrap()
            .contains("perf transport"));
        let all = ["fentry".into(), "tp_btf".into(), "cgroup_skb".into()];
        let c = dns(ring, &all).unwrap();
        assert_eq!(c.chosen().unwrap().label, DNS_AF_PACKET);
        // --no-dns: nothing is planned for it.
        assert!(dns(Wants { dns: false, ..ring }, &[]).is_none());
    }
}
