//! Cgroups and pods, read from the machine: the cgroup v2 file system, walked to
//! map cgroup ids (the inode of each directory, what `bpf_get_current_cgroup_id`
//! returns) to paths, whose names say the container and the pod
//! (`core::cgroup`), and `/var/log/pods`, whose directory names name the pods.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::core::cgroup::{self, Pod};

/// Most cgroup directories walked (a bound on the walk, not a limit anyone meets).
const MAX_DIRS: usize = 200_000;
/// Deepest directory walked below the root.
const MAX_DEPTH: usize = 32;

/// Where the host's cgroup v2 hierarchy is: as init sees it, through
/// `/proc/1/root` (in a container with the host's pids, that is the node's, whatever
/// cgroup namespace the container has), else as this process sees it, else
/// `/sys/fs/cgroup`.
pub fn cgroup2_root(proc_root: &Path) -> PathBuf {
    if let Some(m) = cgroup2_mount(&proc_root.join("1/mountinfo")) {
        let via_init = proc_root.join("1/root").join(m.trim_start_matches('/'));
        if via_init.join("cgroup.procs").exists() {
            return via_init;
        }
    }
    cgroup2_mount(&proc_root.join("self/mountinfo"))
        .map_or_else(|| PathBuf::from("/sys/fs/cgroup"), PathBuf::from)
}

/// The kubelet's pod log directories, as init sees them (see [`cgroup2_root`]).
pub fn pods_root(proc_root: &Path) -> PathBuf {
    let via_init = proc_root.join("1/root/var/log/pods");
    if via_init.is_dir() {
        via_init
    } else {
        PathBuf::from("/var/log/pods")
    }
}

/// The cgroup2 mount point in a mountinfo file.
pub fn cgroup2_mount(mountinfo: &Path) -> Option<String> {
    let info = std::fs::read(mountinfo).ok()?;
    let text = String::from_utf8_lossy(&info);
    for line in text.lines() {
        // id parent major:minor root mount-point options... - fstype source ...
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(mount) = left.split_whitespace().nth(4) {
                return Some(unescape_mount(mount));
            }
        }
    }
    None
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&c, tail)) = rest.split_first() {
        match octal_escape(c, tail) {
            Some(n) => {
                out.push(n);
                rest = &tail[3..];
            }
            None => {
                out.push(c);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte `\ooo` stands for, when `c` is the backslash and `tail` opens with
/// three octal digits (of a byte).
fn octal_escape(c: u8, tail: &[u8]) -> Option<u8> {
    if c != b'\\' {
        return None;
    }
    let digits = std::str::from_utf8(tail.get(..3)?).ok()?;
    u8::from_str_radix(digits, 8).ok()
}

/// Every cgroup directory under `root`, the root too: (id, path from the root,
/// `/` first).
pub fn walk(root: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    if let Ok(m) = std::fs::metadata(root) {
        out.push((m.ino(), "/".to_string()));
    }
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if out.len() >= MAX_DIRS {
                return out;
            }
            // file_type does not follow links; a cgroup directory is never one.
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(meta) = e.metadata() else {
                continue;
            };
            let name = e.file_name();
            let path = format!("{rel}/{}", name.to_string_lossy());
            out.push((meta.ino(), path.clone()));
            if depth + 1 < MAX_DEPTH {
                stack.push((e.path(), path, depth + 1));
            }
        }
    }
    out
}

/// The cgroup id of a path (from `/proc/<pid>/cgroup`) under `root`.
pub fn id_of(root: &Path, path: &str) -> Option<u64> {
    let rel = path.trim_start_matches('/');
    std::fs::metadata(root.join(rel)).ok().map(|m| m.ino())
}

/// The cgroup id of a process, from `/proc/<pid>/cgroup`.
pub fn id_of_pid(proc_root: &Path, root: &Path, pid: u32) -> Option<u64> {
    let text = std::fs::read(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    id_of(root, &cgroup::path_of_proc_cgroup(&text)?)
}

/// Pods named under `/var/log/pods` (`<namespace>_<name>_<uid>`): uid → pod.
pub fn pods(dir: &Path) -> Vec<(String, Pod)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(MAX_DIRS)
        .filter_map(|e| cgroup::parse_pod_log_dir(&e.file_name().to_string_lossy()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_directories_with_their_ids() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("kubepods.slice/pod-a.slice");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), "").unwrap();
        let found = walk(root.path());
        let paths: Vec<&str> = found.iter().map(|(_, p)| p.as_str()).collect();
        assert!(paths.contains(&"/kubepods.slice"), "{paths:?}");
        assert!(paths.contains(&"/kubepods.slice/pod-a.slice"), "{paths:?}");
        assert_eq!(
            paths,
            ["/", "/kubepods.slice", "/kubepods.slice/pod-a.slice"],
            "files are not cgroups"
        );
        let ino = std::fs::metadata(&deep).unwrap().ino();
        assert!(found.contains(&(ino, "/kubepods.slice/pod-a.slice".into())));
        assert_eq!(id_of(root.path(), "/kubepods.slice/pod-a.slice"), Some(ino));
        assert_eq!(id_of(root.path(), "/gone"), None);
        assert!(walk(&root.path().join("missing")).is_empty());
    }

    #[test]
    fn finds_the_unified_hierarchy_and_this_process_in_it() {
        let root = cgroup2_root(Path::new("/proc"));
        if !root.join("cgroup.controllers").exists() {
            eprintln!("no cgroup v2 here");
            return;
        }
        let id = id_of_pid(Path::new("/proc"), &root, std::process::id());
        assert!(id.is_some_and(|i| i != 0));
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/a\\011b\\134"), "/a\tb\\");
        // Not a byte, too short: left as they are.
        assert_eq!(unescape_mount("/a\\777\\04"), "/a\\777\\04");
    }

    #[test]
    fn pod_log_directories_name_pods() {
        let dir = tempfile::tempdir().unwrap();
        let uid = "6a1b3c4d-1111-2222-3333-444455556666";
        std::fs::create_dir(dir.path().join(format!("default_web-0_{uid}"))).unwrap();
        std::fs::create_dir(dir.path().join("not-a-pod")).unwrap();
        let found = pods(dir.path());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, uid);
        assert_eq!(found[0].1.name.as_ref().unwrap().as_str(), "web-0");
        assert!(pods(&dir.path().join("missing")).is_empty());
    }
}
