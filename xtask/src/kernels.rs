//! `cargo xtask test-kernels`: the privileged eBPF tests inside QEMU guests booted
//! from Debian's own kernel packages (virtme-ng over the host's root filesystem).
//!
//! Kernel packages come from Debian's archive through a private apt configuration
//! under [`CACHE`] (the system's sources are never touched) and stay cached there.
//! Each guest writes its results into a shared directory, read back on the host:
//! guest stdout is not reliable under TCG.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where kernel packages, their extracted trees and the private apt state live.
pub const CACHE: &str = "/var/cache/netta";

/// The matrix: (label, suite). Each is the newest `linux-image-amd64` of its suite.
pub const SUITES: &[(&str, &str)] = &[
    ("Debian 11 bullseye", "bullseye"),
    ("Debian 12 bookworm", "bookworm"),
    ("Debian 12 bookworm-backports", "bookworm-backports"),
];

/// Tests run in every guest: (test binary, filter). `""` runs the whole binary.
pub const GUEST_TESTS: &[(&str, &str)] = &[
    ("ebpf_events", ""),
    (
        "identity",
        "a_short_lived_python_client_shows_its_executable_user_and_parent",
    ),
    (
        "dns",
        "the_kernel_program_captures_answers_and_no_packet_socket_is_opened",
    ),
    ("dns", "a_connection_after_a_dns_answer_carries_the_domain"),
    (
        "dns",
        "each_kernel_fallback_captures_answers_over_udp_and_tcp",
    ),
    ("identity", "a_forked_child_runs_its_parents_program"),
    ("detection", "syn_scan_raises_a_syn_port_scan_alert"),
    (
        "detection",
        "syn_flood_is_detected_from_the_first_synack_retransmissions",
    ),
];

/// virtme-ng's venv (from PyPI).
pub const VNG_VENV: &str = "/opt/netta/virtme-ng";

/// Packages the guests need on the host (the guests run the host's root fs);
/// virtme-ng itself comes from PyPI into [`VNG_VENV`].
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "python3-venv",
    "python3-pip",
];

/// One guest's time limit; a whole TCG run of the suite takes a few minutes.
const GUEST_TIMEOUT: Duration = Duration::from_secs(20 * 60);

pub struct Kernel {
    pub label: String,
    /// The extracted package (boot/, lib/modules/ with modules.dep).
    pub tree: PathBuf,
    pub release: String,
    pub vmlinuz: PathBuf,
}

fn apt_opts(apt: &Path) -> Vec<String> {
    let d = |p: &str| apt.join(p).display().to_string();
    vec![
        format!("-oDir::Etc::SourceList={}", d("etc/sources.list")),
        format!("-oDir::Etc::SourceParts={}", d("etc/sources.list.d")),
        format!("-oDir::Etc::Preferences={}", d("etc/preferences")),
        format!("-oDir::Etc::PreferencesParts={}", d("etc/preferences.d")),
        format!("-oDir::State={}", d("state")),
        format!("-oDir::State::status={}", d("state/status")),
        format!("-oDir::Cache={}", d("cache")),
        "-oAPT::Architecture=amd64".into(),
        "-oAcquire::Languages=none".into(),
        "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
        "-oAPT::Sandbox::User=root".into(),
    ]
}

fn private_apt() -> Result<PathBuf> {
    let apt = Path::new(CACHE).join("apt");
    for d in [
        "etc/sources.list.d",
        "etc/preferences.d",
        "state/lists/partial",
        "cache/archives/partial",
    ] {
        fs::create_dir_all(apt.join(d)).with_context(|| format!("creating {}", apt.display()))?;
    }
    if !apt.join("state/status").exists() {
        fs::write(apt.join("state/status"), "")?;
    }
    let mut list = String::new();
    for (_, suite) in SUITES {
        list.push_str(&format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {suite} main\n"
        ));
    }
    fs::write(apt.join("etc/sources.list"), list)?;
    Ok(apt)
}

