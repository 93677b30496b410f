//! Who and where, end to end: a `python3` client that connects and exits at once
//! shows its executable, user and parent on its connection events (from the
//! kernel's exec and fork records, not /proc, which no longer has it); a forked
//! child without an exec shows its parent's program; a connection held inside a
//! network namespace this test creates stays listed, with its namespace, over
//! several /proc reconciliations; a client moved into a fake kubepods cgroup
//! carries its container id and pod.
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netta_tests::*;

const WAIT: Duration = Duration::from_secs(20);

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs `python3 -c CODE`, which must succeed; its output.
fn run_python(code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python that connects to `port` on loopback once.
fn connect_code(port: u16) -> String {
    format!("import socket; socket.create_connection(('127.0.0.1', {port})).close()")
}

/// The egress `connection-opened` line to `port` (any pid), if seen.
fn opened_to(all: &[Value], port: u16) -> Vec<&Value> {
    all.iter()
        .filter(|v| str_at(v, &["event", "action"]) == Some("connection-opened"))
        .filter(|v| str_at(v, &["network", "direction"]) == Some("egress"))
        .filter(|v| v["destination"]["port"] == port)
        .collect()
}

fn closed_to(all: &[Value], port: u16) -> Option<&Value> {
    all.iter().find(|v| {
        str_at(v, &["event", "action"]) == Some("connection-closed")
            && str_at(v, &["network", "direction"]) == Some("egress")
            && v["destination"]["port"] == port
    })
}

/// A loopback port whose every connection is accepted (and dropped) on a thread,
/// until the test ends.
fn accepting_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    port
}

/// Runs `code` (one connection to `port`) and waits for its close: every line
/// `ev` wrote, and the one egress `connection-opened` to `port`.
fn one_python_connection(mut ev: Events, code: &str, port: u16) -> (Vec<Value>, Value) {
    run_python(code);
    assert!(
        ev.wait_until(WAIT, |all| closed_to(all, port).is_some()),
        "no connection-closed to {port}"
    );
    let all = ev.stop();
    let opened = opened_to(&all, port);
    assert_eq!(opened.len(), 1, "{opened:?}");
    let o = opened[0].clone();
    (all, o)
}

#[test]
fn a_short_lived_python_client_shows_its_executable_user_and_parent() {
    require_ebpf!("a_short_lived_python_client_shows_its_executable_user_and_parent");
    let port = accepting_port();
    let ev = Events::start(&["--process-args"], &[]);
    let code = connect_code(port);
    // The client is gone: nothing about it can come from /proc any more.
    let (all, o) = one_python_connection(ev, &code, port);
    let o = &o;
    assert_eq!(str_at(o, &["process", "executable"]), Some(python()), "{o}");
    assert_eq!(
        o["process"]["args"],
        serde_json::json!([python(), "-c", code]),
        "{o}"
    );
    assert_eq!(o["process"]["args_count"], 3);
    assert_eq!(
        u64_at(o, &["process", "parent", "pid"]),
        Some(u64::from(std::process::id())),
        "the test started it: {o}"
    );
    // SAFETY: no arguments.
    let uid = unsafe { libc::getuid() };
    assert_eq!(str_at(o, &["user", "id"]), Some(uid.to_string().as_str()));
    if uid == 0 {
        assert_eq!(str_at(o, &["user", "name"]), Some("root"));
    }
    assert!(str_at(o, &["process", "start"]).is_some(), "{o}");
    let id = str_at(o, &["process", "entity_id"]).expect("process.entity_id");
    assert_eq!(id.len(), 32);
    // The close carries the same process, though it came after the exit.
    let c = closed_to(&all, port).unwrap();
    assert_eq!(str_at(c, &["process", "entity_id"]), Some(id));
    assert_eq!(str_at(c, &["process", "executable"]), Some(python()));
    // Our own namespace.
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_eq!(u64_at(o, &["netta", "netns"]), Some(own));
}

/// `NETTA_NO_IDENTITY=1`, the bench's measure of what process identity costs,
/// turns all of it off (hooks, ids in records, the lookup) and nothing else.
#[test]
fn identity_off_leaves_the_connection_without_process_or_user() {
    require_ebpf!("identity_off_leaves_the_connection_without_process_or_user");
    let port = accepting_port();
    let ev = Events::start_with_env(&[], &[], &[("NETTA_NO_IDENTITY", "1")]);
    assert!(
        ev.stderr_lines
            .iter()
            .any(|l| l.contains("process identity") && l.contains("NETTA_NO_IDENTITY")),
        "{:?}",
        ev.stderr_lines
    );
    let (_, o) = one_python_connection(ev, &connect_code(port), port);
    let o = &o;
    assert!(u64_at(o, &["process", "pid"]).is_some_and(|p| p > 0), "{o}");
    assert!(str_at(o, &["process", "name"]).is_some(), "{o}");
    assert!(o["process"].get("executable").is_none(), "{o}");
    assert!(o["process"].get("parent").is_none(), "{o}");
    assert!(o.get("user").is_none(), "{o}");
}

