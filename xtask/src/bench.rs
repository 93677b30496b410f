//! `cargo xtask bench`: netta and its peers on one workload, in one run.
//!
//! nginx serves a tiny page on 127.0.0.1 with keep-alive off, and `ab` makes one
//! connection per request. Each tracer (netta with the ring buffer, netta with
//! the perf array, libbpf-tools' tcplife, and a 2 s `ss -tanp` poll) runs in turns
//! alternating with untraced runs; medians are reported. Then the agent as a
//! service, the agent's CPU per record with one sink and with two (`--only
//! sinks`), the ingest and sink micro-benchmarks (criterion) and the seeding
//! benchmark (50,000 sockets in a network namespace, against `ss -tanp`).
//! Results go to stdout and BENCHMARKS.md.
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn_loop;
use anyhow::{bail, Context, Result};

/// `cargo xtask bench`'s flags.
#[derive(clap::Args)]
pub struct Opts {
    /// A seconds-long smoke run (CI): tiny workload, one run, nothing written.
    #[arg(long)]
    pub smoke: bool,
    /// Runs per tracer (each alternating with an untraced run).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Requests per `ab` run (one connection each).
    #[arg(long, default_value = "20000", value_parser = parse_count)]
    pub requests: u32,
    /// Live sockets for the seeding benchmark.
    #[arg(long, default_value = "50000", value_parser = parse_count)]
    pub sockets: u32,
    /// Connections in the generated history store (the history query figure).
    #[arg(long, default_value_t = 10_000_000)]
    pub store_rows: u64,
    /// Run only this part, print it, write nothing.
    #[arg(long, value_enum)]
    pub only: Option<Part>,
    /// Another netta binary to compare with (`--only baseline`), e.g. an older
    /// commit's `target/release/netta`.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

/// The parts `--only` can run alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// The agent as a service: list latency, the store at full loopback rate.
    Service,
    /// The generated history store and its queries.
    Store,
    /// Agent CPU per record with one file sink and with two.
    Sinks,
    /// netta (ring buffer) alone against untraced runs, in both topologies.
    Ring,
    /// The kernel programs' run time per connection.
    Kernel,
    /// The fixed-rate latency netta adds.
    Latency,
    /// What DNS capture and process identity each cost: netta with each turned off.
    Features,
    /// netta against another build of it (`--baseline BIN`), interleaved.
    Baseline,
    /// Seeding `--sockets` live sockets against `ss -tanp`.
    Seeding,
}

impl Opts {
    pub fn smoke() -> Opts {
        Opts {
            smoke: true,
            runs: 1,
            requests: 500,
            sockets: 2000,
            store_rows: 100_000,
            only: None,
            baseline: None,
        }
    }
}

pub(crate) const PORT: u16 = 18080;
const CONCURRENCY: u32 = 8;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU seconds of `pid`: its threads' schedstat (ns), else its stat's ticks.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    if let Some(ns) = threads_cpu_ns(pid) {
        return Some(ns as f64 / 1e9);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clock_ticks())
}

/// Peak resident set (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    Some(netta_tests::peak_rss_kib(pid)? as f64 / 1024.0)
}

pub(crate) struct Nginx {
    child: Child,
    pub(crate) workers: HashSet<u32>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master stops the workers too (SIGKILL would orphan them).
        // SAFETY: signalling our own children.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        for w in &self.workers {
            unsafe { libc::kill(*w as i32, libc::SIGKILL) };
        }
    }
}