/// The `linux-image-<release>-amd64` package the suite's metapackage depends on.
fn resolve(apt: &Path, suite: &str) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(apt_opts(apt))
        .args(["show", &format!("linux-image-amd64/{suite}")])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .and_then(|d| d.split([',', ' ']).find(|w| w.starts_with("linux-image-")))
        .map(String::from)
        .with_context(|| format!("no linux-image-amd64 in {suite}: {}", text.trim()))
}

/// Downloads (once) and extracts each kernel of the matrix.
pub fn fetch() -> Result<Vec<Kernel>> {
    let cache = Path::new(CACHE);
    let kernels_dir = cache.join("kernels");
    fs::create_dir_all(&kernels_dir)?;
    let apt = private_apt()?;
    let resolved_file = |suite: &str| kernels_dir.join(format!("{suite}.package"));
    let all_cached = SUITES.iter().all(|(_, s)| {
        fs::read_to_string(resolved_file(s))
            .map(|p| kernels_dir.join("x").join(p.trim()).join("boot").is_dir())
            .unwrap_or(false)
    });
    if all_cached {
        println!("==> kernels: cached under {}", kernels_dir.display());
    } else {
        println!(
            "==> kernels: apt-get update (private configuration in {})",
            apt.display()
        );
        let st = Command::new("apt-get")
            .args(apt_opts(&apt))
            .args(["update", "-q"])
            .status()
            .context("running apt-get update")?;
        if !st.success() {
            bail!("apt-get update of the private kernel sources failed");
        }
    }
    let mut out = Vec::new();
    for (label, suite) in SUITES {
        let package = if all_cached {
            fs::read_to_string(resolved_file(suite))?.trim().to_string()
        } else {
            resolve(&apt, suite)?
        };
        let tree = kernels_dir.join("x").join(&package);
        if !tree.join("boot").is_dir() {
            let have_deb = find_deb(&kernels_dir, &package);
            let deb = match have_deb {
                Some(d) => d,
                None => {
                    println!("==> kernels: apt-get download {package}");
                    run(Command::new("apt-get")
                        .args(apt_opts(&apt))
                        .args(["download", &package])
                        .current_dir(&kernels_dir))?;
                    find_deb(&kernels_dir, &package)
                        .with_context(|| format!("{package}: no .deb after download"))?
                }
            };
            let tmp = tree.with_extension("partial");
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp)?;
            // The tree keeps lib/modules beside boot/: virtme's initramfs loads the
            // virtio and 9p modules from it.
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
            fs::rename(&tmp, &tree)?;
        }
        if !tree
            .join("lib/modules")
            .read_dir()?
            .flatten()
            .any(|d| d.path().join("modules.dep").exists())
        {
            for d in fs::read_dir(tree.join("lib/modules"))?.flatten() {
                let rel = d.file_name().to_string_lossy().into_owned();
                run(Command::new("depmod").arg("-b").arg(&tree).arg(&rel))?;
            }
        }
        fs::write(resolved_file(suite), &package)?;
        let vmlinuz = fs::read_dir(tree.join("boot"))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .with_context(|| format!("{package} has no vmlinuz"))?;
        let release = vmlinuz
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .trim_start_matches("vmlinuz-")
            .to_string();
        out.push(Kernel {
            label: label.to_string(),
            tree: tree.clone(),
            release,
            vmlinuz,
        });
    }
    Ok(out)
}

fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
}

/// Connections of the per-hook cost measurement in each guest (`xtask/kernel-costs.py`).
const COST_CONNECTIONS: u32 = 1000;