#[test]
fn a_forked_child_runs_its_parents_program() {
    require_ebpf!("a_forked_child_runs_its_parents_program");
    let port = accepting_port();
    let mut ev = Events::start(&[], &[]);
    // The parent forks (no exec); the child connects and prints its pid.
    let code = format!(
        "import os, socket\n\
         pid = os.fork()\n\
         if pid == 0:\n    socket.create_connection(('127.0.0.1', {port})).close(); os._exit(0)\n\
         os.waitpid(pid, 0); print(os.getpid(), pid)"
    );
    let text = run_python(&code);
    let pids: Vec<u64> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (parent, child) = (pids[0], pids[1]);
    assert!(ev.wait_until(WAIT, |all| closed_to(all, port).is_some()));
    let all = ev.stop();
    let o = opened_to(&all, port)[0];
    assert_eq!(u64_at(o, &["process", "pid"]), Some(child), "{o}");
    assert_eq!(u64_at(o, &["process", "parent", "pid"]), Some(parent));
    assert_eq!(str_at(o, &["process", "executable"]), Some(python()), "{o}");
    assert!(o["process"].get("args").is_none(), "no --process-args: {o}");
}

/// A network namespace by name, with loopback up; deleted when dropped.
fn netns(tag: &str) -> Netns {
    let name = format!("netta-{tag}-{}", std::process::id());
    let _ = Command::new("ip")
        .args(["netns", "del", &name])
        .stderr(Stdio::null())
        .status();
    assert!(Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["-n", &name, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    Netns(name)
}

#[test]
fn a_connection_inside_a_network_namespace_stays_listed_with_its_namespace() {
    require_ebpf!("a_connection_inside_a_network_namespace_stays_listed_with_its_namespace");
    let ns = netns("ident");
    let inode = std::fs::metadata(format!("/run/netns/{}", ns.0))
        .unwrap()
        .ino();
    let (_dir, sock, _agent) = agent_in("netns-reconcile", &["--reconcile-interval", "1s"]);
    // A server and a client holding one connection, both inside the namespace.
    let mut server =
        Traffic::spawn_in_netns(&ns.0, &["tcp-server", "127.0.0.1:0", "1", "0", "ns-srv"]);
    let port: u16 = server.expect_line("port ").parse().unwrap();
    let mut client = Traffic::spawn_in_netns(
        &ns.0,
        &["hold", &format!("127.0.0.1:{port}"), "1", "ns-hold"],
    );
    let local: u16 = client.expect_line("local ").parse().unwrap();
    client.expect_line("held");
    // Three reconciliations (and a little more) later it is still there.
    std::thread::sleep(Duration::from_millis(3_500));
    let api = sock.display().to_string();
    let list = netta_json(&["list", "--json", "--api", &api]);
    let rows: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["local"]["port"] == local && r["remote"]["port"] == port
                || r["local"]["port"] == port && r["remote"]["port"] == local
        })
        .collect();
    assert_eq!(rows.len(), 2, "both ends, listed after 3 periods: {list:#}");
    for r in &rows {
        assert_eq!(u64_at(r, &["netns"]), Some(inode), "{r}");
        assert_eq!(str_at(r, &["state"]), Some("ESTABLISHED"), "{r}");
    }
    let hold = rows.iter().find(|r| r["local"]["port"] == local).unwrap();
    assert_eq!(
        u64_at(hold, &["pid"]),
        Some(u64::from(client.pid())),
        "{hold}"
    );
    // `--netns` keeps this namespace's rows only; `--wide` shows it.
    let ns_arg = inode.to_string();
    let only = netta_json(&["list", "--json", "--api", &api, "--netns", &ns_arg]);
    let only = only.as_array().unwrap();
    assert!(only.len() >= 2, "{only:?}");
    assert!(only.iter().all(|r| u64_at(r, &["netns"]) == Some(inode)));
    let (ok, wide, err) = run_netta(&["list", "--wide", "--api", &api, "--netns", &ns_arg]);
    assert!(ok, "{err}");
    assert!(
        wide.lines().nth(3).is_some_and(|h| h.contains("NETNS")),
        "{wide}"
    );
    assert!(
        wide.lines()
            .any(|l| l.contains(&format!("{}/ns-hold", client.pid())) && l.contains(&ns_arg)),
        "{wide}"
    );
    drop(client);
    drop(server);
}

