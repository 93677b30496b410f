//! The subcommands: each starts the agent, does its job on the live table, and
//! stops the agent cleanly.
pub mod doctor;
pub mod live_bench;
pub mod menu;
pub mod monitor;
pub mod output;
pub mod service;
pub mod source;
pub mod top;
pub mod views;

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};

use anyhow::Context as _;

use std::path::Path;
use std::sync::Arc;

use crate::agent::Agent;
use crate::render::{alert, ecs as json, list as view, report, stats, style};
use crate::settings::cli::{
    Cli, Command, DetectArgs, EventsArgs, ExportArgs, ListArgs, MonitorArgs, StatsArgs,
};
use crate::settings::{self, Settings};
use crate::sink::{SinkSpec, Sinks};
use output::{is_broken_pipe, print_out, stdout_closed, stop_signal};
use source::Source;
use views::export_to;

/// The whole program: settings, logging, the runtime, the command. Returns the
/// exit status: 0 ok, 1 runtime error, 2 usage or configuration error.
pub fn main() -> i32 {
    // One malloc arena per thread would keep freed /proc snapshots as resident
    // memory in each of them; two arenas keep the agent's RSS close to its live data.
    // SAFETY: called before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    output::catch_stop_signals();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Cli::command(), "netta", &mut std::io::stdout());
            return 0;
        }
        Some(Command::Manpage { dir }) => {
            return match manpages(dir.as_deref()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("netta: {e:#}");
                    1
                }
            };
        }
        _ => {}
    }
    // Checked before anything starts, so a bad file is a usage error.
    let s = match settings::resolve(cli, &matches) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netta: {e}");
            return 2;
        }
    };
    if let Some(Command::Doctor { json }) = &s.command {
        return doctor::run(&s.global, *json);
    }
    // The streaming commands end on SIGINT/SIGTERM with everything flushed, even
    // when the signal comes while they are still starting.
    if matches!(
        s.command,
        None | Some(Command::Events(_) | Command::Agent(_) | Command::Monitor(_))
    ) {
        output::stop_gracefully();
    }
    let level = match s.global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .target(env_logger::Target::Stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netta: cannot start the runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(async {
        match &s.command {
            Some(Command::Events(a)) => events(&s, a).await,
            Some(Command::List(a)) => list(&s, a).await,
            Some(Command::Stats(a)) => stats(&s, a).await,
            Some(Command::Monitor(a)) => monitor(&s, a).await,
            Some(Command::Top(a)) => top::run(&s, a).await,
            Some(Command::Detect(a)) => detect(&s, a).await,
            Some(Command::Export(a)) => export(&s, a).await,
            Some(Command::History(a)) => history(&s, a).await,
            Some(Command::Baseline { action }) => baseline(&s, action).await,
            Some(Command::StoreBench { rows, dir }) => store_bench(*rows, dir),
            Some(Command::SeedBench) => seed_bench(&s),
            Some(Command::LiveBench { runs }) => live_bench::live_bench(*runs),
            Some(Command::TopBench {
                connections,
                frames,
            }) => live_bench::top_bench(*connections, *frames),
            Some(Command::Agent(a)) => agent(&s, a).await,
            Some(
                Command::Completions { .. } | Command::Manpage { .. } | Command::Doctor { .. },
            ) => Ok(()),
            None => menu(&s).await,
        }
    });
    // Reader tasks may still be parked on a blocking read of stdin; do not wait.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("netta: {e:#}");
            1
        }
    }
}

