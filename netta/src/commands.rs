//! The subcommands: each starts the agent, does its job on the live table, and
//! stops the agent cleanly.
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;

use crate::agent::Agent;
use crate::cli::{EventsArgs, Global, ListArgs};
use crate::export::json;
use crate::view;

/// Resolves on Ctrl+C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Sleeps for `d`, or forever when `None`.
async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

pub async fn events(global: &Global, args: &EventsArgs) -> anyhow::Result<()> {
    let mut opts = global.agent_options();
    opts.ebpf.all_states = args.all_states;
    let agent = Agent::start(opts).await;
    let mut rx = agent.shared.subscribe(1 << 16);
    eprintln!("netta: ready ({})", agent.mode().describe());
    let clock = agent.shared.clock;
    let mut buf = Vec::with_capacity(1 << 16);
    let stdout = std::io::stdout();
    let stop = stop_signal();
    tokio::pin!(stop);
    let until = sleep_or_forever(args.duration);
    tokio::pin!(until);
    let write = |buf: &mut Vec<u8>| -> std::io::Result<()> {
        let mut out = stdout.lock();
        out.write_all(buf)?;
        out.flush()?;
        buf.clear();
        Ok(())
    };
    let mut reader_gone = false;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                json::write_line(&mut buf, &ev, &clock);
                while buf.len() < (1 << 16) {
                    match rx.try_recv() {
                        Ok(ev) => json::write_line(&mut buf, &ev, &clock),
                        Err(_) => break,
                    }
                }
                if let Err(e) = write(&mut buf) {
                    if is_broken_pipe(&e) {
                        reader_gone = true;
                        break;
                    }
                    agent.shutdown().await;
                    return Err(e).context("writing events to stdout");
                }
            }
            _ = &mut stop => break,
            _ = &mut until => break,
        }
    }
    // Stopping reports the UDP flows still open; pass those on too.
    agent.shutdown().await;
    if !reader_gone {
        while let Ok(ev) = rx.try_recv() {
            json::write_line(&mut buf, &ev, &clock);
        }
        if let Err(e) = write(&mut buf) {
            if !is_broken_pipe(&e) {
                return Err(e).context("writing events to stdout");
            }
        }
    }
    Ok(())
}

pub async fn list(global: &Global, args: &ListArgs) -> anyhow::Result<()> {
    let agent = Agent::start(global.agent_options()).await;
    if let Some(w) = args.watch {
        tokio::select! {
            _ = tokio::time::sleep(w) => {}
            _ = stop_signal() => {}
        }
        agent.reconcile_once(false).await;
    }
    let snap = agent.shared.snapshot();
    let clock = agent.shared.clock;
    agent.shutdown().await;
    let filter = args.filter.filter();
    let text = if args.history {
        let rows = view::select_history(&snap, &filter);
        if args.json {
            let v: Vec<_> = rows.iter().map(|h| json::closed_value(h, &clock)).collect();
            serde_json::to_string_pretty(&v)? + "\n"
        } else {
            view::render_history(&rows, &clock)
        }
    } else {
        let rows = view::select(&snap, &filter);
        if args.json {
            let v: Vec<_> = rows.iter().map(|c| json::conn_value(c, &clock)).collect();
            serde_json::to_string_pretty(&v)? + "\n"
        } else {
            view::render_list("ACTIVE NETWORK CONNECTIONS", &rows)
        }
    };
    print_out(&text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if !is_broken_pipe(&e) => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
