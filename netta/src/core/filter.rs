//! Which rows a view shows, and in what order; which events `netta events`
//! writes: the one definition of every row filter (`list`, `top` and its `/`
//! words, `history`'s store query).
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::core::event::{Action, ConnEvent, Direction, Proto, State, Who};
use crate::core::history_query::{parse_net, EndsQuery, Query, QueryError};
use crate::core::owner_filter::{OwnerFilter, User};
use crate::core::sanitize::Comm;
use crate::core::table::{Closed, Conn, Snapshot};
use crate::core::tuple::Ends;

/// The stored actions that are history rows (listener changes are not).
pub const HISTORY_ACTIONS: &str = "closed,failed,udp-flow";

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub states: Vec<State>,
    pub proto: Option<Proto>,
    /// Matches the local or the remote port.
    pub port: Option<u16>,
    /// Who owns the connection.
    pub owner: OwnerFilter,
    /// The ECS ends ([`Ends`]): the source started the connection, the destination
    /// was connected to (a listener is a destination).
    pub ends: EndsFilter,
}

/// `--sport`, `--dport`, `--src`, `--dst`: ports and networks of the ECS ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndsFilter {
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
}

impl EndsFilter {
    pub fn is_empty(&self) -> bool {
        *self == EndsFilter::default()
    }

    /// As a query string carries it.
    pub fn query(&self) -> EndsQuery {
        EndsQuery {
            sport: self.sport,
            dport: self.dport,
            src: self.src.map(|n| n.to_string()),
            dst: self.dst.map(|n| n.to_string()),
        }
    }

    /// From a query string's text; a bad network is a one-line error.
    pub fn from_query(q: &EndsQuery) -> Result<EndsFilter, QueryError> {
        let net = |s: &Option<String>| s.as_deref().map(parse_net).transpose();
        Ok(EndsFilter {
            sport: q.sport,
            dport: q.dport,
            src: net(&q.src)?,
            dst: net(&q.dst)?,
        })
    }

    /// Whether one (source, destination) pair passes; a missing end passes no
    /// condition on it.
    pub fn pair(&self, source: Option<SocketAddr>, destination: Option<SocketAddr>) -> bool {
        let port = |want: Option<u16>, end: Option<SocketAddr>| {
            want.is_none_or(|p| end.is_some_and(|a| a.port() == p))
        };
        let net = |want: Option<IpNet>, end: Option<SocketAddr>| {
            want.is_none_or(|n| {
                end.is_some_and(|a| n.contains(&crate::core::event::normalize(a.ip())))
            })
        };
        port(self.sport, source)
            && port(self.dport, destination)
            && net(self.src, source)
            && net(self.dst, destination)
    }

    /// Whether the connection passes: one way round, or, direction unknown, either.
    pub fn ends(&self, ends: Ends) -> bool {
        self.is_empty() || ends.pairs().any(|(s, d)| self.pair(s, d))
    }

    /// Whether an alert passes: it has a source address (the suspect) and no ports.
    pub fn alert(&self, source_ip: Option<std::net::IpAddr>) -> bool {
        self.pair(source_ip.map(|ip| SocketAddr::new(ip, 0)), None) && self.sport.is_none()
    }