/// `netta manpage`: netta(8) on stdout, or every page into `dir`.
fn manpages(dir: Option<&Path>) -> anyhow::Result<()> {
    let pages = crate::render::manpage::pages(Cli::command())?;
    let Some(dir) = dir else {
        return print_out(&pages[0].roff);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = String::new();
    for p in &pages {
        let path = dir.join(p.file_name());
        std::fs::write(&path, &p.roff).with_context(|| format!("writing {}", path.display()))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    print_out(&written)
}

/// Sleeps for `d`, or forever when `None`.
async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

pub async fn events(s: &Settings, args: &EventsArgs) -> anyhow::Result<()> {
    let mut opts = agent_options(s);
    opts.ebpf.all_states = args.all_states;
    // A stream reads no history: its agent keeps none in memory.
    opts.limits.max_history = 0;
    // Raw state transitions come only from a kernel stream set up for them.
    let mut global = s.global.clone();
    global.standalone |= args.all_states;
    let src = Source::open(&global, opts).await?;
    if let Source::Attached { client, .. } = &src {
        src.announce();
        return events_attached(client, args).await;
    }
    let Source::Standalone(agent) = src else {
        unreachable!("attached returned above")
    };
    if args.since.is_some() {
        agent.shutdown().await;
        anyhow::bail!("--since replays the agent's stored history: start `netta agent` first");
    }
    // The agent's stdout sink: the one JSON-lines writer, subscribed before we say so.
    let sinks = Sinks::start(&agent.shared, &[SinkSpec::Stdout], args.ends.filter());
    eprintln!("netta: standalone ({})", agent.mode().describe());
    let stop = stop_signal();
    tokio::pin!(stop);
    let until = sleep_or_forever(args.duration);
    tokio::pin!(until);
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = check.tick() => {
                // The reader went away (`| head -1`), or the sink failed writing.
                if stdout_closed() || sinks.all_ended() {
                    break;
                }
            }
            _ = &mut stop => break,
            _ = &mut until => break,
        }
    }
    // Stopping reports the UDP flows still open; the sink passes those on too.
    agent.shutdown().await;
    sinks.stop().await.context("writing events to stdout")
}

fn write_stdout(buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(buf)?;
    out.flush()?;
    buf.clear();
    Ok(())
}

/// `netta events` on the agent: its stored rows from `--since`, then its live stream,
/// the same ECS lines a standalone run writes.
async fn events_attached(
    client: &crate::local_api::client::Client,
    args: &EventsArgs,
) -> anyhow::Result<()> {
    let query = crate::local_api::EventsQuery::new(args.since, &args.ends.filter());
    let path = format!("/v1/events?{}", query.to_query_string());
    let mut failed = None;
    let follow = client.stream(&path, |chunk| {
        let mut b = chunk.to_vec();
        match write_stdout(&mut b) {
            Ok(()) => !stdout_closed(),
            Err(e) => {
                if !is_broken_pipe(&e) {
                    failed = Some(e);
                }
                false
            }
        }
    });
    tokio::select! {
        r = follow => r?,
        _ = stop_signal() => {}
        _ = sleep_or_forever(args.duration) => {}
    }
    match failed {
        Some(e) => Err(e).context("writing events to stdout"),
        None => Ok(()),
    }
}

/// Opens the view's source and, with `--watch`, lets it collect events for that long.
async fn open_and_watch(s: &Settings, watch: Option<Duration>) -> anyhow::Result<Source> {
    let src = Source::open(&s.global, agent_options(s)).await?;
    src.announce();
    if let Some(w) = watch {
        tokio::select! {
            _ = tokio::time::sleep(w) => {}
            _ = stop_signal() => {}
        }
    }
    src.refresh().await;
    Ok(src)
}

/// Runs `view` on the source, then closes it whatever the view returned.
async fn with_source<T>(
    src: Source,
    view: impl AsyncFnOnce(&Source) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let r = view(&src).await;
    src.close().await;
    r
}

/// What history views read besides the agent: `--history-size` rows, and the
/// store file in the configured state dir (a standalone view reads it directly).
pub fn history_opts(s: &Settings) -> source::HistoryOpts {
    let dir = s
        .file
        .as_ref()
        .and_then(|c| c.state_dir.clone())
        .unwrap_or_else(|| crate::store::DEFAULT_STATE_DIR.into());
    source::HistoryOpts {
        limit: s.global.history_size as u64,
        store_file: crate::store::Store::path_in(&dir),
    }
}

