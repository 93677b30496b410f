//! `cargo xtask` — build, run and test automation for netta.
//!
//! * `cargo xtask build-ebpf` — build the kernel program (nightly, `bpfel-unknown-none`)
//! * `cargo xtask build`      — build-ebpf, then the `netta` agent (release)
//! * `cargo xtask run -- ARGS` — build, then start `target/dist/netta ARGS` (via sudo if needed)
//! * `cargo xtask test`       — the full suite: prerequisites, lint, build, `cargo test`
//!
//! Missing prerequisites (nightly `rust-src`, LLVM 22 dev packages, `bpf-linker`, test peers)
//! are installed on the fly when running as root; otherwise the exact command to run is printed.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

mod bench;
mod bench_cpu;
mod bench_live;
mod conn_loop;
mod kernels;
mod latency;

/// Toolchain used for the BPF program (needs `-Z build-std`).
const BPF_TOOLCHAIN: &str = "nightly";
const BPF_TARGET: &str = "bpfel-unknown-none";
/// LLVM that `bpf-linker` is built against; must match the nightly rustc's LLVM major.
const LLVM_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_FEATURE: &str = "llvm-22";
/// Programs the integration tests drive as peers / inspect the system with.
const TEST_PEER_PACKAGES: &[&str] = &[
    "iproute2",
    "apache2-utils",
    "nginx-light",
    "hping3",
    "nmap",
    "libbpf-tools",
    "bpftool",
    "procps",
    "libcap2-bin",
    "util-linux",
    "prometheus",
    "clickhouse-server",
    "rsyslog",
    "python3",
    "tmux",
    "dnsmasq-base",
    // man pages rendered as man-db shows them, warnings checked.
    "man-db",
];

/// Environment that `cargo run` / the rustup proxy / an outer build leak into this process and
/// that must not reach the nightly BPF build (they would pin the stable toolchain, inject host
/// rustflags or wrappers, or redirect the output directory).
const BPF_SCRUBBED_ENV: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
];

/// Environment describing *this* package or build that must not reach any child cargo.
const ALWAYS_SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];
const ALWAYS_SCRUBBED_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_CFG_", "CARGO_FEATURE_"];

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, run and test netta"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the eBPF object (installs nightly rust-src, LLVM 22 and bpf-linker when missing).
    BuildEbpf,
    /// Build the eBPF object, then the netta agent (release).
    Build,
    /// Build, then start target/dist/netta with ARGS (through sudo when not root).
    Run(PassOn),
    /// Run the full test suite: prerequisites, build-ebpf, fmt, clippy, build, cargo
    /// test (ARGS go to `cargo test`).
    ///
    /// NETTA_SKIP_LINT=1 skips the fmt and clippy steps.
    Test(PassOn),
    /// The privileged eBPF tests in QEMU guests of Debian's kernels (bullseye 5.10,
    /// bookworm 6.1, bookworm-backports 6.12), each required to reach full eBPF mode.
    ///
    /// A passing run rewrites the kernel table in README.md, docs/kernels.md and the
    /// per-hook costs in BENCHMARKS.md.
    TestKernels {
        /// Boot the guests one after another instead of all at once.
        #[arg(long)]
        sequential: bool,
    },
    /// Benchmarks: netta against tcplife and an `ss` poll on nginx + ab, ingest
    /// throughput, seeding; results in BENCHMARKS.md.
    Bench(bench::Opts),
    /// Only the live counters' cost (one refresh, the idle agent, with N idle
    /// connections) and `netta top`'s frame time; printed, not written.
    BenchLive {
        #[arg(long, default_value = "10000", value_parser = bench::parse_count)]
        connections: u32,
        /// Seconds the idle agent's CPU is measured over.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Fuzz netta's parsers of hostile input (cargo-fuzz, nightly), each for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all).
        targets: Vec<String>,
    },
}

/// What follows `--`, handed on untouched (to netta, or to `cargo test`).
#[derive(clap::Args)]
struct PassOn {
    /// Put them after `--`.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

/// A child process failed; xtask exits with the same code.
#[derive(Debug)]
struct StepFailed {
    what: String,
    code: i32,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed with exit code {}", self.what, self.code)
    }
}

impl std::error::Error for StepFailed {}

