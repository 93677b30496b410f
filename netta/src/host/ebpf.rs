//! Loading the kernel program, and reading its records. `load` returns either a
//! working [`Loaded`] or a one-line reason, which the agent shows before it falls
//! back to polling /proc.
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerfEventArray, RingBuf};
use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, FEntry, FExit,
    TracePoint,
};
use aya::{Ebpf, EbpfLoader};
use netta_ebpf::{maps, Config, UdpFlowKey, UdpFlowStats};
use tokio::io::unix::AsyncFd;

use crate::host::probe::{self, Attach, Capability, Choice, Mechanism};
use crate::host::{btf, cgroupfs, tracefs};

/// The embedded BPF object: its only home. `None` when netta was built before
/// `cargo xtask build-ebpf` produced it.
pub fn object() -> Option<&'static [u8]> {
    #[cfg(netta_embedded)]
    {
        static OBJ: &[u8] = aya::include_bytes_aligned!(env!("NETTA_BPF_OBJECT"));
        Some(OBJ)
    }
    #[cfg(not(netta_embedded))]
    {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// BPF ring buffer (Linux 5.8+): one buffer shared by all CPUs.
    Ring,
    /// Per-CPU perf event arrays: older kernels, and for comparison.
    Perf,
}

/// Set: each program's kernel run time is printed at exit.
pub const BPF_STATS_ENV: &str = "NETTA_BPF_STATS";

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub transport: Transport,
    pub all_states: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Pages per CPU for the perf transport (a power of two).
    pub perf_pages: usize,
    /// Exec records carry the arguments (`--process-args`).
    pub process_args: bool,
    /// DNS attribution is on: plan how its answers are captured.
    pub dns: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::Ring,
            all_states: false,
            ring_bytes: 2 << 20,
            perf_pages: 64,
            process_args: false,
            dns: true,
        }
    }
}

/// Effective capability bits of this process, from /proc/self/status.
pub fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Why eBPF cannot work here, checked before trying, so the user gets the cause
/// rather than a verifier or errno dump. `None`: worth trying.
pub fn precheck() -> Option<String> {
    if object().is_none() {
        return Some(
            "the eBPF object was not built into this binary (run `cargo xtask build-ebpf`, then rebuild)"
                .into(),
        );
    }
    if let Some(caps) = effective_caps() {
        let has = |c: u32| caps & (1 << c) != 0;
        let admin = has(CAP_SYS_ADMIN);
        if !(admin || has(CAP_BPF) && has(CAP_PERFMON)) {
            return Some(
                "not permitted to load eBPF (run as root, or grant CAP_BPF and CAP_PERFMON)".into(),
            );
        }
    }
    if !Path::new(crate::host::btf::KERNEL_BTF).exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)".into());
    }
    None
}

/// The loaded, attached program. Dropping it detaches everything: all links are
/// owned by file descriptors and nothing is pinned, so even `kill -9` leaves no trace.
pub struct Loaded {
    ebpf: Ebpf,
    pub transport: Transport,
    /// The hook serving each capability (or why none can).
    pub choices: Vec<Choice>,
}

impl Loaded {
    /// Capabilities with no usable hook, each with its one-line reason.
    pub fn degraded(&self) -> Vec<(Capability, String)> {
        degraded(&self.choices)
    }

    /// True when the kernel program sends DNS answers (no `AF_PACKET` capture needed).
    pub fn dns_in_kernel(&self) -> bool {
        probe::dns_in_kernel(&self.choices)
    }
}

pub fn degraded(choices: &[Choice]) -> Vec<(Capability, String)> {
    choices
        .iter()
        .filter(|c| c.chosen.is_none())
        .map(|c| (c.capability, c.reason()))
        .collect()
}

/// Whether this kernel can create a BPF ring buffer (Linux 5.8+), probed by
/// creating one.
pub fn ring_buffer_supported() -> bool {
    aya::sys::is_map_supported(aya::maps::MapType::RingBuf).unwrap_or(false)
}

