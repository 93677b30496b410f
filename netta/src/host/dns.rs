//! DNS capture: one `AF_PACKET` socket per network namespace (each namespace
//! found under /proc/<pid>/ns/net or /run/netns, deduplicated by inode), opened
//! after `setns` on a thread of its own. A classic BPF filter in the kernel keeps
//! only UDP and TCP packets from port 53, and `PACKET_IGNORE_OUTGOING` keeps the
//! socket off the transmit path, so other traffic costs a few filter
//! instructions per received packet and no copy. What arrives is handed on raw
//! (IP header first); `core::dns` reads it.
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Receives what the capture sees, on the capture's thread.
pub trait DnsHandler: Send {
    /// One packet, IP header first, from the namespace with inode `netns`.
    fn packet(&mut self, netns: u64, packet: &[u8]);
    /// How many namespaces are watched now.
    fn namespaces(&mut self, _watched: usize) {}
}

/// A running capture: the future resolves once its thread ended (after shutdown).
pub struct DnsCapture {
    pub join: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// How often the namespaces are listed again (new containers, `ip netns add`).
const RESCAN: Duration = Duration::from_secs(2);
/// Receive buffer of each namespace's socket. Only DNS responses reach it (the
/// filter drops the rest in the kernel), a few hundred bytes each (about 1-2 KiB
/// of kernel memory with their buffers), and the thread drains a socket as soon
/// as it is readable: 256 KiB (which the kernel doubles for its bookkeeping)
/// holds a burst of hundreds of answers, and a host with hundreds of pod
/// namespaces keeps its worst case in the low hundreds of MiB rather than the
/// gigabytes a large default (`net.core.rmem_default`, often raised for other
/// reasons) would allow. An answer dropped when it is full only costs a name.
pub const RCVBUF: i32 = 256 * 1024;
/// Packets read from one socket before the others get a turn.
const BURST: usize = 64;

/// Starts capturing in every namespace; fails (one line) when the first socket
/// cannot be opened here (no CAP_NET_RAW).
pub fn start(
    proc_root: &Path,
    mut handler: Box<dyn DnsHandler>,
    shutdown: watch::Receiver<bool>,
) -> Result<DnsCapture, String> {
    let own_path = proc_root.join("self/ns/net");
    let own = File::open(&own_path).map_err(|e| format!("{}: {e}", own_path.display()))?;
    let own_ino = own.metadata().map_err(|e| e.to_string())?.ino();
    let first = open_socket().map_err(|e| format!("AF_PACKET socket: {e}"))?;
    let proc_root = proc_root.to_path_buf();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("netta-dns".into())
        .spawn(move || {
            let mut c = Capture {
                proc_root,
                own: OwnedFd::from(own),
                own_ino,
                sockets: HashMap::from([(own_ino, first)]),
                failed: HashSet::new(),
            };
            c.run(&mut *handler, &shutdown);
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("DNS capture thread: {e}"))?;
    Ok(DnsCapture {
        join: Box::pin(async move {
            let _ = done_rx.await;
        }),
    })
}

struct Capture {
    proc_root: PathBuf,
    own: OwnedFd,
    own_ino: u64,
    sockets: HashMap<u64, OwnedFd>,
    /// Namespaces whose socket could not be opened, so the log says it once.
    failed: HashSet<u64>,
}

impl Capture {
    fn run(&mut self, handler: &mut dyn DnsHandler, shutdown: &watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        let mut scanned: Option<Instant> = None;
        let mut fds: Vec<(u64, libc::pollfd)> = Vec::new();
        while !*shutdown.borrow() {
            if scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
                if !self.rescan() {
                    return;
                }
                handler.namespaces(self.sockets.len());
                fds = self
                    .sockets
                    .iter()
                    .map(|(ns, fd)| {
                        let pfd = libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        (*ns, pfd)
                    })
                    .collect();
                scanned = Some(Instant::now());
            }
            let mut pfds: Vec<libc::pollfd> = fds.iter().map(|(_, p)| *p).collect();
            // SAFETY: pfds is a valid array of pollfd of that length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 250) };
            if n <= 0 {
                continue;
            }
            for ((ns, _), p) in fds.iter().zip(&pfds) {
                if p.revents & libc::POLLIN != 0 {
                    drain(p.fd, *ns, &mut buf, handler);
                }
            }
        }
    }

    /// Opens a socket in each new namespace and closes those of namespaces gone
    /// (a socket would keep its namespace alive). False when the thread could
    /// not get back into its own namespace: it stops rather than run elsewhere.
    fn rescan(&mut self) -> bool {
        let found = namespaces(&self.proc_root);
        self.sockets
            .retain(|ns, _| *ns == self.own_ino || found.contains_key(ns));
        self.failed.retain(|ns| found.contains_key(ns));
        for (ns, path) in found {
            if self.sockets.contains_key(&ns) || self.failed.contains(&ns) {
                continue;
            }
            match self.open_in(&path) {
                Ok(fd) => {
                    self.sockets.insert(ns, fd);
                }
                Err(e) => {
                    log::warn!("DNS capture in {}: {e}", path.display());
                    self.failed.insert(ns);
                }
            }
            // SAFETY: setns on this thread, with a namespace fd we own.
            if unsafe { libc::setns(self.own.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                log::error!(
                    "DNS capture stopped: cannot return to its own network namespace: {}",
                    io::Error::last_os_error()
                );
                return false;
            }
        }
        true
    }

    fn open_in(&self, path: &Path) -> io::Result<OwnedFd> {
        let ns = File::open(path)?;
        // SAFETY: setns on this thread; the caller moves it back.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        open_socket()
    }
}

/// Reads what one socket has, up to [`BURST`] packets.
fn drain(fd: i32, ns: u64, buf: &mut [u8], handler: &mut dyn DnsHandler) {
    for _ in 0..BURST {
        // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes at most its size.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and from are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return;
        }
        // Kernels before 4.20 have no PACKET_IGNORE_OUTGOING: on loopback each
        // packet would come twice.
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        handler.packet(ns, &buf[..n as usize]);
    }
}

/// Every network namespace with a process in it or a name under /run/netns:
/// inode → one path that opens it.
pub fn namespaces(proc_root: &Path) -> HashMap<u64, PathBuf> {
    let mut found = HashMap::new();
    let mut add = |p: PathBuf| {
        if let Ok(m) = std::fs::metadata(&p) {
            found.entry(m.ino()).or_insert(p);
        }
    };
    if let Ok(dir) = std::fs::read_dir(proc_root) {
        for e in dir.flatten() {
            if e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
            {
                add(e.path().join("ns/net"));
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            add(e.path());
        }
    }
    found
}

/// Classic BPF, run by the kernel on each received packet, from the IP header
/// (SOCK_DGRAM): accept IPv4 or IPv6 UDP/TCP from port 53 (IPv4: not a later
/// fragment); drop the rest.
pub fn filter() -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_H_IND: u16 = 0x48;
    const LDX_B_MSH: u16 = 0xb1;
    const JEQ: u16 = 0x15;
    const JSET: u16 = 0x45;
    const RET: u16 = 0x06;
    const SKF_AD_PROTOCOL: u32 = 0xffff_f000;
    const ACCEPT: usize = 16;
    const DROP: usize = 17;
    // (code, k, then, else): jump targets are instruction numbers.
    let prog: [(u16, u32, usize, usize); 18] = [
        (LD_H_ABS, SKF_AD_PROTOCOL, 0, 0), // 0: EtherType
        (JEQ, 0x0800, 3, 2),               // 1
        (JEQ, 0x86dd, 11, DROP),           // 2
        (LD_B_ABS, 9, 0, 0),               // 3: IPv4 protocol
        (JEQ, 17, 6, 5),                   // 4
        (JEQ, 6, 6, DROP),                 // 5
        (LD_H_ABS, 6, 0, 0),               // 6: fragment offset
        (JSET, 0x1fff, DROP, 8),           // 7
        (LDX_B_MSH, 0, 0, 0),              // 8: X = header length
        (LD_H_IND, 0, 0, 0),               // 9: source port
        (JEQ, 53, ACCEPT, DROP),           // 10
        (LD_B_ABS, 6, 0, 0),               // 11: IPv6 next header
        (JEQ, 17, 14, 13),                 // 12
        (JEQ, 6, 14, DROP),                // 13
        (LD_H_ABS, 40, 0, 0),              // 14: source port
        (JEQ, 53, ACCEPT, DROP),           // 15
        (RET, 0x0004_0000, 0, 0),          // 16: accept, whole packet
        (RET, 0, 0, 0),                    // 17: drop
    ];
    prog.iter()
        .enumerate()
        .map(|(i, &(code, k, t, f))| {
            let jump = code & 0x07 == 0x05;
            libc::sock_filter {
                code,
                jt: if jump { (t - i - 1) as u8 } else { 0 },
                jf: if jump { (f - i - 1) as u8 } else { 0 },
                k,
            }
        })
        .collect()
}

/// A non-blocking packet socket with the filter attached before it is bound, so
/// nothing unfiltered is queued.
fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut prog = filter();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
    // Best effort: older kernels lack it, and `drain` skips outgoing copies then.
    let _ = setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32);
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF)?;
    // SAFETY: zeroed sockaddr_ll, then the fields bind reads.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: sll is a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: value points to a T of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dns::build::{name, response, udp4};

    /// The classic BPF subset the filter uses, run the way the kernel runs it.
    fn run(prog: &[libc::sock_filter], proto: u16, pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let byte = |o: usize| pkt.get(o).map(|b| u32::from(*b));
        let half = |o: usize| Some(byte(o)? << 8 | byte(o + 1)?);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                0x28 if i.k == 0xffff_f000 => a = u32::from(proto),
                0x28 => match half(i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x30 => match byte(i.k as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0x48 => match half((x + i.k) as usize) {
                    Some(v) => a = v,
                    None => return 0,
                },
                0xb1 => match byte(i.k as usize) {
                    Some(v) => x = (v & 0xf) * 4,
                    None => return 0,
                },
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x45 => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("unexpected code {c:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_keeps_responses_from_port_53_only() {
        let prog = filter();
        let m = response("x.example", &[(name("x.example"), 1, 5, vec![1, 2, 3, 4])]);
        let p = udp4([127, 0, 0, 53], [127, 0, 0, 1], 40000, &m);
        assert_ne!(run(&prog, 0x0800, &p), 0);
        let mut query = p.clone();
        query[20..22].copy_from_slice(&40000u16.to_be_bytes());
        assert_eq!(run(&prog, 0x0800, &query), 0);
        let mut frag = p.clone();
        frag[7] = 1;
        assert_eq!(run(&prog, 0x0800, &frag), 0);
        let mut tcp = p.clone();
        tcp[9] = 6;
        assert_ne!(run(&prog, 0x0800, &tcp), 0);
        let mut icmp = p.clone();
        icmp[9] = 1;
        assert_eq!(run(&prog, 0x0800, &icmp), 0);
        // IPv6, no extension headers: ports at 40.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(&[0; 32]);
        v6.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 8, 0, 0]);
        assert_ne!(run(&prog, 0x86dd, &v6), 0);
        v6[41] = 54;
        assert_eq!(run(&prog, 0x86dd, &v6), 0);
        assert_eq!(run(&prog, 0x0806, &p), 0, "ARP");
        assert_eq!(run(&prog, 0x0800, &p[..10]), 0, "short");
    }

    #[test]
    fn each_socket_has_a_small_receive_buffer() {
        let fd = match open_socket() {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("no AF_PACKET socket here: {e}");
                return;
            }
        };
        let mut got: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: got and len are valid for the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut got as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        // The kernel reports twice what was asked (its bookkeeping share).
        assert_eq!(got, 2 * RCVBUF);
    }

    #[test]
    fn namespaces_are_found_once_each() {
        let found = namespaces(Path::new("/proc"));
        // This process's own namespace is among them, once.
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert!(found.contains_key(&own));
    }
}
