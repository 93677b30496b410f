//! Reading /proc: the socket tables under `<pid>/net/` of every network
//! namespace (parsed by `core::proc_net`), socket-inode owners (like `ss -p`),
//! and the processes that existed before netta (`core::proc_pid`), which seed the
//! process cache.
use std::collections::hash_map::Entry;
use std::fs;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::core::event::Proto;
use crate::core::proc_net::{parse_dec, parse_into, Owner, ParseError, ProcSocket};
use crate::core::proc_pid::{parse_stat_start, parse_status};
use crate::core::process::{Seed, ARGS_MAX};
use crate::core::sanitize::Comm;
use crate::host::containers;

/// The pids under `proc_root`, ascending.
fn pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| parse_dec(e.ok()?.file_name().as_bytes()))
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Maps socket inode -> owning process by walking `<proc_root>/<pid>/fd/*`
/// symlinks (`socket:[12345]`), like `ss -p`. The lowest pid holding a socket
/// wins. Processes that vanish or deny access mid-walk are skipped.
pub fn socket_owners(proc_root: &Path) -> FxHashMap<u64, Owner> {
    let pids = pids(proc_root);
    // One process may hold tens of thousands of fds: threads take the next pid
    // as they finish one, not a fixed share.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let parts: Vec<FxHashMap<u64, Owner>> = std::thread::scope(|scope| {
        let walkers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut owners = FxHashMap::default();
                    while let Some(&pid) =
                        pids.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        owners_of(proc_root, pid, &mut owners);
                    }
                    owners
                })
            })
            .collect();
        walkers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let mut owners = FxHashMap::default();
    owners.reserve(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        for (inode, o) in part {
            owners
                .entry(inode)
                .and_modify(|held: &mut Owner| {
                    if o.pid < held.pid {
                        *held = o;
                    }
                })
                .or_insert(o);
        }
    }
    owners
}

/// Adds the sockets `pid` holds to `owners`, each the first time it is seen.
fn owners_of(proc_root: &Path, pid: u32, owners: &mut FxHashMap<u64, Owner>) {
    let pid_dir = proc_root.join(pid.to_string());
    let mut comm = None;
    // One readlinkat per fd, relative to the open fd directory: no path to build
    // and walk for each (the procfs crate costs three syscalls per fd).
    fd_links(&pid_dir.join("fd"), |target| {
        let Some(inode) = socket_inode(target) else {
            return;
        };
        if let Entry::Vacant(slot) = owners.entry(inode) {
            // Read lazily: most processes own no sockets, or only ones seen already.
            let comm = *comm.get_or_insert_with(|| {
                fs::read(pid_dir.join("comm"))
                    .map(|raw| Comm::from_bytes(&raw))
                    .unwrap_or(Comm::EMPTY)
            });
            slot.insert(Owner { pid, comm });
        }
    });
}

/// Calls `f` with the target of every symlink in directory `dir` (cut to 64
/// bytes, plenty for `socket:[N]`). A directory that cannot be read gives none.
fn fd_links(dir: &Path, mut f: impl FnMut(&[u8])) {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: opendir on a NUL-terminated path; checked for NULL.
    let d = unsafe { libc::opendir(path.as_ptr()) };
    if d.is_null() {
        return;
    }
    // SAFETY: `d` is an open directory stream until the closedir below.
    let fd = unsafe { libc::dirfd(d) };
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: as above; the entry is valid until the next readdir.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        // SAFETY: readlinkat into our buffer of the stated length.
        let n = unsafe { libc::readlinkat(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            f(&buf[..n as usize]);
        }
    }
    // SAFETY: closes the stream opened above, once.
    unsafe { libc::closedir(d) };
}