/// Why a kernel without a BPF ring buffer (4.18–5.7) gets no eBPF mode: the one
/// object declares a ring buffer map, which such a kernel cannot create, whichever
/// transport is asked for.
pub const NO_RING_BUFFER: &str = "this kernel has no BPF ring buffer (Linux 5.8+), which netta's eBPF object declares (with --transport perf too)";

/// What the loader asks the kernel before loading anything. The seam through which
/// tests hand the loader (and `netta doctor`) a kernel that lacks a facility.
pub trait Facilities {
    /// Why eBPF cannot be tried at all (object, privileges, BTF); `None`: worth trying.
    fn precheck(&self) -> Option<String>;
    /// Whether a BPF ring buffer map can be created.
    fn ring_buffer(&self) -> bool;
}

/// The running kernel.
pub struct ThisKernel;

impl Facilities for ThisKernel {
    fn precheck(&self) -> Option<String> {
        precheck()
    }
    fn ring_buffer(&self) -> bool {
        ring_buffer_supported()
    }
}

/// Loads on the running kernel.
pub fn load(opts: &Options) -> Result<Loaded, String> {
    load_on(&ThisKernel, opts)
}

/// Loads on `kernel`: the facilities first (one-line reasons), then hook by hook.
pub fn load_on(kernel: &dyn Facilities, opts: &Options) -> Result<Loaded, String> {
    if let Some(reason) = kernel.precheck() {
        return Err(reason);
    }
    if !kernel.ring_buffer() {
        return Err(NO_RING_BUFFER.into());
    }
    let root = tracefs::ensure_mounted()?;
    let disabled = probe::disabled_by_env();
    // A mechanism that passes the static probe but fails to attach is ruled out and
    // the whole object loaded again (its CONFIG depends on the plan): at most once
    // per mechanism.
    let mut failed: Vec<(String, String)> = Vec::new();
    loop {
        match load_once(opts, &root, &failed, &disabled)? {
            Ok(loaded) => return Ok(loaded),
            Err(fail) => failed.push(fail),
        }
    }
}

