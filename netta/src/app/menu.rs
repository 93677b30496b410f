//! The original tool's interactive menu, on the live agent: it runs for the whole
//! session, so every view sees what came and went since the menu opened. Works on
//! a terminal and from a pipe (`printf '4\n8\n' | netta`).
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::app::source::{HistoryOpts, Source};
use crate::app::{output, views};
use crate::render::report;

pub const BANNER: &str = "\
╔═══════════════════════════════════════╗
║   Network Traffic Analyzer v1.0      ║
║   Cybersecurity Lab Tool              ║
╚═══════════════════════════════════════╝

Network Traffic Analyzer
Monitor and analyze network connections on your system
(live full-screen view of connections and bandwidth: `netta top`)
";

pub fn menu_text() -> String {
    let h = crate::render::list::heavy_rule();
    format!(
        "\n{h}\nMAIN MENU\n{h}\n\
         1. View All Connections\n\
         2. View Established Connections\n\
         3. View Listening Ports\n\
         4. View Statistics\n\
         5. Detect Suspicious Activity\n\
         6. Monitor Traffic (Real-time)\n\
         7. Export Report\n\
         8. Exit\n\
         {h}\n"
    )
}

/// Lines of standard input, read on a thread of their own (stdin blocks).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.lock().read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim().to_string();
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

enum Input {
    Line(String),
    /// End of input or Ctrl+C.
    Quit,
}

async fn read(rx: &mut mpsc::Receiver<String>, prompt: &str) -> Input {
    output::print_raw(prompt);
    tokio::select! {
        l = rx.recv() => match l {
            Some(l) => {
                // A terminal echoes what was typed; from a pipe, show it so the
                // transcript reads the same.
                if !std::io::stdin().is_terminal() {
                    output::print_raw(&format!("{}\n", crate::core::sanitize::escape(l.as_bytes())));
                }
                Input::Line(l)
            }
            None => { output::print_raw("\n"); Input::Quit }
        },
        _ = output::stop_signal() => { output::print_raw("\n"); Input::Quit }
    }
}

/// Asks with a default; an empty answer takes it.
async fn ask(rx: &mut mpsc::Receiver<String>, question: &str, default: &str) -> Option<String> {
    match read(rx, &format!("{question} [{default}]: ")).await {
        Input::Line(l) if l.is_empty() => Some(default.to_string()),
        Input::Line(l) => Some(l),
        Input::Quit => None,
    }
}

async fn ask_duration(rx: &mut mpsc::Receiver<String>, q: &str, default: &str) -> Option<Duration> {
    loop {
        let answer = ask(rx, q, default).await?;
        match humantime::parse_duration(&answer) {
            Ok(d) if !d.is_zero() => return Some(d),
            _ => output::print_raw(&format!("Not a duration: {answer:?} (try 30s, 2m)\n")),
        }
    }
}

/// `history`: where the statistics' history comes from (the store, as `netta history`).
pub async fn run(src: Source, history: HistoryOpts) -> anyhow::Result<()> {
    let r = menu_loop(&src, &history).await;
    src.close().await;
    r
}

async fn menu_loop(src: &Source, history: &HistoryOpts) -> anyhow::Result<()> {
    let mut rx = stdin_lines();
    output::print_styled(BANNER);
    output::print_raw(&format!(
        "netta {} — {}\n",
        env!("CARGO_PKG_VERSION"),
        src.mode()
    ));
    loop {
        output::print_styled(&menu_text());
        let choice = match read(&mut rx, "Select option: ").await {
            Input::Line(l) => l,
            Input::Quit => break,
        };
        match choice.as_str() {
            "1" | "2" | "3" => {
                let view = match choice.as_str() {
                    "1" => views::View::All,
                    "2" => views::View::Established,
                    _ => views::View::Listening,
                };
                src.refresh().await;
                let snap = src.snapshot(false).await?;
                output::print_styled(&views::render_view(&snap, view));
            }
            "4" => {
                src.refresh().await;
                let (snap, _) = crate::app::snapshot_for(src, Some(history)).await?;
                let st = crate::render::stats::compute(&snap, src.services());
                output::print_styled(&crate::render::stats::render(&st));
            }
            "5" => {
                src.refresh().await;
                output::print_styled(&crate::render::alert::render(&src.incidents().await?));
            }
            "6" => {
                let Some(duration) = ask_duration(&mut rx, "Duration", "60s").await else {
                    break;
                };
                let Some(interval) = ask_duration(&mut rx, "Update interval", "2s").await else {
                    break;
                };
                let opts = crate::render::monitor::Options {
                    duration,
                    interval,
                    json: false,
                };
                // Ctrl+C ends the monitor early and comes back to the menu.
                crate::app::monitor::run(src, opts, output::stop_signal(), &mut |s| {
                    output::print_styled(s)
                })
                .await?;
                output::take_stop();
            }
            "7" => {
                let Some(fmt) = ask(&mut rx, "Format (csv/json)", "csv").await else {
                    break;
                };
                let format = match fmt.to_ascii_lowercase().as_str() {
                    "csv" => crate::settings::cli::ReportFormat::Csv,
                    "json" => crate::settings::cli::ReportFormat::Json,
                    other => {
                        output::print_raw(&format!("Unknown format {other:?} (csv or json)\n"));
                        continue;
                    }
                };
                let name = report::default_file_name(std::time::SystemTime::now(), format);
                let Some(path) = ask(&mut rx, "File", &name).await else {
                    break;
                };
                src.refresh().await;
                let snap = src.snapshot(false).await?;
                let path = std::path::Path::new(&path);
                match views::export_to(&snap, &src.clock(), path, false, format, false) {
                    Ok(msg) => output::print_styled(&msg),
                    Err(e) => output::print_raw(&format!("Export failed: {e:#}\n")),
                }
            }
            "8" | "q" | "quit" | "exit" => break,
            "" => {}
            other => output::print_raw(&format!(
                "Invalid option: {}. Choose 1-8.\n",
                crate::core::sanitize::escape(other.as_bytes())
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_has_the_originals_entries() {
        let m = menu_text();
        for (i, entry) in [
            "View All Connections",
            "View Established Connections",
            "View Listening Ports",
            "View Statistics",
            "Detect Suspicious Activity",
            "Monitor Traffic (Real-time)",
            "Export Report",
            "Exit",
        ]
        .iter()
        .enumerate()
        {
            assert!(m.contains(&format!("\n{}. {entry}\n", i + 1)), "{m}");
        }
        assert!(BANNER.contains("Network Traffic Analyzer v1.0"));
    }
}