fn start_nginx(dir: &Path, workers: usize) -> Result<Nginx> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {workers};\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\ndaemon off;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_timeout 0;\n\
             client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;\n\
             uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
             server {{ listen 127.0.0.1:{PORT} backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n",
            dir = dir.display()
        ),
    )?;
    let child = Command::new("nginx")
        .args([
            "-c",
            conf.to_str().context("path")?,
            "-p",
            dir.to_str().context("path")?,
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx (apt-get install nginx-light)")?;
    let master = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        let kids: HashSet<u32> = kids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() >= workers && std::net::TcpStream::connect(("127.0.0.1", PORT)).is_ok() {
            return Ok(Nginx {
                child,
                workers: kids,
            });
        }
        if Instant::now() > deadline {
            bail!("nginx did not start (see {}/error.log)", dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) struct AbResult {
    pub(crate) rps: f64,
    pub(crate) complete: u64,
    pub(crate) failed: u64,
}

pub(crate) fn run_ab(requests: u32) -> Result<AbResult> {
    let out = Command::new("ab")
        .args([
            "-q",
            "-n",
            &requests.to_string(),
            "-c",
            &CONCURRENCY.to_string(),
            &format!("http://127.0.0.1:{PORT}/"),
        ])
        .output()
        .context("running ab (apt-get install apache2-utils)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Ok(AbResult {
        rps: field("Requests per second:").context("ab printed no rate")?,
        complete: field("Complete requests:").unwrap_or(0.0) as u64,
        failed: field("Failed requests:").unwrap_or(0.0) as u64,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tracer {
    NettaRing,
    NettaPerf,
    /// netta (ring buffer) without DNS capture.
    NettaNoDns,
    /// netta (ring buffer) without the process-identity hooks.
    NettaNoIdentity,
    /// Another build of netta (`--baseline BIN`), with the flags it knows.
    NettaBaseline,
    Tcplife,
    SsPoll,
}

impl Tracer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tracer::NettaRing => "netta (ring buffer)",
            Tracer::NettaPerf => "netta (perf array)",
            Tracer::NettaNoDns => "netta (ring buffer), --no-dns",
            Tracer::NettaNoIdentity => "netta (ring buffer), no process identity",
            Tracer::NettaBaseline => "netta baseline build (ring buffer)",
            Tracer::Tcplife => "tcplife (libbpf-tools)",
            Tracer::SsPoll => "ss -tanp every 2 s",
        }
    }
}

/// What one traced run saw.
#[derive(Default, Clone)]
pub(crate) struct Seen {
    pub(crate) client: u64,
    pub(crate) server: u64,
    client_right: u64,
    server_right: u64,
    lost: u64,
    /// Connections ab opened but never used (netta reports them; ab does not count them).
    idle: u64,
    pub(crate) cpu_s: f64,
    pub(crate) rss_mib: f64,
    records: u64,
}

/// A tracer running in the background while `ab` runs.
pub(crate) struct Running {
    child: Option<Child>,
    out: PathBuf,
    stop_poll: Option<Arc<AtomicBool>>,
    poll: Option<std::thread::JoinHandle<Seen>>,
    cpu0: f64,
}

impl Running {
    /// A tracer process that is up: its CPU time from now on is what it costs.
    fn started(child: Child, out: PathBuf) -> Running {
        Running {
            cpu0: cpu_seconds(child.id()).unwrap_or(0.0),
            child: Some(child),
            out,
            stop_poll: None,
            poll: None,
        }
    }
}

/// Waits for `needle` in a child's output; every line it prints (then and later) is
/// kept in the returned buffer.
fn wait_for_line(
    child: &mut Child,
    from_stderr: bool,
    needle: &str,
) -> Result<Arc<std::sync::Mutex<Vec<String>>>> {
    let stream: Box<dyn Read + Send> = if from_stderr {
        Box::new(child.stderr.take().context("stderr")?)
    } else {
        Box::new(child.stdout.take().context("stdout")?)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let k2 = kept.clone();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        let mut told = false;
        for l in lines.by_ref() {
            let Ok(l) = l else { break };
            if !told && l.contains(&needle) {
                let _ = tx.send(());
                told = true;
            }
            if let Ok(mut k) = k2.lock() {
                k.push(l);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .context("tracer did not become ready")?;
    Ok(kept)
}

pub(crate) fn start(tracer: Tracer, netta: &Path, dir: &Path, run: usize) -> Result<Running> {
    let out = dir.join(format!("{tracer:?}-{run}.out"));
    match tracer {
        Tracer::NettaRing
        | Tracer::NettaPerf
        | Tracer::NettaNoDns
        | Tracer::NettaNoIdentity
        | Tracer::NettaBaseline => {
            let transport = if tracer == Tracer::NettaPerf {
                "perf"
            } else {
                "ring"
            };
            let mut cmd = Command::new(netta);
            // Its own agent, whatever else serves the default API socket (a build
            // older than the API has no --standalone, and says `netta: ready`).
            let standalone = tracer != Tracer::NettaBaseline || knows_flag(netta, "--standalone");
            if standalone {
                cmd.arg("--standalone");
            }
            cmd.args(["--transport", transport]);
            match tracer {
                Tracer::NettaNoDns => {
                    cmd.arg("--no-dns");
                }
                Tracer::NettaNoIdentity => {
                    cmd.env(IDENTITY_OFF.0, IDENTITY_OFF.1);
                }
                _ => {}
            }
            let mut child = cmd
                .arg("events")
                .stdout(std::fs::File::create(&out)?)
                .stderr(Stdio::piped())
                .spawn()?;
            let ready = if standalone {
                "netta: standalone"
            } else {
                "netta: ready"
            };
            wait_for_line(&mut child, true, ready)?;
            Ok(Running::started(child, out))
        }
        Tracer::Tcplife => {
            // stdbuf: tcplife's stdio would otherwise hold its output in a pipe buffer.
            let mut child = Command::new("stdbuf")
                .args(["-oL", "tcplife"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("running tcplife (apt-get install libbpf-tools)")?;
            // tcplife prints its header once attached; keep reading its output to a file.
            let stdout = child.stdout.take().context("stdout")?;
            let file = std::fs::File::create(&out)?;
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut w = std::io::BufWriter::new(file);
                let mut told = false;
                for l in BufReader::new(stdout).lines() {
                    let Ok(l) = l else { break };
                    if !told {
                        let _ = tx.send(());
                        told = true;
                    }
                    let _ = std::io::Write::write_all(&mut w, l.as_bytes());
                    let _ = std::io::Write::write_all(&mut w, b"\n");
                }
            });
            rx.recv_timeout(Duration::from_secs(30))
                .context("tcplife did not start")?;
            Ok(Running::started(child, out))
        }
        Tracer::SsPoll => {
            let stop = Arc::new(AtomicBool::new(false));
            let s2 = stop.clone();
            let poll = std::thread::spawn(move || {
                let mut client = BTreeSet::new();
                let mut server = BTreeSet::new();
                let mut named = (0u64, 0u64);
                loop {
                    if let Ok(o) = Command::new("ss").args(["-tanpH"]).output() {
                        for l in String::from_utf8_lossy(&o.stdout).lines() {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            // TIME-WAIT remnants have no process and may be a previous run's.
                            if f.len() < 5 || f[0] == "TIME-WAIT" {
                                continue;
                            }
                            let port = |a: &str| a.rsplit(':').next().unwrap_or("").to_string();
                            let (lp, rp) = (port(f[3]), port(f[4]));
                            let p = PORT.to_string();
                            if rp == p && client.insert(lp.clone()) && l.contains("\"ab\"") {
                                named.0 += 1;
                            } else if lp == p
                                && rp != "*"
                                && server.insert(rp.clone())
                                && l.contains("nginx")
                            {
                                named.1 += 1;
                            }
                        }
                    }
                    for _ in 0..20 {
                        if s2.load(Ordering::Relaxed) {
                            return Seen {
                                client: client.len() as u64,
                                server: server.len() as u64,
                                client_right: named.0,
                                server_right: named.1,
                                ..Default::default()
                            };
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
            Ok(Running {
                child: None,
                out,
                stop_poll: Some(stop),
                poll: Some(poll),
                cpu0: 0.0,
            })
        }
    }
}

/// Whether `bin --help` lists `flag`.
fn knows_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

pub(crate) fn stop(mut r: Running, tracer: Tracer, workers: &HashSet<u32>) -> Result<Seen> {
    if let (Some(stop), Some(poll)) = (r.stop_poll.take(), r.poll.take()) {
        stop.store(true, Ordering::Relaxed);
        return poll
            .join()
            .map_err(|_| anyhow::anyhow!("ss poller panicked"));
    }
    let mut child = r.child.take().context("no tracer process")?;
    // Let the last records drain (the ring buffer is read every 50 ms).
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let cpu = cpu_seconds(pid).unwrap_or(0.0) - r.cpu0;
    let rss = peak_rss_mib(pid).unwrap_or(0.0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    let text = std::fs::read_to_string(&r.out).unwrap_or_default();
    let mut seen = match tracer {
        Tracer::Tcplife => parse_tcplife(&text, workers),
        _ => parse_netta(&text, workers),
    };
    seen.cpu_s = cpu;
    seen.rss_mib = rss;
    Ok(seen)
}

fn parse_netta(text: &str, workers: &HashSet<u32>) -> Seen {
    let mut s = Seen::default();
    for l in text.lines() {
        s.records += 1;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let action = v["event"]["action"].as_str().unwrap_or("");
        // Sockets of the previous (untraced) run that were still closing.
        if v["netta"]["partial"] == true {
            continue;
        }
        if action == "events-lost" {
            s.lost += v["netta"]["lost"].as_u64().unwrap_or(0);
            continue;
        }
        if action != "connection-closed" || v["destination"]["port"].as_u64() != Some(PORT as u64) {
            continue;
        }
        // ab opens a few extra connections at the end of a run and closes them
        // unused; count the ones that carried a request, as ab does.
        if v["source"]["bytes"].as_u64() == Some(0) {
            s.idle += 1;
            continue;
        }
        let pid = v["process"]["pid"].as_u64().unwrap_or(0) as u32;
        match v["network"]["direction"].as_str() {
            Some("egress") => {
                s.client += 1;
                s.client_right += (v["process"]["name"] == "ab") as u64;
            }
            Some("ingress") => {
                s.server += 1;
                s.server_right += workers.contains(&pid) as u64;
            }
            _ => {}
        }
    }
    s
}

/// tcplife: `PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS`, one line per closed socket.
fn parse_tcplife(text: &str, workers: &HashSet<u32>) -> Seen {
    let mut s = Seen::default();
    let p = PORT.to_string();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 9 {
            continue;
        }
        s.records += 1;
        let pid: u32 = f[0].parse().unwrap_or(0);
        if f[5] == p {
            s.client += 1;
            s.client_right += (f[1] == "ab") as u64;
        } else if f[3] == p {
            s.server += 1;
            s.server_right += workers.contains(&pid) as u64;
        }
    }
    s
}

struct TracerResult {
    tracer: Tracer,
    base_rps: Vec<f64>,
    traced_rps: Vec<f64>,
    seen: Vec<Seen>,
    made: Vec<u64>,
}

fn pct(n: u64, d: u64) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.2}%", n as f64 * 100.0 / d as f64)
    }
}

/// `pairs` idle loopback connections in network namespace `ns`, both ends held by
/// python3 processes (several: a process may not raise its fd limit past the hard
/// limit); they close when the returned children's stdin does.
pub(crate) fn hold_in_netns(ns: &str, pairs: u32) -> Result<Vec<Child>> {
    let per_holder = 7_000u32;
    let holders = pairs.div_ceil(per_holder).max(1);
    let mut procs = Vec::new();
    for h in 0..holders {
        let n = (pairs - h * per_holder).min(per_holder);
        let script = format!(
            "import socket,resource,sys\n\
             soft,hard=resource.getrlimit(resource.RLIMIT_NOFILE)\n\
             resource.setrlimit(resource.RLIMIT_NOFILE,(hard,hard))\n\
             l=socket.socket(); l.bind(('127.0.0.1',{port})); l.listen(4096)\n\
             held=[]\n\
             for i in range({n}):\n  c=socket.create_connection(l.getsockname()); s,_=l.accept(); held.append((c,s))\n\
             print('held',flush=True)\nsys.stdin.read()\n",
            port = 20000 + h,
        );
        let mut holder = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("python3 for the socket holder")?;
        let mut line = String::new();
        BufReader::new(holder.stdout.take().context("stdout")?).read_line(&mut line)?;
        if line.trim() != "held" {
            bail!("socket holder failed");
        }
        procs.push(holder);
    }
    Ok(procs)
}

/// A network namespace of the bench's own with loopback up, deleted when dropped
/// (the tests' guard).
pub(crate) use netta_tests::Netns;

pub(crate) fn new_netns(tag: &str) -> Result<Netns> {
    let ns = format!("netta{tag}{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).status();
    if !ip(&["netns", "add", &ns])?.success() {
        bail!("ip netns add failed");
    }
    let n = Netns(ns);
    ip(&["-n", &n.0, "link", "set", "lo", "up"])?;
    Ok(n)
}

/// 50,000 sockets (25,000 loopback connections, both ends held by one process) in
/// a network namespace of the bench's own; netta's seeding against `ss -tanp`.
fn seeding(netta: &Path, sockets: u32, runs: usize) -> Result<(f64, f64, u64)> {
    let guard = new_netns("bench")?;
    let ns = guard.0.clone();
    let procs = hold_in_netns(&ns, sockets / 2)?;
    let time = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        let o = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()?;
        if !o.status.success() {
            bail!("{args:?} failed");
        }
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let netta_s = netta.to_str().context("path")?;
    let mut rows = 0;
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, netta_s, "seed-bench"])
        .output()?;
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) {
        rows = v["sockets"].as_u64().unwrap_or(0);
    }
    let mut n = Vec::new();
    let mut s = Vec::new();
    for _ in 0..runs {
        n.push(time(&[netta_s, "seed-bench"])?);
        s.push(time(&["sh", "-c", "ss -tanp > /dev/null"])?);
    }
    for mut holder in procs {
        drop(holder.stdin.take());
        let _ = holder.wait();
    }
    Ok((median(n), median(s), rows))
}

fn criterion(root: &Path, smoke: bool) -> Result<Vec<(String, String)>> {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .args(["bench", "-p", "netta", "--bench", "ingest", "--"]);
    if smoke {
        cmd.args([
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.5",
            "--sample-size",
            "10",
        ]);
    }
    let out = crate::output_of(&mut cmd, "cargo bench")?;
    let text = String::from_utf8_lossy(&out);
    let mut res = Vec::new();
    let mut name = String::new();
    for l in text.lines() {
        if let Some(n) = l.strip_prefix("ingest/") {
            name = n.split_whitespace().next().unwrap_or("").to_string();
        }
        if let Some(t) = l.trim().strip_prefix("thrpt:") {
            let mid = t.trim().trim_matches(|c| c == '[' || c == ']');
            let parts: Vec<&str> = mid.split_whitespace().collect();
            if parts.len() >= 4 {
                res.push((name.clone(), format!("{} {}", parts[2], parts[3])));
            }
        }
    }
    Ok(res)
}

/// One part alone (`--only`).
fn run_part(part: Part, netta: &Path, dir: &Path, opts: &Opts) -> Result<String> {
    match part {
        Part::Service => {
            let _nginx = start_nginx(dir, 2)?;
            run_ab(opts.requests.min(2000))?;
            agent_service(netta, dir, opts)
        }
        Part::Store => store_history(netta, dir, opts.store_rows),
        Part::Sinks => {
            let _nginx = start_nginx(dir, 2)?;
            run_ab(opts.requests.min(2000))?;
            sink_cost(netta, dir, opts)
        }
        Part::Ring => {
            let mut o = String::new();
            for workers in TOPOLOGIES {
                let nginx = start_nginx(dir, workers)?;
                run_ab(opts.requests.min(2000))?;
                let r = tracer_runs(Tracer::NettaRing, netta, dir, opts, &nginx)?;
                tracer_table(&mut o, workers, &[r], opts);
            }
            Ok(o)
        }
        Part::Features => {
            let nginx = start_nginx(dir, 2)?;
            run_ab(opts.requests.min(2000))?;
            feature_costs(netta, dir, opts, &nginx)
        }
        Part::Seeding => {
            let (n, ss, rows) = seeding(netta, opts.sockets, opts.runs.max(5))?;
            Ok(format!(
                "Seeding {rows} sockets in a network namespace (median wall time): netta `seed-bench` {n:.1} ms, `ss -tanp` {ss:.1} ms, ratio {:.2}.",
                n / ss
            ))
        }
        Part::Baseline => {
            let baseline = opts
                .baseline
                .as_deref()
                .context("--only baseline needs --baseline BIN (another netta build)")?;
            let nginx = start_nginx(dir, 2)?;
            run_ab(opts.requests.min(2000))?;
            crate::bench_cpu::against_baseline(netta, baseline, dir, opts, &nginx)
        }
        Part::Kernel | Part::Latency => {
            let _nginx = start_nginx(dir, 2)?;
            run_ab(opts.requests.min(2000))?;
            if part == Part::Kernel {
                kernel_costs(netta, dir, opts)
            } else {
                fixed_rate_latency(netta, dir, opts)
            }
        }
    }
}

/// The nginx topologies every tracer is measured in: its worker processes.
const TOPOLOGIES: [usize; 2] = [2, 1];

pub fn run(root: &Path, netta: &Path, opts: &Opts) -> Result<String> {
    let dir = std::env::temp_dir().join(format!("netta-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if let Some(part) = opts.only {
        let r = run_part(part, netta, &dir, opts);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let mut topologies = Vec::new();
    for workers in TOPOLOGIES {
        let nginx = start_nginx(&dir, workers)?;
        // Warm up nginx and the page cache.
        run_ab(opts.requests.min(2000))?;
        topologies.push((workers, tracers(netta, &dir, opts, &nginx)?));
    }
    let nginx = start_nginx(&dir, 2)?;
    let kernel = kernel_costs(netta, &dir, opts);
    let latency = fixed_rate_latency(netta, &dir, opts);
    let features = feature_costs(netta, &dir, opts, &nginx);
    let service = agent_service(netta, &dir, opts);
    let sinks = sink_cost(netta, &dir, opts);
    drop(nginx);
    let ingest = criterion(root, opts.smoke)?;
    let seed = seeding(netta, opts.sockets, if opts.smoke { 1 } else { 5 });
    if let Err(e) = &seed {
        eprintln!("bench: seeding benchmark failed: {e:#}");
    }
    let store = store_history(netta, &dir, opts.store_rows);
    let live = crate::bench_live::run(netta, &crate::bench_live::Opts::for_bench(opts.smoke));
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = report(&topologies, &ingest, seed, opts);
    for (part, r) in [
        ("kernel programs", kernel),
        ("fixed-rate latency", latency),
        ("feature costs", features),
        ("agent service", service),
        ("sinks", sinks),
        ("store", store),
        ("live counters", live),
    ] {
        match r {
            Ok(text) => out.push_str(&text),
            Err(e) => eprintln!("bench: {part} benchmark failed: {e:#}"),
        }
    }
    Ok(out)
}

/// Every tracer, `opts.runs` times each, alternating with untraced runs.
fn tracers(netta: &Path, dir: &Path, opts: &Opts, nginx: &Nginx) -> Result<Vec<TracerResult>> {
    let tracers = [
        Tracer::NettaRing,
        Tracer::NettaPerf,
        Tracer::Tcplife,
        Tracer::SsPoll,
    ];
    tracers
        .into_iter()
        .map(|t| tracer_runs(t, netta, dir, opts, nginx))
        .collect()
}

/// One traced `ab` run and the untraced one before it.
pub(crate) struct Paired {
    pub(crate) base: AbResult,
    pub(crate) traced: AbResult,
    pub(crate) seen: Seen,
}

impl Paired {
    pub(crate) fn ratio(&self) -> f64 {
        self.traced.rps / self.base.rps
    }

    /// Agent CPU seconds per 100k connections.
    pub(crate) fn agent_cpu(&self) -> f64 {
        self.seen.cpu_s * 100_000.0 / self.traced.complete.max(1) as f64
    }
}

/// `rounds` rounds of each tracer (with its binary), each traced run after an
/// untraced one, the tracers interleaved in rotating order so the machine's drift
/// hits all alike.
/// Per tracer, its runs in order.
pub(crate) fn interleaved(
    what: &str,
    tracers: &[(Tracer, &Path)],
    rounds: usize,
    first_run: usize,
    dir: &Path,
    opts: &Opts,
    nginx: &Nginx,
) -> Result<Vec<Vec<Paired>>> {
    let mut out: Vec<Vec<Paired>> = tracers.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        // Each round starts with the next tracer: a place in the order (the first
        // traced run after the previous round's last) must not favour one of them.
        for k in 0..tracers.len() {
            let i = (round + k) % tracers.len();
            let (tracer, bin) = tracers[i];
            let base = run_ab(opts.requests)?;
            let running = start(tracer, bin, dir, first_run + round)?;
            let traced = run_ab(opts.requests)?;
            let seen = stop(running, tracer, &nginx.workers)?;
            eprintln!(
                "bench: {what} round {}: {}: {:.0} → {:.0} req/s, client {}/{} server {}/{}, cpu {:.2}s, rss {:.1} MiB",
                round + 1, tracer.name(), base.rps, traced.rps, seen.client, traced.complete,
                seen.server, traced.complete, seen.cpu_s, seen.rss_mib
            );
            out[i].push(Paired { base, traced, seen });
        }
    }
    Ok(out)
}

/// Process identity off: its hooks, the uid and cgroup in every record and the
/// agent's process lookup.
const IDENTITY_OFF: (&str, &str) = ("NETTA_NO_IDENTITY", "1");

/// What DNS capture and process identity cost at full loopback rate: netta with
/// everything on, without DNS capture and without the identity hooks, each run
/// after an untraced one, the variants interleaved run by run so drift hits all
/// alike. A feature's cost is the throughput ratio without it minus the ratio
/// with everything on.
fn feature_costs(netta: &Path, dir: &Path, opts: &Opts, nginx: &Nginx) -> Result<String> {
    let variants = [
        Tracer::NettaRing,
        Tracer::NettaNoDns,
        Tracer::NettaNoIdentity,
    ];
    let runs = opts.runs.max(if opts.smoke { 1 } else { 5 });
    let with_bin: Vec<(Tracer, &Path)> = variants.iter().map(|&t| (t, netta)).collect();
    let paired = interleaved("features", &with_bin, runs, 200, dir, opts, nginx)?;
    let ratios: Vec<Vec<f64>> = paired
        .iter()
        .map(|v| v.iter().map(Paired::ratio).collect())
        .collect();
    let cpu: Vec<Vec<f64>> = paired
        .iter()
        .map(|v| v.iter().map(Paired::agent_cpu).collect())
        .collect();
    let all_on_ratio = median(ratios[0].clone());
    // The same features by their CPU per connection, where the ratio's noise hides 1 %.
    let loop_rounds_n = if opts.smoke { 1 } else { runs * 4 };
    let (untraced, looped) = loop_rounds(&variants, netta, dir, loop_rounds_n, !opts.smoke)?;
    let agent_ns: Vec<f64> = cpu.iter().map(|v| median(v.clone()) * 1e4).collect();
    let base_rps = median(paired.iter().flatten().map(|p| p.base.rps).collect());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let workload_ns = cores * 1e9 / base_rps;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nFeature costs (`--only features`): netta with everything on, with `--no-dns`, and with process identity off (`{}={}`: no exec, fork and exit hooks, no uid or cgroup in records, no process lookup in the agent).\n\n\
         - Throughput: nginx 2 workers, `ab -n {} -c {CONCURRENCY}`, {runs} rounds, each variant after an untraced run; medians. Cost = ratio without the feature − ratio with everything on, in points of untraced throughput (this does not resolve 1 %).\n\
         - CPU per connection: one thread pinned to CPU 0 makes {LOOP_CONNS} loopback connections one after another (a request and a reply each, the server closes first) in a network namespace of its own, untraced and under each variant (netta pinned to CPU 1), in an order that rotates each round, {loop_rounds_n} rounds. Per run: the thread's CPU per connection (`CLOCK_THREAD_CPUTIME_ID`: the kernel's TCP work and netta's programs with their dispatch all run there), as the 10th percentile of its batches of 100 connections (interrupts and a preempted vCPU only add time), plus the agent's CPU per connection until it has taken the loop's records (all its threads' schedstat). The rounds start once the host's TIME_WAIT sockets from the `ab` runs are gone (the agent's periodic reconcile walks them all). Cost = everything on − the variant: the median of the rounds' paired differences, with a 95 % bootstrap interval; share = that over the `ab` workload's CPU per connection untraced ({cores:.0} cores ÷ {base_rps:.0} req/s = {:.1} µs; a share s leaves a saturated machine 1 ÷ (1 + s) of its throughput).\n",
        IDENTITY_OFF.0,
        IDENTITY_OFF.1,
        opts.requests,
        workload_ns / 1e3
    );
    let us = |v: &[f64]| v.iter().map(|n| n / 1e3).collect::<Vec<_>>();
    let field = |v: &[LoopSample], f: fn(&LoopSample) -> f64| v.iter().map(f).collect::<Vec<_>>();
    let untraced_thread = field(&untraced, |s| s.thread);
    let _ = writeln!(
        o,
        "| netta | throughput ratio | agent per connection (`ab`) | loop: thread CPU per connection, 10th pct of batches (untraced {:.2} µs, {}) | loop: thread mean | loop: agent | cost of the feature: CPU per connection (95 % interval); share of the workload; its thread and agent parts; throughput |\n|---|---|---|---|---|---|---|",
        median(untraced_thread.clone()) / 1e3,
        spread(&us(&untraced_thread))
    );
    let all_on = field(&looped[0], LoopSample::total);
    for (v, tracer) in variants.iter().enumerate() {
        let ratio = median(ratios[v].clone());
        let (base, what) = match tracer {
            Tracer::NettaRing => (untraced_thread.clone(), "netta in all"),
            Tracer::NettaNoDns => (field(&looped[v], LoopSample::total), "DNS capture"),
            _ => (field(&looped[v], LoopSample::total), "process identity"),
        };
        let c = conn_loop::paired_median(&all_on, &base);
        let (lo, hi) = conn_loop::paired_median_interval(&all_on, &base);
        let pct = |ns: f64| ns / workload_ns * 100.0;
        let thread = field(&looped[v], |s| s.thread);
        let mean = field(&looped[v], |s| s.thread_mean);
        let agent = field(&looped[v], |s| s.agent);
        // A feature's cost split into the kernel's part (the loop thread) and the
        // agent's, each a paired median with its interval.
        let part = |name: &str, f: fn(&LoopSample) -> f64, own: &[f64]| {
            let on = field(&looped[0], f);
            let m = conn_loop::paired_median(&on, own);
            let (lo, hi) = conn_loop::paired_median_interval(&on, own);
            format!("{name} {m:+.0} ns ({lo:+.0} to {hi:+.0})")
        };
        let throughput = if v == 0 {
            String::new()
        } else {
            format!(
                "; {}, {}; {:+.1} pp",
                part("thread", |s| s.thread, &thread),
                part("agent", |s| s.agent, &agent),
                (ratio - all_on_ratio) * 100.0
            )
        };
        let _ = writeln!(
            o,
            "| {} | {ratio:.3} | {:.0} ns | {:.2} µs ({}) | {:.2} µs | {:.0} ns | {what}: {c:+.0} ns ({lo:+.0} to {hi:+.0}); {:+.2} % ({:+.2} to {:+.2} %){throughput} |",
            tracer.name(),
            agent_ns[v],
            median(thread.clone()) / 1e3,
            spread(&us(&thread)),
            median(mean) / 1e3,
            median(agent),
            pct(c),
            pct(lo),
            pct(hi),
        );
    }
    Ok(o)
}

/// Connections per run of the connection loop.
const LOOP_CONNS: u32 = 10_000;

/// One round's figure for one configuration of the connection loop, CPU ns per
/// connection.
#[derive(Clone, Copy, Debug, Default)]
struct LoopSample {
    /// The loop thread (the kernel's TCP work, netta's programs and their
    /// dispatch): the 10th percentile of its batches (`conn_loop::LoopRun::low`).
    thread: f64,
    /// The same thread's mean over the run.
    thread_mean: f64,
    /// The agent (all its threads' schedstat; `conn_loop::LoopRun::agent`); 0
    /// untraced.
    agent: f64,
}

impl LoopSample {
    fn total(&self) -> f64 {
        self.thread + self.agent
    }
}

/// `rounds` rounds of the connection loop, untraced and under each variant, in an
/// order that rotates each round: the untraced runs and each variant's runs, in
/// round order.
fn loop_rounds(
    variants: &[Tracer],
    netta: &Path,
    dir: &Path,
    rounds: usize,
    settle: bool,
) -> Result<(Vec<LoopSample>, Vec<Vec<LoopSample>>)> {
    let mut untraced = Vec::new();
    let mut traced = vec![Vec::new(); variants.len()];
    // The agent's reconcile walks every socket of the host: wait for the earlier
    // runs' TIME_WAIT sockets to go (60 s at most) so it is the same in all rounds
    // (`settle`; a smoke run does not wait).
    let deadline = Instant::now() + Duration::from_secs(75);
    while settle && time_wait_sockets() > 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    // A first loop warms the caches and the allocator.
    conn_loop::ns_per_connection(LOOP_CONNS / 4, None)?;
    let configs = variants.len() + 1;
    for r in 0..rounds {
        for k in 0..configs {
            // 0 is untraced, v + 1 is variants[v].
            let c = (r + k) % configs;
            if c == 0 {
                let run = conn_loop::ns_per_connection(LOOP_CONNS, None)?;
                untraced.push(LoopSample {
                    thread: run.low,
                    thread_mean: run.mean,
                    agent: 0.0,
                });
                continue;
            }
            let mut running = start(variants[c - 1], netta, dir, 300 + r)?;
            let mut child = running.child.take().context("no tracer process")?;
            let pid = child.id();
            conn_loop::pin_process(pid, 1);
            let run = conn_loop::ns_per_connection(LOOP_CONNS, Some(pid));
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as i32, libc::SIGINT) };
            let _ = child.wait();
            let run = run?;
            traced[c - 1].push(LoopSample {
                thread: run.low,
                thread_mean: run.mean,
                agent: run.agent.unwrap_or(0.0),
            });
        }
        eprintln!(
            "bench: connection loop round {}: untraced {:.0} ns, {}",
            r + 1,
            untraced[r].thread,
            variants
                .iter()
                .zip(&traced)
                .map(|(t, n)| format!(
                    "{} {:.0} ns + agent {:.0} ns",
                    t.name(),
                    n[r].thread,
                    n[r].agent
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok((untraced, traced))
}

/// TIME_WAIT sockets in this network namespace (`/proc/net/sockstat`, IPv4 and IPv6).
fn time_wait_sockets() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("TCP:"))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.position(|x| x == "tw")?;
            w.next()?.parse::<u64>().ok()
        })
        .sum()
}

/// One tracer, `opts.runs` times, each run after an untraced one.
fn tracer_runs(
    tracer: Tracer,
    netta: &Path,
    dir: &Path,
    opts: &Opts,
    nginx: &Nginx,
) -> Result<TracerResult> {
    let mut r = TracerResult {
        tracer,
        base_rps: vec![],
        traced_rps: vec![],
        seen: vec![],
        made: vec![],
    };
    for i in 0..opts.runs {
        let base = run_ab(opts.requests)?;
        r.base_rps.push(base.rps);
        let running = start(tracer, netta, dir, i)?;
        let traced = run_ab(opts.requests)?;
        let seen = stop(running, tracer, &nginx.workers)?;
        r.traced_rps.push(traced.rps);
        r.made.push(traced.complete + traced.failed);
        eprintln!(
            "bench: {} workers, {} run {}: {:.0} req/s untraced, {:.0} traced; client {}/{} server {}/{}; cpu {:.2}s rss {:.1} MiB",
            nginx.workers.len(), tracer.name(), i + 1, base.rps, traced.rps, seen.client,
            traced.complete, seen.server, traced.complete, seen.cpu_s, seen.rss_mib
        );
        r.seen.push(seen);
    }
    Ok(r)
}

/// Kernel run time of each netta program per connection: one more traced `ab` run
/// with `kernel.bpf_stats_enabled=1` (restored afterwards; it costs two clock reads
/// per program run, so the throughput runs go without it), read from netta's
/// `NETTA_BPF_STATS` report at exit. The programs see the whole machine.
fn kernel_costs(netta: &Path, dir: &Path, opts: &Opts) -> Result<String> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let was = std::fs::read_to_string(SYSCTL).context("reading kernel.bpf_stats_enabled")?;
    std::fs::write(SYSCTL, "1").context("enabling kernel.bpf_stats_enabled")?;
    let result = (|| -> Result<(Vec<String>, u64)> {
        let mut child = Command::new(netta)
            .args(["--standalone", "--transport", "ring", "events"])
            .env("NETTA_BPF_STATS", "1")
            .stdout(std::fs::File::create(dir.join("kernel-costs.out"))?)
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = wait_for_line(&mut child, true, "netta: standalone")?;
        let ab = run_ab(opts.requests)?;
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
        Ok((lines, ab.complete + ab.failed))
    })();
    let _ = std::fs::write(SYSCTL, was.trim());
    let (lines, conns) = result?;
    let mut rows: Vec<(String, u64, u64)> = lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["netta:", "bpf-stats", name, "runs", runs, "run_time_ns", ns] => {
                    Some((name.to_string(), runs.parse().ok()?, ns.parse().ok()?))
                }
                _ => None,
            }
        })
        .filter(|r| r.1 > 0)
        .collect();
    if rows.is_empty() || conns == 0 {
        bail!("netta printed no bpf-stats lines");
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    let per = |v: u64| v as f64 / conns as f64;
    let total: f64 = rows.iter().map(|r| per(r.2)).sum();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nKernel programs (one more traced run, `ab -n {} -c {CONCURRENCY}`, nginx 2 workers, kernel.bpf_stats_enabled=1): \
         **{total:.0} ns of BPF run time per connection** (target ≤ 1,500).\n\n\
         | program | runs per connection | ns per connection | ns per run |\n|---|---|---|---|",
        opts.requests
    );
    for (name, runs, ns) in &rows {
        let _ = writeln!(
            o,
            "| `{name}` | {:.2} | {:.0} | {:.0} |",
            per(*runs),
            per(*ns),
            *ns as f64 / *runs as f64
        );
    }
    Ok(o)
}

