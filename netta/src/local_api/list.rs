//! `/v1/view/list`: `netta list` on the agent. The client sends its filter, the
//! agent selects and sorts, and only the rows shown travel: as [`ListRow`]s (the
//! plain list's columns, a short JSON array each) or, for `--wide` and `--json`,
//! whole rows. A whole table as verbose JSON cost the client more than `ss`
//! takes for the same answer.
use std::net::SocketAddr;

use crate::core::event::{Direction, OwnerSource, Proto, State, Who};
use crate::core::filter::{EndsFilter, Filter};
use crate::core::history_query::EndsQuery;
use crate::core::owner_filter::OwnerFilter;
use crate::core::sanitize::{escape, Comm, Domain};
use crate::core::table::{Conn, Key, Live, Origin};
use crate::core::tuple::Tuple;

/// The view's [`Filter`] as a query string, and whether it needs whole rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// State names, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub states: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(flatten)]
    pub owner: OwnerFilter,
    #[serde(flatten)]
    pub ends: EndsQuery,
    /// Whole rows (`--wide`, `--json`) instead of [`ListRow`]s.
    pub full: bool,
}

impl ListQuery {
    pub fn new(f: &Filter, full: bool) -> ListQuery {
        let states: Vec<&str> = f.states.iter().map(|s| s.name()).collect();
        ListQuery {
            states: (!states.is_empty()).then(|| states.join(",")),
            proto: f.proto.map(|p| p.name().to_string()),
            port: f.port,
            owner: f.owner.clone(),
            ends: f.ends.query(),
            full,
        }
    }

    pub fn to_query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }

    /// The filter back; a bad value is a one-line error.
    pub fn filter(&self) -> Result<Filter, String> {
        let states = match &self.states {
            None => Vec::new(),
            Some(s) => s
                .split(',')
                .map(|w| {
                    State::parse(w)
                        .ok_or_else(|| format!("unknown state `{}`", escape(w.as_bytes())))
                })
                .collect::<Result<_, _>>()?,
        };
        let proto = match &self.proto {
            None => None,
            Some(p) => Some(
                [Proto::Tcp, Proto::Udp]
                    .into_iter()
                    .find(|x| x.name() == p)
                    .ok_or_else(|| format!("unknown protocol `{}`", escape(p.as_bytes())))?,
            ),
        };
        Ok(Filter {
            states,
            proto,
            port: self.port,
            owner: self.owner.clone(),
            ends: EndsFilter::from_query(&self.ends).map_err(|e| e.to_string())?,
        })
    }
}

/// What the plain list shows of a row (`render::list::render_list`'s columns):
/// protocol, local, remote, state, pid, process name, domain. No key, so no
/// socket address of any kind.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListRow(
    pub Proto,
    pub SocketAddr,
    pub SocketAddr,
    pub State,
    pub u32,
    pub Comm,
    pub Option<Domain>,
);

impl ListRow {
    pub fn of(c: &Conn) -> ListRow {
        ListRow(
            c.proto,
            c.local,
            c.remote,
            c.state,
            c.pid,
            c.comm,
            c.domain.clone(),
        )
    }

    /// Puts rows in the display order ([`crate::core::filter::select`]'s).
    pub fn sort(rows: &mut [ListRow]) {
        rows.sort_by_key(|r| crate::core::filter::order_key(r.0, r.3, r.1, r.2, r.4));
    }

