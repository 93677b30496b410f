//! Costs as the machine's CPU time per connection at a fixed rate, and netta
//! against a baseline build of itself.
//!
//! Below saturation, at a fixed rate, the busy CPU time the whole machine spends per
//! connection (server, client, kernel programs and agent together) is what a tracer
//! would take from throughput once the machine is saturated. On this VM /proc/stat's
//! busy time is itself noisy (untraced baselines of 31–167 µs per connection within
//! one run), so the figure is printed with its rounds, not trusted alone.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::{interleaved, median, start, stop, Nginx, Opts, Paired, Tracer, PORT};

/// Busy CPU seconds of the whole machine since boot: user, nice, system, irq and
/// softirq time of every CPU (not idle, iowait or steal).
fn busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Ok(busy as f64 / crate::bench::clock_ticks())
}

/// The fixed rate and its duration.
fn rate_and_seconds(opts: &Opts) -> (u32, u32) {
    if opts.smoke {
        (500, 1)
    } else {
        (8_000, 8)
    }
}

/// Busy CPU µs per completed connection while `rate` connections a second run
/// for `seconds` (each one HTTP request to nginx).
fn cpu_per_connection(rate: u32, seconds: u32) -> Result<f64> {
    let to: SocketAddr = ([127, 0, 0, 1], PORT).into();
    let b0 = busy_seconds()?;
    let run = crate::latency::run(to, rate, seconds, 8)?;
    let b1 = busy_seconds()?;
    let done = run.latencies.len().max(1) as f64;
    Ok((b1 - b0) * 1e6 / done)
}

/// For each tracer, interleaved over the rounds: an untraced fixed-rate run, then one
/// traced by it. Returns, per tracer, the medians of the untraced and traced CPU µs
/// per connection.
pub(crate) fn fixed_rate_cpu(
    tracers: &[(Tracer, &Path)],
    dir: &Path,
    opts: &Opts,
    rounds: usize,
) -> Result<Vec<(f64, f64)>> {
    let (rate, seconds) = rate_and_seconds(opts);
    let mut base = vec![Vec::new(); tracers.len()];
    let mut traced = vec![Vec::new(); tracers.len()];
    for round in 0..rounds {
        for (i, &(tracer, bin)) in tracers.iter().enumerate() {
            let b = cpu_per_connection(rate, seconds)?;
            let running = start(tracer, bin, dir, 300 + round)?;
            // Seeding and start-up are not what a connection costs.
            std::thread::sleep(Duration::from_millis(500));
            let t = cpu_per_connection(rate, seconds)?;
            let _ = stop(running, tracer, &Default::default())?;
            eprintln!(
                "bench: fixed-rate CPU round {}: {}: {b:.1} → {t:.1} µs per connection ({:+.1} %)",
                round + 1,
                tracer.name(),
                (t / b - 1.0) * 100.0
            );
            base[i].push(b);
            traced[i].push(t);
        }
    }
    Ok(base
        .into_iter()
        .zip(traced)
        .map(|(b, t)| (median(b), median(t)))
        .collect())
}

/// The sentence that says how the fixed-rate CPU figures were made.
pub(crate) fn method(opts: &Opts, rounds: usize) -> String {
    let (rate, seconds) = rate_and_seconds(opts);
    format!(
        "CPU per connection: the whole machine's busy CPU time (user, system, irq, softirq \
         from /proc/stat) over {rate} connections/s for {seconds} s (open loop, one request \
         each, nginx 2 workers), untraced then traced, {rounds} interleaved rounds, medians; \
         the tracer's share is traced ÷ untraced − 1 (a share s leaves a saturated machine \
         1 ÷ (1 + s) of its throughput: 5.3 % ↔ 0.95)"
    )
}

/// netta against a baseline build of netta (`--baseline BIN`): throughput ratios at
/// saturation and CPU per connection at a fixed rate, the two builds interleaved run
/// by run so the machine's drift hits both alike.
pub(crate) fn against_baseline(
    netta: &Path,
    baseline: &Path,
    dir: &Path,
    opts: &Opts,
    nginx: &Nginx,
) -> Result<String> {
    let builds = [
        (Tracer::NettaRing, netta),
        (Tracer::NettaBaseline, baseline),
    ];
    let rounds = opts.runs.max(if opts.smoke { 1 } else { 5 });
    let paired = interleaved("baseline", &builds, rounds, 400, dir, opts, nginx)?;
    let cpu = fixed_rate_cpu(&builds, dir, opts, rounds)?;
    let mut o = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "\nAgainst a baseline build (`--only baseline --baseline {}`): nginx 2 workers, \
         `ab -n {} -c 8`, {rounds} interleaved rounds, medians. {}.\n",
        baseline.display(),
        opts.requests,
        method(opts, rounds)
    );
    let _ = writeln!(
        o,
        "| build | throughput ratio | CPU per connection, untraced → traced | tracer's share | agent CPU s / 100k connections | peak RSS | closed seen (client / server) |\n|---|---|---|---|---|---|---|"
    );
    for (i, &(tracer, bin)) in builds.iter().enumerate() {
        let (b, t) = cpu[i];
        let runs = &paired[i];
        let sum = |f: fn(&Paired) -> u64| runs.iter().map(f).sum::<u64>();
        let _ = writeln!(
            o,
            "| {} (`{}`) | {:.3} | {b:.1} → {t:.1} µs | {:+.1} % | {:.2} | {:.1} MiB | {} / {} of {} |",
            tracer.name(),
            bin.display(),
            median(runs.iter().map(Paired::ratio).collect()),
            (t / b - 1.0) * 100.0,
            median(runs.iter().map(Paired::agent_cpu).collect()),
            median(runs.iter().map(|p| p.seen.rss_mib).collect()),
            sum(|p| p.seen.client),
            sum(|p| p.seen.server),
            sum(|p| p.traced.complete)
        );
    }
    Ok(o)
}
