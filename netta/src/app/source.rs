//! Where a view's data comes from: the running agent's API when one answers
//! (`--api PATH`, `NETTA_API`, the default socket), else an agent in this process
//! (`--standalone` forces that). Both give the same plain data (snapshots, alerts,
//! records) to the same render functions.
use tokio::sync::mpsc;

use crate::agent::{Agent, AgentOptions, Record};
use crate::core::clock::Clock;
use crate::core::services::Services;
use crate::core::table::Snapshot;
use crate::detect::Alert;
use crate::local_api::client::Client;
use crate::local_api::{self as api, Hello};
use crate::settings::cli::Global;

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
            Source::Standalone(a) => {
                let mut snap = a.shared.snapshot();
                if !history {
                    snap.history = Vec::new();
                }
                Ok(snap)
            }
        }
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