    /// A row the list renders as the agent's own; what the list does not show
    /// is unknown.
    pub fn into_conn(self) -> Conn {
        let ListRow(proto, local, remote, state, pid, comm, domain) = self;
        Conn {
            key: Key::Tuple(Tuple::new(0, proto, local, remote)),
            proto,
            local,
            remote,
            state,
            direction: Direction::Unknown,
            pid,
            comm,
            owner: OwnerSource::Unknown,
            start_ns: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            packets: 0,
            last_ns: 0,
            inode: 0,
            netns: 0,
            who: Who::default(),
            seen_ns: 0,
            origin: Origin::Proc,
            live: Live::default(),
            domain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_goes_through_the_query_string_unchanged() {
        let f = Filter::parse_words(
            "state:established state:listen proto:tcp port:443 pid:7 process:a&b=c \
             sport:40000 dport:443 src:10.0.0.0/8 dst:192.0.2.7 user:alice exe:/usr/bin/curl \
             netns:4026531840 container:3f2a",
        )
        .unwrap();
        let q = ListQuery::new(&f, true);
        let back: ListQuery = serde_urlencoded::from_str(&q.to_query_string()).unwrap();
        assert_eq!(back, q);
        let g = back.filter().unwrap();
        assert_eq!(format!("{g:?}"), format!("{f:?}"));
        let uid = ListQuery::new(&Filter::parse_words("user:1000").unwrap(), false);
        assert_eq!(
            uid.filter().unwrap().owner.user,
            Some(crate::core::owner_filter::User::Id(1000))
        );
        let none: ListQuery = serde_urlencoded::from_str("").unwrap();
        assert_eq!(
            format!("{:?}", none.filter().unwrap()),
            format!("{:?}", Filter::default())
        );
        assert!(!none.full);
    }

    /// What is not set stays out of the query string, the ends included (a
    /// flattened part), and numbers in that part parse back.
    #[test]
    fn the_query_string_holds_only_what_is_set() {
        let f = Filter::parse_words("port:443 sport:5 dst:10.0.0.0/8").unwrap();
        assert_eq!(
            ListQuery::new(&f, false).to_query_string(),
            "port=443&sport=5&dst=10.0.0.0%2F8&full=false"
        );
        assert_eq!(ListQuery::default().to_query_string(), "full=false");
        let events = crate::local_api::EventsQuery::new(Some(3), &f.ends);
        assert_eq!(
            events.to_query_string(),
            "since_us=3&sport=5&dst=10.0.0.0%2F8"
        );
        let back: crate::local_api::EventsQuery =
            serde_urlencoded::from_str(&events.to_query_string()).unwrap();
        assert_eq!(back, events);
        let e = serde_urlencoded::from_str::<ListQuery>("sport=x%1B").unwrap_err();
        assert!(e.to_string().starts_with("`x\\e`: invalid digit"), "{e}");
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let q = |s: &str| serde_urlencoded::from_str::<ListQuery>(s).unwrap().filter();
        let e = q("states=bogus%1B").unwrap_err();
        assert!(e.starts_with("unknown state `bogus"), "{e}");
        assert!(!e.contains('\x1b'), "{e}");
        assert!(q("proto=sctp").unwrap_err().contains("unknown protocol"));
        assert!(q("src=nonsense").unwrap_err().contains("CIDR"));
    }

    #[test]
    fn the_plain_list_is_the_same_from_list_rows() {
        let mut snap = crate::fixture::snapshot();
        let mut named = snap.conns[0].clone();
        named.domain = Domain::parse("bar-test.example");
        named.comm = Comm::from_bytes(b"a\xff\x1b[2J");
        named.pid = 4242;
        snap.conns.push(named);
        let rows = crate::core::filter::select(&snap, &Filter::default());
        let mut shuffled: Vec<ListRow> = snap.conns.iter().rev().map(ListRow::of).collect();
        ListRow::sort(&mut shuffled);
        assert_eq!(shuffled, rows.iter().map(ListRow::of).collect::<Vec<_>>());
        let wire = serde_json::to_vec(&rows.iter().map(ListRow::of).collect::<Vec<_>>()).unwrap();
        let back: Vec<ListRow> = serde_json::from_slice(&wire).unwrap();
        let back: Vec<Conn> = back.into_iter().map(ListRow::into_conn).collect();
        let title = "ACTIVE NETWORK CONNECTIONS";
        assert_eq!(
            crate::render::list::render_list(title, &back),
            crate::render::list::render_list(title, &rows)
        );
        assert!(wire.len() < 120 * rows.len(), "{} bytes", wire.len());
    }
}