#[test]
fn the_store_keeps_the_owner_and_history_filters_by_it() {
    require_ebpf!("the_store_keeps_the_owner_and_history_filters_by_it");
    let (_dir, sock, mut agent) = agent_in("identity-store", &["--process-args"]);
    let port = accepting_port();
    let code = connect_code(port);
    run_python(&code);
    let api = sock.display().to_string();
    let port_arg = port.to_string();
    // The writer commits within a second; ask until the row is there.
    let mut rows = Vec::new();
    for _ in 0..40 {
        let v = netta_json(&[
            "history", "--json", "--api", &api, "--dport", &port_arg, "--exe", "python3",
        ]);
        rows = v.as_array().cloned().unwrap_or_default();
        if !rows.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(str_at(r, &["process", "executable"]), Some(python()), "{r}");
    assert_eq!(
        u64_at(r, &["process", "parent", "pid"]),
        Some(u64::from(std::process::id()))
    );
    assert_eq!(
        r["process"]["args"],
        serde_json::json!([python(), "-c", code])
    );
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert_eq!(u64_at(r, &["netns"]), Some(own));
    // Another executable, or another namespace, finds nothing.
    let none = netta_json(&[
        "history", "--json", "--api", &api, "--dport", &port_arg, "--exe", "/bin/sh",
    ]);
    assert_eq!(none, serde_json::json!([]));
    let none = netta_json(&[
        "history", "--json", "--api", &api, "--dport", &port_arg, "--netns", "1",
    ]);
    assert_eq!(none, serde_json::json!([]));
    agent.signal(libc::SIGTERM);
}

/// The cgroup v2 hierarchy's mount point (`/proc/self/mountinfo`).
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mount = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(mount))
    })
}

/// Directories made for the test, removed (deepest first) when dropped.
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn make_dirs(base: &Path, parts: &[&str]) -> Made {
    let mut made = Vec::new();
    let mut at = base.to_path_buf();
    for p in parts {
        at = at.join(p);
        if !at.exists() {
            std::fs::create_dir(&at).unwrap_or_else(|e| panic!("{}: {e}", at.display()));
            made.push(at.clone());
        }
    }
    Made(made)
}

#[test]
fn a_client_in_a_kubepods_cgroup_carries_its_container_and_pod() {
    require_ebpf!("a_client_in_a_kubepods_cgroup_carries_its_container_and_pod");
    let Some(root) = cgroup2_root() else {
        panic!("no cgroup v2 hierarchy mounted");
    };
    let pid = std::process::id();
    let uid = format!("7e57{:04x}-1111-2222-3333-444455556666", pid & 0xffff);
    let id = format!("{:0>64}", format!("{pid:x}abc"));
    let pod_slice = format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"));
    let scope = format!("cri-containerd-{id}.scope");
    // Made before netta starts, as a kubelet would have.
    let cg = make_dirs(
        &root,
        &[
            "kubepods.slice",
            "kubepods-besteffort.slice",
            &pod_slice,
            &scope,
        ],
    );
    let leaf = root
        .join("kubepods.slice/kubepods-besteffort.slice")
        .join(&pod_slice)
        .join(&scope);
    let logs = make_dirs(
        Path::new("/var/log"),
        &["pods", &format!("netta-test_web-{pid}_{uid}")],
    );
    let port = accepting_port();
    let mut ev = Events::start(&[], &[]);
    // The client moves itself into the container's cgroup, then connects.
    let code = format!(
        "import os, socket\n\
         open('{}/cgroup.procs', 'w').write(str(os.getpid()))\n\
         socket.create_connection(('127.0.0.1', {port})).close()",
        leaf.display()
    );
    run_python(&code);
    assert!(ev.wait_until(WAIT, |all| closed_to(all, port).is_some()));
    let all = ev.stop();
    let o = opened_to(&all, port)[0];
    assert_eq!(str_at(o, &["container", "id"]), Some(id.as_str()), "{o}");
    assert_eq!(str_at(o, &["orchestrator", "type"]), Some("kubernetes"));
    assert_eq!(
        str_at(o, &["orchestrator", "resource", "type"]),
        Some("pod")
    );
    assert_eq!(
        str_at(o, &["orchestrator", "resource", "id"]),
        Some(uid.as_str())
    );
    assert_eq!(
        str_at(o, &["orchestrator", "resource", "name"]),
        Some(format!("web-{pid}").as_str())
    );
    assert_eq!(
        str_at(o, &["orchestrator", "namespace"]),
        Some("netta-test")
    );
    let cgroup_id = std::fs::metadata(&leaf).unwrap().ino();
    assert_eq!(u64_at(o, &["netta", "cgroup"]), Some(cgroup_id));
    drop(logs);
    drop(cg);
}