/// One attempt: `Ok(Err((mechanism, reason)))` when an optional hook failed to attach.
fn load_once(
    opts: &Options,
    root: &Path,
    failed: &[(String, String)],
    disabled: &[String],
) -> Result<Result<Loaded, (String, String)>, String> {
    let obj = object().ok_or("no eBPF object")?;
    let transport = opts.transport;
    // Offsets and the plan from the running kernel's BTF; the parsed BTF (several
    // MiB) is dropped before loading, so it never adds to the agent's peak memory.
    let (cfg, choices, targets) = {
        let btf = btf::Btf::from_sys_fs()?;
        let wants = probe::Wants {
            dns: opts.dns,
            ring: transport == Transport::Ring,
        };
        let choices = probe::plan(root, &btf, failed, disabled, wants);
        if let Some(c) = choices
            .iter()
            .find(|c| c.capability == Capability::Lifecycle && c.chosen.is_none())
        {
            return Err(c.reason());
        }
        let offset = |s: &str, m: &str| {
            btf.member_offset(s, m).ok_or_else(|| {
                format!("the kernel's BTF has no {s}.{m}: unsupported kernel layout")
            })
        };
        // The process records' offsets, when they are attached (`plan` checked BTF has them).
        let task = |s: &str, m: &str| {
            if probe::process_identity(&choices) {
                btf.member_offset(s, m).unwrap_or(0)
            } else {
                0
            }
        };
        // The DNS programs' offsets, when one of them is chosen (`plan` checked
        // BTF has what the chosen one reads).
        let dns = |s: &str, m: &str| {
            if probe::dns_via_perf(&choices) {
                btf.member_offset(s, m).unwrap_or(0)
            } else {
                0
            }
        };
        let cfg = Config {
            all_states: opts.all_states as u8,
            use_perf: (transport == Transport::Perf) as u8,
            udp_via_length: probe::udp_via_length(&choices) as u8,
            capture_args: opts.process_args as u8,
            no_owner_ids: probe::identity_off_by_env() as u8,
            wakeup_bytes: (opts.ring_bytes / 16).max(4096),
            off_daddr: offset("sock_common", "skc_daddr")?,
            off_rcv_saddr: offset("sock_common", "skc_rcv_saddr")?,
            off_dport: offset("sock_common", "skc_dport")?,
            off_num: offset("sock_common", "skc_num")?,
            off_v6_daddr: offset("sock_common", "skc_v6_daddr")?,
            off_v6_rcv_saddr: offset("sock_common", "skc_v6_rcv_saddr")?,
            off_family: offset("sock_common", "skc_family")?,
            off_sk_flags: offset("sock_common", "skc_flags")?,
            off_bytes_acked: offset("tcp_sock", "bytes_acked")?,
            off_bytes_received: offset("tcp_sock", "bytes_received")?,
            off_snd_una: offset("tcp_sock", "snd_una")?,
            off_write_seq: offset("tcp_sock", "write_seq")?,
            off_msg_name: offset("msghdr", "msg_name")?,
            off_state: offset("sock_common", "skc_state")?,
            off_skb_head: offset("sk_buff", "head")?,
            off_skb_network_header: offset("sk_buff", "network_header")?,
            off_skb_transport_header: offset("sk_buff", "transport_header")?,
            off_skb_data: dns("sk_buff", "data"),
            off_skb_len: dns("sk_buff", "len"),
            off_skb_data_len: dns("sk_buff", "data_len"),
            off_skb_sk: dns("sk_buff", "sk"),
            off_skb_tcp_seq: dns("sk_buff", "cb") + dns("tcp_skb_cb", "seq"),
            off_sk_protocol: dns("sock", "sk_protocol"),
            off_sk_receive_queue: dns("sock", "sk_receive_queue"),
            off_sk_receive_tail: dns("sock", "sk_receive_queue") + dns("sk_buff_head", "prev"),
            off_copied_seq: dns("tcp_sock", "copied_seq"),
            off_skc_net: offset("sock_common", "skc_net")?,
            off_net_inum: offset("net", "ns")? + offset("ns_common", "inum")?,
            off_task_real_parent: task("task_struct", "real_parent"),
            off_task_tgid: task("task_struct", "tgid"),
            off_task_pid: task("task_struct", "pid"),
            off_task_start: task("task_struct", "start_boottime"),
            off_task_mm: task("task_struct", "mm"),
            off_task_children: task("task_struct", "children"),
            off_task_sibling: task("task_struct", "sibling"),
            off_mm_arg_start: task("mm_struct", "arg_start"),
            off_mm_arg_end: task("mm_struct", "arg_end"),
        };
        // What the chosen fentry/fexit and BTF tracepoint programs attach by.
        let wanted: Vec<(u32, String)> = choices
            .iter()
            .filter_map(Choice::chosen)
            .flat_map(|m| &m.programs)
            .filter_map(|(_, a)| match a {
                Attach::FEntry(f) | Attach::FExit(f) => Some((btf::KIND_FUNC, f.to_string())),
                Attach::BtfTracepoint((_, n)) => {
                    Some((btf::KIND_TYPEDEF, format!("btf_trace_{n}")))
                }
                _ => None,
            })
            .collect();
        let wanted: Vec<(u32, &str)> = wanted.iter().map(|(k, n)| (*k, n.as_str())).collect();
        let targets = btf.attach_targets(&wanted);
        (cfg, choices, targets)
    };
    // The program has no CO-RE relocations (offsets come in CONFIG), so aya need not
    // parse the kernel's BTF for the object.
    let mut ebpf = loader_without_kernel_btf()
        .btf(None)
        .override_global("CONFIG", &cfg, true)
        .map_max_entries(maps::RING, opts.ring_bytes)
        .load(obj)
        .map_err(|e| format!("loading the eBPF program failed: {e}"))?;
    // aya's BTF (fentry/fexit and BTF tracepoints need the target's type id),
    // parsed only when a chosen hook needs it and dropped once everything is attached.
    let mut kernel_btf: Option<aya::Btf> = None;
    // The cgroup v2 root, opened (or mounted) only when a chosen hook attaches there.
    let mut cgroup_root: Option<std::fs::File> = None;
    let mut loaded_progs: Vec<&str> = Vec::new();
    for choice in &choices {
        let Some(m) = choice.chosen() else { continue };
        let sites = Sites {
            kernel_btf: &mut kernel_btf,
            targets: &targets,
            cgroup_root: &mut cgroup_root,
        };
        if let Err(reason) = attach(&mut ebpf, m, sites, &mut loaded_progs) {
            if choice.capability == Capability::Lifecycle {
                return Err(reason);
            }
            return Ok(Err((m.label.clone(), reason)));
        }
    }
    drop(kernel_btf);
    Ok(Ok(Loaded {
        ebpf,
        transport,
        choices,
    }))
}