/// Latency added at a fixed rate (10k req/s, each request a new connection), untraced
/// and traced by netta (ring buffer) alternating: p50 and p99 medians over the runs.
fn fixed_rate_latency(netta: &Path, dir: &Path, opts: &Opts) -> Result<String> {
    let (rate, seconds) = if opts.smoke { (1000, 1) } else { (10_000, 10) };
    let to: std::net::SocketAddr = ([127, 0, 0, 1], PORT).into();
    let (mut base, mut traced) = (Vec::new(), Vec::new());
    let mut failed = 0;
    for i in 0..opts.runs {
        let b = crate::latency::run(to, rate, seconds, 8)?;
        let running = start(Tracer::NettaRing, netta, dir, 100 + i)?;
        let t = crate::latency::run(to, rate, seconds, 8)?;
        let _ = stop(running, Tracer::NettaRing, &HashSet::new())?;
        failed += b.failed + t.failed;
        let us = |r: &crate::latency::Run, q| r.quantile(q).as_secs_f64() * 1e6;
        eprintln!(
            "bench: fixed rate run {}: p50 {:.0} -> {:.0} us, p99 {:.0} -> {:.0} us",
            i + 1,
            us(&b, 0.5),
            us(&t, 0.5),
            us(&b, 0.99),
            us(&t, 0.99)
        );
        base.push((us(&b, 0.5), us(&b, 0.99)));
        traced.push((us(&t, 0.5), us(&t, 0.99)));
    }
    let med = |v: &[(f64, f64)], p99: bool| {
        median(v.iter().map(|x| if p99 { x.1 } else { x.0 }).collect())
    };
    let (b50, b99, t50, t99) = (
        med(&base, false),
        med(&base, true),
        med(&traced, false),
        med(&traced, true),
    );
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nFixed-rate latency ({rate} req/s for {seconds} s, one connection per request, open loop: \
         latency counts from each request's scheduled time; nginx 2 workers; {} run(s) each, medians): \
         untraced p50 {b50:.0} µs, p99 {b99:.0} µs; traced by netta p50 {t50:.0} µs, p99 {t99:.0} µs: \
         **p50 {:+.1} %, p99 {:+.1} %** (target: p99 ≤ +5 %); {failed} requests failed.",
        opts.runs,
        (t50 / b50 - 1.0) * 100.0,
        (t99 / b99 - 1.0) * 100.0
    );
    Ok(o)
}

