//! A history query as plain data: the filters `netta history` flags, the API's
//! query string and the store's SQL all share. Parsing of its values lives here
//! too (pure, fuzzed).
use std::net::IpAddr;

use ipnet::IpNet;

use crate::core::event::Action;
use crate::core::owner_filter::{number, OwnerFilter};

/// Which kinds of connection event the history keeps, with their stored names.
/// `open` is a connection still open at its last `connection-updated`: one row
/// per connection, its totals so far, replaced by its end's row.
pub const ACTIONS: [(Action, &str); 6] = [
    (Action::Closed, "closed"),
    (Action::Failed, "failed"),
    (Action::UdpFlow, "udp-flow"),
    (Action::ListenStarted, "listen-start"),
    (Action::ListenStopped, "listen-stop"),
    (Action::Updated, OPEN),
];

/// The stored action of a connection still open.
pub const OPEN: &str = "open";

pub fn action_name(a: Action) -> Option<&'static str> {
    ACTIONS.iter().find(|(x, _)| *x == a).map(|(_, n)| *n)
}

/// Accepts the stored name or the event name (`closed` or `connection-closed`).
pub fn parse_action(s: &str) -> Option<&'static str> {
    let s = s.to_ascii_lowercase();
    ACTIONS
        .iter()
        .find(|(a, n)| *n == s || a.name() == s)
        .map(|(_, n)| *n)
}

pub const DEFAULT_LIMIT: u64 = 10_000;

/// Filters of a history query. Every field is optional; times are wall-clock
/// microseconds since the epoch (resolved by the client, see `when`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Query {
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    /// Who owns the connection (`pid`, `process`, `uid` or `user`, `exe`,
    /// `netns`, `container`); a user's name is the one the agent stored.
    #[serde(flatten)]
    pub owner: OwnerFilter,
    /// Source or destination port.
    pub port: Option<u16>,
    /// The ECS ends (`sport`, `dport`, `src`, `dst`).
    #[serde(flatten)]
    pub ends: EndsQuery,
    pub proto: Option<String>,
    /// A DNS name: connections to it or to a name under it.
    pub domain: Option<String>,
    /// Stored action names, comma-separated (`closed,failed`).
    pub action: Option<String>,
    pub limit: Option<u64>,
}

/// The ECS ends filter (`core::filter::EndsFilter`) as query-string text:
/// history, list and events queries carry it under these keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EndsQuery {
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "number")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "number")]
    pub dport: Option<u16>,
    /// An address or CIDR network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("`{0}` is not an address or CIDR network (try 10.0.0.0/8 or 203.0.113.7)")]
    Net(String),
    #[error("unknown protocol `{0}` (tcp or udp)")]
    Proto(String),
    #[error("unknown action `{0}` (closed, failed, udp-flow, listen-start, listen-stop, open)")]
    Action(String),
    #[error("--since is after --until")]
    Order,
    #[error("`{0}` is not a DNS name (try example.com)")]
    Domain(String),
}

/// A DNS name as stored: lower case, no trailing dot, printable ASCII only.
pub fn parse_domain(s: &str) -> Result<String, QueryError> {
    let t = s.trim().trim_end_matches('.');
    crate::core::sanitize::Domain::parse(t)
        .map(|d| d.as_str().to_string())
        .ok_or_else(|| QueryError::Domain(crate::core::sanitize::escape(s.as_bytes())))
}

/// An address or network; a bare address is its own /32 or /128.
pub fn parse_net(s: &str) -> Result<IpNet, QueryError> {
    let t = s.trim();
    let bad = || QueryError::Net(crate::core::sanitize::escape(t.as_bytes()));
    if let Ok(n) = t.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    let ip: IpAddr = t.parse().map_err(|_| bad())?;
    Ok(IpNet::from(crate::core::event::normalize(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_and_actions_parse() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_net("::ffff:1.2.3.4").unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert!(parse_net("10.0.0.0/33").is_err());
        assert_eq!(parse_action("connection-failed"), Some("failed"));
        assert_eq!(parse_action("LISTEN-START"), Some("listen-start"));
        assert_eq!(parse_action("opened"), None);
        assert_eq!(parse_action("connection-updated"), Some("open"));
        assert_eq!(parse_action("Open"), Some("open"));
        assert_eq!(action_name(Action::UdpFlow), Some("udp-flow"));
        assert_eq!(
            parse_domain(" Bar-Test.Example. ").unwrap(),
            "bar-test.example"
        );
        assert!(parse_domain("evil\u{1b}[2J").is_err());
        assert!(parse_domain("").is_err());
    }
}