/// The shell script a guest runs: results go to files in `out` (shared, writable).
pub fn guest_script(out: &Path, netta: &Path, costs: &Path, tests: &[(PathBuf, String)]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let o = out.display();
    s.push_str(&format!(
        "exec > {o}/guest.log 2>&1\n\
         set -x\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin NETTA_REQUIRE_EBPF=1 NETTA_BIN={n} RUST_BACKTRACE=1\n\
         mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing\n\
         ip link set lo up\n\
         for m in {o}/*.ko*; do insmod $m; done\n\
         export NETTA_TEST_SCANNER=netta-traffic NETTA_TEST_READY_SECS=180\n\
         uname -r > {o}/release\n\
         {n} doctor > {o}/doctor.txt 2>&1; echo $? > {o}/doctor.rc\n\
         {n} doctor --json > {o}/doctor.json 2>/dev/null\n",
        n = netta.display()
    ));
    for (i, (bin, filter)) in tests.iter().enumerate() {
        s.push_str(&format!(
            "cd {o} && {b} --test-threads=1 --nocapture {f} > {o}/test{i}.log 2>&1; echo $? > {o}/test{i}.rc\n",
            b = bin.display(),
            f = if filter.is_empty() {
                String::new()
            } else {
                format!("--exact {filter}")
            }
        ));
    }
    // Last, on a quiet guest: each program's kernel run time per connection.
    s.push_str(&format!(
        "python3 {c} --json {o}/costs.json {COST_CONNECTIONS} {n} > {o}/costs.txt 2>&1\n\
         echo done > {o}/finished\n",
        c = costs.display(),
        n = netta.display()
    ));
    s
}

/// One test binary (or one test of it) in one guest.
pub struct TestRun {
    /// `ebpf_events`, `detection::syn_scan_...`.
    pub name: String,
    pub passed: u64,
    /// Failed, ignored, filtered-to-nothing or skipped (`SKIP ` in its log): why.
    pub problem: Option<String>,
    pub summary: String,
}

/// What one guest reported.
pub struct GuestResult {
    pub label: String,
    pub expected_release: String,
    pub release: String,
    pub doctor_ok: bool,
    pub doctor_text: String,
    pub doctor_json: String,
    pub tests: Vec<TestRun>,
    /// `xtask/kernel-costs.py --json` output.
    pub costs: Option<serde_json::Value>,
    pub seconds: u64,
}

impl GuestResult {
    /// Why this guest failed the matrix; empty when it passed.
    pub fn failures(&self, work: &Path) -> Vec<String> {
        let mut f = Vec::new();
        let r = &self.expected_release;
        if self.release != *r {
            f.push(format!(
                "{r}: the guest did not run (see {})",
                work.join(r).join("console.log").display()
            ));
            return f;
        }
        if !self.doctor_ok {
            f.push(format!("{r}: netta doctor did not report full eBPF mode"));
        }
        for t in &self.tests {
            if let Some(p) = &t.problem {
                f.push(format!("{r} {}: {p}", t.name));
            }
        }
        if self.costs.is_none() {
            f.push(format!(
                "{r}: no cost measurement (see {})",
                work.join(r).join("costs.txt").display()
            ));
        }
        f
    }
}

/// `test result: ok. 3 passed; 0 failed; 1 ignored; ...` -> the count before `word`.
fn count(summary: &str, word: &str) -> Option<u64> {
    summary
        .split([';', '.'])
        .find_map(|p| p.trim().strip_suffix(word)?.trim().parse().ok())
}

/// A test binary passed only when it exited 0, ran at least one test and none failed,
/// was ignored or skipped (a skipped eBPF test in CI is a failure).
fn judge(name: String, rc: &str, log: &str) -> TestRun {
    let summary = log
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("no result (guest did not finish)")
        .to_string();
    let passed = count(&summary, "passed").unwrap_or(0);
    let failed = count(&summary, "failed").unwrap_or(0);
    let ignored = count(&summary, "ignored").unwrap_or(0);
    let skipped = log.lines().filter(|l| l.starts_with("SKIP ")).count();
    let problem = if rc.trim() != "0" || failed > 0 {
        Some(format!("failed (exit {}): {summary}", rc.trim()))
    } else if passed == 0 {
        Some(format!("ran no test: {summary}"))
    } else if ignored > 0 || skipped > 0 {
        Some(format!("{ignored} ignored, {skipped} skipped: {summary}"))
    } else {
        None
    };
    TestRun {
        name,
        passed,
        problem,
        summary,
    }
}

