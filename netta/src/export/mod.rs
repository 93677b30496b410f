//! Output formats for other programs: JSON lines, CSV and report files.
pub mod csv;
pub mod json;
pub mod report;
