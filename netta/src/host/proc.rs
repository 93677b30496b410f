//! Reading /proc: the socket tables under `net/` (parsed by `core::proc_net`) and
//! socket-inode owners (like `ss -p`).
use std::collections::hash_map::Entry;
use std::fs;
use std::io::{self, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustc_hash::FxHashMap;

use crate::core::event::Proto;
use crate::core::proc_net::{parse_dec, parse_into, Owner, ParseError, ProcSocket};
use crate::core::sanitize::Comm;

/// Maps socket inode -> owning process by walking `<proc_root>/<pid>/fd/*`
/// symlinks (`socket:[12345]`), like `ss -p`. Pids are walked in ascending order
/// and the first (lowest) pid holding a socket wins. Processes that vanish or deny
/// access mid-walk are skipped.
pub fn socket_owners(proc_root: &Path) -> FxHashMap<u64, Owner> {
    // std::fs rather than the procfs crate: its fd iterator costs three syscalls
    // per fd (openat, readlinkat, statat) where one readlink is enough, and it
    // has no raw-bytes comm.
    let mut owners = FxHashMap::default();
    let Ok(dir) = fs::read_dir(proc_root) else {
        return owners;
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| parse_dec(e.ok()?.file_name().as_bytes()))
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let pid_dir = proc_root.join(pid.to_string());
        let Ok(fds) = fs::read_dir(pid_dir.join("fd")) else {
            continue;
        };
        let mut comm = None;
        for entry in fds.flatten() {
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str().as_bytes()) else {
                continue;
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
        }
    }
    owners
}

fn socket_inode(link: &[u8]) -> Option<u64> {
    parse_dec(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

/// All sockets in the four tables, plus the lines that did not parse.
#[derive(Debug, Default)]
pub struct Sockets {
    pub sockets: Vec<ProcSocket>,
    /// (table name such as `"tcp6"`, error)
    pub errors: Vec<(String, ParseError)>,
}

const TABLES: [(&str, Proto); 4] = [
    ("tcp", Proto::Tcp),
    ("tcp6", Proto::Tcp),
    ("udp", Proto::Udp),
    ("udp6", Proto::Udp),
];

/// Reads `<proc_root>/net/{tcp,tcp6,udp,udp6}`. A missing table (IPv6 disabled,
/// no UDP) is skipped; other IO errors are returned.
pub fn read_sockets(proc_root: &Path) -> io::Result<Sockets> {
    let mut snap = Sockets::default();
    let mut errors = Vec::new();
    let net = proc_root.join("net");
    for (name, proto) in TABLES {
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
    Ok(snap)
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
        let snap = read_sockets(root.path()).unwrap();
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
        let snap = read_sockets(root.path()).unwrap();
        assert_eq!(snap.sockets.len(), 3);
        assert_eq!(snap.sockets[2].proto, Proto::Udp);

        // An unreadable table is an IO error, not a parse error.
        fs::create_dir(root.path().join("net/udp6")).unwrap();
        assert!(read_sockets(root.path()).is_err());

        // No tables at all: nothing to report.
        let empty = tempfile::tempdir().unwrap();
        let snap = read_sockets(empty.path()).unwrap();
        assert!(snap.sockets.is_empty() && snap.errors.is_empty());
    }

    #[test]
    fn real_proc() {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").ok();
        let snap = read_sockets(Path::new("/proc")).unwrap();
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
