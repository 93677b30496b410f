//! Where a view's data comes from: the running agent's API when one answers
//! (`--api PATH`, `NETTA_API`, the default socket), else an agent in this process
//! (`--standalone` forces that). Both give the same plain data (snapshots, alerts,
//! records) to the same render functions. History views read the history store
//! (through the agent, or its file when standalone), as `netta history` does.
use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::agent::{Agent, AgentOptions, Record};
use crate::core::clock::Clock;
use crate::core::filter::Filter;
use crate::core::services::Services;
use crate::core::table::{Closed, Conn, Snapshot};
use crate::core::top::Picture;
use crate::detect::Alert;
use crate::local_api::client::{Client, ClientError};
use crate::local_api::{self as api, Hello};
use crate::settings::cli::Global;

/// How much history a view shows, and the store file a standalone view reads.
#[derive(Clone, Debug)]
pub struct HistoryOpts {
    /// The newest rows kept.
    pub limit: u64,
    pub store_file: PathBuf,
}

/// Closed connections, oldest first, with wall-clock times: show them with
/// [`History::clock`].
pub struct History {
    pub rows: Vec<Closed>,
}

impl History {
    pub fn clock() -> Clock {
        Clock::fixed(0)
    }
}

pub enum Source {
    Attached {
        client: Client,
        hello: Hello,
        clock: Clock,
        services: Services,
    },
    Standalone(Agent),
}

impl Source {
    /// Attaches to the agent, or starts one here ([`Source::announce`] says which).
    pub async fn open(global: &Global, opts: AgentOptions) -> anyhow::Result<Source> {
        if !global.standalone {
            let client = Client::new(&api::socket_path(global.api.as_deref()));
            match client.hello().await {
                Ok(hello) => {
                    return Ok(Source::Attached {
                        client,
                        clock: hello.clock(),
                        hello,
                        services: crate::host::services::load(),
                    });
                }
                Err(e) if e.not_running() => {}
                Err(e) => anyhow::bail!("{e} (or run with --standalone)"),
            }
        }
        Ok(Source::Standalone(Agent::start(opts).await))
    }

    /// The start-up line on stderr: `netta: attached to agent (pid N, up 3h)` or
    /// `netta: standalone (eBPF, ring buffer)`.
    pub fn announce(&self) {
        match self {
            Source::Attached { hello, .. } => eprintln!("{}", hello.attached_line()),
            Source::Standalone(a) => eprintln!("netta: standalone ({})", a.mode().describe()),
        }
    }

    /// How events reach the agent (`eBPF, ring buffer`, ...).
    pub fn mode(&self) -> String {
        match self {
            Source::Attached { hello, .. } => hello.mode.clone(),
            Source::Standalone(a) => a.mode().describe(),
        }
    }

    /// When the agent started, on the kernel's clock (`CLOCK_MONOTONIC` ns).
    pub fn started_ns(&self) -> u64 {
        match self {
            Source::Attached { hello, .. } => crate::core::clock::boot_now()
                .saturating_sub(hello.uptime_s.saturating_mul(1_000_000_000)),
            Source::Standalone(a) => a.shared.started_ns,
        }
    }

    pub fn clock(&self) -> Clock {
        match self {
            Source::Attached { clock, .. } => clock.clone(),
            Source::Standalone(a) => a.shared.clock.clone(),
        }
    }

    pub fn services(&self) -> &Services {
        match self {
            Source::Attached { services, .. } => services,
            Source::Standalone(a) => a.shared.services(),
        }
    }

    /// Standalone, re-reads /proc now (so states like CLOSE_WAIT are current);
    /// the attached agent keeps its table current itself.
    pub async fn refresh(&self) {
        if let Source::Standalone(a) = self {
            a.reconcile_once(false).await;
        }
    }

    /// The table now; its closed rows too when `history`.
    pub async fn snapshot(&self, history: bool) -> anyhow::Result<Snapshot> {
        match self {
            Source::Attached { client, .. } => Ok(client.snapshot(history).await?),
            Source::Standalone(a) if history => Ok(a.shared.snapshot()),
            Source::Standalone(a) => Ok(a.shared.live_snapshot()),
        }
    }

    /// The open rows `filter` selects, in display order: whole rows when `full`
    /// (`--wide`, `--json`), else what the plain list shows of them.
    pub async fn list(&self, filter: &Filter, full: bool) -> anyhow::Result<Vec<Conn>> {
        match self {
            Source::Attached { client, .. } => {
                match client.list(&api::list::ListQuery::new(filter, full)).await {
                    Ok(rows) => Ok(rows),
                    // An agent from before `/v1/view/list`: from its whole table.
                    Err(ClientError::Status(..)) => Ok(crate::core::filter::select(
                        &client.snapshot(false).await?,
                        filter,
                    )),
                    Err(e) => Err(e.into()),
                }
            }
            Source::Standalone(a) => Ok(crate::core::filter::select(
                &a.shared.live_snapshot(),
                filter,
            )),
        }
    }

    /// What `netta top` shows of the table at `now`: the agent's picture
    /// (compact, opaque socket ids), or this process's table.
    pub async fn picture(&self, now: u64) -> anyhow::Result<Picture> {
        match self {
            Source::Attached { client, .. } => match client.top().await {
                Ok(p) => Ok(p),
                // An agent from before `/v1/view/top`: from its whole table.
                Err(ClientError::Status(..)) => {
                    Ok(Picture::of_snapshot(&client.snapshot(false).await?, now))
                }
                Err(e) => Err(e.into()),
            },
            Source::Standalone(a) => {
                let t = a.shared.table();
                Ok(Picture::of(t.conns(), t.counters(), now, |k| k))
            }
        }
    }

