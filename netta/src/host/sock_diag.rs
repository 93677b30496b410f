//! TCP sockets from the kernel over NETLINK_SOCK_DIAG, for both families at
//! once (the compatibility request; a kernel that refuses it gets one dump per
//! family): the live counters (the sockets in [`LIVE_STATES`], each with its
//! `tcp_info`; the state filter runs in the kernel, so idle listeners and
//! TIME_WAIT remnants cost nothing), and reconciliation's listing of every
//! socket, binary rather than /proc/net text. Works without eBPF (it is what
//! `ss` reads). The socket and its buffer are kept across dumps.
//!
//! [`LIVE_STATES`]: crate::core::sock_diag::LIVE_STATES
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::core::sock_diag::{self, DiagSocket, Query};

/// A netlink socket for sock_diag dumps, kept open across refreshes.
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
    /// One datagram's sockets, before `conv`.
    batch: Vec<DiagSocket>,
    /// Whether the kernel answers the all-families request (`None`: not asked yet).
    all_families: Option<bool>,
}

/// What one dump asks for.
#[derive(Clone, Copy)]
enum Dump {
    AllFamilies,
    Family(u8),
}

/// The kernel hands out at most this much per `recv` of a dump.
const RECV_BUF: usize = 64 * 1024;

impl Diag {
    pub fn open() -> io::Result<Diag> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Diag {
            fd,
            seq: 0,
            buf: vec![0u8; RECV_BUF],
            batch: Vec::new(),
            all_families: None,
        })
    }

    /// A sock_diag socket in the network namespace `ns` (a `/proc/<pid>/ns/net`
    /// path): it lists that namespace's sockets. A netlink socket belongs to the
    /// namespace it was made in, so a short-lived thread enters `ns` (setns, which
    /// needs CAP_SYS_ADMIN) only to make it; netta's own threads stay where they are.
    pub fn open_in(ns: &std::path::Path) -> io::Result<Diag> {
        let file = std::fs::File::open(ns)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on this thread only, with a namespace fd we hold.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Diag::open()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("setns thread panicked")))
        })
    }

    /// The TCP sockets (IPv4 and IPv6) `q` asks for, each through `conv`
    /// onto `out` as its datagram is read (no copy of a whole dump to convert).
    pub fn tcp<T>(
        &mut self,
        q: Query,
        out: &mut Vec<T>,
        conv: fn(DiagSocket) -> Option<T>,
    ) -> io::Result<()> {
        if self.all_families != Some(false) {
            let before = out.len();
            match self.dump(Dump::AllFamilies, q, out, conv) {
                Ok(()) => {
                    self.all_families = Some(true);
                    return Ok(());
                }
                // Refused the first time: this kernel has no compatibility request.
                Err(_) if self.all_families.is_none() => {
                    out.truncate(before);
                    self.all_families = Some(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.dump(Dump::Family(libc::AF_INET as u8), q, out, conv)?;
        self.dump(Dump::Family(libc::AF_INET6 as u8), q, out, conv)
    }

    fn dump<T>(
        &mut self,
        what: Dump,
        q: Query,
        out: &mut Vec<T>,
        conv: fn(DiagSocket) -> Option<T>,
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let (v2, compat);
        let req: &[u8] = match what {
            Dump::AllFamilies => {
                compat = sock_diag::request_all_families(q, self.seq);
                &compat
            }
            Dump::Family(family) => {
                v2 = sock_diag::request(family, q, self.seq);
                &v2
            }
        };
        // SAFETY: sockaddr_nl zeroed is the kernel as destination.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address of the stated lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: reads into our own buffer of the stated length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(());
            }
            let p = sock_diag::parse(&self.buf[..n as usize], &mut self.batch);
            out.extend(self.batch.drain(..).filter_map(conv));
            if let Some(errno) = p.error {
                // A kernel without IPv6 answers the AF_INET6 dump with an error.
                let no_ipv6 = matches!(what, Dump::Family(f) if f == libc::AF_INET6 as u8);
                return if errno == 0 || no_ipv6 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                };
            }
            if p.done {
                return Ok(());
            }
        }
    }
}