/// What one guest needs: the hypervisor front end and what it runs.
pub struct GuestRun<'a> {
    pub vng: &'a Path,
    pub work: &'a Path,
    pub netta: &'a Path,
    pub costs: &'a Path,
    pub tests: &'a [(PathBuf, String)],
}

/// Boots `k` and runs the guest script; what the guest never wrote stays empty.
pub fn run_guest(g: &GuestRun, k: &Kernel) -> Result<GuestResult> {
    let out = g.work.join(&k.release);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    let script = out.join("guest.sh");
    // The guest hides /var/cache: the modules the tests need (veth) go in the shared dir.
    copy_modules(&k.tree, &out, &["veth"])?;
    fs::write(&script, guest_script(&out, g.netta, g.costs, g.tests))?;
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let start = Instant::now();
    let mut cmd = Command::new(g.vng);
    cmd.args([
        "--disable-kvm",
        "--verbose",
        "--memory",
        "2G",
        "--cpus",
        "2",
        "--rwdir",
    ])
    .arg(&out)
    .arg("--run")
    .arg(&k.vmlinuz)
    .arg("--exec")
    .arg(&script)
    .stdin(Stdio::null())
    .env("PATH", guest_path(g.vng))
    .stdout(fs::File::create(out.join("console.log"))?)
    .stderr(Stdio::from(fs::File::create(out.join("console.err"))?));
    println!(
        "==> guest {} ({}): {}",
        k.label,
        k.release,
        crate::display_command(&cmd)
    );
    let mut child = cmd.spawn().context("starting vng")?;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > GUEST_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let read = |n: &str| fs::read_to_string(out.join(n)).unwrap_or_default();
    let tests = g
        .tests
        .iter()
        .enumerate()
        .map(|(i, (bin, filter))| {
            let base = bin
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
                .split('-')
                .next()
                .unwrap_or("?");
            let name = if filter.is_empty() {
                base.to_string()
            } else {
                format!("{base}::{filter}")
            };
            judge(
                name,
                &read(&format!("test{i}.rc")),
                &read(&format!("test{i}.log")),
            )
        })
        .collect();
    Ok(GuestResult {
        label: k.label.clone(),
        expected_release: k.release.clone(),
        release: read("release").trim().to_string(),
        doctor_ok: read("doctor.rc").trim() == "0",
        doctor_text: read("doctor.txt"),
        doctor_json: read("doctor.json"),
        tests,
        costs: serde_json::from_str::<serde_json::Value>(&read("costs.json"))
            .ok()
            .filter(|c| c["programs"].as_array().is_some_and(|p| !p.is_empty())),
        seconds: start.elapsed().as_secs(),
    })
}

/// PATH for vng: its venv's bin first (it runs virtme's other scripts from there).
fn guest_path(vng: &Path) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = vng.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Every guest of the matrix, all booted at once (`concurrent`) or one after another;
/// results in the matrix's order.
pub fn run_all(g: &GuestRun, kernels: &[Kernel], concurrent: bool) -> Result<Vec<GuestResult>> {
    if !concurrent {
        return kernels.iter().map(|k| run_guest(g, k)).collect();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = kernels
            .iter()
            .map(|k| s.spawn(move || run_guest(g, k)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a guest thread panicked"))?
            })
            .collect()
    })
}

fn doctor_json(r: &GuestResult) -> serde_json::Value {
    serde_json::from_str(&r.doctor_json).unwrap_or_default()
}

/// The results as a Markdown table (kernel, mode, each capability, tests) for the README.
pub fn markdown(rows: &[GuestResult]) -> String {
    let mut s = String::from("| kernel | mode | TCP lifecycle | accepted-socket owner | UDP flows | TCP resets sent | SYN-ACK retransmits | process identity | DNS answers | tests |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let v = doctor_json(r);
        let hook = |cap: &str| {
            v["hooks"]
                .as_array()
                .and_then(|a| a.iter().find(|h| h["capability"] == cap))
                .map(|h| match h["chosen"].as_str() {
                    Some(c) => format!("`{}`", c.replace('+', " + ")),
                    None => "**missing**".into(),
                })
                .unwrap_or_else(|| "?".into())
        };
        let groups_ok = r.tests.iter().filter(|t| t.problem.is_none()).count();
        let tests: u64 = r.tests.iter().map(|t| t.passed).sum();
        s.push_str(&format!(
            "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} | {groups_ok}/{} groups, {tests} tests passed |\n",
            r.label,
            r.release,
            v["mode"].as_str().unwrap_or("?"),
            hook("TCP lifecycle"),
            hook("accepted-socket owner"),
            hook("UDP flows"),
            hook("TCP resets sent"),
            hook("SYN-ACK retransmits"),
            hook("process identity"),
            hook("DNS answers"),
            r.tests.len()
        ));
    }
    s
}

