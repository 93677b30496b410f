//! The process cache: what the agent knows of each process beyond pid and comm
//! (executable, arguments, parent, start, a stable id), from the kernel's
//! exec/fork/exit records and, for processes older than netta, from /proc.
//!
//! A process is its pid and its start time (the kernel's `start_boottime`, which
//! an exec keeps): each pid holds a few generations, so a pid reused while the
//! records of its previous owner are still coming in finds the right one. An
//! exited process is kept for a grace period (its connections close after it).
//! Bounded: when full, exited processes go first, then the least recently used.
//! Pure: times are passed in (CLOCK_BOOTTIME ns).
use std::sync::Arc;

use rustc_hash::FxHashMap;
use sha1::{Digest, Sha1};

use crate::core::sanitize::{Comm, Text};

const SEC: u64 = 1_000_000_000;

/// Longest executable path and argument list kept (bytes, before escaping): what
/// the kernel record carries (`netta_ebpf::EXEC_PATH_LEN`, `EXEC_ARGS_LEN`), and
/// what /proc seeding reads.
pub const PATH_MAX: usize = netta_ebpf::EXEC_PATH_LEN;
pub const ARGS_MAX: usize = netta_ebpf::EXEC_ARGS_LEN;

/// What is known of one process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    pub pid: u32,
    /// The parent's pid when it started (or exec'd); 0: unknown.
    pub ppid: u32,
    /// CLOCK_BOOTTIME ns (from /proc: to the clock tick).
    pub start_ns: u64,
    /// Its user and cgroup when it started or exec'd (a connection record has
    /// the owner's own at the time).
    pub uid: u32,
    #[serde(default)]
    pub cgroup: u64,
    /// `process.entity_id`: the same for the process's whole life (an exec keeps
    /// it), different for another process that reuses the pid, and across hosts.
    pub entity_id: Arc<str>,
    /// The program the process runs: the path it was started by (escaped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<Text>,
    /// Its arguments, argv[0] first (only with `--process-args`; escaped, bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Arc<[Text]>>,
    /// The argument list was longer than [`ARGS_MAX`] bytes: the last one is cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_truncated: bool,
}

/// A process record from the kernel, decoded (`netta_ebpf::{ExecEvent, TaskEvent}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEvent {
    pub action: ProcAction,
    pub ts_ns: u64,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub start_ns: u64,
    pub cgroup: u64,
    pub comm: Comm,
    /// Exec: the path given to execve (raw bytes, at most [`PATH_MAX`]).
    pub path: Vec<u8>,
    pub path_truncated: bool,
    /// Exec with `--process-args`: the NUL-separated arguments (raw, at most [`ARGS_MAX`]).
    pub args: Option<Vec<u8>>,
    pub args_truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcAction {
    Exec,
    /// A new process (not a thread): it runs its parent's program until it execs.
    Fork,
    /// The process's main thread exited.
    Exit,
}

/// A process that existed before netta, read from /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub pid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub uid: u32,
    /// Its cgroup v2 id (0: unknown).
    pub cgroup: u64,
    /// `/proc/<pid>/exe` (raw bytes).
    pub executable: Option<Vec<u8>>,
    /// `/proc/<pid>/cmdline` (raw, NUL-separated), when arguments are captured.
    pub args: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most processes kept (all generations of all pids).
    pub max: usize,
    /// How long an exited process stays, for records that come after its exit.
    pub grace_ns: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max: 16_384,
        grace_ns: 60 * SEC,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub execs: u64,
    pub forks: u64,
    pub exits: u64,
    pub seeded: u64,
    /// Pushed out while the cache was full.
    pub evicted: u64,
    /// Lookups of a pid the cache did not know.
    pub misses: u64,
}

/// Generations kept per pid: a reused pid while its old owner's records drain.
const GENERATIONS: usize = 4;

struct Gen {
    info: Arc<Process>,
    /// When it exited (0: alive).
    exited_ns: u64,
    /// Last lookup or change, as a count of operations (least recently used goes first).
    touched: u64,
}

pub struct ProcessCache {
    by_pid: FxHashMap<u32, Vec<Gen>>,
    len: usize,
    limits: Limits,
    /// The id's hash state after the host's id: each process adds pid and start.
    host: Sha1,
    /// ns per clock tick of /proc's start times: starts are compared to the tick.
    tick_ns: u64,
    clock: u64,
    counters: Counters,
}

