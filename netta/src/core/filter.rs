//! Which live rows a view shows, and in what order: the one definition of every
//! row filter (`list`, `top` and its `/` words, `history`'s store query).
use std::net::SocketAddr;

use crate::core::event::{Proto, State, Who};
use crate::core::history_query::Query;
use crate::core::sanitize::Comm;
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
    /// The owner's user: a uid, or a name (as this host names it).
    pub user: Option<User>,
    /// The executable: its full path, or (without a `/`) its file name.
    pub exe: Option<String>,
    /// Inode of the network namespace.
    pub netns: Option<u32>,
    /// The start of a container id (as `docker ps` shortens them), or a pod's
    /// UID or name.
    pub container: Option<String>,
}

/// A user, as a filter names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum User {
    Id(u32),
    Name(String),
}

impl User {
    /// A number is a uid, anything else a name.
    pub fn parse(s: &str) -> User {
        s.parse()
            .map_or_else(|_| User::Name(s.to_string()), User::Id)
    }

    pub fn matches(&self, who: &Who) -> bool {
        match self {
            User::Id(uid) => who.uid == Some(*uid),
            User::Name(n) => who.user.as_ref().is_some_and(|u| u.as_str() == n),
        }
    }
}

/// Whether executable `exe` is the one `want` names: the same path, or (when
/// `want` has no `/`) the same file name. The store's SQL is the same test.
pub fn exe_matches(exe: &str, want: &str) -> bool {
    if want.contains('/') {
        exe == want
    } else {
        exe.rsplit('/').next() == Some(want)
    }
}