/// netta's programs and where each attaches, in the order the cost table lists them.
const PROGRAMS: &[(&str, &str)] = &[
    (
        "inet_sock_set_state",
        "tracepoint `sock:inet_sock_set_state`",
    ),
    (
        "accept_exit_4",
        "fexit `inet_csk_accept` (4 parameters, before 6.10)",
    ),
    (
        "accept_exit_2",
        "fexit `inet_csk_accept` (2 parameters, 6.10+)",
    ),
    ("sock_send_length", "tracepoint `sock:sock_send_length`"),
    ("sock_recv_length", "tracepoint `sock:sock_recv_length`"),
    ("udp_sendmsg_exit", "fexit `udp_sendmsg`"),
    ("udpv6_sendmsg_exit", "fexit `udpv6_sendmsg`"),
    ("cgroup_sendmsg4", "cgroup `sendmsg4` (cgroup v2 root)"),
    ("cgroup_sendmsg6", "cgroup `sendmsg6` (cgroup v2 root)"),
    ("sys_enter_sendto", "tracepoint `syscalls:sys_enter_sendto`"),
    (
        "sys_enter_sendmsg",
        "tracepoint `syscalls:sys_enter_sendmsg`",
    ),
    (
        "sys_exit_send",
        "tracepoints `syscalls:sys_exit_sendto`, `sys_exit_sendmsg`",
    ),
    ("tcp_send_reset", "tracepoint `tcp:tcp_send_reset`"),
    ("tcp_v4_send_reset_entry", "fentry `tcp_v4_send_reset`"),
    ("tcp_v6_send_reset_entry", "fentry `tcp_v6_send_reset`"),
    (
        "tcp_retransmit_synack",
        "tracepoint `tcp:tcp_retransmit_synack`",
    ),
    (
        "sched_process_exec",
        "tracepoint `sched:sched_process_exec`",
    ),
    ("task_newtask", "tracepoint `task:task_newtask`"),
    (
        "sched_process_exit",
        "tracepoint `sched:sched_process_exit`",
    ),
    ("dns_udp_queued", "fentry `__udp_enqueue_schedule_skb`"),
    ("dns_tcp_data", "fentry `tcp_event_data_recv`"),
    ("dns_ingress", "cgroup_skb `ingress` (cgroup v2 root)"),
];

