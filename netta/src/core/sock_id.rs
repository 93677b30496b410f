//! Opaque socket ids: a keyed hash of the kernel's socket address, so a
//! connection's events still join on one id while the address itself (a KASLR
//! secret, hidden by `%pK` in /proc/net/tcp) never leaves the process.
use std::fmt;

use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// Hashes socket addresses with a secret key (SipHash-2-4, a PRF: without the
/// key the ids say nothing about the addresses).
#[derive(Clone, Copy)]
pub struct SockIds {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for SockIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SockIds(<key>)")
    }
}

/// 16 hex digits; formats without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockId(pub u64);

impl fmt::Display for SockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl serde::Serialize for SockId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl SockIds {
    pub fn new(key: [u8; 16]) -> SockIds {
        let (a, b) = key.split_at(8);
        SockIds {
            k0: u64::from_le_bytes(a.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(b.try_into().unwrap_or_default()),
        }
    }

    /// The id as a number, 0 for no socket: what replaces a kernel address in
    /// values that leave the process with a socket field of their own.
    pub fn opaque(&self, sock: u64) -> u64 {
        self.id(sock).map_or(0, |i| i.0)
    }

    /// The id of the socket at kernel address `sock`; `None` for 0 (no socket).
    pub fn id(&self, sock: u64) -> Option<SockId> {
        if sock == 0 {
            return None;
        }
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write_u64(sock);
        // The top bit cleared, so no id can ever look like a kernel address
        // (0xffff8... up) to a scanner or a person.
        Some(SockId(h.finish() >> 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_join_per_key_and_hide_the_address() {
        let a = SockIds::new([7; 16]);
        let b = SockIds::new([8; 16]);
        let sock = 0xffff_8881_5f95_8940;
        assert_eq!(a.id(sock), a.id(sock), "one socket, one id");
        assert_ne!(a.id(sock), a.id(sock + 0x40));
        assert_ne!(a.id(sock), b.id(sock), "another key, another id");
        assert_eq!(a.id(0), None);
        let shown = a.id(sock).unwrap().to_string();
        assert_eq!(shown.len(), 16);
        assert!(!shown.contains("ffff"), "{shown}");
        assert!((0..10_000u64).all(|i| a.id(sock + i * 64).unwrap().0 < 1 << 63));
        assert_ne!(shown, format!("{sock:016x}"));
    }
}