/// GET over the agent's API socket: the whole reply, head and body.
fn api_raw(sock: &Path, path: &str) -> Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(sock).context("connect to the API")?;
    std::io::Write::write_all(
        &mut s,
        format!("GET {path} HTTP/1.1\r\nHost: netta\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text)
}

/// GET over the agent's API socket; the body as JSON.
fn api_get(sock: &Path, path: &str) -> Result<serde_json::Value> {
    let text = api_raw(sock, path)?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    serde_json::from_str(body).with_context(|| format!("API reply to {path}: {text}"))
}

/// A `netta agent` for the service benchmark, stopped (SIGTERM) when dropped.
struct ServiceAgent(Child);

impl ServiceAgent {
    /// With its store in `state`, or none (`--no-store`).
    fn start(netta: &Path, state: Option<&Path>, sock: &Path) -> Result<ServiceAgent> {
        Self::with_sinks(netta, state, sock, &["file:/dev/null".to_string()])
    }

    fn with_sinks(
        netta: &Path,
        state: Option<&Path>,
        sock: &Path,
        sinks: &[String],
    ) -> Result<ServiceAgent> {
        let mut cmd = Command::new(netta);
        cmd.arg("agent");
        for s in sinks {
            cmd.args(["--sink", s]);
        }
        cmd.arg("--api").arg(sock);
        match state {
            Some(d) => cmd.arg("--state-dir").arg(d),
            None => cmd.arg("--no-store"),
        };
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        wait_for_line(&mut child, true, "netta: agent ready")?;
        Ok(ServiceAgent(child))
    }
}

impl Drop for ServiceAgent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// What the store did during one `ab` run with it on.
#[derive(Default)]
struct StoreRun {
    stored: u64,
    dropped: u64,
    lost: u64,
    /// The store file after the agent stopped (its WAL checkpointed), and its rows.
    bytes: u64,
    rows: u64,
}

/// `ab` with an agent running, its store on (`state`) or off; req/s, and with the
/// store on what it stored and dropped.
fn service_run(
    netta: &Path,
    state: Option<&Path>,
    sock: &Path,
    requests: u32,
) -> Result<(f64, Option<StoreRun>)> {
    if let Some(d) = state {
        let _ = std::fs::remove_dir_all(d);
    }
    let agent = ServiceAgent::start(netta, state, sock)?;
    let rows = |v: &serde_json::Value| v["store"]["rows_written"].as_u64().unwrap_or(0);
    let before = api_get(sock, "/v1/stats")?;
    let ab = run_ab(requests)?;
    let Some(dir) = state else {
        return Ok((ab.rps, None));
    };
    // The writer commits every 250 ms: wait for it to catch up.
    let mut after = api_get(sock, "/v1/stats")?;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        let next = api_get(sock, "/v1/stats")?;
        let settled = rows(&next) == rows(&after);
        after = next;
        if settled {
            break;
        }
    }
    drop(agent);
    let run = StoreRun {
        stored: rows(&after) - rows(&before),
        dropped: after["store"]["rows_dropped"].as_u64().unwrap_or(0),
        lost: after["since_start"]["lost_events"].as_u64().unwrap_or(0),
        bytes: std::fs::metadata(dir.join("history.db")).map_or(0, |m| m.len()),
        rows: rows(&after),
    };
    Ok((ab.rps, Some(run)))
}

