//! Which live rows a view shows, and in what order.
use crate::core::event::{Proto, State};
use crate::core::history_query::Query;
use crate::core::table::{Closed, Conn, Snapshot};

/// The stored actions that are history rows (listener changes are not).
pub const HISTORY_ACTIONS: &str = "closed,failed,udp-flow";

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub states: Vec<State>,
    pub proto: Option<Proto>,
    /// Matches the local or the remote port.
    pub port: Option<u16>,
    pub pid: Option<u32>,
    /// Substring of the (raw) process name.
    pub process: Option<String>,
}

impl Filter {
    /// Listeners only (the menu's "listening ports").
    pub fn listening() -> Filter {
        Filter {
            states: State::LISTENERS.to_vec(),
            ..Filter::default()
        }
    }

    /// The store query that finds this filter's history rows (states are
    /// checked afterwards, on the rows: the store keeps no state).
    pub fn history_query(&self, limit: u64) -> Query {
        Query {
            proto: self.proto.map(|p| p.name().to_string()),
            port: self.port,
            pid: self.pid,
            process: self.process.clone(),
            action: Some(HISTORY_ACTIONS.to_string()),
            limit: Some(limit),
            ..Query::default()
        }
    }

    pub fn matches(&self, c: &Conn) -> bool {
        (self.states.is_empty() || self.states.contains(&c.state))
            && self.proto.is_none_or(|p| p == c.proto)
            && self
                .port
                .is_none_or(|p| c.local.port() == p || (c.has_peer() && c.remote.port() == p))
            && self.pid.is_none_or(|p| p == c.pid)
            && self.process.as_ref().is_none_or(|name| {
                String::from_utf8_lossy(c.comm.as_bytes()).contains(name.as_str())
            })
    }
}

/// Rows in display order: protocol, state (listeners first), local, remote.
pub fn select(snap: &Snapshot, filter: &Filter) -> Vec<Conn> {
    let mut rows: Vec<Conn> = snap
        .conns
        .iter()
        .filter(|c| filter.matches(c))
        .cloned()
        .collect();
    rows.sort_by(|a, b| {
        let rank = |c: &Conn| !c.state.is_listener() as u8;
        (a.proto, rank(a), a.local, a.remote, a.pid).cmp(&(
            b.proto,
            rank(b),
            b.local,
            b.remote,
            b.pid,
        ))
    });
    rows
}

/// History rows matching `filter`, in their order.
pub fn select_closed(rows: &[Closed], filter: &Filter) -> Vec<Closed> {
    rows.iter()
        .filter(|h| {
            // History rows match on their last live state.
            if filter.states.contains(&State::Established) && !h.failed {
                let c = Conn {
                    state: State::Established,
                    ..h.conn.clone()
                };
                filter.matches(&c)
            } else {
                filter.matches(&h.conn)
            }
        })
        .cloned()
        .collect()
}