/// The live table, with the stored history in place of the in-memory ring when
/// `history` (its times then read with [`source::History::clock`]).
pub(crate) async fn snapshot_for(
    src: &Source,
    history: Option<&source::HistoryOpts>,
) -> anyhow::Result<(crate::core::table::Snapshot, crate::core::clock::Clock)> {
    let mut snap = src.snapshot(false).await?;
    match history {
        Some(opts) => {
            let filter = crate::core::filter::Filter::default();
            snap.history = src.history(&filter, opts).await?.rows;
            Ok((snap, source::History::clock()))
        }
        None => Ok((snap, src.clock())),
    }
}

pub async fn list(s: &Settings, args: &ListArgs) -> anyhow::Result<()> {
    let src = open_and_watch(s, args.watch).await?;
    let filter = args.filter.filter();
    let hopts = history_opts(s);
    if args.history {
        let rows = with_source(src, async |src: &Source| {
            Ok(src.history(&filter, &hopts).await?.rows)
        })
        .await?;
        let clock = source::History::clock();
        let text = if args.json {
            let v: Vec<_> = rows.iter().map(|h| json::closed_value(h, &clock)).collect();
            serde_json::to_string_pretty(&v)? + "\n"
        } else if args.wide {
            view::render_history_wide(&rows, &clock)
        } else {
            view::render_history(&rows, &clock)
        };
        return print_out(&text);
    }
    let (rows, clock) = with_source(src, async |src: &Source| {
        Ok((
            src.list(&filter, args.json || args.wide).await?,
            src.clock(),
        ))
    })
    .await?;
    let text = if args.json {
        let v: Vec<_> = rows.iter().map(|c| json::conn_value(c, &clock)).collect();
        serde_json::to_string_pretty(&v)? + "\n"
    } else if args.wide {
        view::render_list_wide("ACTIVE NETWORK CONNECTIONS", &rows)
    } else {
        view::render_list("ACTIVE NETWORK CONNECTIONS", &rows)
    };
    print_out(&text)
}

pub async fn stats(s: &Settings, args: &StatsArgs) -> anyhow::Result<()> {
    let src = open_and_watch(s, args.watch).await?;
    let hopts = history_opts(s);
    let st = with_source(src, async |src: &Source| {
        let (snap, _) = snapshot_for(src, Some(&hopts)).await?;
        Ok(stats::compute(&snap, src.services()))
    })
    .await?;
    if args.json {
        print_out(&(serde_json::to_string_pretty(&stats::to_json(&st))? + "\n"))
    } else {
        print_out(&style::for_stdout(&stats::render(&st)))
    }
}

pub async fn detect(s: &Settings, args: &DetectArgs) -> anyhow::Result<()> {
    let src = open_and_watch(s, args.watch).await?;
    let (found, clock) = with_source(src, async |src: &Source| {
        Ok((src.incidents().await?, src.clock()))
    })
    .await?;
    if args.json {
        let v: Vec<_> = found.iter().map(|a| json::alert_value(a, &clock)).collect();
        print_out(&(serde_json::to_string_pretty(&v)? + "\n"))
    } else {
        print_out(&style::for_stdout(&alert::render(&found)))
    }
}

pub async fn monitor(s: &Settings, args: &MonitorArgs) -> anyhow::Result<()> {
    let src = Source::open(&s.global, agent_options(s)).await?;
    src.announce();
    let opts = crate::render::monitor::Options {
        duration: args.duration,
        interval: args.interval,
        json: args.json,
    };
    let mut failed = None;
    let r = monitor::run(&src, opts, stop_signal(), &mut |s| {
        if failed.is_none() {
            let text = if args.json {
                s.into()
            } else {
                style::for_stdout(s)
            };
            if let Err(e) = print_out(&text) {
                failed = Some(e);
            }
        }
    })
    .await;
    src.close().await;
    r?;
    failed.map_or(Ok(()), Err)
}

pub async fn export(s: &Settings, args: &ExportArgs) -> anyhow::Result<()> {
    let src = open_and_watch(s, args.watch).await?;
    let path = args.output.clone().unwrap_or_else(|| {
        report::default_file_name(std::time::SystemTime::now(), args.format).into()
    });
    let hopts = history_opts(s);
    let msg = with_source(src, async |src: &Source| {
        let (snap, clock) = snapshot_for(src, args.history.then_some(&hopts)).await?;
        export_to(&snap, &clock, &path, args.force, args.format, args.history)
    })
    .await?;
    print_out(&msg)
}