    /// Closed connections matching `filter`: the history store's when there is
    /// one (the agent's; standalone, its file if readable, plus what this process
    /// saw), else the agent's in-memory ring.
    pub async fn history(&self, filter: &Filter, opts: &HistoryOpts) -> anyhow::Result<History> {
        let q = filter.history_query(opts.limit);
        let (stored, ring) = match self {
            Source::Attached {
                client,
                hello,
                clock,
                ..
            } => {
                if hello.store {
                    (client.history(&q).await?, Vec::new())
                } else {
                    let ring = client.snapshot(true).await?.history;
                    (Vec::new(), on_wall_clock(ring, clock))
                }
            }
            Source::Standalone(a) => {
                let file = opts.store_file.clone();
                let stored = tokio::task::spawn_blocking(move || {
                    crate::store::Reader::open(&file)
                        .ok()
                        .and_then(|r| q.run(&r).ok())
                })
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
                let ring = a.shared.snapshot().history;
                (stored, on_wall_clock(ring, &a.shared.clock))
            }
        };
        let stored: Vec<Closed> = stored.iter().filter_map(|r| r.to_closed()).collect();
        let rows = merged(stored, ring, opts.limit as usize);
        Ok(History {
            rows: crate::core::filter::select_closed(&rows, filter),
        })
    }

    /// Every incident since the agent started, after a fresh look at the table.
    pub async fn incidents(&self) -> anyhow::Result<Vec<Alert>> {
        match self {
            Source::Attached { client, .. } => Ok(client.incidents().await?),
            Source::Standalone(a) => Ok(crate::app::views::alerts(&a.shared)),
        }
    }

    /// Live records from now on.
    pub async fn subscribe(&self, capacity: usize) -> anyhow::Result<mpsc::Receiver<Record>> {
        match self {
            Source::Attached { client, .. } => Ok(client.records(capacity).await?),
            Source::Standalone(a) => Ok(a.shared.subscribe(capacity)),
        }
    }

    /// Stops the in-process agent (it reports the UDP flows still open).
    pub async fn close(self) {
        if let Source::Standalone(a) = self {
            a.shutdown().await;
        }
    }
}

fn on_wall_clock(rows: Vec<Closed>, clock: &Clock) -> Vec<Closed> {
    rows.into_iter().map(|h| h.on_wall_clock(clock)).collect()
}

/// Stored rows and ring rows by end time, the newest `limit`. A ring row the store
/// also has (same connection, same owner, ending within a second: a standalone view
/// beside a running agent) is shown once.
fn merged(stored: Vec<Closed>, ring: Vec<Closed>, limit: usize) -> Vec<Closed> {
    use rustc_hash::FxHashMap;
    const SAME_NS: u64 = 1_000_000_000;
    let key = |h: &Closed| (h.conn.proto, h.conn.local, h.conn.remote, h.conn.pid);
    let mut ends: FxHashMap<_, Vec<u64>> = FxHashMap::default();
    for h in &stored {
        ends.entry(key(h)).or_default().push(h.end_ns);
    }
    let mut rows = stored;
    rows.extend(ring.into_iter().filter(|h| {
        !ends
            .get(&key(h))
            .is_some_and(|e| e.iter().any(|t| t.abs_diff(h.end_ns) < SAME_NS))
    }));
    rows.sort_by_key(|h| h.end_ns);
    let cut = rows.len().saturating_sub(limit);
    rows.split_off(cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Action, ConnEvent, Direction};

    fn closed(port: u16, end_s: u64) -> Closed {
        let mut e = ConnEvent::lost(end_s * 1_000_000_000, 0);
        e.action = Action::Closed;
        e.direction = Direction::Egress;
        e.local = format!("127.0.0.1:{port}").parse().unwrap();
        e.remote = "127.0.0.1:80".parse().unwrap();
        e.pid = 7;
        Closed::from_ended(&e).unwrap()
    }

    #[test]
    fn the_store_and_the_ring_merge_by_end_time_once_each_newest_kept() {
        let stored = vec![closed(1000, 10), closed(1001, 20)];
        // 1001 again, a few ms apart: the same connection seen by both.
        let mut again = closed(1001, 20);
        again.end_ns += 3_000_000;
        let ring = vec![closed(1002, 15), again, closed(1001, 40)];
        let ports = |rows: &[Closed]| -> Vec<(u16, u64)> {
            rows.iter()
                .map(|h| (h.conn.local.port(), h.end_ns / 1_000_000_000))
                .collect()
        };
        let all = merged(stored.clone(), ring.clone(), 100);
        assert_eq!(
            ports(&all),
            [(1000, 10), (1002, 15), (1001, 20), (1001, 40)]
        );
        assert_eq!(ports(&merged(stored, ring, 2)), [(1001, 20), (1001, 40)]);
    }

    #[test]
    fn ring_rows_move_to_wall_time_and_unknown_starts_stay_unknown() {
        let mut h = closed(1000, 10);
        h.conn.start_ns = 0;
        let w = h.on_wall_clock(&Clock::fixed(1_700_000_000_000_000_000));
        assert_eq!(w.end_ns, 1_700_000_010_000_000_000);
        assert_eq!(w.conn.start_ns, 0);
    }
}