/// An aya error as one line: the verifier log stays out of user-facing reasons.
fn one_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    let head = s.split("Verifier output").next().unwrap_or("");
    head.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches([' ', '.'])
        .to_string()
}

/// What attaching needs from the machine, found once, when a hook first needs it.
struct Sites<'s> {
    /// aya's BTF: fentry/fexit and BTF tracepoints need the target's type id.
    kernel_btf: &'s mut Option<aya::Btf>,
    /// The attach targets at their kernel ids (`Btf::attach_targets`), for it.
    targets: &'s Option<Vec<u8>>,
    /// The root of the cgroup v2 hierarchy: every socket's cgroup is under it.
    cgroup_root: &'s mut Option<std::fs::File>,
}

fn open_cgroup_root() -> Result<std::fs::File, String> {
    let root = cgroupfs::ensure_mounted()?;
    std::fs::File::open(&root)
        .map_err(|e| format!("opening the cgroup v2 root {} failed: {e}", root.display()))
}

/// An aya loader that has not read the kernel's BTF. `EbpfLoader::new()` parses
/// all of it (about 16 MiB, the agent's peak) only for `.btf(None)` to drop it:
/// netta's program has no CO-RE relocations. Made on a short-lived thread with
/// its own root (`unshare(CLONE_FS)`, then `chroot` to `/proc/sys`, which has no
/// `sys/kernel/btf/vmlinux`), the loader finds none; the rest of netta keeps `/`.
/// Without CAP_SYS_CHROOT it is made as usual.
fn loader_without_kernel_btf() -> EbpfLoader<'static> {
    std::thread::spawn(|| {
        // SAFETY: plain syscalls on this thread's own filesystem context.
        let _ = unsafe { libc::unshare(libc::CLONE_FS) } == 0
            && unsafe { libc::chroot(c"/proc/sys".as_ptr()) } == 0;
        EbpfLoader::new()
    })
    .join()
    .unwrap_or_else(|_| EbpfLoader::new())
}

/// aya's BTF for finding attach targets: the small blob of only those when it
/// could be made, else the whole kernel BTF.
fn aya_btf(targets: &Option<Vec<u8>>) -> Result<aya::Btf, String> {
    match targets {
        Some(blob) => aya::Btf::parse(blob, aya::Endianness::default()),
        None => aya::Btf::from_sys_fs(),
    }
    .map_err(|e| format!("reading kernel BTF: {e}"))
}

