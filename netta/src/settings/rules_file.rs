//! The TOML rules file (`--rules FILE`) that overrides the detection defaults
//! ([`Rules`]). A file with any error is rejected whole, with the line and the
//! reason; nothing is half-applied.
use std::net::IpAddr;
use std::time::Duration;

use crate::detect::rules::*;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::core::sanitize::escape;
use crate::settings::line_of;

/// A rules file that could not be read or is not valid. Its text names the line
/// (1-based; left out where unknown) and the reason, e.g.
/// `rules file line 7: port_scan.window: invalid duration "ten seconds"`.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read rules file {}: {source}", escape(path.as_os_str().as_encoded_bytes()))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", located(path.as_deref(), *line, reason))]
    Invalid {
        /// The file, when the text came from [`Rules::load`].
        path: Option<PathBuf>,
        /// 1-based line of the offending key or value; 0 when unknown.
        line: usize,
        reason: String,
    },
}

impl RulesError {
    /// The 1-based line the error points at, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            RulesError::Invalid { line, .. } if *line > 0 => Some(*line),
            _ => None,
        }
    }

    fn with_path(self, p: &Path) -> RulesError {
        match self {
            RulesError::Invalid { line, reason, .. } => RulesError::Invalid {
                path: Some(p.to_path_buf()),
                line,
                reason,
            },
            other => other,
        }
    }
}

fn located(path: Option<&Path>, line: usize, reason: &str) -> String {
    let mut s = String::from("rules file");
    if let Some(p) = path {
        s.push(' ');
        s.push_str(&escape(p.as_os_str().as_encoded_bytes()));
    }
    if line > 0 {
        s.push_str(&format!(" line {line}"));
    }
    s.push_str(": ");
    s.push_str(reason);
    s
}

/// A user-supplied string, quoted and escaped so that it cannot drive a terminal.
fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s.as_bytes()))
}

// Raw shapes of the file: every table and key optional, unknown ones rejected.
// Values keep their spans so later checks can point at the offending line.

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawRules {
    port_scan: Option<RawPortScan>,
    syn_flood: Option<RawSynFlood>,
    connection_burst: Option<RawConnectionBurst>,
    fan_out: Option<RawFanOut>,
    new_listener: Option<RawNewListener>,
    large_outbound: Option<RawLargeOutbound>,
    abnormal_state: Option<RawAbnormalState>,
    high_connection_count: Option<RawHighConnectionCount>,
    unusual_high_port: Option<RawUnusualHighPort>,
    new_destination: Option<RawNewDestination>,
    beaconing: Option<RawBeaconing>,
    alerts: Option<RawAlerts>,
    allow: Option<RawAllow>,
}

/// One raw table per rule: every key optional and kept with its span, unknown
/// keys rejected.
macro_rules! tables {
    ($($name:ident { $($key:ident: $ty:ty),* $(,)? })*) => {$(
        #[derive(Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct $name {
            $($key: Option<Spanned<$ty>>),*
        }
    )*};
}

tables! {
    RawPortScan { window: String, min_ports: Int, slow_window: String, slow_min_ports: Int }
    RawSynFlood { min_half_open_per_sec: Int, min_syn_recv: Int }
    RawConnectionBurst { min_per_sec: Int, factor: Float, sustain: String }
    RawFanOut { window: String, min_hosts: Int }
    RawNewDestination { enabled: bool, learning: String, ipv4_prefix: Int, ipv6_prefix: Int }
    RawBeaconing {
        enabled: bool, min_connections: Int, min_duration: String, window: String, min_score: Float
    }
    RawNewListener { enabled: bool }
    RawLargeOutbound { min_bytes: ByteSize, ratio: Float, window: String }
    RawAbnormalState { close_wait: Int, syn_sent: Int }
    RawHighConnectionCount { max: Int }
    RawUnusualHighPort { above: Int }
    RawAlerts { rearm_after: String }
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawAllow {
    ips: Vec<Spanned<String>>,
    ports: Vec<Spanned<Int>>,
    processes: Vec<Spanned<String>>,
}

/// A TOML scalar read by [`ScalarVisitor`]: which kinds it takes, and what
/// serde says when it gets another (serde's own `i64` says "expected i64").
trait Scalar: Sized {
    const EXPECTING: &'static str;
    /// The error for an integer beyond `i64`.
    const TOO_LARGE: &'static str = "integer too large";
    fn from_i64(v: i64) -> Self;
    fn from_u64<E: de::Error>(v: u64) -> Result<Self, E> {
        i64::try_from(v)
            .map(Self::from_i64)
            .map_err(|_| E::custom(Self::TOO_LARGE))
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_text(_: &str) -> Option<Self> {
        None
    }
}

struct ScalarVisitor<T>(std::marker::PhantomData<T>);

impl<T: Scalar> Visitor<'_> for ScalarVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Ok(T::from_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).ok_or_else(|| E::invalid_type(de::Unexpected::Float(v), &self))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_text(v).ok_or_else(|| E::invalid_type(de::Unexpected::Str(v), &self))
    }
}

