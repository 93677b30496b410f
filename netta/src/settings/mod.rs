//! What the user asked for, resolved once (ripgrep-style): flags (`cli`), the
//! config file (`file`, flags override it), the detection rules file
//! (`rules_file`, read once), sink specifications (`sink_spec`) and the one table
//! of defaults (`defaults`). [`resolve`] turns them into one [`Settings`] value
//! or one [`SettingsError`].
pub mod cli;
pub mod defaults;
pub mod file;
pub mod http_spec;
pub mod rules_file;
pub mod sink_spec;

use clap::ArgMatches;

use crate::detect::Rules;
use cli::{Cli, Command, Global};
use file::{Config, ConfigError};
use rules_file::RulesError;

/// Everything a command needs to know about what was asked.
#[derive(Debug)]
pub struct Settings {
    pub global: Global,
    pub command: Option<Command>,
    /// The config file, when there is one.
    pub file: Option<Config>,
    /// Detection rules: the defaults, or the rules file.
    pub rules: Rules,
}

/// Why the settings are unusable: a usage error (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// Flags over the config file over the defaults, and the rules file, read once.
pub fn resolve(cli: Cli, matches: &ArgMatches) -> Result<Settings, SettingsError> {
    let Cli {
        mut global,
        command,
    } = cli;
    let explicit = global.config.is_some();
    let path = global
        .config
        .clone()
        .unwrap_or_else(|| defaults::CONFIG_PATH.into());
    let file = Config::load(&path, explicit)?;
    if let Some(c) = &file {
        global.apply_config(c, matches);
    }
    let rules = match &global.rules {
        Some(path) => Rules::load(path)?,
        None => Rules::default(),
    };
    Ok(Settings {
        global,
        command,
        file,
        rules,
    })
}

/// 1-based line of byte offset `at` in `text` (clamped to the text): where a TOML
/// error points.
pub(crate) fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
