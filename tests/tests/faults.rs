//! Faults and hostile input: kill -9 leaves nothing loaded, signals flush, least
//! privilege works, hostile process names never reach a terminal raw, and a closed
//! pipe ends `netta events` promptly. Privileged.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netta_tests::*;

/// These tests count kernel objects and share the machine-wide tracepoints.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ids of the BPF programs loaded now.
fn prog_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool (apt-get install bpftool)");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn kill_9_leaves_no_program_loaded() {
    let _g = lock();
    require_ebpf!("kill_9");
    let before = prog_ids();
    let ev = Events::start(&[], &[]);
    let during: Vec<u64> = prog_ids()
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    assert!(
        during.len() >= 7,
        "netta's programs are not visible: {during:?}"
    );
    let mut child = ev.into_child();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u64> = prog_ids()
            .into_iter()
            .filter(|i| during.contains(i))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded after kill -9: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing pinned either.
    let pinned = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().contains("netta"))
        })
        .unwrap_or(false);
    assert!(!pinned);
}

#[test]
fn sigterm_flushes_open_udp_flows_and_exits_zero() {
    let _g = lock();
    require_ebpf!("sigterm_flush");
    let ev = Events::start(&["--udp-idle", "10m"], &[]);
    let mut server = Traffic::spawn(&["udp-server", "127.0.0.1:0", "nt-tsrv"]);
    let port: u64 = server.expect_line("port ").parse().unwrap();
    let sender = Traffic::to_loopback("udp-send", port, &["100", "8", "nt-tsend"]);
    sender.finish();
    let all = ev.stop_with(libc::SIGTERM);
    server.finish();
    let flow = all
        .iter()
        .find(|e| {
            str_at(e, &["event", "action"]) == Some("udp-flow")
                && u64_at(e, &["destination", "port"]) == Some(port)
        })
        .expect("the open flow is reported on SIGTERM");
    assert_eq!(u64_at(flow, &["network", "packets"]), Some(100));
}

#[test]
fn runs_unprivileged_with_only_the_documented_capabilities() {
    let _g = lock();
    require_ebpf!("least_privilege");
    // A copy any user can execute, wherever the checkout lives.
    let dir = temp_dir("caps");
    let bin = dir.join("netta");
    std::fs::copy(netta_bin(), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // tracefs must already be mounted: mounting is the one step that needs CAP_SYS_ADMIN.
    assert!(netta_cmd()
        .args(["list", "--json"])
        .output()
        .unwrap()
        .status
        .success());
    let caps = "+bpf,+perfmon,+dac_read_search,+sys_ptrace,+net_raw";
    let run = |caps: &str| {
        Command::new("setpriv")
            .env("NETTA_API", isolated_api())
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args(["--inh-caps", caps, "--ambient-caps", caps, "--"])
            .arg(&bin)
            .args(["events", "--duration", "3s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run(caps);
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = err.next().unwrap().unwrap();
    assert_eq!(
        ready, "netta: standalone (eBPF, ring buffer)",
        "with {caps}"
    );
    tcp_round_trips("1", ["3", "3"], ["nt-capsrv", "nt-capcli"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("\"nt-capsrv\"") && l.contains("connection-closed")),
        "an unprivileged netta saw the connection: {text}"
    );
    // Without them: one line of reason, then /proc polling.
    let out = run("-all").wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let reasons: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("eBPF unavailable"))
        .collect();
    assert_eq!(reasons.len(), 1, "{err}");
    assert!(reasons[0].contains("not permitted to load eBPF"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_process_names_are_escaped_in_every_output() {
    let _g = lock();
    require_ebpf!("hostile_names");
    let evil = "=\x1b[2J\"a,b\nc\u{7}";
    let mut server = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "1", "0", "nt-hsrv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let mut held = Traffic::to_loopback("hold", port, &["1", evil]);
    held.expect_line("held");
    let p = port.to_string();
    let list = netta_cmd().args(["list", "--port", &p]).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        !text.contains('\x1b') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("=\\e[2J\"a,b\\nc\\u{7}"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("\\e[2J")).count(),
        1,
        "one row, one line"
    );

    let json = netta_cmd()
        .args(["list", "--json", "--port", &p])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["process"] == evil));

    let dir = temp_dir("hostile");
    let csv = dir.join("r.csv");
    let ok = netta_cmd()
        .args(["export", "--output", csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let body = std::fs::read_to_string(&csv).unwrap();
    assert!(!body.contains('\x1b'));
    let row = body
        .lines()
        .find(|l| l.contains("\\e[2J"))
        .expect("the hostile row");
    assert!(row.contains("\"'=\\e[2J\"\"a,b\\nc\\u{7}\""), "{row}");
    drop(held);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn closed_pipe_ends_events_promptly_and_quietly() {
    let _g = lock();
    require_ebpf!("head_1");
    let mut child = Command::new("sh")
        .env("NETTA_API", isolated_api())
        .arg("-c")
        .arg(format!("{} events | head -1", netta_bin().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Make one event for head to read.
    std::thread::sleep(Duration::from_secs(2));
    tcp_round_trips("1", ["0", "1"], ["nt-psrv", "nt-pcli"]);
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "netta kept running after head exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "netta: standalone (eBPF, ring buffer)",
        "no error spew: {err}"
    );
}