/// `Deserialize` for each [`Scalar`], through the one visitor.
macro_rules! deserialize_scalar {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ScalarVisitor(std::marker::PhantomData))
            }
        }
    )*};
}

deserialize_scalar!(Int, Float, ByteSize);

/// A TOML integer.
struct Int(i64);

impl Scalar for Int {
    const EXPECTING: &'static str = "an integer";
    fn from_i64(v: i64) -> Self {
        Int(v)
    }
}

/// A TOML float or integer (`factor = 10` means 10.0).
struct Float(f64);

impl Scalar for Float {
    const EXPECTING: &'static str = "a number";
    fn from_i64(v: i64) -> Self {
        Float(v as f64)
    }
    fn from_u64<E: de::Error>(v: u64) -> Result<Self, E> {
        Ok(Float(v as f64))
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(Float(v))
    }
}

/// `min_bytes`: an integer, or a string such as `"100MiB"`.
enum ByteSize {
    Int(i64),
    Text(String),
}

impl Scalar for ByteSize {
    const EXPECTING: &'static str = "a byte count: an integer or a string like \"100MiB\"";
    const TOO_LARGE: &'static str = "byte count too large";
    fn from_i64(v: i64) -> Self {
        ByteSize::Int(v)
    }
    fn from_text(v: &str) -> Option<Self> {
        Some(ByteSize::Text(v.to_owned()))
    }
}

/// Parses `"100MiB"`, `"64 KB"`, `"512B"` or `"4096"` into bytes.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err("expected a number of bytes, e.g. \"100MiB\"".into());
    }
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let unit = unit.trim_start();
    const UNITS: &[(&str, u64)] = &[
        ("", 1),
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
    ];
    let mult = UNITS
        .iter()
        .find(|(u, _)| u.eq_ignore_ascii_case(unit))
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            format!(
                "unknown unit {} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)",
                quote(unit)
            )
        })?;
    n.checked_mul(mult).ok_or_else(|| "too large".to_string())
}

