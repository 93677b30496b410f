//! The one seam between netta and the OS (bandwhich's `OsInputOutput` idea):
//! everything the agent reads from the machine goes through a [`Host`]. The agent
//! takes one as a value, so tests run the whole agent on a fake host. [`Os`] is
//! the real one: the kernel program (`ebpf`, placed with `btf`, `tracefs` and
//! `probe`, which picks a hook per capability),
//! /proc (`proc`), /etc/services (`services`), cgroups and pods
//! (`containers`), user names (`users`), DNS responses in every network
//! namespace (`dns`) and the agent's own usage (`self_stats`).
pub mod btf;
pub mod cgroupfs;
pub mod containers;
pub mod dns;
pub mod ebpf;
pub mod identity;
pub mod notify;
pub mod probe;
pub mod proc;
pub mod self_stats;
pub mod services;
pub mod sock_diag;
pub mod tracefs;
pub mod users;

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use netta_ebpf::{UdpFlowKey, UdpFlowStats};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use crate::core::cgroup::Pod;
use crate::core::clock::{boot_now, Clock};
use crate::core::proc_net::{Owner, ProcSocket};
use crate::core::process::Seed;
use crate::core::sanitize::Text;
use crate::core::services::Services;
use crate::core::sock_diag::{DiagSocket, Query};
pub use ebpf::{RecordHandler, Transport};
pub use proc::Sockets;

