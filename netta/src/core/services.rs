//! Port → service name, for "Port 443 (HTTPS)" and the detector's "unknown service".
//!
//! Precedence: the built-in table below wins for every port it lists, and
//! `/etc/services` only fills the ports it does not. The built-in names are the
//! original tool's capitalised display names ("HTTPS", "HTTP-Alt"), and taking them
//! first makes the common ports read the same on every host, including a minimal
//! container that has no `/etc/services` at all. The built-in table is keyed by port
//! alone (as the original was); `/etc/services` entries are per protocol.
use std::io::BufRead;

use rustc_hash::FxHashMap;

use crate::core::event::Proto;

/// Well-known ports and their display names, sorted by port (binary-searched).
const BUILTIN: &[(u16, &str)] = &[
    (20, "FTP-Data"),
    (21, "FTP"),
    (22, "SSH"),
    (23, "Telnet"),
    (25, "SMTP"),
    (53, "DNS"),
    (67, "DHCP"),
    (68, "DHCP"),
    (69, "TFTP"),
    (80, "HTTP"),
    (88, "Kerberos"),
    (110, "POP3"),
    (111, "RPCbind"),
    (119, "NNTP"),
    (123, "NTP"),
    (135, "MSRPC"),
    (137, "NetBIOS-NS"),
    (138, "NetBIOS-DGM"),
    (139, "NetBIOS-SSN"),
    (143, "IMAP"),
    (161, "SNMP"),
    (162, "SNMP-Trap"),
    (179, "BGP"),
    (389, "LDAP"),
    (443, "HTTPS"),
    (445, "SMB"),
    (465, "SMTPS"),
    (500, "IKE"),
    (514, "Syslog"),
    (546, "DHCPv6"),
    (547, "DHCPv6"),
    (554, "RTSP"),
    (587, "Submission"),
    (631, "IPP"),
    (636, "LDAPS"),
    (853, "DNS-over-TLS"),
    (873, "rsync"),
    (989, "FTPS-Data"),
    (990, "FTPS"),
    (993, "IMAPS"),
    (995, "POP3S"),
    (1194, "OpenVPN"),
    (1433, "MSSQL"),
    (1521, "Oracle"),
    (1723, "PPTP"),
    (1883, "MQTT"),
    (2049, "NFS"),
    (2375, "Docker"),
    (2376, "Docker-TLS"),
    (2379, "etcd"),
    (2380, "etcd-peer"),
    (3306, "MySQL"),
    (3389, "RDP"),
    (4369, "EPMD"),
    (5060, "SIP"),
    (5061, "SIPS"),
    (5222, "XMPP"),
    (5353, "mDNS"),
    (5432, "PostgreSQL"),
    (5671, "AMQPS"),
    (5672, "AMQP"),
    (5900, "VNC"),
    (5984, "CouchDB"),
    (6379, "Redis"),
    (6443, "Kubernetes"),
    (8080, "HTTP-Alt"),
    (8443, "HTTPS-Alt"),
    (8883, "MQTTS"),
    (9090, "Prometheus"),
    (9092, "Kafka"),
    (9200, "Elasticsearch"),
    (10250, "Kubelet"),
    (11211, "Memcached"),
    (27017, "MongoDB"),
    (51820, "WireGuard"),
];

/// Longest service name accepted from `/etc/services`; longer tokens are not names.
const MAX_NAME: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct Services {
    /// Entries from `/etc/services` (or any reader), first entry per port/protocol.
    system: FxHashMap<(u16, Proto), Box<str>>,
}

impl Services {
    /// The built-in table only.
    pub fn builtin() -> Services {
        Services::default()
    }

    /// The built-in table plus the entries of `/etc/services`-format text. Comments,
    /// blank and malformed lines are skipped; a read error ends the input.
    pub fn from_reader<R: BufRead>(mut r: R) -> Services {
        let mut system = FxHashMap::default();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            if let Some((port, proto, name)) = parse_line(&line) {
                system.entry((port, proto)).or_insert_with(|| name.into());
            }
        }
        Services { system }
    }

    /// The service on `port`: the built-in name, else the `/etc/services` name.
    pub fn name(&self, port: u16, proto: Proto) -> Option<&str> {
        if let Ok(i) = BUILTIN.binary_search_by_key(&port, |(p, _)| *p) {
            return Some(BUILTIN[i].1);
        }
        self.system.get(&(port, proto)).map(|n| &**n)
    }
}

