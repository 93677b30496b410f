//! Community ID v1 (corelight/community-id-spec): the flow hash Zeek, Suricata and
//! Elastic put in `network.community_id`, so netta's lines join theirs.
//!
//! `1:` + base64(SHA-1(seed ‖ ip_a ‖ ip_b ‖ proto ‖ 0 ‖ port_a ‖ port_b)), with the
//! endpoints ordered so both directions of a flow hash alike.
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// IANA protocol numbers netta sees.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;

/// `1:` and 28 base64 characters; formats without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CommunityId([u8; 30]);

impl CommunityId {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for CommunityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn ip_bytes(ip: &IpAddr, buf: &mut [u8; 16]) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            buf.copy_from_slice(&v6.octets());
            16
        }
    }
}

/// The Community ID of a flow between `src` and `dst` over `proto`. Ports are
/// hashed for TCP, UDP and SCTP; other protocols hash the addresses only. `None`
/// when the two sides are of different families.
pub fn community_id(seed: u16, proto: u8, src: SocketAddr, dst: SocketAddr) -> Option<CommunityId> {
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    let la = ip_bytes(&src.ip(), &mut a);
    ip_bytes(&dst.ip(), &mut b);
    let ports = matches!(proto, TCP | UDP | SCTP);
    let (mut sp, mut dp) = (src.port(), dst.port());
    // Order by address, then port, so either direction gives the same hash.
    if (&a[..la], sp) > (&b[..la], dp) {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut sp, &mut dp);
    }
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(&a[..la]);
    h.update(&b[..la]);
    h.update([proto, 0]);
    if ports {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; 30];
    out[..2].copy_from_slice(b"1:");
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out[2..])
        .ok()?;
    debug_assert_eq!(n, 28);
    Some(CommunityId(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u16, proto: u8, s: &str, sp: u16, d: &str, dp: u16) -> String {
        let src = SocketAddr::new(s.parse().unwrap(), sp);
        let dst = SocketAddr::new(d.parse().unwrap(), dp);
        community_id(seed, proto, src, dst).unwrap().to_string()
    }

    /// The spec's published baselines (baseline/baseline_deflt.json and
    /// baseline_seed1.json of corelight/community-id-spec), each in both directions.
    #[test]
    fn spec_test_vectors() {
        let vectors: &[(u8, &str, u16, &str, u16, &str, &str)] = &[
            (
                TCP,
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                63943,
                "2607:f8b0:400c:c03::1a",
                25,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
                "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
            ),
            (
                SCTP,
                "192.168.170.8",
                7,
                "192.168.170.56",
                7,
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
                "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
            ),
            (
                TCP,
                "128.232.110.120",
                34855,
                "66.35.250.204",
                80,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
                "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
            ),
            (
                UDP,
                "192.168.1.52",
                54585,
                "8.8.8.8",
                53,
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
                "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
            ),
            (
                46,
                "10.1.12.1",
                0,
                "10.1.12.2",
                0,
                "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=",
                "1:rYir8gphR31noO9iDRQmF/BteEI=",
            ),
        ];
        for &(proto, s, sp, d, dp, seed0, seed1) in vectors {
            assert_eq!(id(0, proto, s, sp, d, dp), seed0, "{s}:{sp} -> {d}:{dp}");
            assert_eq!(id(0, proto, d, dp, s, sp), seed0, "{d}:{dp} -> {s}:{sp}");
            assert_eq!(id(1, proto, s, sp, d, dp), seed1, "seed 1 {s}:{sp}");
            assert_eq!(id(1, proto, d, dp, s, sp), seed1, "seed 1 {d}:{dp}");
        }
    }

    #[test]
    fn same_address_orders_by_port_and_mixed_families_have_none() {
        let a = id(0, TCP, "127.0.0.1", 40000, "127.0.0.1", 80);
        assert_eq!(a, id(0, TCP, "127.0.0.1", 80, "127.0.0.1", 40000));
        assert_ne!(a, id(0, UDP, "127.0.0.1", 80, "127.0.0.1", 40000));
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert!(community_id(0, TCP, v4, v6).is_none());
    }
}
