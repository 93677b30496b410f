//! `netta monitor`: the original's periodic line, counted from the record stream,
//! so it also sees the connections that open and close between two lines.
use std::collections::HashSet;
use std::future::Future;
use std::time::Instant;

use crate::agent::Record;
use crate::app::source::Source;
use crate::core::event::Action;
use crate::core::tuple::Tuple;
use crate::render::monitor::{intro, local_hms, render_summary, Options, Summary};
use crate::render::stats;

/// Runs until `duration` passes or `stop` resolves, writing each line through `out`.
pub async fn run(
    src: &Source,
    opts: Options,
    stop: impl Future<Output = ()>,
    out: &mut dyn FnMut(&str),
) -> anyhow::Result<Summary> {
    let services = src.services();
    let clock = src.clock();
    let mut rx = src.subscribe(1 << 16).await?;
    let started = Instant::now();
    let interval_ns = opts.interval.as_nanos() as u64;
    let mut seen: HashSet<Tuple> = src
        .snapshot(false)
        .await?
        .conns
        .iter()
        .filter(|c| c.has_peer())
        .map(|c| c.tuple())
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
                            out(&(serde_json::json!({ "alert": crate::render::ecs::alert_value(&a, &clock) }).to_string() + "\n"));
                        } else {
                            out(&format!("  ⚠  {}\n", a.message));
                        }
                        continue;
                    }
                    Some(Record::Event(ev)) => ev,
                    Some(Record::Dns(_)) => continue,
                };
                match ev.action {
                    Action::Opened | Action::Failed | Action::UdpFlow => {
                        seen.insert(ev.tuple());
                        if ev.action == Action::Failed {
                            summary.failed += 1;
                        } else if ev.action == Action::Opened {
                            summary.opened += 1;
                            new += 1;
                        }
                    }
                    Action::Closed => {
                        seen.insert(ev.tuple());
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
                let snap = src.snapshot(false).await?;
                let s = stats::compute(&snap, services);
                let now = std::time::SystemTime::now();
                let line = if opts.json {
                    serde_json::json!({
                        "time": humantime::format_rfc3339_seconds(now).to_string(),
                        "active": s.active_connections,
                        "established": s.state_count(crate::core::event::State::Established),
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
                        s.state_count(crate::core::event::State::Established),
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
    Ok(summary)
}
