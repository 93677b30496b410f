//! `netta agent` as a service: the persistent history store and the local API,
//! plugged onto a running agent.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::agent::{Agent, Record, Shared};
use crate::core::clock::Clock;
use crate::core::stored::BaselineReport;
use crate::core::table::Snapshot;
use crate::detect::new_destination::Dest;
use crate::detect::Alert;
use crate::local_api::list::ListRow;
use crate::local_api::{self as api, Backend, Hello};
use crate::metrics::Metrics;
use crate::render::{ecs, stats};
use crate::settings::cli::{AgentArgs, Global};
use crate::settings::file::Config;
use crate::store::retention::{self, Retention};
use crate::store::writer::{StoreStats, Writer, WriterOptions};
use crate::store::Store;

/// Room for a few seconds of records at full loopback rate; a full tap drops and counts.
const STORE_TAP: usize = 1 << 18;

pub struct StoreSettings {
    pub dir: PathBuf,
    pub retention: Retention,
}

pub fn store_settings(args: &AgentArgs, file: Option<&Config>) -> Option<StoreSettings> {
    if args.no_store {
        return None;
    }
    let dir = args
        .state_dir
        .clone()
        .or_else(|| file.and_then(|c| c.state_dir.clone()))
        .unwrap_or_else(|| crate::store::DEFAULT_STATE_DIR.into());
    Some(StoreSettings {
        dir,
        retention: Retention {
            max_age: args
                .retention_age
                .or(file.and_then(|c| c.retention_age))
                .unwrap_or(retention::DEFAULT_MAX_AGE),
            max_bytes: args
                .retention_size
                .or(file.and_then(|c| c.retention_size))
                .unwrap_or(retention::DEFAULT_MAX_BYTES),
        },
    })
}

/// Opens the store; a store that cannot open is one line and no history, not a stop.
pub fn open_store(s: &StoreSettings) -> Option<Store> {
    match Store::open(&s.dir) {
        Ok((store, notice)) => {
            if let Some(n) = notice {
                eprintln!("netta: {n}");
            }
            Some(store)
        }
        Err(e) => {
            eprintln!("netta: history store off: {e}");
            None
        }
    }
}

/// The stored baseline for the agent; a store that cannot give it starts learning afresh.
pub fn load_baseline(store: &mut Store) -> Option<(i64, Vec<Dest>)> {
    match crate::store::baseline::load(store.db(), crate::store::row::now_us()) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("netta: history store: cannot read the baseline ({e}); learning afresh");
            None
        }
    }
}

pub fn start_writer(
    agent: &Agent,
    store: Store,
    s: &StoreSettings,
    rules: &crate::detect::Rules,
    update_every: Option<std::time::Duration>,
) -> Option<Writer> {
    let rx = agent.shared.subscribe(STORE_TAP);
    let opts = WriterOptions {
        retention: s.retention,
        prune_every: s.retention.prune_every(),
        baseline: rules
            .new_destination
            .enabled
            .then_some(rules.new_destination),
        // An open connection's first update comes one interval after start;
        // without updates, no open row of an earlier run will be continued.
        open_grace: update_every.map_or(std::time::Duration::ZERO, |d| {
            2 * d + std::time::Duration::from_secs(5)
        }),
        ..Default::default()
    };
    match Writer::spawn(store, rx, agent.shared.clock.clone(), opts) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("netta: history store off: cannot start its writer: {e}");
            None
        }
    }
}

const NO_STORE: &str = "the agent keeps no history (start it with --state-dir)";

/// The agent behind the API.
pub struct AgentBackend {
    pub shared: Arc<Shared>,
    pub store: Option<PathBuf>,
    pub store_stats: Option<Arc<StoreStats>>,
    /// The writer's flag for `netta baseline reset`.
    pub baseline_reset: Option<Arc<AtomicBool>>,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
}

