//! Harness for netta's end-to-end tests: runs the real `netta` binary and the
//! `netta-traffic` generator as separate processes, and reads netta's output.
//!
//! The tracepoints see the whole machine, so every check filters on the ports and
//! pids its own traffic used.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod ecs;
pub mod http_receiver;
pub mod netns;
pub mod servers;

pub use serde_json::Value;

fn target_dir() -> PathBuf {
    // tests/ is a workspace member: the binaries live in the workspace target dir.
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The netta binary under test: `NETTA_BIN`, else the one next to this test.
pub fn netta_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETTA_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("netta")
}

/// An API socket path no agent serves, new for each call: views started with it run
/// standalone, and an agent started with it cannot meet another test's agent (nor one
/// the machine runs on the default socket).
pub fn isolated_api() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("netta-test-{}-{n}.sock", std::process::id()))
}

/// `netta` with an [`isolated_api`]: what every test runs unless it attaches on purpose.
pub fn netta_cmd() -> Command {
    let mut c = Command::new(netta_bin());
    c.env("NETTA_API", isolated_api());
    c
}

pub fn traffic_bin() -> PathBuf {
    target_dir().join("netta-traffic")
}

pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the eBPF tests can run. When they cannot and `NETTA_REQUIRE_EBPF=1`
/// (set by `cargo xtask test` as root, and so in CI), that is a failure, not a skip.
pub fn ebpf_available(test: &str) -> bool {
    let required = std::env::var("NETTA_REQUIRE_EBPF").is_ok_and(|v| v == "1");
    let reason = if !is_root() {
        Some("not root".to_string())
    } else if !netta_bin().exists() {
        Some(format!("{} does not exist", netta_bin().display()))
    } else {
        let out = Command::new(netta_bin())
            .arg("--version")
            .output()
            .expect("run netta --version");
        let v = String::from_utf8_lossy(&out.stdout).to_string();
        (!v.contains("eBPF object embedded")).then(|| format!("netta has no eBPF object: {v}"))
    };
    match reason {
        None => true,
        Some(r) if required => panic!("{test}: eBPF required (NETTA_REQUIRE_EBPF=1) but {r}"),
        Some(r) => {
            eprintln!("SKIP {test}: {r}");
            false
        }
    }
}

/// Returns from the test when eBPF tests cannot run (a failure instead, when
/// they are required): `require_ebpf!("name")`.
#[macro_export]
macro_rules! require_ebpf {
    ($test:expr) => {
        if !$crate::ebpf_available($test) {
            return;
        }
    };
}

/// The lines a child writes, read on a thread of their own.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stream).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line of a child's piped stream (its start-up line), and the lines
/// after it; keep those while the child runs, or its writes fail.
pub fn first_line<R: std::io::Read>(stream: Option<R>) -> (String, std::io::Lines<BufReader<R>>) {
    let mut lines = BufReader::new(stream.expect("the stream is piped")).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("a readable line");
    (first, lines)
}

/// A TCP receiver on a free loopback port (for `--sink tcp://…`): its address,
/// and the lines of the first connection it accepts.
pub fn tcp_line_receiver() -> (std::net::SocketAddr, mpsc::Receiver<String>) {
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = receiver.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((s, _)) = receiver.accept() {
            for l in BufReader::new(s).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        }
    });
    (addr, rx)
}

