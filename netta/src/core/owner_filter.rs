//! Who owns a connection, as a row filter selects it (`--pid`, `--process`,
//! `--user`, `--exe`, `--netns`, `--container`): the one definition that the
//! live filter ([`crate::core::filter::Filter`]), the history query
//! ([`crate::core::history_query::Query`], its SQL in `store::query`) and the
//! API's query strings (flattened, under these keys) share.
use serde::{Deserialize, Serialize};

use crate::core::event::Who;
use crate::core::sanitize::Comm;

/// Every field is optional; a row passes when it passes each one that is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OwnerFilter {
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "number")]
    pub pid: Option<u32>,
    /// Substring of the (raw) process name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The owner's user: a uid, or a name (as the agent names it). A query
    /// string carries it as `uid` or `user`.
    #[serde(flatten, with = "user_keys")]
    pub user: Option<User>,
    /// The executable: its full path, or (without a `/`) its file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// Inode of the network namespace.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "number")]
    pub netns: Option<u32>,
    /// The start of a container id (as `docker ps` shortens them), or a pod's
    /// UID or name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl OwnerFilter {
    /// Whether a row's owner passes: its pid, process name and network
    /// namespace, and what else is known of it (`who`).
    pub fn accepts(&self, pid: u32, comm: Comm, netns: u32, who: &Who) -> bool {
        self.pid.is_none_or(|p| p == pid)
            && self
                .process
                .as_ref()
                .is_none_or(|name| String::from_utf8_lossy(comm.as_bytes()).contains(name.as_str()))
            && self.user.as_ref().is_none_or(|u| u.matches(who))
            && self
                .exe
                .as_ref()
                .is_none_or(|want| who.executable().is_some_and(|e| exe_matches(e, want)))
            && self.netns.is_none_or(|n| n == netns)
            && self
                .container
                .as_ref()
                .is_none_or(|want| container_matches(who, want))
    }
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

/// [`User`] in a query string: `uid=1000` or `user=alice` (with both, the uid).
mod user_keys {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::User;

    #[derive(Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Keys {
        #[serde(
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::number"
        )]
        uid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    }

    pub fn serialize<S: Serializer>(user: &Option<User>, s: S) -> Result<S::Ok, S::Error> {
        let keys = match user {
            Some(User::Id(u)) => Keys {
                uid: Some(*u),
                user: None,
            },
            Some(User::Name(n)) => Keys {
                uid: None,
                user: Some(n.clone()),
            },
            None => Keys::default(),
        };
        keys.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<User>, D::Error> {
        let keys = Keys::deserialize(d)?;
        Ok(match (keys.uid, keys.user) {
            (Some(u), _) => Some(User::Id(u)),
            (None, Some(n)) => Some(User::Name(n)),
            (None, None) => None,
        })
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
/// it, or its pod's UID or name is it. The store's SQL is the same test.
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

/// A number of a query string inside a `#[serde(flatten)]` part: serde hands
/// flattened values over as the text the query string had.
pub(crate) fn number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    Option::<String>::deserialize(d)?
        .map(|s| {
            s.parse().map_err(|e| {
                let s = crate::core::sanitize::escape(s.as_bytes());
                serde::de::Error::custom(format!("`{s}`: {e}"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query-string keys are the flags' names; a user is `uid` or `user`.
    #[test]
    fn the_query_string_keys_are_the_flags() {
        let f = OwnerFilter {
            pid: Some(7),
            process: Some("a&b".into()),
            user: Some(User::Id(1000)),
            exe: Some("/usr/bin/curl".into()),
            netns: Some(4026531840),
            container: Some("3f2a".into()),
        };
        let qs = serde_urlencoded::to_string(&f).unwrap();
        assert_eq!(
            qs,
            "pid=7&process=a%26b&uid=1000&exe=%2Fusr%2Fbin%2Fcurl&netns=4026531840&container=3f2a"
        );
        assert_eq!(serde_urlencoded::from_str::<OwnerFilter>(&qs).unwrap(), f);
        let named = OwnerFilter {
            user: Some(User::Name("alice".into())),
            ..OwnerFilter::default()
        };
        let qs = serde_urlencoded::to_string(&named).unwrap();
        assert_eq!(qs, "user=alice");
        assert_eq!(
            serde_urlencoded::from_str::<OwnerFilter>(&qs).unwrap(),
            named
        );
        let both: OwnerFilter = serde_urlencoded::from_str("user=alice&uid=0").unwrap();
        assert_eq!(both.user, Some(User::Id(0)));
        let e = serde_urlencoded::from_str::<OwnerFilter>("uid=x%1B").unwrap_err();
        assert!(e.to_string().starts_with("`x\\e`: invalid digit"), "{e}");
    }
}