fn attach<'a>(
    ebpf: &mut Ebpf,
    m: &'a Mechanism,
    sites: Sites<'_>,
    loaded: &mut Vec<&'a str>,
) -> Result<(), String> {
    let Sites {
        kernel_btf,
        targets,
        cgroup_root,
    } = sites;
    for (name, how) in &m.programs {
        // Nothing to attach: the agent opens its capture itself.
        if let Attach::UserSpace(_) = how {
            continue;
        }
        let first = !loaded.contains(name);
        let prog = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the eBPF object"))?;
        match how {
            Attach::Tracepoint((cat, point)) => {
                let p: &mut TracePoint = prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                if first {
                    p.load().map_err(|e| {
                        log::debug!("{name}: {e}");
                        format!("the kernel refused program {name}: {}", one_line(e))
                    })?;
                }
                // One program may serve several hooks; attach it once per mechanism.
                if first || m.programs.iter().filter(|(n, _)| n == name).count() > 1 {
                    p.attach(cat, point).map_err(|e| {
                        format!("attaching to tracepoint {cat}:{point} failed: {e}")
                    })?;
                }
            }
            Attach::BtfTracepoint((_, point)) => {
                if kernel_btf.is_none() {
                    *kernel_btf = Some(aya_btf(targets)?);
                }
                let btf = kernel_btf.as_ref().expect("just set");
                let p: &mut BtfTracePoint = prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                p.load(point, btf)
                    .and_then(|()| p.attach().map(drop))
                    .inspect_err(|e| log::debug!("{name}: {e:?}"))
                    .map_err(|e| {
                        format!(
                            "attaching to BTF tracepoint {point} failed: {}",
                            one_line(e)
                        )
                    })?;
            }
            Attach::FExit(f) | Attach::FEntry(f) => {
                if kernel_btf.is_none() {
                    *kernel_btf = Some(aya_btf(targets)?);
                }
                let btf = kernel_btf.as_ref().expect("just set");
                let res = if matches!(how, Attach::FExit(_)) {
                    let p: &mut FExit = prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                    p.load(f, btf).and_then(|()| p.attach().map(drop))
                } else {
                    let p: &mut FEntry = prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                    p.load(f, btf).and_then(|()| p.attach().map(drop))
                };
                res.inspect_err(|e| log::debug!("{name}: {e:?}"))
                    .map_err(|e| format!("attaching to {f} failed: {}", one_line(e)))?;
            }
            Attach::Cgroup(point) | Attach::CgroupSkb(point) => {
                if cgroup_root.is_none() {
                    *cgroup_root = Some(open_cgroup_root()?);
                }
                let root = cgroup_root.as_ref().expect("just set");
                let refused = |e: aya::programs::ProgramError| {
                    log::debug!("{name}: {e}");
                    format!("the kernel refused program {name}: {}", one_line(e))
                };
                // aya's message names the syscall; its source says why.
                let failed = |e: aya::programs::ProgramError| {
                    let why = std::error::Error::source(&e)
                        .map_or_else(String::new, |s| format!(": {}", one_line(s)));
                    format!("attaching cgroup/{point} failed: {}{why}", one_line(e))
                };
                // A BPF link (aya makes one on 5.7+; netta needs 5.8): the kernel
                // attaches every cgroup link as BPF_F_ALLOW_MULTI (and takes no flag
                // for it), so it runs beside other programs on the root, never in
                // place of one, and is detached when netta exits, even by kill -9.
                if matches!(how, Attach::CgroupSkb(_)) {
                    let p: &mut CgroupSkb = prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                    p.load().map_err(refused)?;
                    p.attach(root, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
                        .map_err(failed)?;
                } else {
                    let p: &mut CgroupSockAddr =
                        prog.try_into().map_err(|e| format!("{name}: {e}"))?;
                    p.load().map_err(refused)?;
                    p.attach(root, CgroupAttachMode::Single).map_err(failed)?;
                }
            }
            Attach::UserSpace(_) => {}
        }
        if first {
            loaded.push(name);
        }
    }
    Ok(())
}

/// Receives what a ring/perf reader drains: raw record bytes, losses, and the end of each drain.
pub trait RecordHandler: Send + 'static {
    fn record(&mut self, bytes: &[u8]);
    /// Records the perf transport reports lost.
    fn lost(&mut self, n: u64);
    /// End of a drain: a natural point to publish the batch.
    fn flush(&mut self);
}

