//! What the agent knows of the owners of sockets: the process cache
//! (`core::process`), fed by the kernel's process records and seeded from /proc
//! for older processes, and the names the host gives (user names, and the
//! cgroup map: cgroup id → container and pod), each read once and cached here.
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::core::cgroup::{self, Container};
use crate::core::event::{ConnEvent, Who};
use crate::core::pipeline::{self, Resolve};
use crate::core::process::{self, ProcEvent, ProcessCache};
use crate::core::sanitize::Text;
use crate::host::Host;

/// A cgroup not in the map is looked for again at most this often (each look
/// walks the cgroup file system).
const RESCAN: Duration = Duration::from_secs(1);
/// Most user names remembered (uids are few; past it the cache starts over).
const MAX_USERS: usize = 4096;
/// Most cgroups remembered (a walk that finds more keeps only the containers).
const MAX_CGROUPS: usize = 65_536;

/// Names the host gives, cached.
pub struct Names {
    host: Arc<dyn Host>,
    users: FxHashMap<u32, Option<Text>>,
    cgroups: FxHashMap<u64, Option<Arc<Container>>>,
    scanned: Option<Instant>,
}

impl Names {
    fn new(host: Arc<dyn Host>) -> Names {
        Names {
            host,
            users: FxHashMap::default(),
            cgroups: FxHashMap::default(),
            scanned: None,
        }
    }

    /// Walks the cgroups again: each id's container and pod, pods named from the
    /// kubelet's log directories.
    fn scan(&mut self) {
        self.scanned = Some(Instant::now());
        let walked = self.host.cgroups();
        let mut pods: Option<FxHashMap<String, cgroup::Pod>> = None;
        let keep_all = walked.len() <= MAX_CGROUPS;
        self.cgroups.clear();
        for (id, path) in walked {
            let c = cgroup::parse_path(&path).map(|mut c| {
                if let Some(pod) = c.pod.as_mut() {
                    let named = pods.get_or_insert_with(|| self.host.pods().into_iter().collect());
                    if let Some(n) = named.get(&*pod.uid) {
                        *pod = n.clone();
                    }
                }
                Arc::new(c)
            });
            if keep_all || c.is_some() {
                self.cgroups.insert(id, c);
            }
        }
    }
}

impl Resolve for Names {
    fn user(&mut self, uid: u32) -> Option<Text> {
        if let Some(n) = self.users.get(&uid) {
            return n.clone();
        }
        if self.users.len() >= MAX_USERS {
            self.users.clear();
        }
        let n = self.host.user_name(uid);
        self.users.insert(uid, n.clone());
        n
    }

    fn container(&mut self, id: u64) -> Option<Arc<Container>> {
        if id == 0 {
            return None;
        }
        if let Some(c) = self.cgroups.get(&id) {
            return c.clone();
        }
        // A cgroup made since the last walk (a new container): walk again.
        if self.scanned.is_none_or(|t| t.elapsed() >= RESCAN) {
            self.scan();
            return self.cgroups.get(&id).cloned().flatten();
        }
        None
    }
}

/// The process cache and the names, behind one lock in `Shared`.
pub struct Owners {
    pub procs: ProcessCache,
    pub names: Names,
    /// Seed and look up processes with their arguments (`--process-args`).
    args: bool,
    /// `NETTA_NO_IDENTITY`: records carry no owner ids and nothing is looked up.
    off: bool,
}

impl Owners {
    pub fn new(host: Arc<dyn Host>, limits: process::Limits, args: bool) -> Owners {
        let idn = crate::host::identity::get();
        let host_id = idn.host_id.as_deref().unwrap_or(&idn.hostname);
        Owners {
            procs: ProcessCache::new(limits, host_id, host.tick_ns()),
            names: Names::new(host),
            args,
            off: crate::host::probe::identity_off_by_env(),
        }
    }

    /// Adds every process /proc shows that the cache does not know.
    pub fn seed(&mut self, seeds: &[process::Seed]) {
        for s in seeds {
            self.procs.seed(s);
        }
    }

    pub fn args(&self) -> bool {
        self.args
    }

    /// The batch's owners (see `core::pipeline::identify`).
    pub fn identify(&mut self, batch: &mut [ConnEvent], procs: &[(usize, ProcEvent)]) {
        if self.off {
            // The kernel left the ids 0, which would read as root.
            for ev in batch {
                ev.who.uid = None;
            }
            return;
        }
        pipeline::identify(&mut self.procs, &mut self.names, batch, procs);
    }

    /// What is known of `pid` now (a row /proc gave an owner): its process, user
    /// and container. `None` when the cache does not know it.
    pub fn who_now(&mut self, pid: u32, now: u64) -> Option<Who> {
        let p = self.procs.lookup(pid, now, now)?;
        let mut who = Who {
            uid: Some(p.uid),
            cgroup: p.cgroup,
            ..Who::default()
        };
        who.user = self.names.user(p.uid);
        who.container = self.names.container(p.cgroup);
        who.process = Some(p);
        Some(who)
    }
}
