//! The 4-tuple (protocol, local, remote): what identifies a connection across
//! events, /proc rows and table rows. Built only here.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::event::{ConnEvent, Proto};
use crate::core::proc_net::ProcSocket;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Tuple {
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Tuple {
    pub fn new(proto: Proto, local: SocketAddr, remote: SocketAddr) -> Tuple {
        Tuple {
            proto,
            local,
            remote,
        }
    }

    /// A listener's tuple: the remote side is the unspecified address of the
    /// local family, port 0.
    pub fn listener(proto: Proto, local: SocketAddr) -> Tuple {
        Tuple::new(proto, local, unspecified_like(local))
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
        Tuple::new(self.proto, self.local, self.remote)
    }
}

impl ProcSocket {
    pub fn tuple(&self) -> Tuple {
        Tuple::new(self.proto, self.local, self.remote)
    }
}