impl Backend for AgentBackend {
    fn hello(&self) -> Hello {
        Hello {
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            mode: self.shared.mode().describe(),
            version: env!("CARGO_PKG_VERSION").into(),
            store: self.store.is_some(),
            clock_offset_ns: self.shared.clock.offset_ns() as i64,
        }
    }
    fn snapshot(&self, history: bool) -> Snapshot {
        if history {
            self.shared.snapshot()
        } else {
            self.shared.live_snapshot()
        }
    }
    fn select(&self, filter: &crate::core::filter::Filter) -> Vec<crate::core::table::Conn> {
        // Only the selected rows are copied, and sorted after the table is free.
        let mut rows: Vec<_> = {
            let t = self.shared.table();
            t.conns()
                .filter(|c| filter.matches(c))
                .map(std::borrow::Cow::into_owned)
                .collect()
        };
        crate::core::filter::sort_rows(&mut rows);
        rows
    }
    fn select_list(&self, filter: &crate::core::filter::Filter) -> Vec<ListRow> {
        let mut rows: Vec<_> = {
            let t = self.shared.table();
            t.conns()
                .filter(|c| filter.matches(c))
                .map(|c| ListRow::of(&c))
                .collect()
        };
        ListRow::sort(&mut rows);
        rows
    }
    fn top(&self) -> crate::core::top::Picture {
        let ids = crate::host::identity::get().sock_ids;
        let now = self.shared.now_ns();
        let t = self.shared.table();
        crate::core::top::Picture::of(t.conns(), t.counters(), now, |k| k.hidden(&ids))
    }
    fn incidents(&self) -> Vec<Alert> {
        crate::app::views::alerts(&self.shared)
    }
    fn baseline(&self) -> Result<BaselineReport, String> {
        let path = self.store.as_ref().ok_or(NO_STORE)?;
        let r = crate::store::Reader::open(path).map_err(|e| e.to_string())?;
        let learning = self.shared.detector().rules().new_destination.learning;
        crate::store::baseline::report(&r, learning).map_err(|e| e.to_string())
    }
    fn reset_baseline(&self) -> Result<(), String> {
        let flag = self.baseline_reset.as_ref().ok_or(NO_STORE)?;
        let now = self.shared.now_ns();
        self.shared.detector().reset_baseline(now);
        flag.store(true, Ordering::Release);
        // The writer clears the flag once the store has forgotten too.
        let t = Instant::now();
        while flag.load(Ordering::Acquire) {
            if t.elapsed() > std::time::Duration::from_secs(10) {
                return Err("the history store did not answer".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Ok(())
    }
    fn table(&self) -> serde_json::Value {
        let snap = self.shared.live_snapshot();
        let clock = self.shared.clock.clone();
        serde_json::Value::Array(
            snap.conns
                .iter()
                .map(|c| ecs::conn_value(c, &clock))
                .collect(),
        )
    }
    fn stats(&self) -> serde_json::Value {
        let mut v = stats::to_json(&stats::compute(
            &self.shared.snapshot(),
            self.shared.services(),
        ));
        if let Some(s) = &self.store_stats {
            v["store"] = serde_json::to_value(s.value()).unwrap_or_default();
        }
        v
    }
    fn alerts(&self) -> serde_json::Value {
        self.shared.detect_now();
        let clock = self.shared.clock.clone();
        serde_json::Value::Array(
            self.shared
                .detector()
                .incidents()
                .iter()
                .map(|a| ecs::alert_value(a, &clock))
                .collect(),
        )
    }
    fn subscribe(&self) -> mpsc::Receiver<Record> {
        self.shared.subscribe(1 << 14)
    }
    fn clock(&self) -> Clock {
        self.shared.clock.clone()
    }
    fn store_path(&self) -> Option<PathBuf> {
        self.store.clone()
    }
    fn metrics(&self, accept: Option<&str>) -> (String, &'static str) {
        let f = crate::metrics::Format::negotiate(accept);
        (self.metrics.render(f), f.content_type())
    }
}

/// Binds the API socket before the agent starts, so a taken socket is an early, clear error.
pub fn bind_api(global: &Global) -> anyhow::Result<(tokio::net::UnixListener, PathBuf)> {
    let path = api::socket_path(global.api.as_deref());
    let l = api::server::bind(&path)?;
    Ok((l, path))
}

pub fn serve_api(
    listener: tokio::net::UnixListener,
    path: &Path,
    backend: AgentBackend,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    // The API's /metrics counts records like the TCP endpoint does.
    let m = backend.metrics.clone();
    let mut rx = backend.shared.subscribe(crate::metrics::TAP_CAPACITY);
    let mut stop2 = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop2.wait_for(|v| *v) => break,
                r = rx.recv() => match r {
                    Some(r) => m.observe(&r),
                    None => break,
                },
            }
        }
    });
    tokio::spawn(api::server::serve(
        listener,
        path.to_path_buf(),
        Arc::new(backend),
        api::access::Policy::standard(),
        stop,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped config file parses, and its store keys are the built-in defaults.
    #[test]
    fn the_packaged_config_sets_the_default_store() {
        let text = include_str!("../../../packaging/netta.toml");
        let c = Config::parse(text, "packaging/netta.toml").unwrap();
        assert_eq!(c.api.as_deref(), Some(Path::new(api::DEFAULT_SOCKET)));
        let s = store_settings(&AgentArgs::default(), Some(&c)).unwrap();
        assert_eq!(s.dir, Path::new(crate::store::DEFAULT_STATE_DIR));
        assert_eq!(s.retention, Retention::default());
    }
}
