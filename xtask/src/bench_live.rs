//! `cargo xtask bench-live` (and a step of `cargo xtask bench`): what the live
//! counters cost. With N idle established loopback connections in a network
//! namespace of its own: one refresh (sock_diag dump + applying it to the table,
//! `netta live-bench`), and a running `netta events` agent's CPU over a window;
//! then `netta top`'s frame time on a synthetic table of N connections.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::{cpu_seconds, hold_in_netns, new_netns};

pub struct Opts {
    pub connections: u32,
    pub seconds: u64,
    pub frames: u32,
}

impl Opts {
    pub fn for_bench(smoke: bool) -> Opts {
        if smoke {
            Opts {
                connections: 500,
                seconds: 2,
                frames: 5,
            }
        } else {
            Opts {
                connections: 10_000,
                seconds: 30,
                frames: 200,
            }
        }
    }
}

fn json_of(out: &std::process::Output, what: &str) -> Result<serde_json::Value> {
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{what} output"))
}

pub fn run(netta: &Path, opts: &Opts) -> Result<String> {
    let ns = new_netns("live")?;
    let holders = hold_in_netns(&ns.0, opts.connections)?;
    let netta_s = netta.to_str().context("path")?;
    let refresh = json_of(
        &Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                netta_s,
                "live-bench",
                "--runs",
                "30",
            ])
            .output()?,
        "netta live-bench",
    )?;
    // The agent itself, idle but for the refresh, the table rules and /proc healing.
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &ns.0, netta_s, "--standalone", "events"])
        .args(["--update-interval", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("netta events")?;
    let pid = agent.id();
    let mut err = BufReader::new(agent.stderr.take().context("stderr")?);
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !line.starts_with("netta: standalone") {
        line.clear();
        if err.read_line(&mut line)? == 0 || Instant::now() > deadline {
            bail!("netta events did not start: {line}");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let c0 = cpu_seconds(pid).context("agent cpu")?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(opts.seconds));
    let agent_core = (cpu_seconds(pid).context("agent cpu")? - c0) / t0.elapsed().as_secs_f64();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let _ = agent.wait();
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.wait();
    }
    drop(ns);
    let frames = json_of(
        &Command::new(netta)
            .args(["top-bench", "--connections", &opts.connections.to_string()])
            .args(["--frames", &opts.frames.to_string()])
            .output()?,
        "netta top-bench",
    )?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(format!(
        "\n## Live counters and `netta top`\n\n\
         {conns} idle established loopback connections ({sampled} sockets) in a network namespace.\n\n\
         | measure | value |\n|---|---|\n\
         | one refresh (sock_diag dump + table), wall, median / p99 | {wm:.2} ms / {wp:.2} ms |\n\
         | one refresh, CPU, mean of {runs} (the first, matching rows by address: {first:.2} ms) | {cpu:.2} ms, {frac:.4} core at 1 Hz |\n\
         | `netta events` agent over {secs} s (refresh, rules, /proc healing) | {agent:.4} core |\n\
         | `netta top` frame on {conns} connections (table picture + update + draw, 200×50), median / p99 | {fm:.2} ms / {fp:.2} ms (picture {pm:.2} ms) |\n\
         | the same attached to an agent (the picture as the API's JSON, written and parsed), median / p99 | {am:.2} ms / {ap:.2} ms (picture {apm:.2} ms) |\n",
        conns = opts.connections,
        sampled = refresh["sampled"],
        wm = f(&refresh, "wall_ms_median"),
        wp = f(&refresh, "wall_ms_p99"),
        cpu = f(&refresh, "cpu_ms_mean"),
        runs = refresh["runs"],
        first = f(&refresh, "cpu_ms_first"),
        frac = f(&refresh, "core_fraction_at_1hz"),
        secs = opts.seconds,
        agent = agent_core,
        fm = f(&frames, "frame_ms_median"),
        fp = f(&frames, "frame_ms_p99"),
        pm = f(&frames, "picture_ms_median"),
        am = f(&frames, "attached_frame_ms_median"),
        ap = f(&frames, "attached_frame_ms_p99"),
        apm = f(&frames, "attached_picture_ms_median"),
    ))
}