/// How long netta may take to say it is ready: 30 s, or `NETTA_TEST_READY_SECS`
/// (QEMU guests under TCG load and verify the program many times slower).
pub fn ready_patience() -> Duration {
    let secs = std::env::var("NETTA_TEST_READY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// The kernel-address-looking token in `text`, if any: 16 hex digits from
/// `ffff8` up (x86-64 kernel space, with or without `0x`), or the same value in
/// decimal (20 digits from 184466...).
pub fn kernel_address(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let mut tok = &text[start..i];
        if let Some(t) = tok.strip_prefix("0x") {
            tok = t;
        }
        let hex = tok.len() == 16
            && tok.bytes().all(|c| c.is_ascii_hexdigit())
            && tok.to_ascii_lowercase().as_str() >= "ffff800000000000";
        let dec = tok.len() == 20
            && tok.bytes().all(|c| c.is_ascii_digit())
            && tok >= "18446603336221196288";
        if hex || dec {
            return Some(&text[start..i]);
        }
    }
    None
}

/// Panics if `text` (from `what`) carries a kernel address.
pub fn assert_no_kernel_address(what: &str, text: &str) {
    if let Some(a) = kernel_address(text) {
        panic!("{what} leaks a kernel address {a}: {text}");
    }
}

/// Parses one line netta wrote as an event or alert, and checks it: valid JSON,
/// conforming to ECS, no kernel address.
pub fn parse_event_line(l: &str) -> Value {
    assert_no_kernel_address("an event line", l);
    let v = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"));
    ecs::assert_conforms(&v);
    v
}

/// `netta ARGS` started with no stdin, stderr piped and stdout as given.
/// `netta ARGS` with stdin closed, stdout as given and stderr piped.
pub fn spawn_netta(args: &[&str], stdout: Stdio) -> Child {
    netta_cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn netta {args:?}: {e}"))
}

/// A running `netta events`, collecting its JSON lines.
pub struct Events {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
    pub collected: Vec<Value>,
    pub stderr_lines: Vec<String>,
}

impl Events {
    /// Starts `netta [args] events [events_args]` and waits until it says it is ready.
    pub fn start(global: &[&str], events_args: &[&str]) -> Events {
        Events::start_with_env(global, events_args, &[])
    }

    /// The same, with `env` set for netta.
    pub fn start_with_env(global: &[&str], events_args: &[&str], env: &[(&str, &str)]) -> Events {
        let args = [global, &["events"], events_args].concat();
        let mut child = netta_cmd()
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn netta {args:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = lines_of(stdout);
        let stderr_rx = lines_of(stderr);
        let mut ev = Events {
            child,
            lines,
            stderr: stderr_rx,
            collected: Vec::new(),
            stderr_lines: Vec::new(),
        };
        let deadline = Instant::now() + ready_patience();
        loop {
            match ev.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let ready =
                        l.starts_with("netta: standalone") || l.starts_with("netta: attached");
                    ev.stderr_lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("netta events exited early: {:?}", ev.stderr_lines)
                }
            }
            assert!(
                Instant::now() < deadline,
                "netta events not ready after {:?}: {:?}",
                ready_patience(),
                ev.stderr_lines
            );
        }
        ev
    }

    /// Stops netta with SIGINT (it flushes on the way out) and returns every event.
    pub fn stop(self) -> Vec<Value> {
        self.stop_with(libc::SIGINT)
    }

    /// The child itself, for tests that kill it their own way.
    pub fn into_child(self) -> Child {
        self.child
    }

    /// Stops netta with `signal` and returns every event it wrote.
    pub fn stop_with(mut self, signal: i32) -> Vec<Value> {
        // Give the 50 ms drain timer and the UDP sweep a moment.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let status = self.child.wait().expect("wait for netta");
        for l in self.lines.iter() {
            self.collected.push(parse_event_line(&l));
        }
        self.stderr_lines.extend(self.stderr.try_iter());
        for l in &self.stderr_lines {
            assert_no_kernel_address("netta's log", l);
        }
        assert!(
            status.success(),
            "netta events failed: {status} {:?}",
            self.stderr_lines
        );
        self.collected
    }
}

/// `netta agent` as a service: its state dir, its API socket, its stderr lines.
pub struct AgentProc {
    pub child: Child,
    stderr: mpsc::Receiver<String>,
}

impl AgentProc {
    /// `netta ARGS`, stderr collected (no waiting).
    pub fn spawn(args: &[&str]) -> AgentProc {
        let mut child = spawn_netta(args, Stdio::null());
        let stderr = lines_of(child.stderr.take().unwrap());
        AgentProc { child, stderr }
    }

    /// `netta agent --state-dir STATE --api SOCK --sink file:/dev/null EXTRA`, once ready.
    pub fn start(state: &std::path::Path, sock: &std::path::Path, extra: &[&str]) -> AgentProc {
        let (st, so) = (state.display().to_string(), sock.display().to_string());
        let mut args = vec![
            "agent",
            "--state-dir",
            &st,
            "--api",
            &so,
            "--sink",
            "file:/dev/null",
        ];
        args.extend_from_slice(extra);
        let mut a = AgentProc::spawn(&args);
        a.wait_line("netta: agent ready");
        a
    }