pub async fn menu(s: &Settings) -> anyhow::Result<()> {
    let src = Source::open(&s.global, agent_options(s)).await?;
    src.announce();
    menu::run(src, history_opts(s)).await
}

/// Seeds a table from /proc once, as the agent does at start, and prints the
/// timings as JSON: what `cargo xtask bench` compares with `ss -tanp`.
pub fn seed_bench(s: &Settings) -> anyhow::Result<()> {
    use crate::host::Host;
    let os = crate::host::Os::default();
    let t0 = std::time::Instant::now();
    let started = crate::core::clock::boot_now();
    let snap = os.read_sockets().context("reading the socket tables")?;
    let read = t0.elapsed();
    let mut owners = None;
    let mut table = crate::core::table::Table::new(crate::core::table::Limits {
        max_live: s.global.max_connections,
        max_history: s.global.history_size,
    });
    table.reconcile(&snap.sockets, &snap.netns, started, &mut |inode| {
        owners
            .get_or_insert_with(|| os.socket_owners())
            .get(&inode)
            .copied()
    });
    let total = t0.elapsed();
    let owned = table.conns().filter(|c| c.pid != 0).count();
    print_out(
        &(serde_json::json!({
            "sockets": snap.sockets.len(),
            "rows": table.len(),
            "owned": owned,
            "read_ms": read.as_secs_f64() * 1e3,
            "total_ms": total.as_secs_f64() * 1e3,
        })
        .to_string()
            + "\n"),
    )
}

/// `netta agent`: headless, until SIGINT/SIGTERM. SIGHUP reopens file sinks.
pub async fn agent(s: &Settings, args: &crate::settings::cli::AgentArgs) -> anyhow::Result<()> {
    let file = s.file.as_ref();
    let mut opts = agent_options(s);
    opts.ebpf.all_states = args.all_states;
    let mut sinks = args.sinks.clone();
    if sinks.is_empty() {
        sinks = file.map(|c| c.sinks.clone()).unwrap_or_default();
    }
    if sinks.is_empty() {
        sinks.push(SinkSpec::Stdout);
    }
    let metrics_addr = args.metrics.or(file.and_then(|c| c.metrics));
    // Bind before starting anything, so a taken port is a clear, early error.
    let listener = match metrics_addr {
        Some(a) => Some(
            crate::metrics::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
        None => None,
    };
    // A file sink that cannot be written is a startup error, not a silent gap.
    // So is an https:// sink whose CA file cannot be read.
    for spec in &sinks {
        match spec {
            SinkSpec::File(path) => {
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .with_context(|| format!("cannot open sink {spec}"))?;
            }
            SinkSpec::Http(http, opts) => {
                crate::sink::http::tls_for(http, opts).map_err(anyhow::Error::msg)?;
            }
            _ => {}
        }
    }
    let api_listener = service::bind_api(&s.global)?;
    let store_settings = service::store_settings(args, file);
    let mut store = store_settings.as_ref().and_then(service::open_store);
    let store_path = store.as_ref().map(|s| s.path().to_path_buf());
    if let Some(st) = store.as_mut() {
        opts.baseline = service::load_baseline(st);
        // The store keeps every closed connection; memory, only the latest.
        opts.limits.max_history = opts
            .limits
            .max_history
            .min(crate::settings::defaults::HISTORY_RING_WITH_STORE);
    }
    let started = std::time::Instant::now();
    let update_every = opts.update_every;
    let agent = Agent::start(opts).await;
    // The store subscribes first, so it sees every record from the start.
    let writer = match (store, &store_settings) {
        (Some(st), Some(set)) => service::start_writer(&agent, st, set, &s.rules, update_every),
        _ => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (api_stop_tx, api_stop_rx) = tokio::sync::watch::channel(false);
    let api_path = api_listener.1.clone();
    let api_task = service::serve_api(
        api_listener.0,
        &api_path,
        service::AgentBackend {
            shared: agent.shared.clone(),
            store: writer.as_ref().and(store_path.clone()),
            store_stats: writer.as_ref().map(|w| w.stats()),
            baseline_reset: writer.as_ref().map(|w| w.baseline_reset_flag()),
            started,
            metrics: Arc::new(crate::metrics::Metrics::for_agent(agent.shared.clone())),
        },
        api_stop_rx,
    );
    let outputs = Sinks::start(&agent.shared, &sinks, Default::default());
    let metrics = listener.map(|l| {
        let shared = agent.shared.clone();
        tokio::spawn(async move { crate::metrics::serve_on(l, shared, stop_rx).await })
    });
    // A reload signal must never kill the agent, whatever sinks it has.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let names: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
    eprintln!(
        "netta: agent ready ({}); sinks: {}; metrics: {}; api: {}; history: {}",
        agent.mode().describe(),
        names.join(", "),
        metrics_addr.map_or("off".to_string(), |a| format!("http://{a}/metrics")),
        api_path.display(),
        match (&writer, &store_path) {
            (Some(_), Some(p)) => p.display().to_string(),
            _ => "off".into(),
        }
    );
    // Programs attached, table seeded, sinks subscribed: systemd may order
    // dependent units after us now.
    crate::host::notify::notify(&format!("READY=1\nSTATUS={}", agent.mode().describe()));
    let mut watchdog = crate::host::notify::watchdog_interval().map(tokio::time::interval);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hup.recv() => log::info!("SIGHUP: file sinks reopen"),
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                crate::host::notify::notify("WATCHDOG=1");
            }
        }
    }
    crate::host::notify::notify("STOPPING=1");
    // Stopping reports the flows still open; then the store and the sinks drain and flush.
    let _ = api_stop_tx.send(true);
    agent.shutdown().await;
    if let Some(w) = writer {
        let _ = tokio::task::spawn_blocking(move || w.stop()).await;
    }
    let _ = api_task.await;
    // The last records reach the sinks before they are told to stop.
    let sunk = outputs.stop().await;
    let _ = stop_tx.send(true);
    let served = match metrics {
        Some(m) => m.await.unwrap_or(Ok(())),
        None => Ok(()),
    };
    sunk.and(served).context("a sink failed")
}

