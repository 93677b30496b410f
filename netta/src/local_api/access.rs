//! Who may use the API: root, the agent's own user, and members of the `netta`
//! group. The socket's mode (0660, group `netta`) enforces this at connect();
//! the server checks the peer's credentials again, so a loosened mode leaks nothing.
use std::ffi::CString;
use std::path::Path;

pub const GROUP: &str = "netta";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub uids: Vec<u32>,
    pub group: Option<u32>,
}

impl Policy {
    /// Root, our own euid, and the `netta` group when it exists.
    pub fn standard() -> Policy {
        // SAFETY: geteuid has no failure mode.
        let me = unsafe { libc::geteuid() };
        let mut uids = vec![0];
        if me != 0 {
            uids.push(me);
        }
        Policy {
            uids,
            group: group_id(GROUP),
        }
    }

    pub fn allows(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        self.uids.contains(&uid) || self.group.is_some_and(|g| g == gid || groups.contains(&g))
    }

    /// The one line a refused client sees.
    pub fn refusal(uid: u32) -> String {
        format!("permission denied: uid {uid} is not root or in group `{GROUP}`")
    }

    /// The one line a reader who tries to change the agent's state sees.
    pub fn refusal_admin(uid: u32) -> String {
        format!("permission denied: only root or the agent's user may change it (uid {uid})")
    }
}

pub fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: a valid C string; getgrnam's result is read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    if g.is_null() {
        None
    } else {
        // SAFETY: non-null result of getgrnam.
        Some(unsafe { (*g).gr_gid })
    }
}

/// Supplementary groups of a process, from `/proc/<pid>/status`.
pub fn groups_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Mode 0660 and group `netta` when it exists (the owner is whoever runs the agent: root).
pub fn secure_socket(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group_id(GROUP) {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: valid C string; uid -1 leaves the owner unchanged.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_own_user_and_group_members_only() {
        let p = Policy {
            uids: vec![0, 1000],
            group: Some(997),
        };
        assert!(p.allows(0, 0, &[]));
        assert!(p.allows(1000, 1000, &[]));
        assert!(p.allows(1001, 997, &[]));
        assert!(p.allows(1001, 100, &[4, 997]));
        assert!(!p.allows(65534, 65534, &[65534]));
        let none = Policy {
            uids: vec![0],
            group: None,
        };
        assert!(!none.allows(1000, 1000, &[1000]));
        assert!(!Policy::refusal(65534).contains('\n'));
    }

    #[test]
    fn our_own_groups_are_read() {
        // SAFETY: getgid has no failure mode.
        let gid = unsafe { libc::getgid() };
        let mine = groups_of(std::process::id());
        // /proc lists supplementary groups; root in a container may have none, but
        // any listed group must be one getgroups also reports.
        let mut buf = vec![0 as libc::gid_t; 256];
        // SAFETY: buffer of the length passed.
        let n = unsafe { libc::getgroups(buf.len() as i32, buf.as_mut_ptr()) };
        buf.truncate(n.max(0) as usize);
        for g in &mine {
            assert!(buf.contains(g) || *g == gid, "{g}");
        }
        assert!(groups_of(u32::MAX).is_empty());
    }
}