fn main() {
    let cli = Cli::parse();
    let code = match Ctx::new().and_then(|ctx| ctx.dispatch(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            if let Some(failed) = err.downcast_ref::<StepFailed>() {
                eprintln!("xtask: {failed}");
                failed.code
            } else {
                eprintln!("xtask: error: {err:#}");
                1
            }
        }
    };
    std::process::exit(code);
}

struct Ctx {
    /// Workspace root.
    root: PathBuf,
    /// `$CARGO_HOME/bin` (or `~/.cargo/bin`): rustup proxies and `cargo install`ed tools.
    cargo_bin_dir: Option<PathBuf>,
    /// PATH for children: ours with `cargo_bin_dir` prepended when it is missing.
    path: OsString,
    is_root: bool,
}

impl Ctx {
    fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let cargo_bin_dir = env::var_os("CARGO_HOME")
            .map(|home| PathBuf::from(home).join("bin"))
            .into_iter()
            .chain(env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin")))
            .find(|dir| dir.is_dir());
        let current: Vec<PathBuf> = env::var_os("PATH")
            .map(|p| env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut dirs = Vec::new();
        if let Some(dir) = &cargo_bin_dir {
            if !current.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs.extend(current);
        let path = env::join_paths(dirs).context("PATH contains an invalid entry")?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        Ok(Self {
            root,
            cargo_bin_dir,
            path,
            is_root,
        })
    }

    fn dispatch(&self, cmd: Cmd) -> Result<i32> {
        match cmd {
            Cmd::BuildEbpf => {
                self.build_ebpf()?;
            }
            Cmd::Build => {
                self.build_ebpf()?;
                self.build_netta()?;
                println!("netta: {}", self.netta_bin().display());
            }
            Cmd::Run(PassOn { args }) => return self.run_netta(args),
            Cmd::Test(PassOn { args }) => self.test(args)?,
            Cmd::TestKernels { sequential } => self.test_kernels(sequential)?,
            Cmd::Bench(opts) => {
                let opts = if opts.smoke {
                    bench::Opts::smoke()
                } else {
                    opts
                };
                self.bench(&opts)?;
            }
            Cmd::BenchLive {
                connections,
                seconds,
            } => {
                if !self.is_root {
                    bail!("bench-live creates a network namespace and loads eBPF: run it as root");
                }
                self.ensure_apt(&["iproute2", "python3"])?;
                self.build_ebpf()?;
                self.build_netta()?;
                let opts = bench_live::Opts {
                    connections,
                    seconds,
                    frames: 200,
                };
                println!("{}", bench_live::run(&self.netta_bin(), &opts)?);
            }
            Cmd::Fuzz { seconds, targets } => self.fuzz(seconds, targets)?,
        }
        Ok(0)
    }

    // ---- commands -------------------------------------------------------------------------

    fn build_ebpf(&self) -> Result<PathBuf> {
        self.ensure_apt(LLVM_PACKAGES)?;
        self.ensure_bpf_toolchain()?;
        self.build_ebpf_only()
    }

    /// Builds the BPF object, assuming the prerequisites are in place.
    fn build_ebpf_only(&self) -> Result<PathBuf> {
        let mut cmd = self.cargo(true);
        cmd.arg(format!("+{BPF_TOOLCHAIN}"))
            .args(["build", "--release", "--target", BPF_TARGET])
            .args([
                "-Z",
                "build-std=core",
                "--features",
                "bpf",
                "--bin",
                "netta-ebpf",
            ])
            .current_dir(self.root.join("netta-ebpf"))
            .env("CARGO_TARGET_DIR", self.ebpf_target_dir());
        self.step("build-ebpf", cmd)?;
        let object = self.bpf_object();
        let size = fs::metadata(&object)
            .with_context(|| format!("BPF object {} was not produced", object.display()))?
            .len();
        println!("BPF object: {} ({size} bytes)", object.display());
        Ok(object)
    }

    fn bench(&self, opts: &bench::Opts) -> Result<()> {
        if !self.is_root {
            bail!("the benchmark loads eBPF and creates a network namespace: run it as root");
        }
        self.ensure_apt(&[
            "nginx-light",
            "apache2-utils",
            "libbpf-tools",
            "iproute2",
            "python3",
        ])?;
        self.build_ebpf()?;
        self.build_netta()?;
        let body = bench::run(&self.root, &self.netta_bin(), opts)?;
        println!("{body}");
        if !opts.smoke && opts.only.is_none() {
            let cmd = format!(
                "cargo xtask bench --runs {} --requests {} --sockets {} --store-rows {}",
                opts.runs, opts.requests, opts.sockets, opts.store_rows
            );
            bench::write_markdown(&self.root.join("BENCHMARKS.md"), &body, &cmd)?;
            println!("==> results written to BENCHMARKS.md");
        }
        Ok(())
    }

    fn fuzz(&self, seconds: u64, targets: Vec<String>) -> Result<()> {
        const ALL: &[&str] = &[
            "proc_net",
            "event_decode",
            "rules",
            "kernel_formats",
            "history_query",
            "sock_diag",
            "dns",
            "proc_pid",
        ];
        self.ensure_bpf_toolchain()?;
        let have_fuzz = Command::new("cargo")
            .env("PATH", &self.path)
            .args(["fuzz", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have_fuzz {
            let mut cmd = self.cargo(true);
            cmd.args(["install", "cargo-fuzz"]);
            self.step("install cargo-fuzz", cmd)?;
        }
        let targets: Vec<String> = if targets.is_empty() {
            ALL.iter().map(|s| s.to_string()).collect()
        } else {
            targets
        };
        let mut summary = Vec::new();
        for t in &targets {
            let corpus = self.root.join("target/fuzz-corpus").join(t);
            fs::create_dir_all(&corpus)?;
            let mut cmd = self.cargo(true);
            cmd.current_dir(self.root.join("netta"))
                .args([&format!("+{BPF_TOOLCHAIN}"), "fuzz", "run", t])
                .arg(&corpus)
                .args([
                    "--",
                    &format!("-max_total_time={seconds}"),
                    "-rss_limit_mb=2048",
                ])
                .env("CARGO_TARGET_DIR", self.root.join("target/fuzz"))
                .stderr(Stdio::piped());
            println!("==> fuzz {t}: {}", display_command(&cmd));
            let out = cmd.output().context("running cargo fuzz")?;
            let log = String::from_utf8_lossy(&out.stderr);
            let runs = log
                .lines()
                .rev()
                .filter_map(|l| l.strip_prefix("Done "))
                .find_map(|l| l.split_whitespace().next()?.parse::<u64>().ok());
            let cov = log
                .lines()
                .rev()
                .find_map(|l| {
                    l.split(" cov: ")
                        .nth(1)?
                        .split_whitespace()
                        .next()
                        .map(String::from)
                })
                .unwrap_or_else(|| "?".into());
            if !out.status.success() {
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
                bail!("fuzz target {t} found a failure (artifact under netta/fuzz/artifacts/{t})");
            }
            let runs = runs.context("libFuzzer printed no run count")?;
            println!("    {t}: {runs} executions in {seconds} s, coverage {cov}, no failures");
            summary.push(format!("{t}: {runs} execs, cov {cov}"));
        }
        println!("==> fuzz summary: {}", summary.join("; "));
        Ok(())
    }

    fn build_netta(&self) -> Result<()> {
        let mut cmd = self.cargo(false);
        cmd.args(["build", "--profile", "dist", "-p", "netta"]);
        self.step("build netta", cmd)
    }

    fn run_netta(&self, args: Vec<OsString>) -> Result<i32> {
        self.build_ebpf()?;
        self.build_netta()?;
        let bin = self.netta_bin();
        let mut cmd = if !self.is_root && self.which("sudo").is_some() {
            let mut cmd = Command::new("sudo");
            cmd.arg("--").arg(&bin);
            cmd
        } else {
            Command::new(&bin)
        };
        cmd.args(&args).env("PATH", &self.path);
        println!("==> run: {}", display_command(&cmd));
        // Replace this process so signals (Ctrl-C) and the exit status go straight to netta.
        let err = cmd.exec();
        Err(err).with_context(|| format!("failed to start {}", bin.display()))
    }

    fn test(&self, extra: Vec<OsString>) -> Result<()> {
        let skip_lint = matches!(
            env::var("NETTA_SKIP_LINT").as_deref(),
            Ok("1") | Ok("true") | Ok("yes")
        );

        // One apt-get call for everything the suite needs.
        let packages: Vec<&str> = TEST_PEER_PACKAGES
            .iter()
            .chain(LLVM_PACKAGES)
            .copied()
            .collect();
        self.ensure_apt(&packages)?;
        self.ensure_bpf_toolchain()?;
        if !skip_lint {
            self.ensure_host_components(&["rustfmt", "clippy"])?;
        }

        self.build_ebpf_only()?;

        if skip_lint {
            println!(
                "==> fmt, clippy: skipped (NETTA_SKIP_LINT={})",
                env::var("NETTA_SKIP_LINT").unwrap_or_default()
            );
        } else {
            let mut fmt = self.cargo(false);
            fmt.args(["fmt", "--all", "--", "--check"]);
            self.step("fmt", fmt)?;

            let mut clippy = self.cargo(false);
            clippy.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            self.step("clippy", clippy)?;
        }

        self.build_netta()?;

        if self.is_root {
            // The benchmark end to end on a tiny workload: it must run, nothing is timed.
            println!("==> bench smoke: cargo xtask bench --smoke");
            self.bench(&bench::Opts::smoke())?;
        }

        let mut test = self.cargo(false);
        test.args([
            "test",
            "--workspace",
            "--release",
            "--lib",
            "--bins",
            "--tests",
        ])
        .args(&extra)
        .env("NETTA_BIN", self.netta_bin());
        if self.is_root {
            test.env("NETTA_REQUIRE_EBPF", "1");
        }
        self.test_step(test)
    }

    fn test_kernels(&self, sequential: bool) -> Result<()> {
        if !self.is_root {
            bail!(
                "test-kernels boots guests that load eBPF and writes {}: run it as root",
                kernels::CACHE
            );
        }
        let started = std::time::Instant::now();
        let packages: Vec<&str> = TEST_PEER_PACKAGES
            .iter()
            .chain(LLVM_PACKAGES)
            .chain(kernels::HOST_PACKAGES)
            .copied()
            .collect();
        self.ensure_apt(&packages)?;
        let vng = self.ensure_vng()?;
        self.ensure_bpf_toolchain()?;
        self.build_ebpf_only()?;
        self.build_netta()?;
        let tests = self.test_executables()?;
        let kernels = kernels::fetch()?;
        let work = self.root.join("target/test-kernels");
        fs::create_dir_all(&work)?;
        let netta = self.netta_bin();
        let costs = self.root.join("xtask/kernel-costs.py");
        let guests = kernels::GuestRun {
            vng: &vng,
            work: &work,
            netta: &netta,
            costs: &costs,
            tests: &tests,
        };
        let booted = std::time::Instant::now();
        let rows = kernels::run_all(&guests, &kernels, !sequential)?;
        let guests_secs = booted.elapsed().as_secs();
        let mut failed = Vec::new();
        for r in &rows {
            println!(
                "--- {} ({}), {} s ---",
                r.label, r.expected_release, r.seconds
            );
            println!("{}", r.doctor_text.trim_end());
            for t in &r.tests {
                println!(
                    "    {} {}: {}",
                    if t.problem.is_none() { "ok  " } else { "FAIL" },
                    t.name,
                    t.summary
                );
            }
            failed.extend(r.failures(&work));
        }
        let table = kernels::markdown(&rows);
        let costs_table = kernels::costs_markdown(&rows);
        let wall = started.elapsed().as_secs();
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let header = format!(
            "Run of {date} (`cargo xtask test-kernels`, host {}, {} CPUs, QEMU TCG): the guests took {guests_secs} s {}, the whole command {wall} s.",
            host.trim(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            if sequential { "one after another" } else { "booted concurrently" }
        );
        fs::write(work.join("results.md"), &table)?;
        fs::write(work.join("costs.md"), &costs_table)?;
        let doc = kernels::document(&rows, &header);
        fs::write(work.join("kernels.md"), &doc)?;
        println!("{table}\n{costs_table}\n{header}");
        println!("==> results: {}", work.join("kernels.md").display());
        if !failed.is_empty() {
            bail!("test-kernels failed: {}", failed.join("; "));
        }
        // A passing run keeps the docs true: the README's table, docs/kernels.md
        // (each guest's doctor) and BENCHMARKS.md's per-hook costs.
        fs::write(self.root.join("docs/kernels.md"), &doc)?;
        let splice_into = |file: &str, name: &str, body: &str| -> Result<()> {
            let path = self.root.join(file);
            let text = fs::read_to_string(&path)?;
            let (start, end) = (
                format!("<!-- {name}:start -->"),
                format!("<!-- {name}:end -->"),
            );
            fs::write(&path, kernels::splice(&text, &start, &end, body))?;
            Ok(())
        };
        splice_into("README.md", "kernels", &format!("{table}\n{header}\n"))?;
        splice_into(
            "BENCHMARKS.md",
            "kernel-costs",
            &format!("{header}\n\n{costs_table}"),
        )?;
        println!(
            "test-kernels: {} kernels, all in full eBPF mode, all tests passed ({wall} s); README.md, docs/kernels.md and BENCHMARKS.md updated",
            rows.len()
        );
        Ok(())
    }

    /// virtme-ng's `vng`, from PyPI into a venv of its own (the system's Python stays
    /// untouched; a warm machine installs nothing). Not under /var/cache, which the
    /// guest hides, while virtme's guest-side scripts run from the venv.
    fn ensure_vng(&self) -> Result<PathBuf> {
        let venv = Path::new(kernels::VNG_VENV);
        let vng = venv.join("bin/vng");
        if vng.is_file() {
            return Ok(vng);
        }
        let python = if Path::new("/usr/bin/python3").is_file() {
            PathBuf::from("/usr/bin/python3")
        } else {
            PathBuf::from("python3")
        };
        let mut cmd = Command::new(python);
        cmd.args(["-m", "venv"]).arg(venv);
        self.step("virtme-ng venv", cmd)?;
        let mut cmd = Command::new(venv.join("bin/pip"));
        cmd.args(["install", "--quiet", "virtme-ng"]);
        self.step("install virtme-ng", cmd)?;
        if !vng.is_file() {
            bail!("virtme-ng installed but {} is missing", vng.display());
        }
        Ok(vng)
    }

    /// Builds the guest test binaries and returns (executable, filter) pairs.
    fn test_executables(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut cmd = self.cargo(false);
        // The same selection as `cargo xtask test` (whole workspace, release), so that
        // after it these are already built: `-p netta-tests` alone unifies features
        // differently and rebuilds netta and some of its dependencies.
        cmd.args([
            "test",
            "--workspace",
            "--release",
            "--no-run",
            "--message-format=json",
        ]);
        let mut bins: Vec<&str> = kernels::GUEST_TESTS.iter().map(|(b, _)| *b).collect();
        bins.dedup();
        for bin in bins {
            cmd.args(["--test", bin]);
        }
        println!("==> build guest tests: {}", display_command(&cmd));
        let out = output_of(&mut cmd, "building the guest tests")?;
        let mut exes = std::collections::HashMap::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let (Some(name), Some(exe)) =
                (v["target"]["name"].as_str(), v["executable"].as_str())
            {
                exes.insert(name.to_string(), PathBuf::from(exe));
            }
        }
        kernels::GUEST_TESTS
            .iter()
            .map(|(bin, filter)| {
                let exe = exes
                    .get(*bin)
                    .with_context(|| format!("no executable for test {bin}"))?;
                Ok((exe.clone(), filter.to_string()))
            })
            .collect()
    }

    /// Runs `cargo test`, passing its output through, and ends with one line that
    /// totals every test binary's result.
    fn test_step(&self, mut cmd: Command) -> Result<()> {
        let shown = display_command(&cmd);
        println!("==> test: {shown}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("failed to start `{shown}`"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (mut passed, mut failed) = (0u64, 0u64);
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';')
                        .find_map(|p| {
                            p.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                passed += count(" passed");
                failed += count(" failed");
            }
        }
        let status = child.wait()?;
        // The last line of the run: what CI reads.
        println!("tests: {passed} passed, {failed} failed");
        check(status, shown)
    }

    // ---- prerequisites --------------------------------------------------------------------

    /// Nightly with rust-src (for `-Z build-std`) and bpf-linker on PATH.
    fn ensure_bpf_toolchain(&self) -> Result<()> {
        self.ensure_rust_src()?;
        self.ensure_bpf_linker()
    }

    fn ensure_rust_src(&self) -> Result<()> {
        if self.which("rustup").is_none() {
            bail!(
                "rustup not found: the BPF build needs the `{BPF_TOOLCHAIN}` toolchain with rust-src. \
                 Install rustup (https://rustup.rs), then run:\n    \
                 rustup toolchain install {BPF_TOOLCHAIN} --component rust-src"
            );
        }
        let listed = self
            .rustup()
            .args([
                "component",
                "list",
                "--installed",
                "--toolchain",
                BPF_TOOLCHAIN,
            ])
            .stderr(Stdio::null())
            .output()
            .context("failed to run rustup")?;
        if listed.status.success() {
            let installed = String::from_utf8_lossy(&listed.stdout)
                .lines()
                .any(|line| line.trim() == "rust-src" || line.trim().starts_with("rust-src-"));
            if installed {
                return Ok(());
            }
            let mut add = self.rustup();
            add.args(["component", "add", "rust-src", "--toolchain", BPF_TOOLCHAIN]);
            let shown = display_command(&add);
            self.step("install rust-src", add)
                .with_context(|| format!("could not install rust-src; run:\n    {shown}"))
        } else {
            let mut install = self.rustup();
            install.args([
                "toolchain",
                "install",
                BPF_TOOLCHAIN,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]);
            let shown = display_command(&install);
            self.step("install nightly toolchain", install)
                .with_context(|| {
                    format!("could not install the {BPF_TOOLCHAIN} toolchain; run:\n    {shown}")
                })
        }
    }

    fn ensure_bpf_linker(&self) -> Result<()> {
        if self.bpf_linker_works() {
            return Ok(());
        }
        let llvm_bin = Path::new(LLVM_PREFIX).join("bin");
        let path = env::join_paths(std::iter::once(llvm_bin).chain(env::split_paths(&self.path)))
            .context("PATH contains an invalid entry")?;
        // Built with the host (default) toolchain: the nightly environment must not leak in.
        let mut cmd = self.cargo(true);
        cmd.args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(BPF_LINKER_FEATURE)
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .env("PATH", path);
        let shown = format!("LLVM_PREFIX={LLVM_PREFIX} {}", display_command(&cmd));
        self.step("install bpf-linker", cmd)
            .with_context(|| format!("could not install bpf-linker; run:\n    {shown}"))?;
        if !self.bpf_linker_works() {
            bail!(
                "bpf-linker was installed but `bpf-linker --version` still fails; is {} on PATH?",
                self.cargo_bin_dir
                    .as_deref()
                    .unwrap_or(Path::new("~/.cargo/bin"))
                    .display()
            );
        }
        Ok(())
    }

    fn bpf_linker_works(&self) -> bool {
        Command::new("bpf-linker")
            .arg("--version")
            .env("PATH", &self.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// rustfmt/clippy for the host toolchain (the one running this xtask).
    fn ensure_host_components(&self, components: &[&str]) -> Result<()> {
        if self.which("rustup").is_none() {
            return Ok(()); // not a rustup install; cargo will report what is missing
        }
        let mut list = self.rustup();
        list.args(["component", "list", "--installed"]);
        if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
            list.arg("--toolchain").arg(toolchain);
        }
        let Ok(out) = list.stderr(Stdio::null()).output() else {
            return Ok(());
        };
        if !out.status.success() {
            return Ok(());
        }
        let installed = String::from_utf8_lossy(&out.stdout).into_owned();
        let missing: Vec<&str> = components
            .iter()
            .copied()
            .filter(|c| {
                !installed
                    .lines()
                    .any(|l| l.trim() == *c || l.trim().starts_with(&format!("{c}-")))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut add = self.rustup();
        add.args(["component", "add"]).args(&missing);
        if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
            add.arg("--toolchain").arg(toolchain);
        }
        let shown = display_command(&add);
        self.step("install rust components", add).with_context(|| {
            format!(
                "could not install {}; run:\n    {shown}",
                missing.join(", ")
            )
        })
    }

    /// Installs the Debian packages that are not installed yet, in one apt-get call.
    fn ensure_apt(&self, packages: &[&str]) -> Result<()> {
        if self.which("dpkg-query").is_none() {
            eprintln!(
                "xtask: warning: not a Debian-based system; make sure these (or equivalents) are installed: {}",
                packages.join(" ")
            );
            return Ok(());
        }
        let missing: Vec<&str> = packages
            .iter()
            .copied()
            .filter(|p| !dpkg_installed(p))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let install_line = format!(
            "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
            missing.join(" ")
        );
        if !self.is_root {
            bail!(
                "missing packages: {}. Install them with:\n    {install_line}",
                missing.join(" ")
            );
        }
        if self.which("apt-get").is_none() {
            bail!(
                "missing packages: {} (and apt-get not found)",
                missing.join(" ")
            );
        }
        if missing.iter().any(|p| !apt_known(p)) {
            self.apt_update()?;
        }
        let mut installed = self.apt_install(&missing)?;
        if !installed && !APT_UPDATED.load(Ordering::Relaxed) {
            self.apt_update()?;
            installed = self.apt_install(&missing)?;
        }
        let still_missing: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|p| !dpkg_installed(p))
            .collect();
        if !installed || !still_missing.is_empty() {
            bail!(
                "could not install {}; run:\n    {install_line}",
                still_missing.join(" ")
            );
        }
        Ok(())
    }

    fn apt_update(&self) -> Result<()> {
        let mut cmd = apt_command("apt-get");
        cmd.args(["update", "-q"]);
        println!("==> apt-get update");
        let status = cmd.status().context("failed to run apt-get update")?;
        APT_UPDATED.store(true, Ordering::Relaxed);
        if !status.success() {
            eprintln!(
                "xtask: warning: apt-get update failed ({status}); trying the install anyway"
            );
        }
        Ok(())
    }

    /// Returns whether apt-get succeeded.
    fn apt_install(&self, packages: &[&str]) -> Result<bool> {
        let mut cmd = apt_command("apt-get");
        cmd.args(["install", "-y"]).args(packages);
        println!("==> apt-get install: {}", display_command(&cmd));
        let status = cmd.status().context("failed to run apt-get install")?;
        Ok(status.success())
    }

    // ---- helpers --------------------------------------------------------------------------

    fn ebpf_target_dir(&self) -> PathBuf {
        self.root.join("target/ebpf")
    }

    fn bpf_object(&self) -> PathBuf {
        self.ebpf_target_dir()
            .join(BPF_TARGET)
            .join("release")
            .join("netta-ebpf")
    }

    fn netta_bin(&self) -> PathBuf {
        self.root.join("target/dist/netta")
    }

    /// A `cargo` child (the rustup proxy when there is one, so `+toolchain` works) run from the
    /// workspace root. `bpf` scrubs everything that would pin the host toolchain or flags.
    fn cargo(&self, bpf: bool) -> Command {
        let program = self
            .cargo_bin_dir
            .as_ref()
            .map(|dir| dir.join("cargo"))
            .filter(|p| p.is_file())
            .map(PathBuf::into_os_string)
            .unwrap_or_else(|| OsString::from("cargo"));
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        for (key, _) in env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if ALWAYS_SCRUBBED_ENV.contains(&key)
                || ALWAYS_SCRUBBED_PREFIXES.iter().any(|p| key.starts_with(p))
                || (bpf && BPF_SCRUBBED_ENV.contains(&key))
            {
                cmd.env_remove(key);
            }
        }
        if !bpf {
            cmd.env("CARGO_TARGET_DIR", self.root.join("target"));
        }
        cmd
    }

    fn rustup(&self) -> Command {
        let mut cmd = Command::new("rustup");
        cmd.env("PATH", &self.path);
        cmd
    }

    fn which(&self, program: &str) -> Option<PathBuf> {
        env::split_paths(&self.path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    }

    /// Prints `==> name: command` and runs the command with inherited stdio.
    fn step(&self, name: &str, mut cmd: Command) -> Result<()> {
        let shown = display_command(&cmd);
        println!("==> {name}: {shown}");
        let status = cmd
            .status()
            .with_context(|| format!("failed to start `{shown}`"))?;
        check(status, shown)
    }
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.ends_with(b" installed"))
}

/// Whether apt has an installation candidate for `package` (i.e. the lists are not stale).
fn apt_known(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["policy", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            out.status.success()
                && text
                    .lines()
                    .any(|l| l.trim().starts_with("Candidate:") && !l.contains("(none)"))
        })
}

/// Runs `cmd` with its stderr shown; its stdout, or an error when it fails.
fn output_of(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| what.to_string())?;
    check(out.status, what.to_string())?;
    Ok(out.stdout)
}

fn check(status: ExitStatus, what: String) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    Err(StepFailed { what, code }.into())
}

pub(crate) fn display_command(cmd: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    let program = Path::new(cmd.get_program());
    // Show `cargo`, not `/root/.cargo/bin/cargo`.
    let program = if program.file_name() == Some(OsStr::new("cargo")) {
        OsStr::new("cargo")
    } else {
        program.as_os_str()
    };
    parts.push(program.to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
            format!("'{}'", a.replace('\'', r"'\''"))
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}