/// Turns raw values into checked ones; every error names `table.key` and its line.
struct Checker<'a> {
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, reason: String) -> RulesError {
        RulesError::Invalid {
            path: None,
            line: line_of(self.text, span.start),
            reason,
        }
    }

    /// A duration > 0.
    fn duration(&self, name: &str, v: &Spanned<String>) -> Result<Duration, RulesError> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                format!("{name}: invalid duration {}: {e}", quote(v.get_ref())),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(v.span(), format!("{name}: must be greater than 0")));
        }
        Ok(d)
    }

    /// An integer ≥ `min`.
    fn int(&self, name: &str, v: &Spanned<Int>, min: i64) -> Result<i64, RulesError> {
        let n = v.get_ref().0;
        if n < min {
            let want = if min == 0 {
                "must not be negative".to_string()
            } else {
                format!("must be at least {min}")
            };
            return Err(self.err(v.span(), format!("{name}: {want} (got {n})")));
        }
        Ok(n)
    }

    /// `long` (name, value, key as written) must not be shorter than `short`. One
    /// of the two was set here (the defaults are consistent): the error points at
    /// `long` if it was, else at `short`.
    fn not_shorter(
        &self,
        long: (&str, Duration, &Option<Spanned<String>>),
        short: (&str, Duration, &Option<Spanned<String>>),
    ) -> Result<(), RulesError> {
        if long.1 >= short.1 {
            return Ok(());
        }
        let span = long
            .2
            .as_ref()
            .or(short.2.as_ref())
            .map_or(0..0, |v| v.span());
        Err(self.err(
            span,
            format!(
                "{} ({}) must not be shorter than {} ({})",
                long.0,
                humantime::format_duration(long.1),
                short.0,
                humantime::format_duration(short.1),
            ),
        ))
    }

    fn count(&self, name: &str, v: &Spanned<Int>, min: i64) -> Result<usize, RulesError> {
        let n = self.int(name, v, min)?;
        usize::try_from(n).map_err(|_| self.err(v.span(), format!("{name}: too large")))
    }

    fn uint(&self, name: &str, v: &Spanned<Int>) -> Result<u64, RulesError> {
        // `int` with min 0 guarantees the cast is lossless.
        Ok(self.int(name, v, 0)? as u64)
    }

    fn port(&self, name: &str, v: &Spanned<Int>) -> Result<u16, RulesError> {
        let n = v.get_ref().0;
        u16::try_from(n)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| self.err(v.span(), format!("{name}: {n} is not a port (1..=65535)")))
    }

    /// A finite float ≥ `min` (or > `min` when `strict`).
    fn float(
        &self,
        name: &str,
        v: &Spanned<Float>,
        min: f64,
        strict: bool,
    ) -> Result<f64, RulesError> {
        let x = v.get_ref().0;
        let ok = x.is_finite() && if strict { x > min } else { x >= min };
        if !ok {
            let rel = if strict { "greater than" } else { "at least" };
            return Err(self.err(
                v.span(),
                format!("{name}: must be a finite number {rel} {min:?} (got {x})"),
            ));
        }
        Ok(x)
    }

    fn prefix(&self, name: &str, v: &Spanned<Int>, max: i64) -> Result<u8, RulesError> {
        let n = self.int(name, v, 0)?;
        if n > max {
            return Err(self.err(v.span(), format!("{name}: must be at most {max} (got {n})")));
        }
        Ok(n as u8)
    }

    fn check(&self, raw: RawRules) -> Result<Rules, RulesError> {
        let mut r = Rules::default();

        if let Some(t) = raw.port_scan {
            if let Some(v) = &t.window {
                r.port_scan.window = self.duration("port_scan.window", v)?;
            }
            if let Some(v) = &t.min_ports {
                r.port_scan.min_ports = self.count("port_scan.min_ports", v, 1)?;
            }
            if let Some(v) = &t.slow_window {
                r.port_scan.slow_window = self.duration("port_scan.slow_window", v)?;
            }
            if let Some(v) = &t.slow_min_ports {
                r.port_scan.slow_min_ports = self.count("port_scan.slow_min_ports", v, 1)?;
            }
            self.not_shorter(
                (
                    "port_scan.slow_window",
                    r.port_scan.slow_window,
                    &t.slow_window,
                ),
                ("port_scan.window", r.port_scan.window, &t.window),
            )?;
        }

        if let Some(t) = raw.syn_flood {
            if let Some(v) = &t.min_half_open_per_sec {
                r.syn_flood.min_half_open_per_sec =
                    self.uint("syn_flood.min_half_open_per_sec", v)?;
            }
            if let Some(v) = &t.min_syn_recv {
                r.syn_flood.min_syn_recv = self.count("syn_flood.min_syn_recv", v, 0)?;
            }
        }

        if let Some(t) = raw.connection_burst {
            if let Some(v) = &t.min_per_sec {
                r.connection_burst.min_per_sec = self.uint("connection_burst.min_per_sec", v)?;
            }
            if let Some(v) = &t.factor {
                r.connection_burst.factor = self.float("connection_burst.factor", v, 1.0, false)?;
            }
            if let Some(v) = &t.sustain {
                let name = "connection_burst.sustain";
                let d = self.duration(name, v)?;
                if d < Duration::from_secs(1) || d.subsec_nanos() != 0 {
                    return Err(self.err(
                        v.span(),
                        format!("{name}: must be a whole number of seconds, at least 1s"),
                    ));
                }
                r.connection_burst.sustain_secs = u32::try_from(d.as_secs())
                    .map_err(|_| self.err(v.span(), format!("{name}: too long")))?;
            }
        }

        if let Some(t) = raw.fan_out {
            if let Some(v) = &t.window {
                r.fan_out.window = self.duration("fan_out.window", v)?;
            }
            if let Some(v) = &t.min_hosts {
                r.fan_out.min_hosts = self.count("fan_out.min_hosts", v, 1)?;
            }
        }

        if let Some(t) = raw.new_destination {
            let n = &mut r.new_destination;
            if let Some(v) = t.enabled {
                n.enabled = v.into_inner();
            }
            if let Some(v) = &t.learning {
                n.learning = self.duration("new_destination.learning", v)?;
            }
            if let Some(v) = &t.ipv4_prefix {
                n.ipv4_prefix = self.prefix("new_destination.ipv4_prefix", v, 32)?;
            }
            if let Some(v) = &t.ipv6_prefix {
                n.ipv6_prefix = self.prefix("new_destination.ipv6_prefix", v, 128)?;
            }
        }

        if let Some(t) = raw.beaconing {
            if let Some(v) = t.enabled {
                r.beaconing.enabled = v.into_inner();
            }
            if let Some(v) = &t.min_connections {
                r.beaconing.min_connections = self.count("beaconing.min_connections", v, 4)?;
            }
            if let Some(v) = &t.min_duration {
                r.beaconing.min_duration = self.duration("beaconing.min_duration", v)?;
            }
            if let Some(v) = &t.window {
                r.beaconing.window = self.duration("beaconing.window", v)?;
            }
            if let Some(v) = &t.min_score {
                r.beaconing.min_score = self.float("beaconing.min_score", v, 0.0, true)?;
                if r.beaconing.min_score > 1.0 {
                    return Err(self.err(
                        v.span(),
                        "beaconing.min_score: must be at most 1".to_string(),
                    ));
                }
            }
            self.not_shorter(
                ("beaconing.window", r.beaconing.window, &t.window),
                (
                    "beaconing.min_duration",
                    r.beaconing.min_duration,
                    &t.min_duration,
                ),
            )?;
        }

        if let Some(enabled) = raw
            .new_listener
            .and_then(|t| t.enabled.map(Spanned::into_inner))
        {
            r.new_listener = enabled;
        }

        if let Some(t) = raw.large_outbound {
            if let Some(v) = &t.min_bytes {
                let name = "large_outbound.min_bytes";
                r.large_outbound.min_bytes = match v.get_ref() {
                    ByteSize::Int(n) => u64::try_from(*n).map_err(|_| {
                        self.err(v.span(), format!("{name}: must not be negative (got {n})"))
                    })?,
                    ByteSize::Text(s) => parse_bytes(s).map_err(|e| {
                        self.err(v.span(), format!("{name}: invalid size {}: {e}", quote(s)))
                    })?,
                };
            }
            if let Some(v) = &t.ratio {
                r.large_outbound.ratio = self.float("large_outbound.ratio", v, 0.0, true)?;
            }
            if let Some(v) = &t.window {
                r.large_outbound.window = self.duration("large_outbound.window", v)?;
            }
        }

        if let Some(t) = raw.abnormal_state {
            if let Some(v) = &t.close_wait {
                r.abnormal_state.close_wait = self.count("abnormal_state.close_wait", v, 1)?;
            }
            if let Some(v) = &t.syn_sent {
                r.abnormal_state.syn_sent = self.count("abnormal_state.syn_sent", v, 1)?;
            }
        }

        if let Some(v) = raw.high_connection_count.and_then(|t| t.max) {
            r.max_conns_per_ip = self.count("high_connection_count.max", &v, 1)?;
        }

        if let Some(v) = raw.unusual_high_port.and_then(|t| t.above) {
            r.high_port_above = self.port("unusual_high_port.above", &v)?;
        }

        if let Some(v) = raw.alerts.and_then(|t| t.rearm_after) {
            r.rearm_after = self.duration("alerts.rearm_after", &v)?;
        }

        if let Some(t) = raw.allow {
            for v in &t.ips {
                let s = v.get_ref().trim();
                let net = s
                    .parse::<ipnet::IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        self.err(
                            v.span(),
                            format!(
                                "allow.ips: {} is not an IP address or CIDR network",
                                quote(v.get_ref())
                            ),
                        )
                    })?;
                r.allow.nets.push(net);
            }
            for v in &t.ports {
                r.allow.ports.push(self.port("allow.ports", v)?);
            }
            for v in &t.processes {
                let name = v.get_ref().as_bytes();
                if name.is_empty() || name.len() > 16 {
                    return Err(self.err(
                        v.span(),
                        format!(
                            "allow.processes: {} must be 1 to 16 bytes (a process `comm` name)",
                            quote(v.get_ref())
                        ),
                    ));
                }
                r.allow.processes.push(name.to_vec());
            }
        }

        Ok(r)
    }
}

