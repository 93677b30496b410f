//! What a process's /proc files and cgroups say (`/proc/<pid>/status`, `stat`,
//! `cmdline`, `/proc/<pid>/cgroup`, cgroup paths, pod log directories): hostile
//! text (a process names itself) parses to a value or to nothing, never a panic,
//! and what is kept is escaped and bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use netta::api::{cgroup, proc_pid, process};

fuzz_target!(|data: &[u8]| {
    let _ = proc_pid::parse_status(data);
    let _ = proc_pid::parse_stat_start(data);
    let args = process::split_args(&data[..data.len().min(process::ARGS_MAX)]);
    for a in args.iter() {
        assert!(!a.as_str().chars().any(|c| c.is_control()), "{a:?}");
    }
    if let Some(path) = cgroup::path_of_proc_cgroup(data) {
        let _ = cgroup::parse_path(&path);
    }
    let text = String::from_utf8_lossy(data);
    if let Some(c) = cgroup::parse_path(&text) {
        if let Some(id) = &c.id {
            assert_eq!(id.len(), 64);
        }
    }
    if let Some((uid, pod)) = cgroup::parse_pod_log_dir(&text) {
        assert_eq!(uid.len(), 36);
        assert_eq!(&*pod.uid, uid.as_str());
    }
});