/// Per-program kernel cost in each guest: ns per connection, and relative to
/// `inet_sock_set_state` in the same guest (TCG inflates absolute figures).
pub fn costs_markdown(rows: &[GuestResult]) -> String {
    let with: Vec<(&GuestResult, &serde_json::Value)> = rows
        .iter()
        .filter_map(|r| r.costs.as_ref().map(|c| (r, c)))
        .collect();
    let find = |c: &serde_json::Value, name: &str| -> Option<serde_json::Value> {
        c["programs"]
            .as_array()?
            .iter()
            .find(|p| p["program"] == name)
            .cloned()
    };
    let mut names: Vec<(String, String)> = PROGRAMS
        .iter()
        .map(|(p, h)| (p.to_string(), h.to_string()))
        .collect();
    for (_, c) in &with {
        for p in c["programs"].as_array().into_iter().flatten() {
            let name = p["program"].as_str().unwrap_or("?").to_string();
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, "?".into()));
            }
        }
    }
    let mut s = String::from("| program | hook |");
    for (r, _) in &with {
        s.push_str(&format!(" {} |", r.release));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(with.len()));
    s.push('\n');
    for (name, hook) in &names {
        if !with.iter().any(|(_, c)| find(c, name).is_some()) {
            continue;
        }
        s.push_str(&format!("| `{name}` | {hook} |"));
        for (_, c) in &with {
            match find(c, name) {
                Some(p) => s.push_str(&format!(
                    " {:.0} ns, {:.3}×, {:.2} runs |",
                    p["ns_per_connection"].as_f64().unwrap_or(0.0),
                    p["relative_to_set_state"].as_f64().unwrap_or(0.0),
                    p["runs_per_connection"].as_f64().unwrap_or(0.0),
                )),
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s.push_str("| all programs | |");
    for (_, c) in &with {
        let tot: f64 = c["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["ns_per_connection"].as_f64())
            .sum();
        s.push_str(&format!(" {tot:.0} ns |"));
    }
    s.push('\n');
    if let Some((_, c)) = with.first() {
        s.push_str(&format!(
            "\nWorkload in each guest: {} (`xtask/kernel-costs.py`, kernel.bpf_stats_enabled=1). Each cell: the program's kernel run time per TCP connection of the workload, that relative to `inet_sock_set_state` in the same guest, and the program's runs per connection. A program that did not run (`tcp_retransmit_synack` needs a SYN flood) is not listed; the tests exercise it.\n",
            c["workload"].as_str().unwrap_or("?")
        ));
    }
    s
}

/// docs/kernels.md: the table, each guest's `netta doctor`, its test results and costs.
pub fn document(rows: &[GuestResult], header: &str) -> String {
    let mut s = format!(
        "# Kernels\n\n<!-- Generated by `cargo xtask test-kernels`; edits are overwritten. -->\n\n{header}\n\n{}\n",
        markdown(rows)
    );
    s.push_str("## Kernel cost per program\n\n");
    s.push_str(&costs_markdown(rows));
    for r in rows {
        s.push_str(&format!(
            "\n## {} {}\n\nGuest wall time {} s.\n\n",
            r.label, r.release, r.seconds
        ));
        for t in &r.tests {
            s.push_str(&format!(
                "- {} `{}`: {}\n",
                if t.problem.is_none() { "ok" } else { "FAILED" },
                t.name,
                t.summary
            ));
        }
        s.push_str(&format!(
            "\n`netta doctor` (exit {}):\n\n```\n{}\n```\n",
            if r.doctor_ok { 0 } else { 1 },
            r.doctor_text.trim_end()
        ));
    }
    s
}

/// Replaces what lies between the `start` and `end` markers of `text` (appending
/// both when they are missing), keeping everything around them.
pub fn splice(text: &str, start: &str, end: &str, body: &str) -> String {
    let (head, tail) = match (text.find(start), text.find(end)) {
        (Some(a), Some(b)) if a < b => (&text[..a], &text[b + end.len()..]),
        _ => (text, "\n"),
    };
    format!("{head}{start}\n{body}{end}{tail}")
}

/// Copies kernel modules (by name; they have no dependencies) from the extracted package.
fn copy_modules(tree: &Path, out: &Path, names: &[&str]) -> Result<()> {
    for d in fs::read_dir(tree.join("lib/modules"))?.flatten() {
        let dep = fs::read_to_string(d.path().join("modules.dep")).unwrap_or_default();
        for name in names {
            let Some(rel) = dep.lines().find_map(|l| {
                let path = l.split(':').next()?;
                let file = path.rsplit('/').next()?;
                (file.split('.').next() == Some(*name)).then_some(path)
            }) else {
                bail!("{}: no module {name}", tree.display());
            };
            let file = rel.rsplit('/').next().unwrap_or(rel);
            fs::copy(d.path().join(rel), out.join(file))
                .with_context(|| format!("copying module {rel}"))?;
        }
    }
    Ok(())
}

/// Runs `cmd`; an error naming the command when it fails.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status()?;
    crate::check(status, crate::display_command(cmd))
}
