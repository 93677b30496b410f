//! SIGINT or SIGTERM at any moment, start-up included, ends `netta events` and
//! `netta agent` promptly and cleanly: exit status 0, output ending in a whole
//! line, every line valid ECS, and the connections made before the signal
//! among them once netta said it was ready.
use std::io::Read;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use netta_tests::*;

/// Long enough for any clean stop; this is a hang detector, not a speed test.
const PATIENCE: Duration = Duration::from_secs(5);

/// A small xorshift generator: the delays differ per run and the seed is printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Waits for `child` to exit, killing it (and failing) after [`PATIENCE`].
fn wait_exit(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {PATIENCE:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a pipe to its end on a thread.
fn collect(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// The (action, direction, client port) keys of the lines touching server `port`.
fn keys(lines: &[Value], port: u64) -> Vec<(String, String, u64)> {
    lines
        .iter()
        .filter(|v| u64_at(v, &["destination", "port"]) == Some(port))
        .filter_map(|v| {
            Some((
                str_at(v, &["event", "action"])?.to_string(),
                str_at(v, &["network", "direction"])?.to_string(),
                u64_at(v, &["source", "port"])?,
            ))
        })
        .collect()
}

/// One connection through a server of our own: (server port, client port).
fn one_connection() -> (u64, u64) {
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "10", "nt-sigsrv"]);
    let port: u64 = server.expect_line("port ").parse().unwrap();
    let mut client = Traffic::to_loopback("tcp-client", port, &["1", "10", "nt-sigcli"]);
    let cport = client.expect_line("local ").parse().unwrap();
    client.finish();
    server.finish();
    (port, cport)
}

#[test]
fn a_stop_signal_at_any_moment_ends_netta_with_everything_flushed() {
    require_ebpf!("signals");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("signal delays: seed {seed}");
    let mut rng = Rng(seed);
    let dir = temp_dir("signals");
    let mut ready_runs = 0;
    for i in 0..20 {
        let agent = i % 2 == 1;
        let (sig, sig_name) = if i % 4 < 2 {
            (libc::SIGINT, "SIGINT")
        } else {
            (libc::SIGTERM, "SIGTERM")
        };
        let delay = Duration::from_millis(rng.next() % 1500);
        let file = dir.join(format!("run{i}.json"));
        let mut cmd = netta_cmd();
        if agent {
            cmd.args(["agent", "--no-store", "--state-dir"])
                .arg(dir.join("state"))
                .arg("--sink")
                .arg(format!("file:{}", file.display()));
        } else {
            cmd.arg("events");
        }
        let what = format!(
            "run {i}: netta {} with {sig_name} after {delay:?}",
            if agent { "agent" } else { "events" }
        );
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr_pipe = child.stderr.take().unwrap();
        // Watch stderr for the ready line as it comes.
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = Vec::new();
            for l in std::io::BufReader::new(stderr_pipe).lines() {
                let Ok(l) = l else { break };
                if l.starts_with("netta: standalone") || l.starts_with("netta: agent ready") {
                    let _ = ready_tx.send(());
                }
                all.push(l);
            }
            all
        });
        std::thread::sleep(delay);
        // Once netta is ready, a connection made before the signal must be in the output.
        let before = ready_rx.try_recv().is_ok().then(one_connection);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = wait_exit(&mut child, &what);
        let err = stderr.join().unwrap();
        let out = if agent {
            std::fs::read_to_string(&file).unwrap_or_default()
        } else {
            stdout.recv().unwrap()
        };
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(sig) {
            // Only before main could catch it (the dynamic loader's first instants):
            // then nothing had started.
            assert!(
                out.is_empty() && err.is_empty() && before.is_none(),
                "{what}: killed by the signal after starting: {err:?}"
            );
            continue;
        }
        assert!(status.success(), "{what}: {status}: {err:?}");
        assert!(
            out.is_empty() || out.ends_with('\n'),
            "{what}: a partial last line"
        );
        let lines: Vec<Value> = out.lines().map(parse_event_line).collect();
        for l in &err {
            assert_no_kernel_address("netta's log", l);
        }
        if let Some((port, cport)) = before {
            ready_runs += 1;
            let got = keys(&lines, port);
            for action in ["connection-opened", "connection-closed"] {
                for dir in ["egress", "ingress"] {
                    let k = (action.to_string(), dir.to_string(), cport);
                    assert!(got.contains(&k), "{what}: {k:?} missing; got {got:?}");
                }
            }
        }
    }
    eprintln!("{ready_runs} of 20 runs were signalled after netta was ready");
    let _ = std::fs::remove_dir_all(&dir);
}
