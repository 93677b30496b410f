//! The views the menu and the commands share, rendered from the running agent.
use std::path::Path;

use crate::agent::Shared;
use crate::core::event::State;
use crate::core::filter::Filter;
use crate::detect;
use crate::render::{alert, list, report, stats};

#[derive(Clone, Copy, Debug)]
pub enum View {
    All,
    Established,
    Listening,
}

pub fn render_view(shared: &Shared, v: View) -> String {
    let snap = shared.snapshot();
    let (title, filter) = match v {
        View::All => ("ACTIVE NETWORK CONNECTIONS", Filter::default()),
        View::Established => (
            "ESTABLISHED CONNECTIONS",
            Filter {
                states: vec![State::Established],
                ..Filter::default()
            },
        ),
        View::Listening => ("LISTENING PORTS", Filter::listening()),
    };
    list::render_list(title, &crate::core::filter::select(&snap, &filter))
}

pub fn render_stats(shared: &Shared) -> String {
    stats::render(&stats::compute(&shared.snapshot(), shared.services()))
}

/// Every incident since the agent started, after a fresh look at the table.
pub(crate) fn alerts(shared: &Shared) -> Vec<detect::Alert> {
    shared.detect_now();
    shared.detector().incidents()
}

pub fn render_detect(shared: &Shared) -> String {
    alert::render(&alerts(shared))
}

/// Writes a report and returns the line to show.
pub fn export_to(
    shared: &Shared,
    path: &Path,
    force: bool,
    format: crate::settings::cli::ReportFormat,
    history: bool,
) -> anyhow::Result<String> {
    let snap = shared.snapshot();
    report::write_report(
        path,
        force,
        format,
        &snap,
        history,
        &shared.clock,
        std::time::SystemTime::now(),
    )?;
    Ok(format!("Report exported to: {}\n", path.display()))
}
