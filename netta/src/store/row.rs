//! How agent records become stored rows (the row types are in `core::stored`).
use crate::agent::Record;
use crate::core::clock::Clock;
pub use crate::core::history_query::action_name;
pub use crate::core::stored::{wall_us, AlertRow, ConnRow};
pub use crate::core::when::now_us;
use crate::detect::Alert;

/// An alert as published (an incident opening, growing or ending).
pub fn alert_row(a: &Alert, clock: &Clock) -> AlertRow {
    AlertRow {
        ts_us: wall_us(clock, a.last_ns),
        first_us: wall_us(clock, a.first_ns),
        rule: a.rule.id().to_string(),
        severity: a.severity.name().to_string(),
        key: a.key.clone(),
        message: a.message.clone(),
        src_ip: a.source_ip,
        updates: a.updates,
        ended: a.ended,
        evidence: a.evidence.clone(),
    }
}

/// What the writer stores for one agent record.
pub enum Row {
    Conn(ConnRow),
    Alert(AlertRow),
}

impl Row {
    pub fn from_record(r: &Record, clock: &Clock) -> Option<Row> {
        match r {
            Record::Event(ev) => ConnRow::from_event(ev, clock).map(Row::Conn),
            Record::Alert(a) => Some(Row::Alert(alert_row(a, clock))),
            // Answers name the connections that are stored; they are not kept apart.
            Record::Dns(_) => None,
        }
    }
}
