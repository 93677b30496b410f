//! Real-time monitor: the original's periodic line, counted from events, so it
//! also sees the connections that open and close between two lines.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::{Record, Shared};
use crate::event::{Action, Proto};
use crate::services::Services;
use crate::stats;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub duration: Duration,
    pub interval: Duration,
    pub json: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub duration_ms: u64,
    /// Connections alive at the start plus every one opened, failed or flowing since.
    pub unique_connections: u64,
    /// Closed connections that lived shorter than one interval: a poll at that
    /// interval could have missed them.
    pub shorter_than_interval: u64,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub lost: u64,
    pub alerts: u64,
}

/// Go-style duration, as the original printed it: `6s`, `1m0s`, `1h2m3s`, `4.5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Local wall-clock `HH:MM:SS`.
pub fn local_hms(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes into the zeroed struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return "??:??:??".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

pub fn intro(opts: &Options) -> String {
    format!(
        "Monitoring network traffic for {} (updating every {})\nPress Ctrl+C to stop monitoring\n{}\n\n",
        go_duration(opts.duration),
        go_duration(opts.interval),
        crate::view::light_rule()
    )
}

pub fn render_summary(s: &Summary, interval: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n✓ Monitoring complete\n");
    let _ = writeln!(out, "Monitoring Summary:");
    let _ = writeln!(
        out,
        "  Duration: {}",
        go_duration(Duration::from_millis(s.duration_ms))
    );
    let _ = writeln!(
        out,
        "  Unique connections observed: {}",
        s.unique_connections
    );
    let _ = writeln!(
        out,
        "  Lived shorter than {} (a {} poll could miss them): {}",
        go_duration(interval),
        go_duration(interval),
        s.shorter_than_interval
    );
    let _ = writeln!(
        out,
        "  Opened: {} | Closed: {} | Failed: {} | Alerts: {} | Lost events: {}",
        s.opened, s.closed, s.failed, s.alerts, s.lost
    );
    out
}

/// Runs until `duration` passes or `stop` resolves, writing each line through `out`.
pub async fn run(
    shared: &Arc<Shared>,
    opts: Options,
    stop: impl Future<Output = ()>,
    out: &mut dyn FnMut(&str),
) -> Summary {
    let services = Services::load();
    let mut rx = shared.subscribe(1 << 16);
    let started = Instant::now();
    let interval_ns = opts.interval.as_nanos() as u64;
    // Identity of a connection: (protocol, local, remote).
    let mut seen: HashSet<(Proto, SocketAddr, SocketAddr)> = shared
        .snapshot()
        .conns
        .iter()
        .filter(|c| c.has_peer())
        .map(|c| (c.proto, c.local, c.remote))
        .collect();
    let mut summary = Summary::default();
    let (mut new, mut closed) = (0u64, 0u64);
    if !opts.json {
        out(&intro(&opts));
    }
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + opts.interval, opts.interval);
    let deadline = tokio::time::sleep(opts.duration);
    tokio::pin!(deadline);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            rec = rx.recv() => {
                let ev = match rec {
                    None => break,
                    Some(Record::Alert(a)) => {
                        summary.alerts += 1;
                        if opts.json {
                            out(&(crate::detect::to_json(&a, &shared.clock).to_string() + "\n"));
                        } else {
                            out(&format!("  ⚠  {}\n", a.message));
                        }
                        continue;
                    }
                    Some(Record::Event(ev)) => ev,
                };
                match ev.action {
                    Action::Opened | Action::Failed | Action::UdpFlow => {
                        seen.insert((ev.proto, ev.local, ev.remote));
                        if ev.action == Action::Failed {
                            summary.failed += 1;
                        } else if ev.action == Action::Opened {
                            summary.opened += 1;
                            new += 1;
                        }
                    }
                    Action::Closed => {
                        seen.insert((ev.proto, ev.local, ev.remote));
                        summary.closed += 1;
                        closed += 1;
                        if ev.duration_ns().is_some_and(|d| d < interval_ns) {
                            summary.shorter_than_interval += 1;
                        }
                    }
                    Action::EventsLost => summary.lost = summary.lost.saturating_add(ev.count),
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let snap = shared.snapshot();
                let s = stats::compute(&snap, &services);
                let now = std::time::SystemTime::now();
                let line = if opts.json {
                    serde_json::json!({
                        "time": humantime::format_rfc3339_seconds(now).to_string(),
                        "active": s.active_connections,
                        "established": s.state_count(crate::event::State::Established),
                        "listening": s.listening_ports,
                        "unique_ips": s.unique_remote_ips,
                        "new": new,
                        "closed": closed,
                    })
                    .to_string()
                        + "\n"
                } else {
                    format!(
                        "[{}] Active: {} | Established: {} | Listening: {} | Unique IPs: {} | New: {} | Closed: {}\n",
                        local_hms(now),
                        s.active_connections,
                        s.state_count(crate::event::State::Established),
                        s.listening_ports,
                        s.unique_remote_ips,
                        new,
                        closed
                    )
                };
                out(&line);
                new = 0;
                closed = 0;
            }
            _ = &mut deadline => break,
            _ = &mut stop => break,
        }
    }
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary.unique_connections = seen.len() as u64;
    if opts.json {
        out(&(serde_json::json!({ "summary": summary }).to_string() + "\n"));
    } else {
        out(&render_summary(&summary, opts.interval));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(6)), "6s");
        assert_eq!(go_duration(Duration::from_millis(4500)), "4.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn summary_renders_the_originals_lines() {
        let s = Summary {
            duration_ms: 60_000,
            unique_connections: 15,
            shorter_than_interval: 9,
            ..Default::default()
        };
        let text = render_summary(&s, Duration::from_secs(2));
        assert!(text.contains("✓ Monitoring complete"));
        assert!(text.contains(
            "Monitoring Summary:\n  Duration: 1m0s\n  Unique connections observed: 15\n"
        ));
        assert!(text.contains("Lived shorter than 2s (a 2s poll could miss them): 9"));
        assert_eq!(
            intro(&Options {
                duration: Duration::from_secs(60),
                interval: Duration::from_secs(2),
                json: false
            })
            .lines()
            .next(),
            Some("Monitoring network traffic for 1m0s (updating every 2s)")
        );
    }
}
