//! The sinks of one command (`netta agent`, `netta events`): one tap on the
//! agent's bus, each record serialised once ([`fan_out`]) and written by every sink.
use std::io;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{fan_out, spawn, spawn_files, FileSpec, SinkSpec, SinkStats};
use crate::agent::Shared;
use crate::core::filter::EndsFilter;

/// Capacity of the tap, in records.
const TAP: usize = 1 << 14;
/// Capacity of each sink's channel, in batches of up to 256 lines: a sink's
/// task moves them to its own bounded backlog at once, so this only covers a
/// write in progress (at most 32,768 lines).
const CHANNEL: usize = 128;

pub struct Sinks {
    tasks: Vec<JoinHandle<io::Result<()>>>,
    fan: JoinHandle<()>,
    fan_stop: watch::Sender<bool>,
    stop: watch::Sender<bool>,
}

impl Sinks {
    /// Subscribes to `shared`'s bus and starts one task per spec; they get the
    /// records that pass `filter` (`netta events --dport ...`).
    pub fn start(shared: &Shared, specs: &[SinkSpec], filter: EndsFilter) -> Sinks {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut outs = Vec::new();
        let mut files = Vec::new();
        for spec in specs {
            let stats = Arc::new(SinkStats::default());
            if let SinkSpec::File(path) = spec {
                files.push(FileSpec {
                    path: path.clone(),
                    label: spec.to_string(),
                    stats,
                });
                continue;
            }
            let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
            outs.push((tx, vec![stats.clone()]));
            tasks.push(spawn(
                spec.clone(),
                rx,
                shared.clock.clone(),
                stats,
                stop_rx.clone(),
            ));
        }
        // Every file sink on one thread, fed by one channel.
        if !files.is_empty() {
            let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL);
            outs.push((tx, files.iter().map(|f| f.stats.clone()).collect()));
            tasks.push(spawn_files(
                files,
                rx,
                shared.clock.clone(),
                stop_rx.clone(),
            ));
        }
        let (fan_stop, fan_rx) = watch::channel(false);
        let tap = shared.subscribe(TAP);
        let fan = tokio::spawn(fan_out(tap, shared.clock.clone(), outs, filter, fan_rx));
        Sinks {
            tasks,
            fan,
            fan_stop,
            stop,
        }
    }

    /// Every sink has ended by itself (stdout's reader went away, or a write failed).
    pub fn all_ended(&self) -> bool {
        self.tasks.iter().all(|t| t.is_finished())
    }

    /// Call after the agent has stopped: the last records reach the sinks, then
    /// they drain, flush and end. The first sink error, if any.
    pub async fn stop(self) -> io::Result<()> {
        let _ = self.fan_stop.send(true);
        let _ = self.fan.await;
        let _ = self.stop.send(true);
        let mut failed = None;
        for t in self.tasks {
            if let Ok(Err(e)) = t.await {
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }
}
