//! Loading the kernel program, and reading its records. `load` returns either a
//! working [`Loaded`] or a one-line reason, which the agent shows before it falls
//! back to polling /proc.
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerfEventArray, RingBuf};
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};
use netta_abi::{maps, tp, Config, UdpFlowKey, UdpFlowStats};
use tokio::io::unix::AsyncFd;

use crate::host::{btf, tracefs};

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

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub transport: Transport,
    pub all_states: bool,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ring_bytes: u32,
    /// Pages per CPU for the perf transport (a power of two).
    pub perf_pages: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::Ring,
            all_states: false,
            ring_bytes: 2 << 20,
            perf_pages: 64,
        }
    }
}

/// Programs and the tracepoints each attaches to.
const PROGRAMS: &[(&str, &[(&str, &str)])] = &[
    ("inet_sock_set_state", &[tp::SET_STATE]),
    ("sock_send_length", &[tp::SEND_LEN]),
    ("sock_recv_length", &[tp::RECV_LEN]),
    ("sys_enter_sendto", &[tp::SENDTO_ENTER]),
    ("sys_enter_sendmsg", &[tp::SENDMSG_ENTER]),
    ("sys_exit_send", &[tp::SENDTO_EXIT, tp::SENDMSG_EXIT]),
    ("tcp_send_reset", &[tp::SEND_RESET]),
    ("tcp_retransmit_synack", &[tp::SYNACK]),
];

/// Effective capability bits of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

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
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)".into());
    }
    None
}

/// The loaded, attached program. Dropping it detaches everything: all links are
/// owned by file descriptors and nothing is pinned, so even `kill -9` leaves no trace.
pub struct Loaded {
    ebpf: Ebpf,
    pub transport: Transport,
}

pub fn load(opts: &Options) -> Result<Loaded, String> {
    if let Some(reason) = precheck() {
        return Err(reason);
    }
    let obj = object().ok_or("no eBPF object")?;
    let root = tracefs::ensure_mounted()?;
    for (point, fields) in tp::CHECKED {
        tracefs::check_layout(&root, *point, fields)?;
    }
    let transport = opts.transport;
    let kv = aya::util::KernelVersion::current().map_err(|e| format!("kernel version: {e}"))?;
    if kv < aya::util::KernelVersion::new(5, 8, 0) {
        // The object declares a ring buffer map, which older kernels cannot create.
        return Err(format!(
            "kernel {kv} is older than 5.8, which netta's eBPF program needs"
        ));
    }
    // Offsets from the running kernel's BTF; the parsed BTF (several MiB) is
    // dropped before loading, so it never adds to the agent's peak memory.
    let offsets = {
        let btf = btf::Btf::from_sys_fs()?;
        let offset = |s: &str, m: &str| {
            btf.member_offset(s, m).ok_or_else(|| {
                format!("the kernel's BTF has no {s}.{m}: unsupported kernel layout")
            })
        };
        [
            offset("sock_common", "skc_v6_daddr")?,
            offset("sock_common", "skc_v6_rcv_saddr")?,
            offset("tcp_sock", "bytes_acked")?,
            offset("tcp_sock", "bytes_received")?,
            offset("tcp_sock", "snd_una")?,
            offset("tcp_sock", "write_seq")?,
            offset("sock_common", "skc_flags")?,
        ]
    };
    let cfg = Config {
        all_states: opts.all_states as u8,
        use_perf: (transport == Transport::Perf) as u8,
        _pad: [0; 2],
        wakeup_bytes: (opts.ring_bytes / 16).max(4096),
        off_v6_daddr: offsets[0],
        off_v6_rcv_saddr: offsets[1],
        off_bytes_acked: offsets[2],
        off_bytes_received: offsets[3],
        off_snd_una: offsets[4],
        off_write_seq: offsets[5],
        off_sk_flags: offsets[6],
        _pad2: 0,
    };
    // The program has no CO-RE relocations (offsets come in CONFIG), so aya need not
    // parse the kernel's BTF a second time.
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .override_global("CONFIG", &cfg, true)
        .map_max_entries(maps::RING, opts.ring_bytes)
        .load(obj)
        .map_err(|e| format!("loading the eBPF program failed: {e}"))?;
    for (name, points) in PROGRAMS {
        let prog: &mut TracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the eBPF object"))?
            .try_into()
            .map_err(|e| format!("program {name}: {e}"))?;
        prog.load()
            .map_err(|e| format!("the kernel refused program {name}: {e}"))?;
        for (cat, tp) in *points {
            prog.attach(cat, tp)
                .map_err(|e| format!("attaching to tracepoint {cat}:{tp} failed: {e}"))?;
        }
    }
    Ok(Loaded { ebpf, transport })
}

