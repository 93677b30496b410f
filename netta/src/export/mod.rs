//! Output formats for other programs: JSON lines and CSV.
pub mod json;
