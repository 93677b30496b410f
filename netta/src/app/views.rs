//! The views the menu and the commands share, rendered from plain data (a
//! snapshot, the incidents) that an attached or an in-process agent gives alike.
use std::path::Path;

use crate::agent::Shared;
use crate::core::clock::Clock;
use crate::core::event::State;
use crate::core::filter::Filter;
use crate::core::table::Snapshot;
use crate::detect;
use crate::render::report;

#[derive(Clone, Copy, Debug)]
pub enum View {
    All,
    Established,
    Listening,
}

pub fn render_view(snap: &Snapshot, v: View) -> String {
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
    crate::render::list::render_list(title, &crate::core::filter::select(snap, &filter))
}

/// Every incident since the agent started, after a fresh look at the table.
pub(crate) fn alerts(shared: &Shared) -> Vec<detect::Alert> {
    shared.detect_now();
    shared.detector().incidents()
}

/// Writes a report and returns the line to show.
pub fn export_to(
    snap: &Snapshot,
    clock: &Clock,
    path: &Path,
    force: bool,
    format: crate::settings::cli::ReportFormat,
    history: bool,
) -> anyhow::Result<String> {
    report::write_report(
        path,
        force,
        format,
        snap,
        history,
        clock,
        std::time::SystemTime::now(),
    )?;
    Ok(format!("Report exported to: {}\n", path.display()))
}
