//! The agent's configuration file (`--config`, /etc/netta/netta.toml by default).
//! Keys mirror the command-line flags, which override them. A file with any error
//! is rejected whole, with its line and the reason.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::host::ebpf::Transport;
use crate::settings::line_of;
use crate::settings::sink_spec::SinkSpec;

#[derive(Debug, thiserror::Error)]
#[error("config file {path}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub reason: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    transport: Option<Spanned<String>>,
    ring_size: Option<Spanned<u32>>,
    reconcile_interval: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    udp_idle: Option<Spanned<String>>,
    max_connections: Option<usize>,
    history_size: Option<usize>,
    rules: Option<PathBuf>,
    no_ebpf: Option<bool>,
    process_args: Option<bool>,
    api: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    agent: RawAgent,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    #[serde(default)]
    sinks: Vec<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    retention_age: Option<Spanned<String>>,
    retention_size: Option<Spanned<u64>>,
}

/// Values the file sets; `None` leaves the flag's default.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Config {
    pub transport: Option<Transport>,
    pub ring_size: Option<u32>,
    pub reconcile_interval: Option<Duration>,
    pub poll_interval: Option<Duration>,
    pub udp_idle: Option<Duration>,
    pub max_connections: Option<usize>,
    pub history_size: Option<usize>,
    pub rules: Option<PathBuf>,
    pub no_ebpf: Option<bool>,
    /// Keep processes' arguments (`process.args`).
    pub process_args: Option<bool>,
    pub sinks: Vec<SinkSpec>,
    pub metrics: Option<std::net::SocketAddr>,
    /// The API socket (agent and clients).
    pub api: Option<PathBuf>,
    /// Where the agent keeps its history store.
    pub state_dir: Option<PathBuf>,
    pub retention_age: Option<Duration>,
    pub retention_size: Option<u64>,
}