/// Counters and UDP flow state that stay in the kernel maps.
pub struct Maps {
    counters: PerCpuArray<MapData, u64>,
    udp: BpfHashMap<MapData, UdpFlowKey, UdpFlowStats>,
    synack: BpfHashMap<MapData, u32, u64>,
}

impl Maps {
    /// Sum of a counter over all CPUs.
    pub fn counter(&self, idx: u32) -> u64 {
        self.counters
            .get(&idx, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    pub fn udp_flows(&self) -> Vec<(UdpFlowKey, UdpFlowStats)> {
        self.udp.iter().filter_map(Result::ok).collect()
    }

    pub fn forget_udp_flow(&mut self, key: &UdpFlowKey) {
        let _ = self.udp.remove(key);
    }

    /// SYN-ACK retransmission totals per listening port: (family, port, count).
    pub fn synack_retransmits(&self) -> Vec<(u16, u16, u64)> {
        self.synack
            .iter()
            .filter_map(Result::ok)
            .map(|(k, n)| ((k >> 16) as u16, k as u16, n))
            .collect()
    }
}

impl Loaded {
    /// Takes the maps the agent polls, and starts the reader tasks. The returned
    /// guard keeps the programs attached; drop it to detach.
    pub fn start<S: RecordHandler>(
        mut self,
        make_handler: impl Fn() -> S,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(Attached, Maps), String> {
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| format!("map {name} missing from the eBPF object"))
        };
        let counters = PerCpuArray::try_from(take(&mut self.ebpf, maps::COUNTERS)?)
            .map_err(|e| e.to_string())?;
        let udp = BpfHashMap::try_from(take(&mut self.ebpf, maps::UDP_FLOWS)?)
            .map_err(|e| e.to_string())?;
        let synack = BpfHashMap::try_from(take(&mut self.ebpf, maps::SYNACK_RETRANS)?)
            .map_err(|e| e.to_string())?;
        let mut tasks = Vec::new();
        // The DNS fentry programs write to the perf array whatever the transport
        // (`bpf_skb_output` has no ring-buffer form); answers are few, so with the
        // ring buffer its per-CPU buffers are small.
        let perf_pages = match self.transport {
            Transport::Perf => Some(64),
            Transport::Ring => probe::dns_via_perf(&self.choices).then_some(8),
        };
        if self.transport == Transport::Ring {
            let ring =
                RingBuf::try_from(take(&mut self.ebpf, maps::RING)?).map_err(|e| e.to_string())?;
            // SAFETY: the map owns its fd and keeps it open while the AsyncFd lives.
            let fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.to_string())?;
            tasks.push(tokio::spawn(read_ring(
                fd,
                make_handler(),
                shutdown.clone(),
            )));
        }
        if let Some(pages) = perf_pages {
            let mut perf = PerfEventArray::try_from(take(&mut self.ebpf, maps::PERF)?)
                .map_err(|e| e.to_string())?;
            let cpus = aya::util::online_cpus().map_err(|(m, e)| format!("{m}: {e}"))?;
            for cpu in cpus {
                let buf = perf
                    .open(cpu, Some(pages))
                    .map_err(|e| format!("perf buffer for CPU {cpu}: {e}"))?;
                // SAFETY: as above, the buffer owns its perf fd.
                let fd = unsafe { AsyncFd::register(buf) }.map_err(|e| e.to_string())?;
                tasks.push(tokio::spawn(read_perf(
                    fd,
                    make_handler(),
                    shutdown.clone(),
                )));
            }
        }
        Ok((
            Attached {
                _ebpf: self.ebpf,
                tasks,
            },
            Maps {
                counters,
                udp,
                synack,
            },
        ))
    }
}