/// Options for the agent, from the resolved settings.
fn agent_options(s: &Settings) -> crate::agent::AgentOptions {
    crate::agent::AgentOptions {
        force_polling: s.global.no_ebpf,
        ebpf: crate::host::ebpf::Options {
            transport: s.global.transport,
            ring_bytes: s.global.ring_size,
            process_args: s.global.process_args,
            ..Default::default()
        },
        reconcile_every: s.global.reconcile_interval.0,
        poll_every: s.global.poll_interval.0,
        udp_idle: s.global.udp_idle.0,
        update_every: Some(s.global.update_interval.0).filter(|d| !d.is_zero()),
        limits: crate::core::table::Limits {
            max_live: s.global.max_connections,
            max_history: s.global.history_size,
        },
        rules: s.rules.clone(),
        baseline: None,
        dns: !s.global.no_dns,
        ..Default::default()
    }
}

/// `netta history`: from the agent's API, or straight from a store file with `--store`.
pub async fn history(s: &Settings, args: &crate::settings::cli::HistoryArgs) -> anyhow::Result<()> {
    let q = args.query();
    let rows = match &args.store {
        Some(file) => {
            let file = file.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let r = crate::store::Reader::open(&file)?;
                Ok(q.run(&r)?)
            })
            .await??
        }
        None => {
            let path = crate::local_api::socket_path(s.global.api.as_deref());
            let c = crate::local_api::client::Client::new(&path);
            if let Ok(h) = c.hello().await {
                eprintln!("{}", h.attached_line());
            }
            match c.history(&q).await {
                Ok(rows) => rows,
                Err(e) if e.not_running() => {
                    anyhow::bail!(
                        "{e}; start `netta agent`, or read a store file with --store FILE"
                    )
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let text = if args.json {
        crate::render::history::render_json(&rows)
    } else if args.csv {
        crate::render::history::render_csv(&rows)
    } else {
        style::for_stdout(&crate::render::history::render_text(&rows)).to_string()
    };
    print_out(&text)
}

/// `netta baseline show|reset`: through the agent's API, or on a store file with `--store`.
pub async fn baseline(
    s: &Settings,
    action: &crate::settings::cli::BaselineAction,
) -> anyhow::Result<()> {
    use crate::settings::cli::BaselineAction;
    let learning = s.rules.new_destination.learning;
    let client = || {
        let path = crate::local_api::socket_path(s.global.api.as_deref());
        crate::local_api::client::Client::new(&path)
    };
    let no_agent = |e: crate::local_api::client::ClientError| -> anyhow::Error {
        if e.not_running() {
            anyhow::anyhow!("{e}; start `netta agent`, or use --store FILE")
        } else {
            e.into()
        }
    };
    match action {
        BaselineAction::Show { json, store } => {
            let report = match store {
                Some(file) => {
                    let file = file.clone();
                    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                        let r = crate::store::Reader::open(&file)?;
                        Ok(crate::store::baseline::report(&r, learning)?)
                    })
                    .await??
                }
                None => client().baseline().await.map_err(no_agent)?,
            };
            let now = crate::core::when::now_us();
            let text = if *json {
                crate::render::baseline::render_json(&report, now)
            } else {
                style::for_stdout(&crate::render::baseline::render_text(&report, now)).to_string()
            };
            print_out(&text)
        }
        BaselineAction::Reset { store: Some(file) } => {
            let dir = file
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| ".".into());
            if file.file_name() != Some(std::ffi::OsStr::new(crate::store::FILE_NAME)) {
                anyhow::bail!("--store must name a {} file", crate::store::FILE_NAME);
            }
            let (mut st, _) = crate::store::Store::open(&dir)?;
            crate::store::baseline::reset(st.db(), crate::core::when::now_us())?;
            print_out("baseline reset: learning again\n")
        }
        BaselineAction::Reset { store: None } => {
            let line = client().reset_baseline().await.map_err(no_agent)?;
            print_out(&(line + "\n"))
        }
    }
}