impl Config {
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, reason: String| ConfigError {
            path: path.to_string(),
            line: span.map(|s| line_of(text, s.start)),
            reason: crate::core::sanitize::escape(reason.as_bytes()),
        };
        let raw: Raw = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
        let dur =
            |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Duration>, ConfigError> {
                let Some(v) = v else { return Ok(None) };
                match humantime::parse_duration(v.get_ref()) {
                    Ok(d) if !d.is_zero() => Ok(Some(d)),
                    Ok(_) => Err(err(
                        Some(v.span()),
                        format!("{key}: must be greater than zero"),
                    )),
                    Err(e) => Err(err(
                        Some(v.span()),
                        format!("{key}: invalid duration {:?}: {e}", v.get_ref()),
                    )),
                }
            };
        let transport = match &raw.transport {
            None => None,
            Some(v) => Some(match v.get_ref().as_str() {
                "ring" => Transport::Ring,
                "perf" => Transport::Perf,
                other => {
                    return Err(err(
                        Some(v.span()),
                        format!("transport: {other:?} is not \"ring\" or \"perf\""),
                    ))
                }
            }),
        };
        if let Some(v) = &raw.ring_size {
            if !v.get_ref().is_power_of_two() || *v.get_ref() < 4096 {
                return Err(err(
                    Some(v.span()),
                    "ring_size: must be a power of two of at least 4096".into(),
                ));
            }
        }
        let mut sinks = Vec::new();
        for s in &raw.agent.sinks {
            sinks.push(
                s.get_ref()
                    .parse::<SinkSpec>()
                    .map_err(|e| err(Some(s.span()), format!("agent.sinks: {e}")))?,
            );
        }
        let metrics = match &raw.agent.metrics {
            None => None,
            Some(m) => Some(m.get_ref().parse().map_err(|_| {
                err(
                    Some(m.span()),
                    format!(
                        "agent.metrics: {:?} is not an address like 127.0.0.1:9750",
                        m.get_ref()
                    ),
                )
            })?),
        };
        Ok(Config {
            transport,
            ring_size: raw.ring_size.map(|v| v.into_inner()),
            reconcile_interval: dur(&raw.reconcile_interval, "reconcile_interval")?,
            poll_interval: dur(&raw.poll_interval, "poll_interval")?,
            udp_idle: dur(&raw.udp_idle, "udp_idle")?,
            max_connections: raw.max_connections,
            history_size: raw.history_size,
            rules: raw.rules,
            no_ebpf: raw.no_ebpf,
            process_args: raw.process_args,
            sinks,
            metrics,
            api: raw.api,
            state_dir: raw.state_dir,
            retention_age: dur(&raw.agent.retention_age, "agent.retention_age")?,
            retention_size: match &raw.agent.retention_size {
                Some(v) if *v.get_ref() < 1 << 20 => {
                    return Err(err(
                        Some(v.span()),
                        "agent.retention_size: must be at least 1048576 bytes".into(),
                    ))
                }
                v => v.as_ref().map(|v| *v.get_ref()),
            },
        })
    }

    /// Reads `path`; `Ok(None)` when the default file does not exist.
    pub fn load(path: &Path, explicit: bool) -> Result<Option<Config>, ConfigError> {
        let shown = crate::core::sanitize::escape(path.as_os_str().as_encoded_bytes());
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| ConfigError {
                    path: shown.clone(),
                    line: None,
                    reason: "not UTF-8 text".into(),
                })?;
                Config::parse(&text, &shown).map(Some)
            }
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError {
                path: shown,
                line: None,
                reason: format!("cannot read: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_sets_everything() {
        let c = Config::parse(
            r#"
transport = "perf"
ring_size = 4194304
reconcile_interval = "10s"
poll_interval = "2s"
udp_idle = "30s"
max_connections = 1000
history_size = 10
rules = "/etc/netta/rules.toml"
no_ebpf = false
process_args = true
api = "/run/netta/api.sock"
state_dir = "/srv/netta"

[agent]
retention_age = "7d"
retention_size = 104857600
sinks = ["stdout", "tcp://127.0.0.1:9000", "file:/var/log/netta/events.json"]
metrics = "127.0.0.1:9750"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.transport, Some(Transport::Perf));
        assert_eq!(c.udp_idle, Some(Duration::from_secs(30)));
        assert_eq!(c.sinks.len(), 3);
        assert_eq!(c.metrics, Some("127.0.0.1:9750".parse().unwrap()));
        assert_eq!(c.api, Some("/run/netta/api.sock".into()));
        assert_eq!(c.state_dir, Some("/srv/netta".into()));
        assert_eq!(c.process_args, Some(true));
        assert_eq!(c.retention_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.retention_size, Some(100 << 20));
        let e = Config::parse("[agent]\nretention_size = 5", "t").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        let cases = [
            (
                "udp_idle = \"5s\"\nudp_idel = \"5s\"\n",
                2,
                "unknown field `udp_idel`",
            ),
            (
                "\n\nreconcile_interval = \"soon\"\n",
                3,
                "reconcile_interval: invalid duration",
            ),
            ("transport = \"carrier-pigeon\"\n", 1, "transport:"),
            ("ring_size = 1000\n", 1, "power of two"),
            (
                "[agent]\nsinks = [\"stdout\",\n  \"ftp://x\"]\n",
                3,
                "agent.sinks",
            ),
            ("[agent]\nmetrics = \"everywhere\"\n", 2, "agent.metrics"),
            ("max_connections = \"many\"\n", 1, "invalid type"),
            ("poll_interval = \"0s\"\n", 1, "greater than zero"),
            ("[agent\n", 1, ""),
        ];
        for (text, line, reason) in cases {
            let e = Config::parse(text, "f.toml").unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
            assert!(e.to_string().contains(reason), "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("config file f.toml line {line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn missing_default_file_is_fine_but_missing_explicit_file_is_not() {
        let p = Path::new("/nonexistent/netta.toml");
        assert!(Config::load(p, false).unwrap().is_none());
        assert!(Config::load(p, true)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    /// The shipped example and the operations guide state the real defaults
    /// (`settings::defaults`), so they cannot go stale.
    #[test]
    fn the_shipped_config_and_the_docs_state_the_real_defaults() {
        use crate::settings::defaults::{self as d, defaults};
        let text = include_str!("../../../packaging/netta.toml");
        let c = Config::parse(text, "packaging/netta.toml").unwrap();
        let want = defaults();
        assert_eq!(c.transport, Some(want.transport));
        assert_eq!(c.ring_size, Some(want.ring_size));
        assert_eq!(c.reconcile_interval, Some(want.reconcile_interval));
        assert_eq!(c.poll_interval, Some(want.poll_interval));
        assert_eq!(c.udp_idle, Some(want.udp_idle));
        assert_eq!(c.max_connections, Some(want.max_connections));
        assert_eq!(c.history_size, Some(want.history_size));
        assert_eq!(c.no_ebpf, Some(false));
        assert_eq!(c.api.as_deref(), Some(Path::new(d::API_SOCKET)));
        assert_eq!(c.state_dir.as_deref(), Some(Path::new(d::STATE_DIR)));
        assert_eq!(c.retention_age, Some(d::RETENTION_AGE));
        assert_eq!(c.retention_size, Some(d::RETENTION_BYTES));
        let doc = include_str!("../../../docs/operations.md");
        let row = |key: &str| -> &str {
            doc.lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("operations.md has no row for {key}"))
        };
        let secs = |t: std::time::Duration| format!("\"{}\"", humantime::format_duration(t));
        for (key, value) in [
            ("ring_size", want.ring_size.to_string()),
            ("reconcile_interval", secs(want.reconcile_interval)),
            ("poll_interval", secs(want.poll_interval)),
            ("udp_idle", secs(want.udp_idle)),
            ("max_connections", want.max_connections.to_string()),
            ("history_size", want.history_size.to_string()),
            ("api", format!("\"{}\"", d::API_SOCKET)),
            ("state_dir", format!("\"{}\"", d::STATE_DIR)),
            ("[agent] retention_size", d::RETENTION_BYTES.to_string()),
        ] {
            assert!(row(key).contains(&value), "{key}: {value} in {}", row(key));
        }
    }
}