/// Mounts a kernel pseudo file system (`tracefs`, `cgroup2`) at `target`, the way
/// the distributions do (nosuid, nodev, noexec).
fn mount_pseudo_fs(fstype: &str, target: &str) -> io::Result<()> {
    let c = |s: &str| {
        std::ffi::CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (fstype, target) = (c(fstype)?, c(target)?);
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What stays in the kernel's maps: loss counters, UDP flows, SYN-ACK retransmits.
pub trait KernelMaps: Send {
    /// Sum of a counter (`netta_ebpf::counter::*`) over all CPUs.
    fn counter(&self, idx: u32) -> u64;
    fn udp_flows(&self) -> Vec<(UdpFlowKey, UdpFlowStats)>;
    fn forget_udp_flow(&mut self, key: &UdpFlowKey);
    /// SYN-ACK retransmission totals per listening port: (family, port, count).
    fn synack_retransmits(&self) -> Vec<(u16, u16, u64)>;
}

impl KernelMaps for ebpf::Maps {
    fn counter(&self, idx: u32) -> u64 {
        ebpf::Maps::counter(self, idx)
    }
    fn udp_flows(&self) -> Vec<(UdpFlowKey, UdpFlowStats)> {
        ebpf::Maps::udp_flows(self)
    }
    fn forget_udp_flow(&mut self, key: &UdpFlowKey) {
        ebpf::Maps::forget_udp_flow(self, key)
    }
    fn synack_retransmits(&self) -> Vec<(u16, u16, u64)> {
        ebpf::Maps::synack_retransmits(self)
    }
}

/// A running kernel event stream: its transport, its maps, and a future that
/// resolves once the readers drained after shutdown (dropping it detaches).
pub struct Kernel {
    pub transport: Transport,
    /// The kernel program sends DNS answers (no `AF_PACKET` capture is needed).
    pub dns_in_kernel: bool,
    pub maps: Box<dyn KernelMaps>,
    pub readers: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Makes one record consumer per reader (one per CPU with the perf transport).
pub type MakeHandler<'a> = &'a dyn Fn() -> Box<dyn RecordHandler>;

impl RecordHandler for Box<dyn RecordHandler> {
    fn record(&mut self, bytes: &[u8]) {
        (**self).record(bytes)
    }
    fn lost(&mut self, n: u64) {
        (**self).lost(n)
    }
    fn flush(&mut self) {
        (**self).flush()
    }
}

/// Everything the agent reads from the machine.
pub trait Host: Send + Sync + 'static {
    /// Loads the kernel program and starts its readers, or says in one line why not.
    fn start_kernel(
        &self,
        opts: &ebpf::Options,
        make_handler: MakeHandler<'_>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Kernel, String>;
    /// The socket tables of every network namespace (/proc/<pid>/net).
    fn read_sockets(&self) -> io::Result<Sockets>;
    /// Socket inode -> owning process.
    fn socket_owners(&self) -> FxHashMap<u64, Owner>;
    /// Port names.
    fn services(&self) -> Services;
    /// The clock of kernel timestamps (`CLOCK_BOOTTIME`), in ns: every event source stamps with it.
    fn now_ns(&self) -> u64;
    /// Converts kernel timestamps to wall time.
    fn clock(&self) -> Clock;
    /// Live counters of the open TCP connections (sock_diag), appended to `out`.
    /// A host that has none leaves `out` empty.
    fn tcp_counters(&self, out: &mut Vec<DiagSocket>) -> io::Result<()> {
        let _ = out;
        Ok(())
    }

    /// The processes running now (seeding the process cache), with their
    /// arguments when `args`.
    fn processes(&self, _args: bool) -> Vec<Seed> {
        Vec::new()
    }

    /// One process, as [`Host::processes`] reads it.
    fn process(&self, _pid: u32, _args: bool) -> Option<Seed> {
        None
    }

    /// The length of /proc's clock tick, ns (start times count in it).
    fn tick_ns(&self) -> u64 {
        10_000_000
    }

    /// The name of a user id here.
    fn user_name(&self, _uid: u32) -> Option<Text> {
        None
    }

    /// Every cgroup: (id, path from the cgroup v2 root).
    fn cgroups(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    /// Kubernetes pods this node logs for: (UID, pod with its name and namespace).
    fn pods(&self) -> Vec<(String, Pod)> {
        Vec::new()
    }

    /// Starts capturing DNS responses in every network namespace, or says in one
    /// line why not.
    fn start_dns(
        &self,
        _handler: Box<dyn dns::DnsHandler>,
        _shutdown: watch::Receiver<bool>,
    ) -> Result<dns::DnsCapture, String> {
        Err("this host captures no DNS".into())
    }
}

/// The real machine.
#[derive(Clone)]
pub struct Os {
    pub proc_root: PathBuf,
    /// Where the host's cgroup v2 hierarchy is.
    pub cgroup_root: PathBuf,
    /// Where the kubelet keeps pod logs (`<namespace>_<name>_<uid>`).
    pub pods_root: PathBuf,
    /// The sock_diag socket, opened at the first dump and kept.
    diag: Arc<Mutex<Option<sock_diag::Diag>>>,
}

impl std::fmt::Debug for Os {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Os")
            .field("proc_root", &self.proc_root)
            .field("cgroup_root", &self.cgroup_root)
            .field("pods_root", &self.pods_root)
            .finish_non_exhaustive()
    }
}

impl Default for Os {
    fn default() -> Self {
        let proc_root = PathBuf::from("/proc");
        Os {
            cgroup_root: containers::cgroup2_root(&proc_root),
            pods_root: containers::pods_root(&proc_root),
            proc_root,
            diag: Arc::default(),
        }
    }
}

impl Os {
    /// One sock_diag dump on the kept socket (opened at first use).
    fn diag_dump<T>(
        &self,
        q: Query,
        out: &mut Vec<T>,
        conv: fn(DiagSocket) -> Option<T>,
    ) -> io::Result<()> {
        let mut diag = self.diag.lock().unwrap_or_else(|e| e.into_inner());
        if diag.is_none() {
            *diag = Some(sock_diag::Diag::open()?);
        }
        let result = diag.as_mut().map_or(Ok(()), |d| d.tcp(q, out, conv));
        if result.is_err() {
            // A socket in a bad state (an interrupted dump) is not reused.
            *diag = None;
        }
        result
    }
}

impl Host for Os {
    fn start_kernel(
        &self,
        opts: &ebpf::Options,
        make_handler: MakeHandler<'_>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Kernel, String> {
        let loaded = ebpf::load(opts)?;
        for (cap, reason) in loaded.degraded() {
            eprintln!(
                "netta: eBPF degraded: {} ({}): {reason}",
                cap.name(),
                cap.without()
            );
        }
        let transport = loaded.transport;
        let dns_in_kernel = loaded.dns_in_kernel();
        let (attached, maps) = loaded.start(make_handler, shutdown)?;
        Ok(Kernel {
            transport,
            dns_in_kernel,
            maps: Box::new(maps),
            readers: Box::pin(attached.join()),
        })
    }

    fn read_sockets(&self) -> io::Result<Sockets> {
        let conv = |s: DiagSocket| s.proc_socket();
        let mut ns_tcp = |whose: Option<u32>, out: &mut Vec<ProcSocket>| match whose {
            None => self.diag_dump(Query::PROC, out, conv),
            Some(pid) => {
                let ns = self.proc_root.join(pid.to_string()).join("ns/net");
                sock_diag::Diag::open_in(&ns)?.tcp(Query::PROC, out, conv)
            }
        };
        proc::read_sockets(&self.proc_root, Some(&mut ns_tcp))
    }

    fn socket_owners(&self) -> FxHashMap<u64, Owner> {
        proc::socket_owners(&self.proc_root)
    }

    fn services(&self) -> Services {
        services::load()
    }

    fn processes(&self, args: bool) -> Vec<Seed> {
        proc::processes(&self.proc_root, &self.cgroup_root, args)
    }

    fn process(&self, pid: u32, args: bool) -> Option<Seed> {
        proc::process(&self.proc_root, &self.cgroup_root, pid, args)
    }

    fn tick_ns(&self) -> u64 {
        proc::tick_ns()
    }

    fn user_name(&self, uid: u32) -> Option<Text> {
        users::lookup(uid)
    }

    fn cgroups(&self) -> Vec<(u64, String)> {
        containers::walk(&self.cgroup_root)
    }

    fn pods(&self) -> Vec<(String, Pod)> {
        containers::pods(&self.pods_root)
    }

    fn now_ns(&self) -> u64 {
        boot_now()
    }

    fn clock(&self) -> Clock {
        Clock::new()
    }

    fn tcp_counters(&self, out: &mut Vec<DiagSocket>) -> io::Result<()> {
        self.diag_dump(Query::LIVE, out, Some)
    }

    fn start_dns(
        &self,
        handler: Box<dyn dns::DnsHandler>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<dns::DnsCapture, String> {
        dns::start(&self.proc_root, handler, shutdown)
    }
}