/// `netta agent` as the service: `netta --api S list` latency on a running agent;
/// then `ab` against nginx (full loopback rate) with the agent's store off and on,
/// alternating: the throughput ratio, rows stored and dropped, bytes on disk per
/// million stored connections.
fn agent_service(netta: &Path, dir: &Path, opts: &Opts) -> Result<String> {
    let state = dir.join("service-state");
    let sock = dir.join("service.sock");
    let _ = std::fs::remove_dir_all(&state);
    let (mut ms, mut api_ms, mut reply) = (Vec::new(), Vec::new(), 0);
    let rows;
    {
        // A busy server's table: the TIME_WAIT sockets of one `ab` run (they last
        // 60 s), which the agent seeds. Without it the rows listed were whatever
        // the earlier parts of the bench happened to leave (14k rows or 2).
        run_ab(opts.requests)?;
        let _agent = ServiceAgent::start(netta, Some(&state), &sock)?;
        for _ in 0..if opts.smoke { 3 } else { 20 } {
            // The agent's part alone: select, encode, send (what `list` asks for).
            let t = Instant::now();
            reply = api_raw(&sock, "/v1/view/list")?.len();
            api_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let out = Command::new(netta)
                .arg("--api")
                .arg(&sock)
                .arg("list")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() || !err.starts_with("netta: attached to agent") {
                bail!("netta --api S list did not attach: {err}");
            }
        }
        // The table's size, untimed: the rows between the heads and the total.
        let out = Command::new(netta)
            .arg("--api")
            .arg(&sock)
            .arg("list")
            .stderr(Stdio::null())
            .output()?;
        rows = out.stdout.split(|b| *b == b'\n').count().saturating_sub(9);
    }
    let (mut off, mut on, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..opts.runs {
        let (rps, _) = service_run(netta, None, &sock, opts.requests)?;
        off.push(rps);
        let (rps, run) = service_run(netta, Some(&state), &sock, opts.requests)?;
        on.push(rps);
        let run = run.unwrap_or_default();
        eprintln!(
            "bench: agent service run {}: {off:.0} req/s store off, {rps:.0} store on; stored {} dropped {} lost {}",
            i + 1,
            run.stored,
            run.dropped,
            run.lost,
            off = off[i],
        );
        runs.push(run);
    }
    let _ = std::fs::remove_dir_all(&state);
    let (rps_off, rps_on) = (median(off), median(on));
    let stored: u64 = runs.iter().map(|r| r.stored).sum();
    let dropped: u64 = runs.iter().map(|r| r.dropped).sum();
    let lost: u64 = runs.iter().map(|r| r.lost).sum();
    let per_million = median(
        runs.iter()
            .map(|r| r.bytes as f64 / (r.rows.max(1) as f64 / 1e6))
            .collect(),
    );
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nAgent as a service (`netta agent --state-dir D --api S`): `netta --api S list` median {:.1} ms, max {:.1} ms over {} runs (target ≤ 50 ms), \
         {rows} rows; of which the agent's reply (`/v1/view/list`: select, encode, send; {:.1} MB) median {:.1} ms.\n\n\
         Store at full loopback rate (`ab -n {} -c {CONCURRENCY}`, {} run(s) each, store off and on alternating): \
         {rps_off:.0} req/s with `--no-store`, {rps_on:.0} req/s with the store (ratio {:.2}); \
         the store wrote {stored} rows for {} connections (a row per end) and dropped {dropped}; agent-wide lost records {lost}; \
         the store file holds {:.0} MB per million stored rows (as the agent's writer wrote them).",
        median(ms.clone()),
        ms.iter().cloned().fold(0.0, f64::max),
        ms.len(),
        reply as f64 / 1e6,
        median(api_ms),
        opts.requests,
        opts.runs,
        rps_on / rps_off,
        opts.requests as u64 * opts.runs as u64,
        per_million / 1e6,
    );
    Ok(o)
}