/// Splits a NUL-separated argument list into escaped arguments.
pub fn split_args(raw: &[u8]) -> Arc<[Text]> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Arc::from(Vec::new());
    }
    raw.split(|b| *b == 0)
        .map(|a| Text::escaped(a, ARGS_MAX))
        .collect::<Vec<_>>()
        .into()
}

impl ProcessCache {
    /// `host_id` makes entity ids differ between hosts; `tick_ns` is the length of
    /// /proc's clock tick (10 ms where `USER_HZ` is 100).
    pub fn new(limits: Limits, host_id: &str, tick_ns: u64) -> ProcessCache {
        let mut host = Sha1::new();
        host.update(b"netta process\0");
        host.update(host_id.as_bytes());
        host.update(b"\0");
        ProcessCache {
            by_pid: FxHashMap::default(),
            len: 0,
            limits,
            host,
            tick_ns: tick_ns.max(1),
            clock: 0,
            counters: Counters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// `process.entity_id` of (pid, start): the start counts to the tick, so the
    /// kernel's exact start and /proc's agree.
    pub fn entity_id(&self, pid: u32, start_ns: u64) -> Arc<str> {
        let mut h = self.host.clone();
        h.update(pid.to_le_bytes());
        h.update((start_ns / self.tick_ns).to_le_bytes());
        let d = h.finalize();
        let mut s = String::with_capacity(32);
        for b in &d[..16] {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
        }
        s.into()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The generation of `pid` that started at `start_ns`.
    fn find_mut(&mut self, pid: u32, start_ns: u64) -> Option<&mut Gen> {
        let tick = self.tick_ns;
        self.by_pid
            .get_mut(&pid)?
            .iter_mut()
            .find(|g| g.info.start_ns / tick == start_ns / tick)
    }

    /// Adds a generation; the oldest of the pid goes when it has too many, and
    /// the cache makes room when it is full.
    fn push(&mut self, info: Process) {
        if self.len >= self.limits.max {
            self.make_room();
        }
        let touched = self.tick();
        let gens = self.by_pid.entry(info.pid).or_default();
        if gens.len() >= GENERATIONS {
            gens.remove(0);
            self.len -= 1;
            self.counters.evicted += 1;
        }
        // Newest start last.
        let at = gens.partition_point(|g| g.info.start_ns <= info.start_ns);
        gens.insert(
            at,
            Gen {
                info: Arc::new(info),
                exited_ns: 0,
                touched,
            },
        );
        self.len += 1;
    }

    /// Frees an eighth of the room: exited processes first (oldest exit), then
    /// the least recently used.
    fn make_room(&mut self) {
        let mut order: Vec<(bool, u64, u64, u32, u64)> = self
            .by_pid
            .iter()
            .flat_map(|(pid, gens)| {
                gens.iter().map(move |g| {
                    let alive = g.exited_ns == 0;
                    let when = if alive { g.touched } else { g.exited_ns };
                    (alive, when, g.touched, *pid, g.info.start_ns)
                })
            })
            .collect();
        let n = (self.limits.max / 8).clamp(1, order.len().max(1));
        if order.len() > n {
            order.select_nth_unstable(n - 1);
            order.truncate(n);
        }
        for (_, _, _, pid, start) in order {
            if let Some(gens) = self.by_pid.get_mut(&pid) {
                let before = gens.len();
                gens.retain(|g| g.info.start_ns != start);
                let gone = before - gens.len();
                self.len -= gone;
                self.counters.evicted += gone as u64;
                if gens.is_empty() {
                    self.by_pid.remove(&pid);
                }
            }
        }
    }

    /// A new process's record, its program still to be filled in.
    fn process(&self, pid: u32, ppid: u32, start_ns: u64, uid: u32, cgroup: u64) -> Process {
        Process {
            pid,
            ppid,
            start_ns,
            uid,
            cgroup,
            entity_id: self.entity_id(pid, start_ns),
            executable: None,
            args: None,
            args_truncated: false,
        }
    }

    /// Applies one kernel record.
    pub fn apply(&mut self, ev: &ProcEvent) {
        match ev.action {
            ProcAction::Exec => {
                self.counters.execs += 1;
                let exe = (!ev.path.is_empty()).then(|| Text::escaped(&ev.path, PATH_MAX));
                let args = ev.args.as_deref().map(split_args);
                let touched = self.tick();
                let new = |p: &mut Process| {
                    p.ppid = ev.ppid;
                    p.uid = ev.uid;
                    p.cgroup = ev.cgroup;
                    p.executable = exe;
                    p.args = args;
                    p.args_truncated = ev.args_truncated;
                };
                if let Some(g) = self.find_mut(ev.pid, ev.start_ns) {
                    let mut p = Process::clone(&g.info);
                    new(&mut p);
                    g.info = Arc::new(p);
                    g.exited_ns = 0;
                    g.touched = touched;
                } else {
                    let mut p = self.process(ev.pid, ev.ppid, ev.start_ns, ev.uid, ev.cgroup);
                    new(&mut p);
                    self.push(p);
                }
            }
            ProcAction::Fork => {
                self.counters.forks += 1;
                if self.find_mut(ev.pid, ev.start_ns).is_some() {
                    return;
                }
                // It runs what its parent runs until it execs.
                let mut p = self.process(ev.pid, ev.ppid, ev.start_ns, ev.uid, ev.cgroup);
                if let Some(parent) = self.live(ev.ppid) {
                    p.executable = parent.executable.clone();
                    p.args = parent.args.clone();
                    p.args_truncated = parent.args_truncated;
                }
                self.push(p);
            }
            ProcAction::Exit => {
                self.counters.exits += 1;
                let ts = ev.ts_ns.max(1);
                if let Some(g) = self.find_mut(ev.pid, ev.start_ns) {
                    g.exited_ns = ts;
                }
            }
        }
    }

    /// Adds a process read from /proc, unless it is known already.
    pub fn seed(&mut self, s: &Seed) {
        if s.pid == 0 || self.find_mut(s.pid, s.start_ns).is_some() {
            return;
        }
        self.counters.seeded += 1;
        let mut p = self.process(s.pid, s.ppid, s.start_ns, s.uid, s.cgroup);
        p.executable = s
            .executable
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(|e| Text::escaped(e, PATH_MAX));
        if let Some(a) = s.args.as_deref() {
            p.args_truncated = a.len() > ARGS_MAX;
            p.args = Some(split_args(&a[..a.len().min(ARGS_MAX)]));
        }
        self.push(p);
    }

    /// The newest generation of `pid` that has not exited.
    fn live(&self, pid: u32) -> Option<Arc<Process>> {
        self.by_pid
            .get(&pid)?
            .iter()
            .rev()
            .find(|g| g.exited_ns == 0)
            .map(|g| g.info.clone())
    }

    /// The process that owned a socket: the pid's newest generation that had
    /// started by `anchor_ns` (when the owner was taken: the connection's start),
    /// else the first one that had started by `latest_ns` (an owner taken after
    /// the connection began: an accepted socket, maybe older than the process
    /// that accepts it, as with socket activation).
    pub fn lookup(&mut self, pid: u32, anchor_ns: u64, latest_ns: u64) -> Option<Arc<Process>> {
        if pid == 0 {
            return None;
        }
        let touched = self.tick();
        let tick = self.tick_ns;
        let Some(gens) = self.by_pid.get_mut(&pid) else {
            self.counters.misses += 1;
            return None;
        };
        // Starts from /proc are cut to the tick: compare to the tick too.
        let started_by = |g: &Gen, t: u64| g.info.start_ns / tick <= t / tick;
        let at = match gens.iter().rposition(|g| started_by(g, anchor_ns)) {
            Some(i) => i,
            None => match gens.iter().position(|g| started_by(g, latest_ns)) {
                Some(i) => i,
                None => {
                    self.counters.misses += 1;
                    return None;
                }
            },
        };
        let g = &mut gens[at];
        g.touched = touched;
        Some(g.info.clone())
    }

    /// Forgets the processes that exited more than the grace period before `now`.
    pub fn expire(&mut self, now: u64) {
        let grace = self.limits.grace_ns;
        let mut gone = 0;
        self.by_pid.retain(|_, gens| {
            let before = gens.len();
            gens.retain(|g| g.exited_ns == 0 || g.exited_ns.saturating_add(grace) > now);
            gone += before - gens.len();
            !gens.is_empty()
        });
        self.len -= gone;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 10_000_000;

    fn cache(max: usize) -> ProcessCache {
        ProcessCache::new(
            Limits {
                max,
                grace_ns: 10 * SEC,
            },
            "host-a",
            TICK,
        )
    }

    fn rec(action: ProcAction, pid: u32, ppid: u32, start: u64, ts: u64) -> ProcEvent {
        ProcEvent {
            action,
            ts_ns: ts,
            pid,
            ppid,
            uid: 1000,
            start_ns: start,
            cgroup: 0,
            comm: Comm::from_bytes(b"x"),
            path: Vec::new(),
            path_truncated: false,
            args: None,
            args_truncated: false,
        }
    }

    fn exec(pid: u32, ppid: u32, start: u64, ts: u64, path: &str, args: &[u8]) -> ProcEvent {
        ProcEvent {
            path: path.as_bytes().to_vec(),
            args: Some(args.to_vec()),
            ..rec(ProcAction::Exec, pid, ppid, start, ts)
        }
    }

    fn exe(p: &Option<Arc<Process>>) -> Option<&str> {
        p.as_ref()?.executable.as_ref().map(|t| t.as_str())
    }

    #[test]
    fn a_reused_pid_finds_the_process_that_owned_the_socket() {
        let mut c = cache(100);
        c.apply(&exec(
            500,
            1,
            1_000 * TICK,
            1_000 * TICK,
            "/usr/bin/old",
            b"old\0",
        ));
        // It connects at 1100 ticks, exits at 1200; the pid comes back at 1300.
        c.apply(&rec(ProcAction::Exit, 500, 1, 1_000 * TICK, 1_200 * TICK));
        c.apply(&exec(
            500,
            7,
            1_300 * TICK,
            1_300 * TICK,
            "/usr/bin/new",
            b"new\0",
        ));
        // The old connection's close (started at 1100) is the old process's.
        let old = c.lookup(500, 1_100 * TICK, 1_400 * TICK);
        assert_eq!(exe(&old), Some("/usr/bin/old"));
        let new = c.lookup(500, 1_350 * TICK, 1_400 * TICK);
        assert_eq!(exe(&new), Some("/usr/bin/new"));
        assert_eq!(new.as_ref().unwrap().ppid, 7);
        let (o, n) = (old.unwrap(), new.unwrap());
        assert_ne!(o.entity_id, n.entity_id, "unique across pid reuse");
        assert_eq!(o.entity_id.len(), 32);
        // A socket older than its owner (an inherited listener): the first
        // process that had started by the record.
        let inherited = c.lookup(500, 10 * TICK, 1_250 * TICK);
        assert_eq!(exe(&Some(inherited.unwrap())), Some("/usr/bin/old"));
        assert_eq!(c.lookup(500, 10 * TICK, 20 * TICK), None);
        assert_eq!(c.lookup(501, 10 * TICK, 20 * TICK), None);
        assert_eq!(c.counters().misses, 2);
        // The exited one goes after the grace period; the live one stays.
        c.expire(1_200 * TICK + 11 * SEC);
        assert_eq!(c.len(), 1);
        assert_eq!(
            exe(&c.lookup(500, 1_100 * TICK, 1_100 * TICK)),
            None,
            "the old process is forgotten, not taken for the new one"
        );
    }

    #[test]
    fn a_fork_runs_its_parents_program_until_it_execs() {
        let mut c = cache(100);
        c.apply(&exec(
            10,
            1,
            5 * TICK,
            5 * TICK,
            "/usr/sbin/nginx",
            b"nginx\0-g\0daemon off;\0",
        ));
        c.apply(&rec(ProcAction::Fork, 11, 10, 9 * TICK + 5, 9 * TICK + 5));
        let w = c.lookup(11, 10 * TICK, 10 * TICK).unwrap();
        assert_eq!(w.executable.as_ref().unwrap().as_str(), "/usr/sbin/nginx");
        let args: Vec<&str> = w
            .args
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.as_str())
            .collect();
        assert_eq!(args, ["nginx", "-g", "daemon off;"]);
        assert_eq!(w.ppid, 10);
        // The exec changes the program, not the process's identity.
        c.apply(&exec(11, 10, 9 * TICK + 5, 12 * TICK, "/bin/sh", b"sh\0"));
        let sh = c.lookup(11, 13 * TICK, 13 * TICK).unwrap();
        assert_eq!(sh.executable.as_ref().unwrap().as_str(), "/bin/sh");
        assert_eq!(sh.entity_id, w.entity_id);
        // A child of an unknown parent is known, without a program.
        c.apply(&rec(ProcAction::Fork, 12, 99, 20 * TICK, 20 * TICK));
        let orphan = c.lookup(12, 21 * TICK, 21 * TICK).unwrap();
        assert_eq!((orphan.ppid, orphan.executable.clone()), (99, None));
        assert_eq!(c.counters().forks, 2);
    }

    #[test]
    fn proc_and_kernel_starts_give_one_entity_id() {
        let mut c = cache(100);
        // /proc knows the start to the tick; the kernel to the ns.
        let bash = Seed {
            pid: 30,
            ppid: 1,
            start_ns: 70 * TICK,
            uid: 0,
            cgroup: 0,
            executable: Some(b"/usr/bin/bash".to_vec()),
            args: None,
        };
        c.seed(&bash);
        c.apply(&exec(
            30,
            1,
            70 * TICK + 1234,
            80 * TICK,
            "/usr/bin/vim",
            b"vim\0",
        ));
        assert_eq!(c.len(), 1, "the same process");
        let p = c.lookup(30, 81 * TICK, 81 * TICK).unwrap();
        assert_eq!(p.executable.as_ref().unwrap().as_str(), "/usr/bin/vim");
        assert_eq!(p.entity_id, c.entity_id(30, 70 * TICK + 9_999_999));
        // Another host gives the same process another id.
        let other = ProcessCache::new(Limits::DEFAULT, "host-b", TICK);
        assert_ne!(other.entity_id(30, 70 * TICK), p.entity_id);
        // Seeding it again changes nothing.
        c.seed(&Seed {
            executable: None,
            ..bash
        });
        assert_eq!(c.counters().seeded, 1);
    }

    #[test]
    fn the_cache_stays_bounded_and_drops_exited_processes_first() {
        let mut c = cache(16);
        for pid in 1..=16u32 {
            c.apply(&rec(ProcAction::Fork, pid, 0, u64::from(pid) * TICK, 0));
        }
        c.apply(&rec(ProcAction::Exit, 3, 0, 3 * TICK, 100 * TICK));
        // Pid 1 is used: it stays.
        assert!(c.lookup(1, 200 * TICK, 200 * TICK).is_some());
        for pid in 100..200u32 {
            c.apply(&rec(ProcAction::Fork, pid, 0, u64::from(pid) * TICK, 0));
            assert!(c.len() <= 16, "{}", c.len());
        }
        assert!(c.counters().evicted >= 100 - 16);
        assert!(
            c.lookup(3, 200 * TICK, 200 * TICK).is_none(),
            "exited first"
        );
        assert!(
            c.lookup(199, 300 * TICK, 300 * TICK).is_some(),
            "newest kept"
        );
        // Generations of one pid are bounded too.
        let mut g = cache(100);
        for i in 1..=10u64 {
            g.apply(&rec(ProcAction::Fork, 7, 0, i * TICK, 0));
        }
        assert_eq!(g.len(), GENERATIONS);
    }

    #[test]
    fn hostile_paths_and_arguments_are_escaped_and_bounded() {
        let mut c = cache(10);
        let mut args = b"evil\x1b[2J\0--flag\n\0".to_vec();
        args.extend(std::iter::repeat_n(b'a', 3 * ARGS_MAX));
        let mut ev = exec(5, 1, TICK, TICK, "/tmp/\u{202e}gpj.exe", &args);
        ev.args = Some(args[..ARGS_MAX].to_vec());
        ev.args_truncated = true;
        c.apply(&ev);
        let p = c.lookup(5, TICK, TICK).unwrap();
        assert_eq!(
            p.executable.as_ref().unwrap().as_str(),
            "/tmp/\\u{202e}gpj.exe"
        );
        let a = p.args.as_ref().unwrap();
        assert_eq!(a[0].as_str(), "evil\\e[2J");
        assert_eq!(a[1].as_str(), "--flag\\n");
        assert!(p.args_truncated);
        assert!(a.iter().map(|a| a.as_str().len()).sum::<usize>() <= ARGS_MAX);
        assert_eq!(&*split_args(b""), &[] as &[Text]);
    }
}
