//! `netta doctor`: what this kernel and these privileges give, hook by hook.
//!
//! It loads and attaches the real program (then detaches it), so what it reports
//! is what `netta` would run with, not a guess. Exit 0 only in full eBPF mode.
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::host::ebpf::{
    self, Facilities, Options, Transport, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN,
};
use crate::host::probe::{self, Capability, Choice};

/// The DNS fallback, as the doctor names it.
const AF_PACKET_LINE: &str = "AF_PACKET, one socket per network namespace";
use crate::host::tracefs;

/// Everything the doctor found, as plain data (rendered as text or JSON).
pub struct Report {
    pub kernel: String,
    pub btf: bool,
    pub tracefs: Result<String, String>,
    pub caps: Vec<(&'static str, bool)>,
    pub ring_buffer: bool,
    /// The mode netta runs in, as the start-up line names it.
    pub mode: String,
    pub transport: Option<Transport>,
    /// Why eBPF cannot load at all (polling /proc instead).
    pub polling_reason: Option<String>,
    pub choices: Vec<Choice>,
    /// DNS attribution is on (not `--no-dns`).
    pub dns: bool,
}

impl Report {
    /// Which DNS capture netta uses, and why not the kernel's when it falls back.
    pub fn dns_capture(&self) -> String {
        if !self.dns {
            return "off (--no-dns)".into();
        }
        let Some(c) = self
            .choices
            .iter()
            .find(|c| c.capability == Capability::DnsAnswers)
        else {
            return format!("{AF_PACKET_LINE} (no eBPF)");
        };
        if let Some(m) = c.chosen().filter(|_| probe::dns_via_perf(&self.choices)) {
            return format!("in the kernel ({})", m.label);
        }
        if probe::dns_in_kernel(&self.choices) {
            return "in the kernel (cgroup_skb/ingress on the cgroup v2 root)".into();
        }
        let why = c
            .options
            .iter()
            .find_map(|(m, why)| {
                m.programs
                    .iter()
                    .any(|(n, _)| !n.is_empty())
                    .then_some(why.clone())
            })
            .flatten()
            .unwrap_or_default();
        format!("{AF_PACKET_LINE}: {why}")
    }

