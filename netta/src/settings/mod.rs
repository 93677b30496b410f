//! What the user asked for: flags (`cli`), the config file (`file`) and the
//! detection rules file (`rules_file`).
pub mod cli;
pub mod file;
pub mod rules_file;
pub mod sink_spec;