/// Whether the owner's container is the one `want` names: its id starts with
/// it, or its pod's UID or name is it.
pub fn container_matches(who: &Who, want: &str) -> bool {
    let Some(c) = &who.container else {
        return false;
    };
    let want = want.to_ascii_lowercase();
    c.id.as_deref().is_some_and(|id| id.starts_with(&want))
        || c.pod
            .as_ref()
            .is_some_and(|p| *p.uid == *want || p.name.as_ref().is_some_and(|n| n.as_str() == want))
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
            uid: match &self.user {
                Some(User::Id(u)) => Some(*u),
                _ => None,
            },
            user: match &self.user {
                Some(User::Name(n)) => Some(n.clone()),
                _ => None,
            },
            exe: self.exe.clone(),
            netns: self.netns,
            container: self.container.clone(),
            action: Some(HISTORY_ACTIONS.to_string()),
            limit: Some(limit),
            ..Query::default()
        }
    }

    /// The filter from words, named as `list`'s flags are: `state:established`
    /// (repeatable), `proto:tcp`, `port:443`, `pid:1234`, `process:curl`,
    /// `user:alice`, `exe:/usr/bin/curl`, `netns:4026531840`, `container:3f2a8b`
    /// (`=` works too, and `--port 443` as on the command line). A bare
    /// `tcp`/`udp` is the protocol, a bare number the port, a state name the
    /// state, any other word a process name.
    pub fn parse_words(text: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            let w = w.trim_start_matches("--");
            let (key, value) = match w.split_once([':', '=']) {
                Some((k, v)) => (k, v.to_string()),
                None if matches!(
                    w,
                    "state"
                        | "proto"
                        | "port"
                        | "pid"
                        | "process"
                        | "user"
                        | "exe"
                        | "netns"
                        | "container"
                ) =>
                {
                    let v = words.next().ok_or_else(|| format!("`{w}` needs a value"))?;
                    (w, v.to_string())
                }
                None => ("", w.to_string()),
            };
            let shown = crate::core::sanitize::escape(value.as_bytes());
            match key.to_ascii_lowercase().as_str() {
                "state" => f
                    .states
                    .push(State::parse(&value).ok_or(format!("unknown state `{shown}`"))?),
                "proto" => {
                    f.proto = Some(proto(&value).ok_or(format!("unknown protocol `{shown}`"))?)
                }
                "port" => f.port = Some(value.parse().map_err(|_| format!("bad port `{shown}`"))?),
                "pid" => f.pid = Some(value.parse().map_err(|_| format!("bad pid `{shown}`"))?),
                "process" | "proc" | "comm" => f.process = Some(value),
                "user" => f.user = Some(User::parse(&value)),
                "exe" => f.exe = Some(value),
                "netns" => {
                    f.netns = Some(
                        value
                            .parse()
                            .map_err(|_| format!("bad network namespace `{shown}`"))?,
                    )
                }
                "container" | "pod" => f.container = Some(value),
                "" => {
                    if let Some(p) = proto(&value) {
                        f.proto = Some(p);
                    } else if let Ok(port) = value.parse() {
                        f.port = Some(port);
                    } else if let Some(st) = State::parse(&value) {
                        f.states.push(st);
                    } else {
                        f.process = Some(value);
                    }
                }
                other => {
                    let other = crate::core::sanitize::escape(other.as_bytes());
                    return Err(format!(
                        "unknown filter `{other}` (state, proto, port, pid, process, user, exe, netns, container)"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, c: &Conn) -> bool {
        self.accepts(Subject {
            state: c.state,
            proto: c.proto,
            local: c.local,
            remote: c.has_peer().then_some(c.remote),
            pid: c.pid,
            comm: c.comm,
            netns: c.netns,
            who: Some(&c.who),
        })
    }

    /// The same test on the fields a view's own row type carries.
    pub fn accepts(&self, s: Subject<'_>) -> bool {
        let who = s.who.unwrap_or(&NOBODY);
        (self.states.is_empty() || self.states.contains(&s.state))
            && self.proto.is_none_or(|p| p == s.proto)
            && self
                .port
                .is_none_or(|p| s.local.port() == p || s.remote.is_some_and(|r| r.port() == p))
            && self.pid.is_none_or(|p| p == s.pid)
            && self.process.as_ref().is_none_or(|name| {
                String::from_utf8_lossy(s.comm.as_bytes()).contains(name.as_str())
            })
            && self.user.as_ref().is_none_or(|u| u.matches(who))
            && self
                .exe
                .as_ref()
                .is_none_or(|want| who.executable().is_some_and(|e| exe_matches(e, want)))
            && self.netns.is_none_or(|n| n == s.netns)
            && self
                .container
                .as_ref()
                .is_none_or(|want| container_matches(who, want))
    }
}

/// What a filter looks at in a row.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub state: State,
    pub proto: Proto,
    pub local: SocketAddr,
    /// `None` without a peer (listeners, unconnected UDP sockets).
    pub remote: Option<SocketAddr>,
    pub pid: u32,
    pub comm: Comm,
    pub netns: u32,
    /// What is known of the owner (`None`: nothing).
    pub who: Option<&'a Who>,
}

/// An owner nothing is known of.
static NOBODY: Who = Who {
    uid: None,
    user: None,
    cgroup: 0,
    process: None,
    container: None,
};

fn proto(s: &str) -> Option<Proto> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_name_the_same_filters_as_list_flags() {
        let f = Filter::parse_words("state:established proto=tcp --port 443 pid:7 process:curl")
            .unwrap();
        assert_eq!(f.states, vec![State::Established]);
        assert_eq!(
            (f.proto, f.port, f.pid),
            (Some(Proto::Tcp), Some(443), Some(7))
        );
        assert_eq!(f.process.as_deref(), Some("curl"));
        let bare = Filter::parse_words("udp 53 listen nginx").unwrap();
        assert_eq!((bare.proto, bare.port), (Some(Proto::Udp), Some(53)));
        assert_eq!(bare.states, vec![State::Listen]);
        assert_eq!(bare.process.as_deref(), Some("nginx"));
        assert!(Filter::parse_words("").unwrap().states.is_empty());
        assert!(Filter::parse_words("port:x")
            .unwrap_err()
            .contains("bad port"));
        assert!(Filter::parse_words("colour:red")
            .unwrap_err()
            .contains("unknown filter"));
        assert!(Filter::parse_words("state:\x1b").is_err());
    }

    #[test]
    fn owners_filter_by_user_executable_namespace_and_container() {
        let mut c = crate::fixture::conn(
            1,
            Proto::Tcp,
            "127.0.0.1:40000",
            "127.0.0.1:443",
            State::Established,
            crate::core::event::Direction::Egress,
            7,
            b"python3",
        );
        c.netns = 4026531840;
        c.who = crate::fixture::owned();
        let yes = [
            "user:alice",
            "user:1000",
            "exe:python3",
            "exe:/usr/bin/python3",
            "netns:4026531840",
            "container:3f2a8b",
            "container:3F2A8B5C",
            "pod:web-0",
            "container:6a1b3c4d-1111-2222-3333-444455556666",
        ];
        for w in yes {
            assert!(Filter::parse_words(w).unwrap().matches(&c), "{w}");
        }
        let no = [
            "user:bob",
            "user:0",
            "exe:python",
            "exe:/bin/python3",
            "netns:1",
            "container:ffff",
            "container:web",
        ];
        for w in no {
            assert!(!Filter::parse_words(w).unwrap().matches(&c), "{w}");
        }
        assert!(Filter::parse_words("netns:x")
            .unwrap_err()
            .contains("network namespace"));
        // A row nothing is known of matches none of them.
        let mut bare = crate::fixture::conn(
            2,
            Proto::Tcp,
            "127.0.0.1:1",
            "127.0.0.1:2",
            State::Established,
            crate::core::event::Direction::Egress,
            8,
            b"x",
        );
        bare.who = Default::default();
        for w in ["user:0", "exe:x", "container:0"] {
            assert!(!Filter::parse_words(w).unwrap().matches(&bare), "{w}");
        }
    }
}
