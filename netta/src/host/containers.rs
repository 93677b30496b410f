//! Container ids for processes: read from /proc/<pid>/cgroup, where docker,
//! containerd (Kubernetes), CRI-O and podman put a 64-hex id in the cgroup path.
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id in a `/proc/<pid>/cgroup` file, if any.
pub fn parse_cgroup<R: BufRead>(reader: R) -> Option<String> {
    for line in reader.lines().map_while(Result::ok) {
        // hierarchy-id:controllers:path
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        for part in path.rsplit('/') {
            let part = part.strip_suffix(".scope").unwrap_or(part);
            let id = [
                "docker-",
                "cri-containerd-",
                "crio-",
                "libpod-",
                "containerd-",
            ]
            .iter()
            .find_map(|p| part.strip_prefix(p))
            .unwrap_or(part);
            if is_id(id) {
                return Some(id.to_ascii_lowercase());
            }
        }
    }
    None
}

type Entry = (Instant, Option<Arc<str>>);

const TTL: Duration = Duration::from_secs(30);
const MAX: usize = 4096;

/// Container ids by pid, for one consumer (a sink, the events stream): recently
/// looked-up pids are cached, and expire because pids are reused.
pub struct Containers {
    cache: FxHashMap<u32, Entry>,
    /// `None`: never look (tests, and hosts without cgroups).
    proc_root: Option<PathBuf>,
}

impl Containers {
    /// Reads `/proc/<pid>/cgroup`.
    pub fn new() -> Containers {
        Containers {
            cache: FxHashMap::default(),
            proc_root: Some(PathBuf::from("/proc")),
        }
    }

    /// Knows no containers.
    pub fn none() -> Containers {
        Containers {
            cache: FxHashMap::default(),
            proc_root: None,
        }
    }

    /// The container id of `pid`, cached; `None` for host processes and gone pids.
    pub fn of(&mut self, pid: u32) -> Option<Arc<str>> {
        let root = self.proc_root.as_ref()?;
        if pid == 0 {
            return None;
        }
        let now = Instant::now();
        if let Some((t, id)) = self.cache.get(&pid) {
            if now.duration_since(*t) < TTL {
                return id.clone();
            }
        }
        let id: Option<Arc<str>> = std::fs::File::open(root.join(pid.to_string()).join("cgroup"))
            .ok()
            .and_then(|f| parse_cgroup(std::io::BufReader::new(f)))
            .map(Arc::from);
        if self.cache.len() >= MAX {
            self.cache.clear();
        }
        self.cache.insert(pid, (now, id.clone()));
        id
    }
}

impl Default for Containers {
    fn default() -> Self {
        Containers::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a8b5c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809102";

    #[test]
    fn finds_ids_of_common_runtimes() {
        for text in [
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("0::/kubepods/burstable/pod77/crio-{ID}.scope\n"),
            format!("12:memory:/docker/{ID}\n11:cpu:/docker/{ID}\n"),
        ] {
            assert_eq!(parse_cgroup(text.as_bytes()).as_deref(), Some(ID), "{text}");
        }
    }

    #[test]
    fn host_processes_and_garbage_have_none() {
        for text in [
            "0::/user.slice/user-0.slice/session-1.scope\n",
            "0::/init.scope\n",
            "",
            "garbage without colons\n",
            "0::/docker-1234.scope\n",
        ] {
            assert_eq!(parse_cgroup(text.as_bytes()), None, "{text}");
        }
        assert!(parse_cgroup(&b"\xff\xfe:x:/\n"[..]).is_none());
        assert_eq!(Containers::new().of(std::process::id()), None);
        assert_eq!(Containers::none().of(1), None);
    }
}