/// Generates a week of history (unless `dir` has a store) and prints, as JSON, the
/// generation rate, the bytes per million rows, and the median query times.
pub fn store_bench(rows: u64, dir: &Path) -> anyhow::Result<()> {
    let path = crate::store::Store::path_in(dir);
    let mut generated = None;
    if !path.exists() {
        let t = std::time::Instant::now();
        let (_, g) = crate::store::bench::generate(dir, rows, Duration::from_secs(7 * 86_400))?;
        generated = Some((t.elapsed().as_secs_f64(), g));
    }
    let r = crate::store::Reader::open(&path)?;
    let n = crate::store::query::Query::default().count(&r)?;
    let bytes = std::fs::metadata(&path)?.len();
    let q = crate::store::bench::time_queries(&r, 5)?;
    let open_dir = dir.join("open");
    let _ = std::fs::remove_dir_all(&open_dir);
    let open = crate::store::bench::open_cost(&open_dir, 10_000, 4)?;
    let _ = std::fs::remove_dir_all(&open_dir);
    let v = serde_json::json!({
        "rows": n,
        "generate_s": generated.map(|g| g.0),
        "rows_per_s": generated.map(|g| n as f64 / g.0),
        "insert_rows": generated.map(|g| g.1.insert_rows),
        "insert_rows_per_s": generated.map(|g| g.1.insert_rows_per_s),
        "file_bytes": bytes,
        "bytes_per_million": bytes as f64 / (n.max(1) as f64 / 1e6),
        "queries": q.iter().map(|(name, ms, rows)| serde_json::json!({"query": name, "median_ms": ms, "rows": rows})).collect::<Vec<_>>(),
        "open_connections": open.connections,
        "open_updates_per_s": open.updates_per_s,
        "open_ends_per_s": open.ends_per_s,
    });
    print_out(&(v.to_string() + "\n"))
}
