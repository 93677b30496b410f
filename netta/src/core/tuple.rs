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