/// Where decoded records go: the reader hands over raw record bytes in batches.
pub trait RecordSink: Send + 'static {
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
    pub fn start<S: RecordSink>(
        mut self,
        make_sink: impl Fn() -> S,
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
        match self.transport {
            Transport::Ring => {
                let ring = RingBuf::try_from(take(&mut self.ebpf, maps::RING)?)
                    .map_err(|e| e.to_string())?;
                // SAFETY: the map owns its fd and keeps it open while the AsyncFd lives.
                let fd = unsafe { AsyncFd::register(ring) }.map_err(|e| e.to_string())?;
                tasks.push(tokio::spawn(read_ring(fd, make_sink(), shutdown)));
            }
            Transport::Perf => {
                let mut perf = PerfEventArray::try_from(take(&mut self.ebpf, maps::PERF)?)
                    .map_err(|e| e.to_string())?;
                let cpus = aya::util::online_cpus().map_err(|(m, e)| format!("{m}: {e}"))?;
                for cpu in cpus {
                    let buf = perf
                        .open(cpu, Some(64))
                        .map_err(|e| format!("perf buffer for CPU {cpu}: {e}"))?;
                    // SAFETY: as above, the buffer owns its perf fd.
                    let fd = unsafe { AsyncFd::register(buf) }.map_err(|e| e.to_string())?;
                    tasks.push(tokio::spawn(read_perf(fd, make_sink(), shutdown.clone())));
                }
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
    }
}

/// Records below the wakeup threshold are not signalled by the kernel; this
/// drain interval bounds their latency.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

async fn read_ring<S: RecordSink>(
    mut fd: AsyncFd<RingBuf<MapData>>,
    mut sink: S,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drain = |ring: &mut RingBuf<MapData>, sink: &mut S| {
        while let Some(item) = ring.next() {
            sink.record(&item);
        }
        sink.flush();
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            guard = fd.readable_mut() => match guard {
                Ok(mut g) => {
                    drain(g.get_inner_mut(), &mut sink);
                    g.clear_ready();
                }
                Err(e) => {
                    log::error!("ring buffer poll failed: {e}");
                    break;
                }
            },
            _ = tick.tick() => drain(fd.get_mut(), &mut sink),
        }
    }
    drain(fd.get_mut(), &mut sink);
}

async fn read_perf<S: RecordSink>(
    mut fd: AsyncFd<aya::maps::perf::PerfEventArrayBuffer<MapData>>,
    mut sink: S,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let drain = |buf: &mut aya::maps::perf::PerfEventArrayBuffer<MapData>, sink: &mut S| {
        let mut joined = [0u8; netta_abi::EVENT_SIZE];
        buf.for_each(|e| match e {
            aya::maps::perf::PerfEvent::Sample { head, tail } => {
                if tail.is_empty() {
                    sink.record(head);
                } else {
                    // Wrapped around the end of the mmap: stitch the two halves.
                    let n = head.len().min(joined.len());
                    joined[..n].copy_from_slice(&head[..n]);
                    let m = tail.len().min(joined.len() - n);
                    joined[n..n + m].copy_from_slice(&tail[..m]);
                    sink.record(&joined[..n + m]);
                }
            }
            aya::maps::perf::PerfEvent::Lost { count } => sink.lost(count),
        });
        sink.flush();
    };
    let raw = fd.get_ref().as_raw_fd();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            guard = fd.readable_mut() => match guard {
                Ok(mut g) => {
                    drain(g.get_inner_mut(), &mut sink);
                    g.clear_ready();
                }
                Err(e) => {
                    log::error!("perf buffer {raw} poll failed: {e}");
                    break;
                }
            },
        }
    }
    drain(fd.get_mut(), &mut sink);
}
