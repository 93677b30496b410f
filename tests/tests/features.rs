//! The original tool's features, end to end: the menu driven through a pipe, the
//! monitor counting short-lived connections a poll would miss, and export.
use std::process::Stdio;

use netta_tests::*;

/// Runs `netta [args]` with `input` on stdin; returns (status, stdout, stderr).
fn run_with_input(args: &[&str], input: &str) -> (std::process::ExitStatus, String, String) {
    let out = run_with_stdin(netta_cmd().args(args), input);
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn menu_from_a_pipe_shows_statistics_then_exits() {
    let (status, out, err) = run_with_input(&[], "4\n8\n");
    assert!(status.success(), "{status} {err}");
    assert!(out.contains("Network Traffic Analyzer v1.0"), "{out}");
    assert!(out.contains("NETWORK TRAFFIC STATISTICS"), "{out}");
    assert!(out.contains("Protocol Distribution:"), "{out}");
    assert_eq!(out.matches("MAIN MENU").count(), 2, "{out}");
    assert!(!out.contains('\x1b'), "no colour when stdout is a pipe");
}

#[test]
fn menu_walks_every_option_rejects_bad_input_and_stops_at_eof() {
    let dir = temp_dir("menu");
    let csv = dir.join("report.csv");
    let _ = std::fs::remove_file(&csv);
    let input = format!("1\n2\n3\n5\n9\nabc\n6\n2s\n1s\n7\ncsv\n{}\n", csv.display());
    let (status, out, err) = run_with_input(&[], &input);
    assert!(status.success(), "{status} {err}");
    for want in [
        "ACTIVE NETWORK CONNECTIONS",
        "ESTABLISHED CONNECTIONS",
        "LISTENING PORTS",
        "SUSPICIOUS ACTIVITY DETECTION",
        "Invalid option: 9",
        "Invalid option: abc",
        "Monitoring network traffic for 2s (updating every 1s)",
        "Monitoring Summary:",
        "Report exported to: ",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // End of input (no "8") still exits cleanly; the report was written.
    let text = std::fs::read_to_string(&csv).expect("exported report");
    assert!(text.starts_with("# Network Traffic Analysis Report\n# Generated: "));
    assert!(
        text.contains("Protocol,LocalAddress,LocalPort,RemoteAddress,RemotePort,State,PID,Process")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_refuses_to_overwrite_and_reports_unwritable_paths() {
    let dir = temp_dir("export");
    let path = dir.join("r.csv");
    let p = path.to_str().unwrap();
    let run = |extra: &[&str]| {
        netta_cmd()
            .args(["--no-ebpf", "export", "--output", p])
            .args(extra)
            .output()
            .expect("run netta export")
    };
    let first = run(&[]);
    assert!(first.status.success(), "{first:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        format!("Report exported to: {p}\n")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(run(&["--force"]).status.success());
    let bad = netta_cmd()
        .args(["--no-ebpf", "export", "--output", "/nonexistent-dir/x.csv"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent-dir/x.csv"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["monitor", "--interval", "0s"][..],
        &["list", "--state", "bogus"],
        &["list", "--proto", "sctp"],
        &["--ring-size", "1000", "list"],
        &["nonsense"],
    ] {
        let out = netta_cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn monitor_counts_short_lived_connections_a_poll_misses() {
    require_ebpf!("monitor_short_lived");
    let args = ["monitor", "--duration", "6s", "--interval", "2s"];
    let mut child = spawn_netta(&args, Stdio::piped());
    let (intro, lines) = first_line(child.stdout.take());
    assert_eq!(
        intro,
        "Monitoring network traffic for 6s (updating every 2s)"
    );
    tcp_round_trips("200", ["1", "1"], ["nt-msrv", "nt-mcli"]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(child.wait().unwrap().success());
    let ticks = rest.iter().filter(|l| l.starts_with('[')).count();
    assert!((2..=3).contains(&ticks), "{rest:#?}");
    assert!(rest
        .iter()
        .any(|l| l.contains("| New: ") && l.contains("| Closed: ")));
    let unique: u64 = rest
        .iter()
        .find_map(|l| l.trim().strip_prefix("Unique connections observed: "))
        .expect("summary line")
        .parse()
        .unwrap();
    // 200 connections, two sockets each.
    assert!(unique >= 200, "only {unique} observed: {rest:#?}");
}