/// `name port/proto [aliases...] [# comment]` → (port, proto, name).
fn parse_line(line: &str) -> Option<(u16, Proto, &str)> {
    let line = line.split('#').next().unwrap_or("");
    let mut fields = line.split_whitespace();
    let name = fields.next()?;
    let (port, proto) = fields.next()?.split_once('/')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let proto = if proto.eq_ignore_ascii_case("tcp") {
        Proto::Tcp
    } else if proto.eq_ignore_ascii_case("udp") {
        Proto::Udp
    } else {
        return None;
    };
    // Names are shown on terminals: only plain ASCII tokens are names.
    let plain = name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic());
    plain.then_some((port, proto, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_is_sorted_and_has_the_originals_names() {
        assert!(BUILTIN.windows(2).all(|w| w[0].0 < w[1].0));
        let s = Services::builtin();
        assert_eq!(s.name(443, Proto::Tcp), Some("HTTPS"));
        assert_eq!(s.name(8080, Proto::Tcp), Some("HTTP-Alt"));
        assert_eq!(s.name(22, Proto::Tcp), Some("SSH"));
        assert_eq!(s.name(53, Proto::Udp), Some("DNS"));
        assert_eq!(s.name(5432, Proto::Tcp), Some("PostgreSQL"));
        assert_eq!(s.name(27017, Proto::Tcp), Some("MongoDB"));
        assert_eq!(s.name(65432, Proto::Tcp), None);
        assert_eq!(s.name(0, Proto::Tcp), None);
    }

    #[test]
    fn parses_etc_services_text() {
        let text = "\
# Network services, Internet style
http-alt\t8080/tcp\twebcache\t# WWW caching service

svn\t\t3690/tcp\tsubversion\t# Subversion protocol
svn 3690/udp
tproxy 8081/tcp
first 7000/tcp
second 7000/tcp
";
        let s = Services::from_reader(text.as_bytes());
        assert_eq!(
            s.system.get(&(8080, Proto::Tcp)).map(|n| &**n),
            Some("http-alt")
        );
        // The built-in display name wins where both know the port.
        assert_eq!(s.name(8080, Proto::Tcp), Some("HTTP-Alt"));
        assert_eq!(s.name(3690, Proto::Tcp), Some("svn"));
        assert_eq!(s.name(3690, Proto::Udp), Some("svn"));
        assert_eq!(s.name(8081, Proto::Tcp), Some("tproxy"));
        assert_eq!(s.name(8081, Proto::Udp), None);
        assert_eq!(s.name(7000, Proto::Tcp), Some("first"), "first entry wins");
        assert_eq!(s.name(443, Proto::Tcp), Some("HTTPS"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text: &[u8] = b"\
justaname
noslash 1234
badport 99999/tcp
zero 0/tcp
neg -1/tcp
sctp-only 9899/sctp
ddp-thing 2/ddp
  # indented comment
\x1b[31mevil 4000/tcp
bad\xffutf8 4001/tcp
/tcp
   \t
ok 4002/TCP alias
tail 4003/udp";
        let s = Services::from_reader(text);
        assert_eq!(s.system.len(), 2, "{:?}", s.system);
        assert_eq!(s.name(4002, Proto::Tcp), Some("ok"));
        assert_eq!(
            s.name(4003, Proto::Udp),
            Some("tail"),
            "last line without newline"
        );
        assert_eq!(s.name(4000, Proto::Tcp), None);
        assert_eq!(s.name(9899, Proto::Tcp), None);
    }

    #[test]
    fn read_errors_end_the_input_without_panicking() {
        struct Failing(bool);
        impl std::io::Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(std::io::Error::other("boom"));
                }
                let line = b"one 4100/tcp\n";
                buf[..line.len()].copy_from_slice(line);
                Ok(line.len())
            }
        }
        let s = Services::from_reader(std::io::BufReader::new(Failing(false)));
        assert_eq!(s.name(4100, Proto::Tcp), Some("one"));
        assert_eq!(s.name(443, Proto::Tcp), Some("HTTPS"));
    }
}