fn socket_inode(link: &[u8]) -> Option<u64> {
    parse_dec(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

/// All sockets in the four tables of every namespace read, plus the lines that
/// did not parse.
#[derive(Debug, Default)]
pub struct Sockets {
    pub sockets: Vec<ProcSocket>,
    /// (table name such as `"tcp6"`, error)
    pub errors: Vec<(String, ParseError)>,
    /// The network namespaces whose tables were read: rows of others are not
    /// judged by this read (their processes went away while it ran).
    pub netns: Vec<u32>,
}

const TABLES: [(&str, Proto); 4] = [
    ("tcp", Proto::Tcp),
    ("tcp6", Proto::Tcp),
    ("udp", Proto::Udp),
    ("udp6", Proto::Udp),
];

/// Every network namespace a process is in: its inode, and the pids in it
/// (lowest first), any of which can show its tables.
pub fn net_namespaces(proc_root: &Path) -> Vec<(u32, Vec<u32>)> {
    let mut by: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for pid in pids(proc_root) {
        let path = proc_root.join(pid.to_string()).join("ns/net");
        // A namespace inode is 32 bits (`ns.inum`).
        if let Ok(m) = fs::metadata(path) {
            let pids = by.entry(m.ino() as u32).or_default();
            // A few are enough: the next one serves if one exits mid-read.
            if pids.len() < 4 {
                pids.push(pid);
            }
        }
    }
    let mut all: Vec<(u32, Vec<u32>)> = by.into_iter().collect();
    all.sort_unstable();
    all
}

/// Appends the TCP sockets of a network namespace another way than /proc text
/// (sock_diag): netta's own (`None`), or the one process `Some(pid)` is in.
pub type NsTcp<'a> = &'a mut dyn FnMut(Option<u32>, &mut Vec<ProcSocket>) -> io::Result<()>;

/// Reads `<pid>/net/{tcp,tcp6,udp,udp6}` for one process in each network
/// namespace (`/proc/net` is only netta's own), so a container's connections are
/// seen too, each socket tagged with its namespace; the TCP sockets (on a busy
/// host, tens of thousands of TIME_WAIT lines) come from `ns_tcp` where it works.
/// A namespace whose processes all went away mid-read is left out of `netns`.
/// Without per-process namespaces (a fake /proc), `<proc_root>/net` is read as
/// namespace 0.
pub fn read_sockets(proc_root: &Path, mut ns_tcp: Option<NsTcp>) -> io::Result<Sockets> {
    let mut snap = Sockets::default();
    let namespaces = net_namespaces(proc_root);
    if namespaces.is_empty() {
        read_tables(&proc_root.join("net"), 0, true, &mut snap)?;
        snap.netns.push(0);
        return Ok(snap);
    }
    let own = fs::metadata(proc_root.join("self/ns/net")).map_or(0, |m| m.ino() as u32);
    for (ns, pids) in namespaces {
        // The namespace's TCP sockets through `ns_tcp`; text if it fails.
        let mut tcp_text = true;
        let whose = if ns == own {
            Some(None)
        } else {
            pids.first().map(|&pid| Some(pid))
        };
        if let (Some(whose), Some(read)) = (whose, ns_tcp.as_mut()) {
            let at = snap.sockets.len();
            match read(whose, &mut snap.sockets) {
                Ok(()) => {
                    tcp_text = false;
                    for s in &mut snap.sockets[at..] {
                        s.netns = ns;
                    }
                }
                Err(e) => {
                    snap.sockets.truncate(at);
                    log::debug!("network namespace {ns}: sock_diag: {e}; reading its tcp text");
                }
            }
        }
        let mut last = None;
        for pid in pids {
            let at = snap.sockets.len();
            let errors = snap.errors.len();
            let net = proc_root.join(pid.to_string()).join("net");
            match read_tables(&net, ns, tcp_text, &mut snap) {
                Ok(()) => {
                    snap.netns.push(ns);
                    last = None;
                    break;
                }
                Err(e) => {
                    // Gone mid-read: drop what it gave and ask the next process.
                    snap.sockets.truncate(at);
                    snap.errors.truncate(errors);
                    last = Some(e);
                }
            }
        }
        if let Some(e) = last {
            log::debug!("network namespace {ns}: {e}");
        }
    }
    Ok(snap)
}

/// Reads the four tables in `net` (one namespace's), or only the UDP ones
/// without `tcp`, onto `snap`. A missing table (IPv6 disabled, no UDP) is
/// skipped; other IO errors are returned.
fn read_tables(net: &Path, netns: u32, tcp: bool, snap: &mut Sockets) -> io::Result<()> {
    let mut errors = Vec::new();
    let first = snap.sockets.len();
    for (name, proto) in TABLES {
        if !tcp && proto == Proto::Tcp {
            continue;
        }
        let path = net.join(name);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        // 64 KiB reads: far fewer syscalls on tables with tens of thousands of rows.
        let reader = BufReader::with_capacity(64 * 1024, file);
        parse_into(reader, proto, &mut snap.sockets, &mut errors).map_err(|(line, e)| {
            io::Error::new(e.kind(), format!("{}: line {line}: {e}", path.display()))
        })?;
        snap.errors
            .extend(errors.drain(..).map(|e| (name.to_string(), e)));
    }
    for s in &mut snap.sockets[first..] {
        s.netns = netns;
    }
    Ok(())
}

/// `/proc`'s clock tick in ns (`USER_HZ`: start times count in it).
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// At most `max` bytes of a file (one more tells the caller it was longer).
fn read_bounded(path: &Path, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// One process as the process cache is seeded with it; `None` for kernel
/// threads and processes gone or unreadable.
pub fn process(proc_root: &Path, cgroup_root: &Path, pid: u32, args: bool) -> Option<Seed> {
    let dir = proc_root.join(pid.to_string());
    let status = parse_status(&read_bounded(&dir.join("status"), 16 * 1024).ok()?)?;
    // kthreadd and its children have no program.
    if pid == 2 || status.ppid == 2 || status.tgid != pid {
        return None;
    }
    let start = parse_stat_start(&read_bounded(&dir.join("stat"), 4096).ok()?)?;
    let executable = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.into_os_string().into_vec());
    let args = if args {
        read_bounded(&dir.join("cmdline"), ARGS_MAX).ok()
    } else {
        None
    };
    Some(Seed {
        pid,
        ppid: status.ppid,
        start_ns: start.saturating_mul(tick_ns()),
        uid: status.uid,
        cgroup: containers::id_of_pid(proc_root, cgroup_root, pid).unwrap_or(0),
        executable,
        args,
    })
}

/// Every process now, for seeding the process cache.
pub fn processes(proc_root: &Path, cgroup_root: &Path, args: bool) -> Vec<Seed> {
    pids(proc_root)
        .into_iter()
        .filter_map(|pid| process(proc_root, cgroup_root, pid, args))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::State;
    use crate::core::proc_net::tests::{sa, TCP_HEADER, TCP_LISTEN, TCP_TIME_WAIT};
    use std::net::SocketAddr;

    fn fake_proc() -> tempfile::TempDir {
        use std::os::unix::fs::symlink;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for (pid, comm) in [("123", "nginx\n"), ("200", "curl\n")] {
            fs::create_dir_all(r.join(pid).join("fd")).unwrap();
            fs::write(r.join(pid).join("comm"), comm).unwrap();
        }
        symlink("socket:[555]", r.join("123/fd/3")).unwrap();
        symlink("/dev/null", r.join("123/fd/0")).unwrap();
        symlink("pipe:[556]", r.join("123/fd/1")).unwrap();
        // Shared with a higher pid: the lower pid wins.
        symlink("socket:[555]", r.join("200/fd/7")).unwrap();
        symlink("socket:[777]", r.join("200/fd/8")).unwrap();
        // A process that exited: no fd directory.
        fs::create_dir_all(r.join("300")).unwrap();
        // A process whose comm is gone: still listed, without a name.
        fs::create_dir_all(r.join("400/fd")).unwrap();
        symlink("socket:[888]", r.join("400/fd/3")).unwrap();
        // Non-pid entries are ignored.
        symlink("123", r.join("self")).unwrap();
        fs::create_dir_all(r.join("net")).unwrap();
        fs::write(
            r.join("net/tcp"),
            format!(
                "{TCP_HEADER}{}{TCP_TIME_WAIT}   3: bad\n",
                TCP_LISTEN.replace("12345", "555")
            ),
        )
        .unwrap();
        root
    }

    #[test]
    fn socket_owners_fake_proc() {
        let root = fake_proc();
        let owners = socket_owners(root.path());
        let nginx = Owner {
            pid: 123,
            comm: Comm::from_bytes(b"nginx"),
        };
        let curl = Owner {
            pid: 200,
            comm: Comm::from_bytes(b"curl"),
        };
        let gone = Owner {
            pid: 400,
            comm: Comm::EMPTY,
        };
        let mut got: Vec<_> = owners.into_iter().collect();
        got.sort_by_key(|(inode, _)| *inode);
        assert_eq!(got, vec![(555, nginx), (777, curl), (888, gone)]);

        assert!(socket_owners(&root.path().join("missing")).is_empty());
    }

    #[test]
    fn read_sockets_fake_proc() {
        let root = fake_proc();
        let snap = read_sockets(root.path(), None).unwrap();
        let got: Vec<_> = snap
            .sockets
            .iter()
            .map(|s| (s.local, s.state, s.inode))
            .collect();
        assert_eq!(
            got,
            vec![
                (sa("127.0.0.1:8080"), State::Listen, 555),
                (sa("127.0.0.1:40002"), State::TimeWait, 0),
            ]
        );
        assert_eq!(snap.errors.len(), 1);
        assert_eq!(snap.errors[0].0, "tcp");
        assert_eq!(snap.errors[0].1.line, 4);

        // Later tables are appended after earlier ones.
        let udp = "  sl  local_address rem_address   st\n    0: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n";
        fs::write(root.path().join("net/udp"), udp).unwrap();
        let snap = read_sockets(root.path(), None).unwrap();
        assert_eq!(snap.sockets.len(), 3);
        assert_eq!(snap.sockets[2].proto, Proto::Udp);

        // An unreadable table is an IO error, not a parse error.
        fs::create_dir(root.path().join("net/udp6")).unwrap();
        assert!(read_sockets(root.path(), None).is_err());

        // No tables at all: nothing to report.
        let empty = tempfile::tempdir().unwrap();
        let snap = read_sockets(empty.path(), None).unwrap();
        assert!(snap.sockets.is_empty() && snap.errors.is_empty());
    }

    #[test]
    fn real_proc() {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let snap = read_sockets(Path::new("/proc"), None).unwrap();
        assert_eq!(snap.errors, vec![]);
        let owners = socket_owners(Path::new("/proc"));

        // Where the sandbox allows it, our own listener shows up, owned by us.
        if let Some(listener) = listener {
            let port = listener.local_addr().unwrap().port();
            let inode = fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
                .unwrap()
                .ino();
            let found = snap.sockets.iter().find(|s| s.inode == inode).unwrap();
            assert_eq!(
                (found.local, found.state),
                (SocketAddr::from(([127, 0, 0, 1], port)), State::Listen)
            );
            assert_eq!(owners[&inode].pid, std::process::id());
        }
    }
}