    /// `netta GLOBAL agent --no-store --state-dir STATE --api (isolated) --sink SINK...`,
    /// once ready: an agent whose only output is its sinks.
    pub fn with_sinks(global: &[&str], state: &std::path::Path, sinks: &[&str]) -> AgentProc {
        let (st, api) = (
            state.display().to_string(),
            isolated_api().display().to_string(),
        );
        let mut args = global.to_vec();
        args.extend(["agent", "--no-store", "--state-dir", &st, "--api", &api]);
        for s in sinks {
            args.extend(["--sink", s]);
        }
        let mut a = AgentProc::spawn(&args);
        a.wait_line("netta: agent ready");
        a
    }

    /// The first stderr line containing `needle` (others are echoed); panics after 60 s.
    pub fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60).max(ready_patience());
        while Instant::now() < deadline {
            if let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                if l.contains(needle) {
                    return l;
                }
                eprintln!("agent: {l}");
            }
        }
        panic!("no `{needle}` line from the agent");
    }

    /// Sends `sig` and waits for the agent to exit.
    pub fn signal(&mut self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over the agent's API socket: the reply's body.
pub fn api_body(sock: &std::path::Path, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_else(|| panic!("no body: {text}"))
}

/// GET over the agent's API socket, the body as JSON.
pub fn api_get(sock: &std::path::Path, path: &str) -> Value {
    let body = api_body(sock, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `netta ARGS`: (success, stdout, stderr).
pub fn run_netta(args: &[&str]) -> (bool, String, String) {
    let out = netta_cmd().args(args).output().expect("run netta");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `netta ARGS` that must succeed, its stdout as JSON.
pub fn netta_json(args: &[&str]) -> Value {
    let (ok, out, err) = run_netta(args);
    assert!(ok, "netta {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("netta {args:?}: {e}: {out}"))
}

/// A fresh directory under the temp dir for test `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("netta-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A network namespace by name, deleted (with everything in it) when dropped,
/// also when the test panics.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Peak resident set (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A fresh [`temp_dir`] and the paths an agent with an API keeps in it:
/// (dir, state directory, API socket).
pub fn agent_dir(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let (state, sock) = (dir.join("state"), dir.join("api.sock"));
    (dir, state, sock)
}

/// [`AgentProc::start`] in a fresh [`agent_dir`]: (dir, API socket, agent).
pub fn agent_in(name: &str, extra: &[&str]) -> (PathBuf, PathBuf, AgentProc) {
    let (dir, state, sock) = agent_dir(name);
    let agent = AgentProc::start(&state, &sock, extra);
    (dir, sock, agent)
}

/// Runs `prog args` to completion, quietly; panics if it fails.
pub fn run_ok(prog: &str, args: &[&str]) {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `netta ARGS` as a stranger (uid and gid 65534, no groups), when `setpriv` is there.
pub fn netta_as_nobody(args: &[&str]) -> Option<std::process::Output> {
    have_tool("setpriv").then(|| {
        Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(netta_bin())
            .args(args)
            .output()
            .unwrap()
    })
}

/// A helper process from `netta-traffic`.
pub struct Traffic {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
}

impl Traffic {
    fn from_child(mut child: Child) -> Traffic {
        let stdin = child.stdin.take();
        let out = lines_of(child.stdout.take().expect("piped stdout"));
        Traffic { child, stdin, out }
    }

    pub fn spawn(args: &[&str]) -> Traffic {
        let child = Command::new(traffic_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", traffic_bin().display()));
        Traffic::from_child(child)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `netta-traffic KIND 127.0.0.1:PORT REST...`: a client of a loopback server.
    pub fn to_loopback(kind: &str, port: impl std::fmt::Display, rest: &[&str]) -> Traffic {
        let target = format!("127.0.0.1:{port}");
        let mut args = vec![kind, &target];
        args.extend_from_slice(rest);
        Traffic::spawn(&args)
    }

    /// The next output line that starts with `prefix`, without the prefix.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let l = self
                .out
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{prefix}` line from netta-traffic"));
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    /// Every remaining line with `prefix` until the process exits.
    pub fn all_lines(&mut self, prefix: &str) -> Vec<String> {
        self.out
            .iter()
            .filter_map(|l| l.strip_prefix(prefix).map(|r| r.trim().to_string()))
            .collect()
    }

    pub fn finish(mut self) {
        drop(self.stdin.take());
        let st = self.child.wait().expect("wait for traffic");
        assert!(st.success(), "netta-traffic failed: {st}");
    }
}

/// Runs `cmd` with `input` on its stdin and collects its exit status and output.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait for the child")
}

/// Runs `conns` loopback TCP connections to completion, through a server and a
/// client named `names` (each with its per-connection argument from `args`);
/// returns the server's port.
pub fn tcp_round_trips(conns: &str, args: [&str; 2], names: [&str; 2]) -> u16 {
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", conns, args[0], names[0]]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let addr = format!("127.0.0.1:{port}");
    Traffic::spawn(&["tcp-client", &addr, conns, args[1], names[1]]).finish();
    server.finish();
    port
}

impl Drop for Traffic {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `v[a][b]...` as u64, or None.
pub fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// A port nothing listens on (bound, then released).
pub fn free_tcp_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------
// Helpers for the detection tests.
// ---------------------------------------------------------------------------

impl Events {
    /// Reads the lines netta has written so far into `collected`, until `cond`
    /// holds on them or `timeout` passes. Returns whether `cond` held. `stop`
    /// still returns every line, these included.
    pub fn wait_until(&mut self, timeout: Duration, cond: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(l) = self.lines.try_recv() {
                self.collected.push(parse_event_line(&l));
            }
            if cond(&self.collected) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(l) => self.collected.push(parse_event_line(&l)),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.stderr_lines.extend(self.stderr.try_iter());
                    panic!("netta events exited early: {:?}", self.stderr_lines)
                }
            }
        }
    }

    /// The first line (so far, or within `timeout`) for which `pred` holds.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.wait_until(timeout, |all| all.iter().any(&pred));
        self.collected.iter().find(|v| pred(v)).cloned()
    }
}

/// The alert lines (`event.kind: "alert"`) of rule `rule`.
pub fn alerts<'a>(events: &'a [Value], rule: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| str_at(e, &["event", "kind"]) == Some("alert"))
        .filter(|e| str_at(e, &["rule", "id"]) == Some(rule))
        .collect()
}

/// Milliseconds from `start` to the line's `@timestamp` (negative if before).
pub fn ms_since(start: std::time::SystemTime, line: &Value) -> i64 {
    let ts = str_at(line, &["@timestamp"]).unwrap_or_else(|| panic!("no @timestamp: {line}"));
    let at = humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("@timestamp {ts:?}: {e}"));
    match at.duration_since(start) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The first of `len` consecutive ports on `ip` (from `from` on) where nothing is
/// bound or listening now. Binds each port briefly: call it before netta starts,
/// or its listens are new listeners.
pub fn free_tcp_range(ip: &str, from: u16, len: u16) -> u16 {
    let mut first = from;
    while let Some(end) = first.checked_add(len) {
        let taken = (first..end).find(|&p| std::net::TcpListener::bind((ip, p)).is_err());
        match taken {
            Some(p) => first = p + 1,
            None => return first,
        }
    }
    panic!("no {len} free consecutive TCP ports on {ip} from {from}")
}

/// Whether `prog` is an executable on PATH.
pub fn have_tool(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(d.join(prog)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

impl Traffic {
    /// Like [`Traffic::spawn`], inside network namespace `netns` (`ip netns exec`
    /// execs the helper in place, so `pid()` is the helper's).
    pub fn spawn_in_netns(netns: &str, args: &[&str]) -> Traffic {
        let child = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(traffic_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ip netns exec {netns}: {e}"));
        Traffic::from_child(child)
    }
}

impl Events {
    /// The pid of the running `netta events`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_address;

    #[test]
    fn finds_kernel_addresses_in_any_form() {
        assert_eq!(
            kernel_address(r#"{"sock":"0xffff88815f958940"}"#),
            Some("0xffff88815f958940")
        );
        assert_eq!(
            kernel_address("at ffff88815f958940 ok"),
            Some("ffff88815f958940")
        );
        assert_eq!(
            kernel_address("x 18446612687196408128 y"),
            Some("18446612687196408128")
        );
        assert_eq!(kernel_address(r#"{"sock_id":"3f9a0c1d2e4b5a69"}"#), None);
        assert_eq!(kernel_address("00007fffffffe000 1234567890"), None);
    }
}
