//! Pure functions from plain data to text: connection lists, statistics, alerts,
//! the monitor's lines, ECS JSON, CSV and report files, the man pages.
pub mod alert;
pub mod baseline;
pub mod csv;
pub mod ecs;
pub mod history;
pub mod list;
pub mod manpage;
pub mod monitor;
pub mod report;
pub mod stats;
pub mod style;
pub mod top;
