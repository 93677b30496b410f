//! The root of the cgroup v2 hierarchy, where the kernel program's cgroup programs
//! attach (every socket belongs to a v2 cgroup, whatever v1 hierarchies a machine
//! also mounts): found in /proc/self/mountinfo, mounted when missing, as tracefs is.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::host::containers;

/// Where a missing hierarchy is mounted: the first that is a directory with nothing
/// mounted on it (`unified/` is the hybrid layout's, under v1's tmpfs).
const MOUNT_POINTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];

/// The cgroup v2 root as this process sees it, mounting one when none is.
pub fn ensure_mounted() -> Result<PathBuf, String> {
    if let Some(m) = containers::cgroup2_mount(Path::new("/proc/self/mountinfo")) {
        return Ok(PathBuf::from(m));
    }
    let Some(target) = MOUNT_POINTS.into_iter().find(|p| is_free_dir(Path::new(p))) else {
        return Err(format!(
            "no cgroup v2 hierarchy is mounted, and {} are taken",
            MOUNT_POINTS.join(" and ")
        ));
    };
    super::mount_pseudo_fs("cgroup2", target).map_err(|e| {
        format!("no cgroup v2 hierarchy is mounted, and mounting one at {target} failed ({e})")
    })?;
    log::info!("mounted the cgroup v2 hierarchy at {target}");
    Ok(PathBuf::from(target))
}

/// A directory that is not itself a mount point (on its parent's file system).
fn is_free_dir(p: &Path) -> bool {
    let (Ok(m), Some(Ok(parent))) = (p.metadata(), p.parent().map(Path::metadata)) else {
        return false;
    };
    m.is_dir() && m.dev() == parent.dev()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_point_is_not_free() {
        // /proc is a mount point on every Linux machine; a directory inside one is not.
        assert!(!is_free_dir(Path::new("/proc")));
        assert!(!is_free_dir(Path::new("/nonexistent-netta")));
        let dir = std::env::temp_dir().join(format!("netta-cgroupfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(is_free_dir(&dir));
        std::fs::remove_dir(&dir).unwrap();
    }
}