/// The dotted key path a deserialize error applies to (`port_scan.min_ports`).
/// toml keeps it private and prints it only without the source text, as a
/// last line "in `a.b`"; when that shape is not found there is no key path.
fn de_error_keys(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    let shown = bare.to_string();
    let keys = shown
        .strip_prefix(e.message())?
        .trim()
        .strip_prefix("in `")?
        .strip_suffix('`')?;
    (!keys.is_empty() && !keys.contains('\n')).then(|| keys.to_string())
}

impl Rules {
    /// The defaults overridden by a TOML rules file's text. Any error rejects the
    /// whole text.
    pub fn from_toml(text: &str) -> Result<Rules, RulesError> {
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            let message = e.message().trim();
            let reason = match de_error_keys(&e) {
                Some(keys) => format!("{keys}: {message}"),
                None => message.to_string(),
            };
            RulesError::Invalid {
                path: None,
                line: e.span().map_or(0, |s| line_of(text, s.start)),
                reason: escape(reason.as_bytes()),
            }
        })?;
        Checker { text }.check(raw)
    }

    /// Reads and parses the rules file at `path` (see [`Rules::from_toml`]).
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Rules::from_toml(&text).map_err(|e| e.with_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sanitize::Comm;
    use std::net::Ipv4Addr;

    const FULL: &str = r#"
[port_scan]
window = "5s"
min_ports = 30
slow_window = "20m"
slow_min_ports = 8

[syn_flood]
min_half_open_per_sec = 70
min_syn_recv = 300

[connection_burst]
min_per_sec = 1500
factor = 4
sustain = "7s"

[fan_out]
window = "2m"
min_hosts = 40

[new_listener]
enabled = false

[large_outbound]
min_bytes = "200MiB"
ratio = 2.5
window = "30m"

[abnormal_state]
close_wait = 10
syn_sent = 5

[high_connection_count]
max = 25

[unusual_high_port]
above = 40000

[new_destination]
enabled = false
learning = "2h"
ipv4_prefix = 16
ipv6_prefix = 48

[beaconing]
enabled = false
min_connections = 10
min_duration = "5m"
window = "2h"
min_score = 0.9

[alerts]
rearm_after = "90s"

[allow]
ips = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
ports = [22, 443]
processes = ["backup-agent"]
"#;

    fn err(text: &str) -> (Option<usize>, String) {
        let e = Rules::from_toml(text).expect_err("should be rejected");
        (e.line(), e.to_string())
    }

    /// The text is refused at `line`, the message naming each of `parts`.
    fn refused(text: &str, line: usize, parts: &[&str]) -> String {
        let (got, msg) = err(text);
        assert_eq!(got, Some(line), "{text:?}: {msg}");
        for part in parts {
            assert!(msg.contains(part), "{text:?}: {msg}");
        }
        msg
    }

    #[test]
    fn empty_file_keeps_defaults() {
        assert_eq!(Rules::from_toml("").unwrap(), Rules::default());
        assert_eq!(
            Rules::from_toml("# nothing\n\n[port_scan]\n").unwrap(),
            Rules::default()
        );
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let r = Rules::from_toml("[fan_out]\nmin_hosts = 7\n").unwrap();
        let mut want = Rules::default();
        want.fan_out.min_hosts = 7;
        assert_eq!(r, want);
    }

    #[test]
    fn full_file_sets_every_field() {
        let r = Rules::from_toml(FULL).unwrap();
        let want = Rules {
            port_scan: PortScan {
                window: Duration::from_secs(5),
                min_ports: 30,
                slow_window: Duration::from_secs(1200),
                slow_min_ports: 8,
            },
            syn_flood: SynFlood {
                min_half_open_per_sec: 70,
                min_syn_recv: 300,
            },
            connection_burst: ConnectionBurst {
                min_per_sec: 1500,
                factor: 4.0,
                sustain_secs: 7,
            },
            fan_out: FanOut {
                window: Duration::from_secs(120),
                min_hosts: 40,
            },
            new_listener: false,
            large_outbound: LargeOutbound {
                min_bytes: 200 << 20,
                ratio: 2.5,
                window: Duration::from_secs(1800),
            },
            abnormal_state: AbnormalState {
                close_wait: 10,
                syn_sent: 5,
            },
            new_destination: NewDestination {
                enabled: false,
                learning: Duration::from_secs(7200),
                ipv4_prefix: 16,
                ipv6_prefix: 48,
            },
            beaconing: Beaconing {
                enabled: false,
                min_connections: 10,
                min_duration: Duration::from_secs(300),
                window: Duration::from_secs(7200),
                min_score: 0.9,
            },
            max_conns_per_ip: 25,
            high_port_above: 40000,
            rearm_after: Duration::from_secs(90),
            allow: Allow {
                nets: vec![
                    "10.0.0.0/8".parse().unwrap(),
                    "192.0.2.7/32".parse().unwrap(),
                    "2001:db8::/32".parse().unwrap(),
                ],
                ports: vec![22, 443],
                processes: vec![b"backup-agent".to_vec()],
            },
        };
        assert_eq!(r, want);
        // Every field differs from its default, so none was silently skipped.
        let d = Rules::default();
        assert_ne!(r.port_scan.window, d.port_scan.window);
        assert_ne!(r.port_scan.min_ports, d.port_scan.min_ports);
        assert_ne!(r.port_scan.slow_window, d.port_scan.slow_window);
        assert_ne!(r.port_scan.slow_min_ports, d.port_scan.slow_min_ports);
        assert_ne!(r.syn_flood, d.syn_flood);
        assert_ne!(r.connection_burst.factor, d.connection_burst.factor);
        assert_ne!(
            r.connection_burst.sustain_secs,
            d.connection_burst.sustain_secs
        );
        assert_ne!(
            r.connection_burst.min_per_sec,
            d.connection_burst.min_per_sec
        );
        assert_ne!(r.fan_out.window, d.fan_out.window);
        assert_ne!(r.fan_out.min_hosts, d.fan_out.min_hosts);
        assert_ne!(r.large_outbound.min_bytes, d.large_outbound.min_bytes);
        assert_ne!(r.large_outbound.ratio, d.large_outbound.ratio);
        assert_ne!(r.large_outbound.window, d.large_outbound.window);
        assert_ne!(r.abnormal_state.close_wait, d.abnormal_state.close_wait);
        assert_ne!(r.new_destination.enabled, d.new_destination.enabled);
        assert_ne!(r.new_destination.learning, d.new_destination.learning);
        assert_ne!(r.new_destination.ipv4_prefix, d.new_destination.ipv4_prefix);
        assert_ne!(r.new_destination.ipv6_prefix, d.new_destination.ipv6_prefix);
        assert_ne!(r.beaconing.enabled, d.beaconing.enabled);
        assert_ne!(r.beaconing.min_connections, d.beaconing.min_connections);
        assert_ne!(r.beaconing.min_duration, d.beaconing.min_duration);
        assert_ne!(r.beaconing.window, d.beaconing.window);
        assert_ne!(r.beaconing.min_score, d.beaconing.min_score);
        assert_ne!(r.abnormal_state.syn_sent, d.abnormal_state.syn_sent);
    }

    #[test]
    fn float_fields_take_integers_and_floats() {
        let r = Rules::from_toml("[connection_burst]\nfactor = 10\n[large_outbound]\nratio = 3\n")
            .unwrap();
        assert_eq!(r.connection_burst.factor, 10.0);
        assert_eq!(r.large_outbound.ratio, 3.0);
        let r = Rules::from_toml("[connection_burst]\nfactor = 1.5\n").unwrap();
        assert_eq!(r.connection_burst.factor, 1.5);
    }

    #[test]
    fn typo_key_is_an_error_with_its_line() {
        let msg = refused(
            "[port_scan]\nwindow = \"10s\"\nmin_port = 3\n",
            3,
            &["unknown field `min_port`", "min_ports"],
        );
        assert!(msg.starts_with("rules file line 3: "), "{msg}");
    }

    #[test]
    fn typo_table_is_an_error_with_its_line() {
        refused(
            "# rules\n\n[portscan]\nmin_ports = 3\n",
            3,
            &["unknown field `portscan`"],
        );
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let text = "[port_scan]\nmin_ports = 5\n\n\n\n\nwindow = \"ten seconds\"\n";
        let msg = refused(text, 7, &[]);
        assert!(
            msg.starts_with(
                "rules file line 7: port_scan.window: invalid duration \"ten seconds\""
            ),
            "{msg}"
        );
        refused(
            "[alerts]\nrearm_after = \"0s\"\n",
            2,
            &["alerts.rearm_after: must be greater than 0"],
        );
    }

    #[test]
    fn wrong_type_is_an_error_with_its_line() {
        refused(
            "[port_scan]\n\nmin_ports = \"x\"\n",
            3,
            &["invalid type", "port_scan.min_ports", "expected an integer"],
        );
        refused("[new_listener]\nenabled = \"yes\"\n", 2, &[]);
        refused("[port_scan]\nwindow = 10\n", 2, &[]);
    }

    #[test]
    fn syntax_error_has_a_line() {
        refused("[port_scan]\nwindow = \"10s\"\nmin_ports = = 3\n", 3, &[]);
    }

    #[test]
    fn semantic_errors_name_key_and_line() {
        let text = "[fan_out]\nmin_hosts = 0\n[port_scan]\nwindow = \"10s\"\nmin_ports = 0\n";
        // The first offending key in check order is port_scan.min_ports.
        let msg = refused(text, 5, &[]);
        assert!(
            msg.starts_with("rules file line 5: port_scan.min_ports:"),
            "{msg}"
        );

        for (text, line, key) in [
            (
                "[port_scan]\nwindow = \"1m\"\nslow_window = \"30s\"\n",
                3,
                "port_scan.slow_window",
            ),
            ("[port_scan]\nwindow = \"1h\"\n", 2, "port_scan.slow_window"),
            (
                "[connection_burst]\nfactor = 0.5\n",
                2,
                "connection_burst.factor",
            ),
            (
                "[connection_burst]\nfactor = nan\n",
                2,
                "connection_burst.factor",
            ),
            (
                "[connection_burst]\nfactor = inf\n",
                2,
                "connection_burst.factor",
            ),
            (
                "[connection_burst]\nsustain = \"500ms\"\n",
                2,
                "connection_burst.sustain",
            ),
            (
                "[connection_burst]\nsustain = \"1500ms\"\n",
                2,
                "connection_burst.sustain",
            ),
            (
                "[connection_burst]\nmin_per_sec = -1\n",
                2,
                "connection_burst.min_per_sec",
            ),
            ("[large_outbound]\nratio = 0\n", 2, "large_outbound.ratio"),
            (
                "[large_outbound]\nratio = -inf\n",
                2,
                "large_outbound.ratio",
            ),
            (
                "[large_outbound]\nmin_bytes = -5\n",
                2,
                "large_outbound.min_bytes",
            ),
            (
                "[large_outbound]\nmin_bytes = \"5 parsecs\"\n",
                2,
                "large_outbound.min_bytes",
            ),
            (
                "[large_outbound]\nmin_bytes = \"99999999999GiB\"\n",
                2,
                "large_outbound.min_bytes",
            ),
            (
                "[abnormal_state]\nclose_wait = 0\n",
                2,
                "abnormal_state.close_wait",
            ),
            (
                "[abnormal_state]\nsyn_sent = -3\n",
                2,
                "abnormal_state.syn_sent",
            ),
            (
                "[high_connection_count]\nmax = 0\n",
                2,
                "high_connection_count.max",
            ),
            (
                "[unusual_high_port]\nabove = 0\n",
                2,
                "unusual_high_port.above",
            ),
            (
                "[unusual_high_port]\nabove = 65536\n",
                2,
                "unusual_high_port.above",
            ),
            ("[fan_out]\nwindow = \"0ms\"\n", 2, "fan_out.window"),
            ("[allow]\nports = [22,\n  0]\n", 3, "allow.ports"),
            ("[allow]\nports = [70000]\n", 2, "allow.ports"),
            ("[allow]\nprocesses = [\"\"]\n", 2, "allow.processes"),
            (
                "[allow]\nprocesses = [\"a-very-long-process-name\"]\n",
                2,
                "allow.processes",
            ),
        ] {
            refused(text, line, &[&format!(": {key}")]);
        }
    }

    #[test]
    fn inline_tables_and_dotted_keys_point_at_the_value() {
        refused(
            "\nport_scan = { min_ports = 0 }\n",
            2,
            &["port_scan.min_ports"],
        );
        let r = Rules::from_toml("fan_out.min_hosts = 3\n").unwrap();
        assert_eq!(r.fan_out.min_hosts, 3);
    }

    #[test]
    fn bad_cidr_is_rejected() {
        for bad in [
            "10.0.0.0/33",
            "300.1.1.1",
            "example.com",
            "2001:db8::/129",
            "",
        ] {
            let text = format!("[allow]\nips = [\n  \"10.0.0.1\",\n  \"{bad}\",\n]\n");
            refused(&text, 4, &["allow.ips:"]);
        }
    }

    #[test]
    fn allowlist_matches() {
        let r = Rules::from_toml(FULL).unwrap();
        let a = &r.allow;
        assert!(a.ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
        assert!(a.ip("192.0.2.7".parse().unwrap()));
        assert!(!a.ip("192.0.2.8".parse().unwrap()));
        assert!(a.ip("2001:db8:1::5".parse().unwrap()));
        assert!(!a.ip("2001:db9::1".parse().unwrap()));
        assert!(!a.ip("11.0.0.1".parse().unwrap()));
        assert!(a.port(22) && a.port(443) && !a.port(80));
        assert!(a.process(&Comm::from_bytes(b"backup-agent")));
        assert!(!a.process(&Comm::from_bytes(b"backup-agent2")));
        assert!(!a.process(&Comm::from_bytes(b"backup")));
        // The defaults allow nothing.
        let d = Allow::default();
        assert!(!d.ip("10.0.0.1".parse().unwrap()) && !d.port(22));
        assert!(!d.process(&Comm::from_bytes(b"sshd")));
        // A 16-byte name is allowed and matches the kernel's full-length comm.
        let r = Rules::from_toml("[allow]\nprocesses = [\"0123456789abcdef\"]\n").unwrap();
        assert!(r.allow.process(&Comm::from_bytes(b"0123456789abcdef")));
        // Host bits in a CIDR are dropped.
        let r = Rules::from_toml("[allow]\nips = [\"10.1.2.3/8\"]\n").unwrap();
        assert_eq!(r.allow.nets, vec!["10.0.0.0/8".parse().unwrap()]);
    }

    #[test]
    fn byte_sizes() {
        let get = |v: &str| {
            Rules::from_toml(&format!("[large_outbound]\nmin_bytes = {v}\n"))
                .unwrap()
                .large_outbound
                .min_bytes
        };
        assert_eq!(get("\"100MiB\""), 100 << 20);
        assert_eq!(get("1048576"), 1 << 20);
        assert_eq!(get("\"1MiB\""), get("1048576"));
        assert_eq!(get("\"512B\""), 512);
        assert_eq!(get("\"4096\""), 4096);
        assert_eq!(get("\"2 KiB\""), 2048);
        assert_eq!(get("\"3KB\""), 3000);
        assert_eq!(get("\"5MB\""), 5_000_000);
        assert_eq!(get("\"1GiB\""), 1 << 30);
        assert_eq!(get("\"2GB\""), 2_000_000_000);
        assert_eq!(get("0"), 0);
        let (_, msg) = err("[large_outbound]\nmin_bytes = true\n");
        assert!(msg.contains("byte count"), "{msg}");
        let (_, msg) = err("[large_outbound]\nmin_bytes = \"MiB\"\n");
        assert!(msg.contains("large_outbound.min_bytes"), "{msg}");
    }

    #[test]
    fn messages_do_not_carry_terminal_controls() {
        let (_, msg) = err("[port_scan]\nwindow = \"\\u001b[31mred\"\n");
        assert!(!msg.contains('\x1b'), "{msg:?}");
        let (_, msg) = err("[port_scan]\n\"\\u001b[2J\" = 1\n");
        assert!(!msg.contains('\x1b'), "{msg:?}");
        assert_eq!(err("[port_scan]\n\"\\u001b[2J\" = 1\n").0, Some(2));
    }

    #[test]
    fn load_reads_a_file_and_names_it_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("rules.toml");
        std::fs::write(&good, FULL).unwrap();
        assert_eq!(Rules::load(&good).unwrap(), Rules::from_toml(FULL).unwrap());

        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[fan_out]\nmin_hosts = 9\n[port_scan]\nmin_ports = 0\n",
        )
        .unwrap();
        let e = Rules::load(&bad).unwrap_err();
        assert_eq!(e.line(), Some(4));
        let msg = e.to_string();
        assert!(msg.contains("bad.toml") && msg.contains("line 4"), "{msg}");
        assert!(msg.contains("port_scan.min_ports"), "{msg}");

        let missing = dir.path().join("missing.toml");
        let e = Rules::load(&missing).unwrap_err();
        assert!(matches!(e, RulesError::Read { .. }));
        assert_eq!(e.line(), None);
        assert!(e.to_string().contains("missing.toml"), "{e}");

        // Not UTF-8: a read error, not a panic.
        let bin = dir.path().join("bin.toml");
        std::fs::write(&bin, b"[port_scan]\nwindow = \"\xff\"\n").unwrap();
        assert!(Rules::load(&bin).is_err());
    }

    /// Prefixes, byte flips, insertions and deletions of a valid file never panic.
    #[test]
    fn never_panics_on_mangled_input() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let base = FULL.as_bytes();
        let mut inputs: Vec<Vec<u8>> = (0..=base.len()).map(|n| base[..n].to_vec()).collect();
        const NOISE: &[u8] = b"[]{}=\"',.-+0123456789 \n\t#\\eE_:xTZinfa\xff\x00";
        for _ in 0..1500 {
            let mut v = base.to_vec();
            for _ in 0..1 + rand() % 4 {
                let i = (rand() as usize) % v.len().max(1);
                match rand() % 4 {
                    0 => v[i] ^= 1 << (rand() % 8),
                    1 => v[i] = NOISE[(rand() as usize) % NOISE.len()],
                    2 => v.insert(i, NOISE[(rand() as usize) % NOISE.len()]),
                    _ => {
                        v.remove(i);
                    }
                }
            }
            inputs.push(v);
        }
        for line in [
            "[port_scan]\nwindow = \"99999999999999999999999s\"\n",
            "[connection_burst]\nsustain = \"9999999999999s\"\n",
            "[large_outbound]\nmin_bytes = 9223372036854775807\n",
            "[large_outbound]\nmin_bytes = \"18446744073709551616\"\n",
            "[unusual_high_port]\nabove = -9223372036854775808\n",
            "[allow]\nips = [\"::ffff:1.2.3.4/200\"]\n",
            "[allow]\nprocesses = [\"\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\"]\n",
            "[[port_scan]]\n",
            "port_scan = 1\n",
            "[allow]\nports = \"22\"\n",
        ] {
            inputs.push(line.as_bytes().to_vec());
        }
        let mut accepted = 0;
        for v in &inputs {
            let text = String::from_utf8_lossy(v);
            match Rules::from_toml(&text) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    let _ = e.to_string();
                    if let Some(l) = e.line() {
                        assert!(l <= text.lines().count() + 1, "{e}");
                    }
                }
            }
        }
        assert!(inputs.len() > 1500 && accepted > 0);
    }
}
