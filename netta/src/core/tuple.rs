//! The 4-tuple (protocol, local, remote) in its network namespace: what
//! identifies a connection across events, /proc rows and table rows (two
//! namespaces can each have 127.0.0.1:80). Built only here.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::event::{ConnEvent, Proto};
use crate::core::proc_net::ProcSocket;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Tuple {
    /// Inode of the network namespace (0: unknown).
    pub netns: u32,
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Tuple {
    pub fn new(netns: u32, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Tuple {
        Tuple {
            netns,
            proto,
            local,
            remote,
        }
    }

    /// A listener's tuple: the remote side is the unspecified address of the
    /// local family, port 0.
    pub fn listener(netns: u32, proto: Proto, local: SocketAddr) -> Tuple {
        Tuple::new(netns, proto, local, unspecified_like(local))
    }
}

/// The unspecified address of `addr`'s family, port 0.
pub fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

impl ConnEvent {
    pub fn tuple(&self) -> Tuple {
        Tuple::new(self.netns, self.proto, self.local, self.remote)
    }
}

impl ProcSocket {
    pub fn tuple(&self) -> Tuple {
        Tuple::new(self.netns, self.proto, self.local, self.remote)
    }
}

/// The ECS ends of a connection, as every event line, the history store and the
/// `--sport`/`--dport`/`--src`/`--dst` filters name them: the source started the
/// connection (for an accepted one, the remote client), the destination is what
/// it connected to. A listener is a destination alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ends {
    Known {
        source: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    },
    /// Direction unknown (seen only in /proc): either end may be the source.
    /// Lines show `local` as the source.
    Either {
        local: SocketAddr,
        remote: SocketAddr,
    },
}

impl Ends {
    /// `listener`: a listening socket or an unconnected UDP one. A remote that is
    /// the unspecified address, port 0, is no end.
    pub fn of(
        direction: crate::core::event::Direction,
        local: SocketAddr,
        remote: SocketAddr,
        listener: bool,
    ) -> Ends {
        use crate::core::event::Direction;
        let peer = !(remote.ip().is_unspecified() && remote.port() == 0);
        if listener || !peer {
            return Ends::Known {
                source: (!listener).then_some(local),
                destination: listener.then_some(local),
            };
        }
        match direction {
            Direction::Ingress => Ends::Known {
                source: Some(remote),
                destination: Some(local),
            },
            Direction::Egress => Ends::Known {
                source: Some(local),
                destination: Some(remote),
            },
            Direction::Unknown => Ends::Either { local, remote },
        }
    }

    /// The (source, destination) pairs the connection may have: one, or both ways
    /// round when the direction is unknown.
    pub fn pairs(self) -> impl Iterator<Item = (Option<SocketAddr>, Option<SocketAddr>)> {
        let (first, second) = match self {
            Ends::Known {
                source,
                destination,
            } => ((source, destination), None),
            Ends::Either { local, remote } => (
                (Some(local), Some(remote)),
                Some((Some(remote), Some(local))),
            ),
        };
        std::iter::once(first).chain(second)
    }
}