    pub fn full(&self) -> bool {
        self.polling_reason.is_none() && self.choices.iter().all(|c| c.chosen.is_some())
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

pub fn examine(opts: &Options) -> Report {
    examine_on(&ebpf::ThisKernel, opts)
}

/// The report for `kernel` (the running one, or one a test describes).
pub fn examine_on(kernel: &dyn Facilities, opts: &Options) -> Report {
    let caps = ebpf::effective_caps().unwrap_or(0);
    let has = |c: u32| caps & (1 << c) != 0;
    let loaded = ebpf::load_on(kernel, opts);
    let (mode, transport, polling_reason, choices) = match &loaded {
        Ok(l) => {
            let base = match l.transport {
                Transport::Ring => "eBPF, ring buffer",
                Transport::Perf => "eBPF, perf event array",
            };
            let n = l.degraded().len();
            let mode = if n == 0 {
                base.to_string()
            } else {
                format!("{base}, {n} capabilities degraded")
            };
            (mode, Some(l.transport), None, l.choices.clone())
        }
        Err(reason) => (
            format!("polling /proc: {reason}"),
            None,
            Some(reason.clone()),
            Vec::new(),
        ),
    };
    drop(loaded);
    Report {
        kernel: kernel_release(),
        btf: Path::new(crate::host::btf::KERNEL_BTF).exists(),
        tracefs: tracefs::ensure_mounted().map(|p| p.display().to_string()),
        caps: vec![
            ("CAP_BPF", has(CAP_BPF)),
            ("CAP_PERFMON", has(CAP_PERFMON)),
            ("CAP_SYS_ADMIN", has(CAP_SYS_ADMIN)),
        ],
        ring_buffer: kernel.ring_buffer(),
        mode,
        transport,
        polling_reason,
        choices,
        dns: opts.dns,
    }
}

/// What the user can do about a capability this kernel lacks.
fn remedy(cap: Capability) -> &'static str {
    match cap {
        Capability::Lifecycle => "netta needs Linux 4.16+ with tracefs for eBPF mode",
        Capability::AcceptedOwner | Capability::UdpFlows | Capability::Resets => {
            "a kernel with BPF trampolines (fentry/fexit: x86-64, BTF, 5.5+, not blocked by a security policy) or Linux 6.3+ provides it"
        }
        Capability::SynackRetransmits => "a kernel with tcp:tcp_retransmit_synack (4.15+)",
        Capability::ProcessIdentity => {
            "a kernel with sched:sched_process_exec/exit, task:task_newtask and task_struct.start_boottime in its BTF (5.5+)"
        }
        Capability::DnsAnswers => {
            "BPF trampolines (fentry), or the ring buffer transport and a cgroup v2 hierarchy (cgroup_skb), or CAP_NET_RAW (AF_PACKET)"
        }
    }
}

/// (status, label, detail) for every hook considered for `c`.
fn hook_lines(c: &Choice) -> Vec<(&'static str, String, Option<String>)> {
    c.options
        .iter()
        .enumerate()
        .map(|(i, (m, why))| {
            let status = match (c.chosen, why) {
                (Some(ch), _) if ch == i => "chosen",
                (_, None) => "not tried",
                (_, Some(_)) => "missing",
            };
            (status, m.label.clone(), why.clone())
        })
        .collect()
}

pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(s, "kernel       {}", r.kernel);
    let _ = writeln!(s, "BTF          {}", yes(r.btf));
    let _ = writeln!(
        s,
        "tracefs      {}",
        r.tracefs.as_deref().unwrap_or_else(|e| e.as_str())
    );
    let caps: Vec<String> = r
        .caps
        .iter()
        .map(|(n, b)| format!("{n} {}", yes(*b)))
        .collect();
    let _ = writeln!(s, "privileges   {}", caps.join(", "));
    let _ = writeln!(s, "ring buffer  {}", yes(r.ring_buffer));
    let _ = writeln!(
        s,
        "transport    {}",
        match r.transport {
            Some(Transport::Ring) => "ring buffer",
            Some(Transport::Perf) => "perf event array",
            None => "none",
        }
    );
    let _ = writeln!(s, "mode         {}", r.mode);
    let _ = writeln!(s, "DNS capture  {}", r.dns_capture());
    for c in &r.choices {
        let _ = writeln!(s, "{}:", c.capability.name());
        for (status, label, why) in hook_lines(c) {
            match why {
                Some(w) if status == "missing" => {
                    let _ = writeln!(s, "  {status:<10} {label}: {w}");
                }
                _ => {
                    let _ = writeln!(s, "  {status:<10} {label}");
                }
            }
        }
    }
    let degraded: Vec<&Choice> = r.choices.iter().filter(|c| c.chosen.is_none()).collect();
    if r.full() {
        let _ = writeln!(s, "full eBPF mode: every capability has a hook");
    } else if let Some(reason) = &r.polling_reason {
        let _ = writeln!(s, "no eBPF mode: {reason}; netta polls /proc instead");
    } else {
        for c in degraded {
            let _ = writeln!(
                s,
                "degraded: {}: {}; {}",
                c.capability.name(),
                c.capability.without(),
                remedy(c.capability)
            );
        }
    }
    s
}

pub fn render_json(r: &Report) -> Value {
    let hooks: Vec<Value> = r
        .choices
        .iter()
        .map(|c| {
            json!({
                "capability": c.capability.name(),
                "chosen": c.chosen().map(|m| m.label.clone()),
                "options": hook_lines(c).into_iter().map(|(status, label, why)| json!({
                    "hook": label, "status": status, "reason": why,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let degraded: Vec<Value> = r
        .choices
        .iter()
        .filter(|c| c.chosen.is_none())
        .map(|c| {
            json!({
                "capability": c.capability.name(),
                "effect": c.capability.without(),
                "reason": c.reason(),
                "remedy": remedy(c.capability),
            })
        })
        .collect();
    json!({
        "kernel": r.kernel,
        "btf": r.btf,
        "tracefs": r.tracefs.as_ref().ok(),
        "tracefs_error": r.tracefs.as_ref().err(),
        "capabilities": r.caps.iter().map(|(n, b)| (n.to_string(), json!(b))).collect::<serde_json::Map<_, _>>(),
        "ring_buffer": r.ring_buffer,
        "transport": match r.transport {
            Some(Transport::Ring) => Some("ring"),
            Some(Transport::Perf) => Some("perf"),
            None => None,
        },
        "mode": r.mode,
        "dns_capture": r.dns_capture(),
        "full_ebpf": r.full(),
        "polling_reason": r.polling_reason,
        "hooks": hooks,
        "degraded": degraded,
    })
}

/// The command: prints the report, returns the exit code (0: full eBPF mode).
pub fn run(global: &crate::settings::cli::Global, as_json: bool) -> i32 {
    let opts = Options {
        transport: global.transport,
        ring_bytes: global.ring_size,
        dns: !global.no_dns,
        ..Default::default()
    };
    let r = examine(&opts);
    if as_json {
        println!("{}", render_json(&r));
    } else {
        print!("{}", render_text(&r));
    }
    if r.full() {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ebpf::NO_RING_BUFFER;

    /// A 4.18–5.7 kernel: everything but the BPF ring buffer.
    struct NoRingBuffer;

    impl Facilities for NoRingBuffer {
        fn precheck(&self) -> Option<String> {
            None
        }
        fn ring_buffer(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_kernel_without_ring_buffer_polls_proc_with_one_line_reason() {
        for transport in [Transport::Ring, Transport::Perf] {
            let opts = Options {
                transport,
                ..Default::default()
            };
            let err = ebpf::load_on(&NoRingBuffer, &opts).err();
            assert_eq!(err.as_deref(), Some(NO_RING_BUFFER), "{transport:?}");
            assert!(!NO_RING_BUFFER.contains('\n'));

            let r = examine_on(&NoRingBuffer, &opts);
            assert!(!r.full());
            assert_eq!(r.transport, None);
            assert_eq!(r.polling_reason.as_deref(), Some(NO_RING_BUFFER));
            assert_eq!(r.mode, format!("polling /proc: {NO_RING_BUFFER}"));
            let text = render_text(&r);
            assert!(text.contains("ring buffer  no\n"), "{text}");
            assert!(text.contains("transport    none\n"), "{text}");
            assert!(
                text.ends_with(&format!(
                    "no eBPF mode: {NO_RING_BUFFER}; netta polls /proc instead\n"
                )),
                "{text}"
            );
            let j = render_json(&r);
            assert_eq!(j["ring_buffer"], false);
            assert_eq!(j["full_ebpf"], false);
            assert_eq!(j["transport"], Value::Null);
            assert_eq!(j["polling_reason"], NO_RING_BUFFER);
        }
    }
}
