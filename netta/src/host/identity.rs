//! Who is speaking, for every line: the host (`host.*`) and this agent
//! (`agent.*`), detected once at start, plus the run's secret key for opaque
//! socket ids. Two hosts feeding one pipeline stay apart by `host.id`.
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

use sha1::{Digest, Sha1};

use crate::core::sock_id::SockIds;

#[derive(Debug)]
pub struct Identity {
    pub hostname: String,
    /// `/etc/machine-id`, when there is one.
    pub host_id: Option<String>,
    /// The host's addresses, loopback left out.
    pub host_ips: Vec<IpAddr>,
    /// Stable across restarts: derived from the machine id (not the id itself).
    pub agent_id: String,
    /// New each run.
    pub ephemeral_id: String,
    pub sock_ids: SockIds,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// 64 random bits from the OS (std's hasher keys are seeded from getrandom).
fn random_u64() -> u64 {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(crate::core::clock::boot_now());
    h.finish()
}

fn hostname() -> String {
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "localhost".into();
    }
    let bytes: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let s = String::from_utf8_lossy(&bytes).into_owned();
    if s.is_empty() {
        "localhost".into()
    } else {
        s
    }
}

/// The machine's non-loopback addresses (getifaddrs), deduplicated.
fn host_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: valid out-pointer; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: sa_family says which sockaddr it is.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::from(a.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        if !ip.is_loopback() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    // SAFETY: the list getifaddrs allocated.
    unsafe { libc::freeifaddrs(head) };
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `host.id` comes from here.
pub const MACHINE_ID: &str = "/etc/machine-id";

impl Identity {
    pub fn detect() -> Identity {
        let host_id = std::fs::read_to_string(MACHINE_ID)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let hostname = hostname();
        // Application-specific, as systemd recommends: the machine id is not
        // handed out twice under two names.
        let mut h = Sha1::new();
        h.update(b"netta agent id\0");
        h.update(host_id.as_deref().unwrap_or(&hostname).as_bytes());
        let agent_id = hex(&h.finalize()[..16]);
        let (a, b) = (random_u64(), random_u64());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&a.to_le_bytes());
        key[8..].copy_from_slice(&b.to_le_bytes());
        Identity {
            hostname,
            host_id,
            host_ips: host_ips(),
            agent_id,
            ephemeral_id: format!("{:016x}", random_u64()),
            sock_ids: SockIds::new(key),
        }
    }

    /// A fixed identity, for tests and snapshots.
    pub fn fixed() -> Identity {
        Identity {
            hostname: "host1".into(),
            host_id: Some("0123456789abcdef0123456789abcdef".into()),
            host_ips: vec!["192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))],
            agent_id: "00112233445566778899aabbccddeeff".into(),
            ephemeral_id: "0000000000000001".into(),
            sock_ids: SockIds::new([1; 16]),
        }
    }
}

/// This process's identity (detected on first use).
pub fn get() -> &'static Identity {
    IDENTITY.get_or_init(|| {
        if cfg!(test) {
            Identity::fixed()
        } else {
            Identity::detect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_host_and_a_stable_agent_id() {
        let a = Identity::detect();
        let b = Identity::detect();
        assert!(!a.hostname.is_empty());
        assert_eq!(a.agent_id, b.agent_id, "stable across runs");
        assert_ne!(a.ephemeral_id, b.ephemeral_id, "new each run");
        assert_eq!(a.agent_id.len(), 32);
        if let Some(id) = &a.host_id {
            assert_ne!(&a.agent_id, id, "the machine id is not reused as-is");
        }
        assert!(a.host_ips.iter().all(|ip| !ip.is_loopback()));
        assert_ne!(a.sock_ids.id(0x1000), b.sock_ids.id(0x1000), "per-run key");
    }
}
