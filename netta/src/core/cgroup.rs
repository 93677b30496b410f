//! What a cgroup path says about the workload in it: the container id that
//! docker, containerd (Kubernetes), CRI-O and podman put in it (64 hex digits),
//! and for Kubernetes the pod's UID (`kubepods…/pod<uid>…`). Pure: the paths come
//! from `/proc/<pid>/cgroup` or from walking the cgroup file system (`host::containers`).
use std::sync::Arc;

use crate::core::sanitize::Text;

/// A container, and the pod it belongs to when Kubernetes runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Container {
    /// `container.id` (lower-case hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
}

/// A Kubernetes pod (`orchestrator.*`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    /// The pod's UID (`orchestrator.resource.id`).
    pub uid: Arc<str>,
    /// Name and namespace, from `/var/log/pods/<namespace>_<name>_<uid>` where present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Text>,
}

impl Container {
    pub fn is_empty(&self) -> bool {
        self.id.is_none() && self.pod.is_none()
    }
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Prefixes runtimes put before the id in a cgroup directory's name.
const RUNTIME_PREFIXES: [&str; 5] = [
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
    "containerd-",
];

/// A pod UID: 8-4-4-4-12 hex digits (`-`, or `_` in systemd slice names).
fn pod_uid(s: &str) -> Option<String> {
    let uid: String = s.chars().map(|c| if c == '_' { '-' } else { c }).collect();
    let groups: Vec<&str> = uid.split('-').collect();
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| uid.to_ascii_lowercase())
}

/// The container and pod of one cgroup path (`/kubepods.slice/…/cri-containerd-<id>.scope`);
/// `None` when it names neither (a host process).
pub fn parse_path(path: &str) -> Option<Container> {
    let mut c = Container::default();
    let mut kube = false;
    for part in path.split('/') {
        if part.starts_with("kubepods") {
            kube = true;
        }
        let name = part
            .strip_suffix(".scope")
            .or_else(|| part.strip_suffix(".slice"))
            .unwrap_or(part);
        if kube && c.pod.is_none() {
            // systemd: kubepods-besteffort-pod<uid>.slice; cgroupfs: pod<uid>.
            // (A UID is hex, so the last "pod" is the one before it.)
            let uid = name.rfind("pod").and_then(|at| pod_uid(&name[at + 3..]));
            if let Some(uid) = uid {
                c.pod = Some(Pod {
                    uid: uid.into(),
                    name: None,
                    namespace: None,
                });
                continue;
            }
        }
        let id = RUNTIME_PREFIXES
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        if is_id(id) {
            c.id = Some(id.to_ascii_lowercase().into());
        }
    }
    (!c.is_empty()).then_some(c)
}

/// The cgroup v2 path in a `/proc/<pid>/cgroup` file (the `0::` line), else the
/// first v1 path that names a container.
pub fn path_of_proc_cgroup(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let mut v1 = None;
    for line in text.lines() {
        // hierarchy-id:controllers:path
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(_), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" {
            return Some(path.to_string());
        }
        if v1.is_none() && parse_path(path).is_some() {
            v1 = Some(path.to_string());
        }
    }
    v1
}

/// A `/var/log/pods` directory name: `<namespace>_<name>_<uid>`.
pub fn parse_pod_log_dir(name: &str) -> Option<(String, Pod)> {
    let mut it = name.rsplitn(3, '_');
    let (uid, pod, ns) = (it.next()?, it.next()?, it.next()?);
    let uid = pod_uid(uid)?;
    if pod.is_empty() || ns.is_empty() {
        return None;
    }
    Some((
        uid.clone(),
        Pod {
            uid: uid.into(),
            name: Some(Text::escaped(pod.as_bytes(), 253)),
            namespace: Some(Text::escaped(ns.as_bytes(), 63)),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a8b5c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809102";
    const UID: &str = "6a1b3c4d-1111-2222-3333-444455556666";

    #[test]
    fn finds_ids_of_common_runtimes() {
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/docker/{ID}"),
        ] {
            let c = parse_path(&path).unwrap();
            assert_eq!(c.id.as_deref(), Some(ID), "{path}");
            assert!(c.pod.is_none());
        }
    }

    #[test]
    fn kubepods_paths_give_the_pod_uid() {
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
            UID.replace('-', "_")
        );
        let guaranteed = format!(
            "/kubepods.slice/kubepods-pod{}.slice",
            UID.replace('-', "_")
        );
        let cgroupfs = format!("/kubepods/burstable/pod{UID}/{ID}");
        let crio = format!("/kubepods/pod{UID}/crio-{ID}.scope");
        for (path, id) in [
            (&systemd, Some(ID)),
            (&guaranteed, None),
            (&cgroupfs, Some(ID)),
            (&crio, Some(ID)),
        ] {
            let c = parse_path(path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(c.pod.as_ref().map(|p| &*p.uid), Some(UID), "{path}");
            assert_eq!(c.id.as_deref(), id, "{path}");
        }
        // "pod" outside kubepods is nobody's pod.
        assert_eq!(parse_path(&format!("/user.slice/pod{UID}")), None);
    }

    #[test]
    fn host_processes_and_garbage_have_none() {
        for path in [
            "/user.slice/user-0.slice/session-1.scope",
            "/init.scope",
            "",
            "/",
            "/docker-1234.scope",
            "/kubepods.slice/kubepods-podnothex.slice",
        ] {
            assert_eq!(parse_path(path), None, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_files_give_the_unified_path() {
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(
            path_of_proc_cgroup(v2.as_bytes()).as_deref(),
            Some(&*format!("/system.slice/docker-{ID}.scope"))
        );
        let v1 = format!("12:memory:/docker/{ID}\n11:cpu:/docker/{ID}\n");
        assert_eq!(
            path_of_proc_cgroup(v1.as_bytes()).as_deref(),
            Some(&*format!("/docker/{ID}"))
        );
        assert_eq!(path_of_proc_cgroup(b"garbage\n\xff:x"), None);
    }

    #[test]
    fn pod_log_dirs_name_pods() {
        let (uid, pod) = parse_pod_log_dir(&format!("kube-system_coredns-abc_{UID}")).unwrap();
        assert_eq!(uid, UID);
        assert_eq!(pod.name.unwrap().as_str(), "coredns-abc");
        assert_eq!(pod.namespace.unwrap().as_str(), "kube-system");
        assert!(parse_pod_log_dir("no_uid_here").is_none());
        assert!(parse_pod_log_dir(&format!("_x_{UID}")).is_none());
    }
}