    /// Whether `netta events` writes this event's line. Health lines
    /// (`events-lost`, `table-evicted`) always pass, so a reader still learns
    /// what is missing.
    pub fn event(&self, ev: &ConnEvent) -> bool {
        if self.is_empty() || matches!(ev.action, Action::EventsLost | Action::TableEvicted) {
            return true;
        }
        let listen = matches!(ev.action, Action::ListenStarted | Action::ListenStopped);
        self.ends(Ends::of(ev.direction, ev.local, ev.remote, listen))
    }
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
            owner: self.owner.clone(),
            ends: self.ends.query(),
            action: Some(HISTORY_ACTIONS.to_string()),
            limit: Some(limit),
            ..Query::default()
        }
    }

    /// The filter from words, named as `list`'s flags are: `state:established`
    /// (repeatable), `proto:tcp`, `port:443`, `pid:1234`, `process:curl`,
    /// `sport:40000`, `dport:443`, `src:10.0.0.0/8`, `dst:192.0.2.7`, `user:alice`,
    /// `exe:/usr/bin/curl`, `netns:4026531840`, `container:3f2a8b` (`=` works too,
    /// and `--port 443` as on the command line). A bare `tcp`/`udp` is the
    /// protocol, a bare number the port, a state name the state, any other word
    /// a process name.
    pub fn parse_words(text: &str) -> Result<Filter, String> {
        let mut f = Filter::default();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            let w = w.trim_start_matches("--");
            let (key, value) = match w.split_once([':', '=']) {
                Some((k, v)) => (k, v.to_string()),
                None if KEYS.contains(&w) => {
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
                "port" => f.port = Some(port(&value)?),
                "sport" => f.ends.sport = Some(port(&value)?),
                "dport" => f.ends.dport = Some(port(&value)?),
                "src" => f.ends.src = Some(parse_net(&value).map_err(|e| e.to_string())?),
                "dst" => f.ends.dst = Some(parse_net(&value).map_err(|e| e.to_string())?),
                "pid" => {
                    f.owner.pid = Some(value.parse().map_err(|_| format!("bad pid `{shown}`"))?)
                }
                "process" | "proc" | "comm" => f.owner.process = Some(value),
                "user" => f.owner.user = Some(User::parse(&value)),
                "exe" => f.owner.exe = Some(value),
                "netns" => {
                    f.owner.netns = Some(
                        value
                            .parse()
                            .map_err(|_| format!("bad network namespace `{shown}`"))?,
                    )
                }
                "container" | "pod" => f.owner.container = Some(value),
                "" => {
                    if let Some(p) = proto(&value) {
                        f.proto = Some(p);
                    } else if let Ok(port) = value.parse() {
                        f.port = Some(port);
                    } else if let Some(st) = State::parse(&value) {
                        f.states.push(st);
                    } else {
                        f.owner.process = Some(value);
                    }
                }
                other => {
                    let other = crate::core::sanitize::escape(other.as_bytes());
                    return Err(format!("unknown filter `{other}` ({})", KEYS.join(", ")));
                }
            }
        }
        Ok(f)
    }

    /// The filter as the words [`Filter::parse_words`] reads (`top` shows them
    /// and starts from its flags' words).
    pub fn words(&self) -> String {
        let mut w: Vec<String> = self
            .states
            .iter()
            .map(|s| format!("state:{}", s.name().to_lowercase()))
            .collect();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                w.push(format!("{k}:{v}"));
            }
        };
        let (o, e) = (&self.owner, &self.ends);
        add("proto", self.proto.map(|p| p.name().to_string()));
        add("port", self.port.map(|p| p.to_string()));
        add("pid", o.pid.map(|p| p.to_string()));
        add("process", o.process.clone());
        add(
            "user",
            o.user.as_ref().map(|u| match u {
                User::Id(id) => id.to_string(),
                User::Name(n) => n.clone(),
            }),
        );
        add("exe", o.exe.clone());
        add("netns", o.netns.map(|n| n.to_string()));
        add("container", o.container.clone());
        add("sport", e.sport.map(|p| p.to_string()));
        add("dport", e.dport.map(|p| p.to_string()));
        add("src", e.src.map(|n| n.to_string()));
        add("dst", e.dst.map(|n| n.to_string()));
        w.join(" ")
    }

    pub fn matches(&self, c: &Conn) -> bool {
        self.accepts(Subject {
            state: c.state,
            proto: c.proto,
            local: c.local,
            remote: c.has_peer().then_some(c.remote),
            pid: c.pid,
            comm: c.comm,
            direction: c.direction,
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
            && self.ends.ends(Ends::of(
                s.direction,
                s.local,
                s.remote
                    .unwrap_or_else(|| crate::core::tuple::unspecified_like(s.local)),
                s.state.is_listener(),
            ))
            && self.owner.accepts(s.pid, s.comm, s.netns, who)
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
    pub direction: Direction,
    pub netns: u32,
    /// What is known of the owner (`None`: nothing).
    pub who: Option<&'a Who>,
}

/// The keys of filter words.
const KEYS: [&str; 14] = [
    "state",
    "proto",
    "port",
    "pid",
    "process",
    "sport",
    "dport",
    "src",
    "dst",
    "user",
    "exe",
    "netns",
    "container",
    "pod",
];

fn port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("bad port `{}`", crate::core::sanitize::escape(s.as_bytes())))
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
    sort_rows(&mut rows);
    rows
}