/// CPU time of every live thread of `pid`, in ns (`/proc/PID/task/*/schedstat`):
/// finer than the 10 ms ticks of `/proc/PID/stat`, for short runs.
/// User and system clock ticks of all of `pid`'s threads (/proc/PID/task/*/stat).
fn threads_user_sys_ticks(pid: u32) -> Option<(u64, u64)> {
    let (mut user, mut sys) = (0, 0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(s) = std::fs::read_to_string(t.ok()?.path().join("stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let mut f = s.rsplit_once(')')?.1.split_whitespace().skip(11);
        user += f.next()?.parse::<u64>().ok()?;
        sys += f.next()?.parse::<u64>().ok()?;
    }
    Some((user, sys))
}

pub(crate) fn threads_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let p = t.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Spread of a sample: `min–max`.
fn spread(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

/// The sinks of one configuration of the sink benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SinkSet {
    /// One file.
    One,
    /// A file and `/dev/null`: netta's own cost of a second sink (the kernel
    /// copies nothing for /dev/null).
    PlusNull,
    /// Two files: the second also costs the kernel's copy of every line.
    Two,
}

impl SinkSet {
    const ALL: [SinkSet; 3] = [SinkSet::One, SinkSet::PlusNull, SinkSet::Two];

    fn name(self) -> &'static str {
        match self {
            SinkSet::One => "one file sink",
            SinkSet::PlusNull => "a file and file:/dev/null",
            SinkSet::Two => "two file sinks",
        }
    }
}

/// One `ab` run with `netta agent --no-store` writing to `set`: the agent's CPU
/// µs per record written, and the records. A run that saw fewer records than
/// requests (the kernel stream disturbed by something else on the machine) is
/// an error, so the caller can run it again.
fn sink_run(netta: &Path, dir: &Path, set: SinkSet, requests: u32) -> Result<SinkRun> {
    let sock = dir.join("sinks.sock");
    let files: Vec<PathBuf> = match set {
        SinkSet::One | SinkSet::PlusNull => vec![dir.join("sink-0.json")],
        SinkSet::Two => vec![dir.join("sink-0.json"), dir.join("sink-1.json")],
    };
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let mut specs: Vec<String> = files
        .iter()
        .map(|f| format!("file:{}", f.display()))
        .collect();
    if set == SinkSet::PlusNull {
        specs.push("file:/dev/null".into());
    }
    let agent = ServiceAgent::with_sinks(netta, None, &sock, &specs)?;
    let pid = agent.0.id();
    let cpu0 = threads_cpu_ns(pid).context("agent CPU")?;
    let ticks0 = threads_user_sys_ticks(pid).context("agent CPU")?;
    run_ab(requests)?;
    // The ring is read in batches: let the last records reach the files.
    std::thread::sleep(Duration::from_millis(500));
    let cpu1 = threads_cpu_ns(pid).context("agent CPU")?;
    let ticks1 = threads_user_sys_ticks(pid).context("agent CPU")?;
    drop(agent);
    let user = ticks1.0.saturating_sub(ticks0.0) as f64;
    let sys = ticks1.1.saturating_sub(ticks0.1) as f64;
    let user_share = if user + sys > 0.0 {
        user / (user + sys)
    } else {
        0.0
    };
    let lines = |f: &Path| -> Result<u64> {
        let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        Ok(text.iter().filter(|b| **b == b'\n').count() as u64)
    };
    let counts: Vec<u64> = files.iter().map(|f| lines(f)).collect::<Result<_>>()?;
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    // Both files get every line.
    if counts.windows(2).any(|w| w[0] != w[1]) {
        bail!("the sinks wrote different line counts: {counts:?}");
    }
    let records = counts[0];
    if records < u64::from(requests) {
        bail!("only {records} records for {requests} requests: the kernel stream was disturbed");
    }
    let us = cpu1.saturating_sub(cpu0) as f64 / 1e3 / records as f64;
    Ok(SinkRun {
        us,
        user_us: us * user_share,
        records,
    })
}

/// One run of the sink benchmark: the agent's CPU µs per record written, the
/// part of it in user space (netta's own work; the rest is the kernel's, the
/// writes themselves), and the records.
struct SinkRun {
    us: f64,
    user_us: f64,
    records: u64,
}

/// `netta agent` with one file sink, with a second sink on /dev/null, and with
/// two file sinks, on the same `ab` workload, in rotating order: agent CPU µs
/// per record (medians and spreads).
fn sink_cost(netta: &Path, dir: &Path, opts: &Opts) -> Result<String> {
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); SinkSet::ALL.len()];
    let mut user: Vec<Vec<f64>> = vec![Vec::new(); SinkSet::ALL.len()];
    let mut records = 0;
    let runs = opts.runs.max(1);
    for i in 0..runs {
        for k in 0..SinkSet::ALL.len() {
            let at = (i + k) % SinkSet::ALL.len();
            let set = SinkSet::ALL[at];
            let mut tries = 0;
            let run = loop {
                tries += 1;
                match sink_run(netta, dir, set, opts.requests) {
                    Ok(r) => break r,
                    Err(e) if tries < 3 => eprintln!("bench: sinks run {}: {e:#}; again", i + 1),
                    Err(e) => return Err(e),
                }
            };
            records += run.records;
            eprintln!(
                "bench: sinks run {}: {}, {:.2} µs/record ({:.2} in user space) over {} records",
                i + 1,
                set.name(),
                run.us,
                run.user_us,
                run.records
            );
            us[at].push(run.us);
            user[at].push(run.user_us);
        }
    }
    let m: Vec<f64> = us.iter().map(|v| median(v.clone())).collect();
    let mu: Vec<f64> = user.iter().map(|v| median(v.clone())).collect();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nSinks (`netta agent --no-store --sink file:A [--sink file:/dev/null | --sink file:B]`, \
         `ab -n {} -c {CONCURRENCY}`, {runs} run(s) each, in rotating order): agent CPU per record written \
         (all threads, /proc/PID/task/*/schedstat; median, and the runs' range), and the \
         part of it in user space, netta's own work (by the threads' utime:stime ticks; the \
         rest is the kernel's, mostly the writes into each file's page cache):\n",
        opts.requests
    );
    let _ = writeln!(
        o,
        "| sinks | µs per record | runs | vs one sink | user space | vs one sink |\n|---|---|---|---|---|---|"
    );
    for (k, set) in SinkSet::ALL.iter().enumerate() {
        let _ = writeln!(
            o,
            "| {} | {:.2} | {} | {:+.2} µs ({:.2}×) | {:.2} ({}) | {:+.2} µs |",
            set.name(),
            m[k],
            spread(&us[k]),
            m[k] - m[0],
            m[k] / m[0],
            mu[k],
            spread(&user[k]),
            mu[k] - mu[0]
        );
    }
    let _ = writeln!(o, "\n{records} records in all.");
    Ok(o)
}

/// The history store: a generated week of `rows` connections, its size, and
/// the median time of indexed history queries (`netta store-bench`).
pub fn store_history(netta: &Path, dir: &Path, rows: u64) -> Result<String> {
    let sdir = dir.join("store");
    let _ = std::fs::remove_dir_all(&sdir);
    let out = Command::new(netta)
        .args(["store-bench", "--rows", &rows.to_string(), "--dir"])
        .arg(&sdir)
        .output()
        .context("netta store-bench")?;
    if !out.status.success() {
        bail!(
            "netta store-bench: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("store-bench output")?;
    let _ = std::fs::remove_dir_all(&sdir);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nHistory store (`netta store-bench --rows {rows}`, a generated week): {} rows generated in {:.1} s; \
         the first {} through the store's insert path (as the agent's writer, every index kept) at {:.0} rows/s, the rest bulk-loaded; \
         {:.1} MB on disk ({:.0} MB per million connections, indexes built in one pass).\n",
        v["rows"],
        v["generate_s"].as_f64().unwrap_or(0.0),
        v["insert_rows"],
        v["insert_rows_per_s"].as_f64().unwrap_or(0.0),
        v["file_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        v["bytes_per_million"].as_f64().unwrap_or(0.0) / 1e6
    );
    let _ = writeln!(
        o,
        "Open connections in the store ({} of them, updated then ended in the writer's batches): \
         {:.0} `connection-updated` rows/s, each rewriting its connection's row; {:.0} ends/s \
         that replace an open row. An end with no open row (most: they never lived through \
         an update) costs one hash lookup more than before.\n",
        v["open_connections"],
        v["open_updates_per_s"].as_f64().unwrap_or(0.0),
        v["open_ends_per_s"].as_f64().unwrap_or(0.0),
    );
    let _ = writeln!(o, "| history query | median ms | rows |\n|---|---|---|");
    for q in v["queries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "| `{}` | {:.2} | {} |",
            q["query"].as_str().unwrap_or("?"),
            q["median_ms"].as_f64().unwrap_or(0.0),
            q["rows"]
        );
    }
    Ok(o)
}

fn report(
    topologies: &[(usize, Vec<TracerResult>)],
    ingest: &[(String, String)],
    seed: Result<(f64, f64, u64)>,
    opts: &Opts,
) -> String {
    let mut o = String::new();
    for (workers, results) in topologies {
        tracer_table(&mut o, *workers, results, opts);
    }
    let _ = writeln!(
        o,
        "\nIngest (decode + table update, no kernel; criterion, one core) and the sinks (`sinks-N`: the records serialised once per batch and written by N file sinks to /dev/null, on the agent's two runtime threads):\n"
    );
    for (name, thrpt) in ingest {
        let _ = writeln!(o, "- `{name}`: {thrpt}");
    }
    match seed {
        Ok(seed) => {
            let _ = writeln!(
                o,
                "\nSeeding {} sockets in a network namespace (median wall time, process start to exit): netta `seed-bench` {:.1} ms, `ss -tanp` {:.1} ms, ratio {:.2}.",
                seed.2, seed.0, seed.1, seed.0 / seed.1
            );
        }
        Err(e) => {
            let _ = writeln!(o, "\nSeeding benchmark failed: {e:#}");
        }
    }
    o
}

/// One topology's table: completeness, attribution, losses, throughput ratio,
/// agent CPU and memory per tracer, then the raw rates.
fn tracer_table(o: &mut String, workers: usize, results: &[TracerResult], opts: &Opts) {
    let _ = writeln!(
        o,
        "Workload: nginx ({workers} worker(s), keep-alive off) on 127.0.0.1, `ab -n {} -c {CONCURRENCY}`, {} run(s) per tracer alternating with untraced runs; medians.\n",
        opts.requests, opts.runs
    );
    let _ = writeln!(
        o,
        "| tracer | client sockets reported | server sockets reported | server → nginx worker | client → ab | lost | overhead (traced/untraced req/s) | agent CPU s / 100k records | agent cores per 10k conn/s | peak RSS |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let made: u64 = r.made.iter().sum();
        let sum = |f: fn(&Seen) -> u64| r.seen.iter().map(f).sum::<u64>();
        let (c, s, cr, sr, lost) = (
            sum(|x| x.client),
            sum(|x| x.server),
            sum(|x| x.client_right),
            sum(|x| x.server_right),
            sum(|x| x.lost),
        );
        let ratio = median(r.traced_rps.clone()) / median(r.base_rps.clone());
        let records = sum(|x| x.records);
        let cpu: f64 = r.seen.iter().map(|x| x.cpu_s).sum();
        let (cpu_col, cores_col, rss_col) = if r.tracer == Tracer::SsPoll {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                if records > 0 {
                    format!("{:.3}", cpu * 100_000.0 / records as f64)
                } else {
                    "-".into()
                },
                // CPU seconds per 10k connections = cores at 10k connections/s.
                if made > 0 {
                    format!("{:.3}", cpu * 10_000.0 / made as f64)
                } else {
                    "-".into()
                },
                format!(
                    "{:.1} MiB",
                    r.seen.iter().map(|x| x.rss_mib).fold(0.0, f64::max)
                ),
            )
        };
        let _ = writeln!(
            o,
            "| {} | {} ({c}/{made}) | {} ({s}/{made}) | {} | {} | {} | {:.3} | {} | {} | {} |",
            r.tracer.name(),
            pct(c, made),
            pct(s, made),
            pct(sr, s),
            pct(cr, c),
            if r.tracer == Tracer::SsPoll || r.tracer == Tracer::Tcplife {
                "-".to_string()
            } else {
                lost.to_string()
            },
            ratio,
            cpu_col,
            cores_col,
            rss_col
        );
    }
    let idle: u64 = results
        .iter()
        .flat_map(|r| r.seen.iter())
        .map(|s| s.idle)
        .sum();
    let _ = writeln!(
        o,
        "\nConnections counted are those that carried a request (ab's \"Complete requests\"); netta also reported {idle} connections ab opened and closed unused at the ends of runs (0 bytes), which ab does not count.\n"
    );
    let _ = writeln!(o, "\nRaw req/s (untraced → traced, per run):\n");
    for r in results {
        let pairs: Vec<String> = r
            .base_rps
            .iter()
            .zip(&r.traced_rps)
            .map(|(b, t)| format!("{b:.0} → {t:.0}"))
            .collect();
        let _ = writeln!(o, "- {}: {}", r.tracer.name(), pairs.join(", "));
    }
}

/// Replaces the generated section of BENCHMARKS.md, keeping the prose around it.
pub fn write_markdown(path: &Path, body: &str, command: &str) -> Result<()> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let old = std::fs::read_to_string(path)
        .unwrap_or_else(|_| format!("# Benchmarks\n\n{START}\n{END}\n"));
    let (head, tail) = match (old.find(START), old.find(END)) {
        (Some(a), Some(b)) if a < b => (&old[..a], &old[b + END.len()..]),
        _ => (old.as_str(), "\n"),
    };
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let text = format!(
        "{head}{START}\nGenerated by `{command}` on {date}, kernel {uname}, {} CPUs.\n\n{body}{END}{tail}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// Accepts a number like 20000 or 20k.
pub fn parse_count(s: &str) -> Result<u32> {
    let (num, mult) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1000),
        None => (s, 1),
    };
    Ok(num.parse::<u32>().context("not a number")? * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
        assert_eq!(parse_count("20k").unwrap(), 20_000);
        assert_eq!(parse_count("500").unwrap(), 500);
        assert!(parse_count("lots").is_err());
    }

    #[test]
    fn netta_lines_are_counted_by_side_and_owner() {
        let workers: HashSet<u32> = [10].into_iter().collect();
        let line = |dir: &str, pid: u32, name: &str, bytes: u64| {
            format!(
                "{{\"event\":{{\"action\":\"connection-closed\"}},\"network\":{{\"direction\":\"{dir}\"}},\"source\":{{\"bytes\":{bytes}}},\"destination\":{{\"port\":{PORT}}},\"process\":{{\"pid\":{pid},\"name\":\"{name}\"}},\"netta\":{{}}}}"
            )
        };
        let text = [
            line("egress", 5, "ab", 80),
            line("ingress", 10, "nginx", 80),
            line("ingress", 11, "nginx", 80),
            line("egress", 5, "ab", 0),
        ]
        .join("\n");
        let s = parse_netta(&text, &workers);
        assert_eq!(
            (s.client, s.server, s.client_right, s.server_right, s.idle),
            (1, 2, 1, 1, 1)
        );
    }
}