pub struct Attached {
    _ebpf: Ebpf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Attached {
    /// Waits for the readers to drain and stop (after shutdown was signalled).
    pub async fn join(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if std::env::var_os(BPF_STATS_ENV).is_some() {
            self.print_stats();
        }
    }

    /// Run time and count of each attached program, as the kernel counts them with
    /// `kernel.bpf_stats_enabled=1` (for measuring hook costs; stderr, one per line).
    fn print_stats(&self) {
        for (name, prog) in self._ebpf.programs() {
            if let Ok(info) = prog.info() {
                eprintln!(
                    "netta: bpf-stats {name} runs {} run_time_ns {}",
                    info.run_count(),
                    info.run_time().as_nanos()
                );
            }
        }
    }
}

/// Records below the wakeup threshold are not signalled by the kernel; this
/// drain interval bounds their latency. Short, so that each drain is a short
/// burst of work: on a busy machine a long one delays the traced programs.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

async fn read_ring<S: RecordHandler>(
    fd: AsyncFd<RingBuf<MapData>>,
    handler: S,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let drain = |ring: &mut RingBuf<MapData>, handler: &mut S| {
        while let Some(item) = ring.next() {
            handler.record(&item);
        }
        handler.flush();
    };
    pump(
        fd,
        handler,
        shutdown,
        Some(DRAIN_EVERY),
        "ring buffer",
        drain,
    )
    .await
}

async fn read_perf<S: RecordHandler>(
    fd: AsyncFd<aya::maps::perf::PerfEventArrayBuffer<MapData>>,
    handler: S,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let drain = |buf: &mut aya::maps::perf::PerfEventArrayBuffer<MapData>, handler: &mut S| {
        let mut joined = [0u8; netta_ebpf::MAX_RECORD_SIZE];
        buf.for_each(|e| match e {
            aya::maps::perf::PerfEvent::Sample { head, tail } => {
                if tail.is_empty() {
                    handler.record(head);
                } else {
                    // Wrapped around the end of the mmap: stitch the two halves.
                    let n = head.len().min(joined.len());
                    joined[..n].copy_from_slice(&head[..n]);
                    let m = tail.len().min(joined.len() - n);
                    joined[n..n + m].copy_from_slice(&tail[..m]);
                    handler.record(&joined[..n + m]);
                }
            }
            aya::maps::perf::PerfEvent::Lost { count } => handler.lost(count),
        });
        handler.flush();
    };
    let what = format!("perf buffer {}", fd.get_ref().as_raw_fd());
    pump(fd, handler, shutdown, None, &what, drain).await
}

/// Drains `fd` into `handler` whenever it is readable (and every `every`, when
/// given) until shutdown, then once more.
async fn pump<T: AsRawFd, S>(
    mut fd: AsyncFd<T>,
    mut handler: S,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    every: Option<Duration>,
    what: &str,
    drain: impl Fn(&mut T, &mut S),
) {
    // Without `every` the tick branch is disabled; the period is then unused.
    let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            guard = fd.readable_mut() => match guard {
                Ok(mut g) => {
                    drain(g.get_inner_mut(), &mut handler);
                    g.clear_ready();
                }
                Err(e) => {
                    log::error!("{what} poll failed: {e}");
                    break;
                }
            },
            _ = tick.tick(), if every.is_some() => drain(fd.get_mut(), &mut handler),
        }
    }
    drain(fd.get_mut(), &mut handler);
}

#[cfg(test)]
mod tests {
    /// The kernel side names its maps and programs by their identifiers, the loader
    /// by `netta_ebpf::{maps, prog}`: the object must hold every name asked for.
    #[test]
    fn object_holds_every_map_and_program_the_loader_names() {
        let Some(bytes) = super::object() else {
            assert!(std::env::var_os("CI").is_none(), "BPF object not embedded");
            return;
        };
        let obj = aya_obj::Object::parse(bytes).expect("parse the BPF object");
        for m in netta_ebpf::maps::ALL {
            assert!(obj.maps.contains_key(*m), "no map {m} in the object");
        }
        for p in netta_ebpf::prog::ALL {
            assert!(
                obj.programs.contains_key(*p),
                "no program {p} in the object"
            );
        }
    }
}