/// Puts rows in [`select`]'s display order.
pub fn sort_rows(rows: &mut [Conn]) {
    rows.sort_by_key(|c| order_key(c.proto, c.state, c.local, c.remote, c.pid));
}

/// The display order: protocol, listeners first, local, remote, pid.
pub fn order_key(
    proto: Proto,
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    pid: u32,
) -> impl Ord {
    (proto, !state.is_listener(), local, remote, pid)
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
    use crate::core::event::Direction;

    #[test]
    fn words_name_the_same_filters_as_list_flags() {
        let f = Filter::parse_words("state:established proto=tcp --port 443 pid:7 process:curl")
            .unwrap();
        assert_eq!(f.states, vec![State::Established]);
        assert_eq!(
            (f.proto, f.port, f.owner.pid),
            (Some(Proto::Tcp), Some(443), Some(7))
        );
        assert_eq!(f.owner.process.as_deref(), Some("curl"));
        let bare = Filter::parse_words("udp 53 listen nginx").unwrap();
        assert_eq!((bare.proto, bare.port), (Some(Proto::Udp), Some(53)));
        assert_eq!(bare.states, vec![State::Listen]);
        assert_eq!(bare.owner.process.as_deref(), Some("nginx"));
        assert!(Filter::parse_words("").unwrap().states.is_empty());
        assert!(Filter::parse_words("state:\x1b").is_err());
        // Bad words, and what their error says.
        for (words, error) in [
            ("port:x", "bad port"),
            ("colour:red", "unknown filter"),
            ("dst:10.0.0.0/33", "CIDR"),
            ("sport:http", "bad port"),
        ] {
            let e = Filter::parse_words(words).unwrap_err();
            assert!(e.contains(error), "{words}: {e}");
        }
        let ends = Filter::parse_words("sport:40000 --dport 443 src=10.0.0.0/8 dst:192.0.2.7")
            .unwrap()
            .ends;
        assert_eq!(
            ends,
            EndsFilter {
                sport: Some(40000),
                dport: Some(443),
                src: Some("10.0.0.0/8".parse().unwrap()),
                dst: Some("192.0.2.7/32".parse().unwrap()),
            }
        );
    }

    #[test]
    fn words_read_back_as_the_same_filter() {
        let text = "state:established state:time_wait proto:tcp port:443 pid:7 process:curl \
                    user:alice exe:/usr/bin/curl netns:4026531840 container:3f2a sport:40000 \
                    dport:443 src:10.0.0.0/8 dst:192.0.2.7/32";
        let f = Filter::parse_words(text).unwrap();
        assert_eq!(
            f.words(),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let back = Filter::parse_words(&f.words()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{f:?}"));
        assert_eq!(Filter::default().words(), "");
    }

    fn conn(local: &str, remote: &str, state: State, direction: Direction) -> Conn {
        let mut e = ConnEvent::lost(1, 0);
        e.action = Action::Opened;
        e.local = local.parse().unwrap();
        e.remote = remote.parse().unwrap();
        e.direction = direction;
        let mut c = Closed::from_ended(&ConnEvent {
            action: Action::Closed,
            ..e
        })
        .unwrap()
        .conn;
        c.state = state;
        c
    }

    fn ends(text: &str) -> Filter {
        Filter::parse_words(text).unwrap()
    }

    /// Source and destination are the ECS ones: the side that started the
    /// connection is the source, whichever end this host is.
    #[test]
    fn ends_follow_who_started_the_connection() {
        let accepted = conn(
            "127.0.0.1:8080",
            "10.1.2.3:45000",
            State::Established,
            Direction::Ingress,
        );
        let made = conn(
            "10.9.9.9:45001",
            "192.0.2.7:443",
            State::Established,
            Direction::Egress,
        );
        let listener = conn(
            "0.0.0.0:8080",
            "0.0.0.0:0",
            State::Listen,
            Direction::Unknown,
        );
        let pass = |f: &str| -> Vec<bool> {
            let f = ends(f);
            [&accepted, &made, &listener]
                .iter()
                .map(|c| f.matches(c))
                .collect()
        };
        // The filter, whether it passes [accepted, made, listener], and why.
        for (words, want, why) in [
            ("dport:8080", [true, false, true], "the server's port"),
            ("sport:45000", [true, false, false], "the client's port"),
            ("sport:8080", [false, false, false], ""),
            ("src:10.0.0.0/8", [true, true, false], ""),
            ("dst:192.0.2.0/24", [false, true, false], ""),
            ("dst:0.0.0.0/0", [true, true, true], ""),
            (
                "src:0.0.0.0/0",
                [true, true, false],
                "a listener has no source",
            ),
            ("src:10.1.2.3 dport:8080", [true, false, false], ""),
            ("src:10.1.2.3 dport:443", [false, false, false], ""),
            (
                "dst:::1/128",
                [false, false, false],
                "IPv6 never holds IPv4",
            ),
        ] {
            assert_eq!(pass(words), want, "{words}: {why}");
        }
        // IPv4-mapped IPv6 addresses are their IPv4 selves.
        let mapped = conn(
            "[::ffff:127.0.0.1]:5000",
            "[::ffff:10.0.0.1]:53",
            State::Established,
            Direction::Egress,
        );
        assert!(ends("dst:10.0.0.0/8").matches(&mapped));
    }

    /// A connection of unknown direction matches either way round, but one way
    /// round at a time.
    #[test]
    fn unknown_direction_matches_either_way_round() {
        let seen = conn(
            "127.0.0.1:22",
            "10.1.2.3:50000",
            State::Established,
            Direction::Unknown,
        );
        for f in [
            "dport:22",
            "sport:22",
            "sport:50000 dport:22",
            "sport:22 dport:50000",
            "src:10.1.2.3 dport:22",
        ] {
            assert!(ends(f).matches(&seen), "{f}");
        }
        assert!(!ends("sport:22 dport:22").matches(&seen));
        assert!(
            !ends("src:10.1.2.3 sport:22").matches(&seen),
            "10.1.2.3 is port 50000"
        );
    }

    #[test]
    fn events_pass_by_their_ends_and_health_lines_always() {
        let f = EndsFilter {
            dport: Some(8080),
            ..EndsFilter::default()
        };
        let mut ev = ConnEvent::lost(1, 0);
        ev.action = Action::Closed;
        ev.direction = Direction::Ingress;
        ev.local = "127.0.0.1:8080".parse().unwrap();
        ev.remote = "127.0.0.1:45000".parse().unwrap();
        assert!(f.event(&ev));
        ev.direction = Direction::Egress;
        assert!(!f.event(&ev), "egress: 8080 is this host's source port");
        ev.action = Action::ListenStarted;
        ev.remote = "0.0.0.0:0".parse().unwrap();
        assert!(f.event(&ev), "a listener is a destination");
        assert!(f.event(&ConnEvent::lost(1, 3)));
        let mut evicted = ConnEvent::lost(1, 3);
        evicted.action = Action::TableEvicted;
        assert!(f.event(&evicted));
        // Alerts have only a source address.
        let src = EndsFilter {
            src: Some("10.0.0.0/8".parse().unwrap()),
            ..EndsFilter::default()
        };
        assert!(src.alert(Some("10.2.3.4".parse().unwrap())));
        assert!(!src.alert(Some("192.0.2.1".parse().unwrap())));
        assert!(!src.alert(None));
        assert!(!f.alert(Some("10.2.3.4".parse().unwrap())));
        assert!(EndsFilter::default().alert(None));
    }

    #[test]
    fn history_queries_carry_the_ends() {
        let q = ends("sport:1 dport:2 src:10.0.0.1 dst:10.0.0.0/8").history_query(5);
        assert_eq!((q.ends.sport, q.ends.dport), (Some(1), Some(2)));
        assert_eq!(q.ends.src.as_deref(), Some("10.0.0.1/32"));
        assert_eq!(q.ends.dst.as_deref(), Some("10.0.0.0/8"));
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
        // A row nothing is known of matches none of them (`exe:x` not by its name).
        let bare = Conn {
            comm: Comm::from_bytes(b"x"),
            netns: 0,
            who: Default::default(),
            ..c.clone()
        };
        for w in ["user:0", "exe:x", "container:0"] {
            assert!(!Filter::parse_words(w).unwrap().matches(&bare), "{w}");
        }
    }
}
