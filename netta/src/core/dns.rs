//! DNS responses as captured off the wire: hostile input from whoever answers.
//! Only what attribution needs is read (the question, and A, AAAA and CNAME
//! answers); the work per packet is bounded (at most [`MAX_ANSWERS`] records, names
//! of at most 255 wire bytes, labels of at most 63 (the encoding allows no more),
//! compression pointers only backwards, so a loop cannot be written), and every name becomes a [`Domain`] (printable ASCII) as it
//! is read. [`captured`] finds the DNS message in an IP packet (UDP or TCP from
//! port 53).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::event::Proto;
use crate::core::sanitize::Domain;

/// The wire limit of a name, length bytes and the root included (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;
/// Answer records read per message; the rest are ignored.
pub const MAX_ANSWERS: usize = 64;
/// Compression jumps per name: more than a 255-byte name can need.
const MAX_JUMPS: usize = 127;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const HEADER: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum DnsError {
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("reserved label type {0:#04x}")]
    LabelType(u8),
    #[error("name longer than 255 bytes")]
    LongName,
    #[error("compression pointer to {0} does not point backwards")]
    Pointer(usize),
    #[error("more than {MAX_JUMPS} compression jumps")]
    Jumps,
    #[error("{0} record with {1} bytes of data")]
    Rdata(&'static str, usize),
    #[error("not a single IP packet from port 53: {0}")]
    Packet(&'static str),
}

/// What one answer record says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Domain),
}

impl Data {
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::A(_) => "A",
            Data::Aaaa(_) => "AAAA",
            Data::Cname(_) => "CNAME",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub name: Domain,
    /// Seconds, as sent (RFC 2181 §8: a value with the top bit set means 0).
    pub ttl: u32,
    pub data: Data,
}

/// A response that answered a question with addresses or aliases.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Response {
    pub id: u16,
    pub question: Domain,
    pub qtype: u16,
    /// A, AAAA and CNAME records of the answer section, in order.
    pub answers: Vec<Answer>,
    /// The TC bit: only the records that arrived whole are here.
    pub truncated: bool,
    /// The header's flag bits (AA, TC, RD, RA, AD, CD).
    pub flags: u16,
}

impl Response {
    /// ECS `dns.header_flags`: the two-letter names of the flags set.
    pub fn flag_names(&self) -> Vec<&'static str> {
        [
            (0x0400, "AA"),
            (0x0200, "TC"),
            (0x0100, "RD"),
            (0x0080, "RA"),
            (0x0020, "AD"),
            (0x0010, "CD"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.flags & bit != 0)
        .map(|(_, n)| n)
        .collect()
    }
}

/// An address the question resolved to, and the names that led there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub ip: IpAddr,
    /// The question, then each CNAME target up to the address record's owner.
    pub chain: Vec<Domain>,
    /// The smallest TTL along the chain, in seconds.
    pub ttl: u32,
}

impl Response {
    /// The addresses reachable from the question through the CNAME records (a
    /// record for a name the question never led to is not believed for it).
    pub fn resolved(&self) -> Vec<Resolved> {
        let mut chain = vec![self.question.clone()];
        let mut ttl = u32::MAX;
        // Each alias step moves to a name not seen yet: at most one per record.
        while let Some(a) = self.answers.iter().find(|a| {
            a.name == chain[chain.len() - 1]
                && matches!(&a.data, Data::Cname(t) if !chain.contains(t))
        }) {
            let Data::Cname(target) = &a.data else { break };
            ttl = ttl.min(a.ttl);
            chain.push(target.clone());
        }
        let owner = &chain[chain.len() - 1];
        self.answers
            .iter()
            .filter(|a| a.name == *owner)
            .filter_map(|a| {
                let ip = match a.data {
                    Data::A(v4) => IpAddr::V4(v4),
                    Data::Aaaa(v6) => IpAddr::V6(v6),
                    Data::Cname(_) => return None,
                };
                Some(Resolved {
                    ip: crate::core::event::normalize(ip),
                    chain: chain.clone(),
                    ttl: ttl.min(a.ttl),
                })
            })
            .collect()
    }
}

/// One response that named addresses, as the `dns-answer` event tells it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// The network namespace's inode.
    pub netns: u64,
    pub transport: Proto,
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub response: Response,
    /// The addresses the question resolved to (see [`Response::resolved`]).
    pub resolved: Vec<IpAddr>,
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.msg.len());
        let end = end.ok_or(DnsError::Truncated(what))?;
        let s = &self.msg[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// One name at the current position; the position moves past it (past the
    /// first pointer, when compressed).
    fn name(&mut self) -> Result<Domain, DnsError> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the name at `start`: returns it and the offset after it. A pointer
/// must point before the labels that led to it, so offsets only go down and no
/// loop is possible; the jump count and the 255-byte limit bound the rest.
pub fn read_name(msg: &[u8], start: usize) -> Result<(Domain, usize), DnsError> {
    let mut labels: [&[u8]; MAX_NAME / 2] = [&[]; MAX_NAME / 2];
    let mut count = 0;
    let mut wire_len = 1; // the root
    let mut pos = start;
    let mut floor = start; // a pointer must go below this
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated("a name"))? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(DnsError::Truncated("a label"))?;
                wire_len += 1 + len;
                if wire_len > MAX_NAME {
                    return Err(DnsError::LongName);
                }
                labels[count] = label;
                count += 1;
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated("a pointer"))? as usize;
                let target = ((len & 0x3f) << 8) | low;
                if target >= floor {
                    return Err(DnsError::Pointer(target));
                }
                jumps += 1;
                if jumps > MAX_JUMPS {
                    return Err(DnsError::Jumps);
                }
                after.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            // 0x40 and 0x80: the reserved (and extended) label types.
            _ => return Err(DnsError::LabelType(len as u8)),
        }
    }
    Ok((
        Domain::from_labels(labels[..count].iter().copied()),
        after.unwrap_or(pos),
    ))
}

/// Parses one DNS message. `Ok(None)`: a well-formed message with nothing to learn
/// (a query, an error, another class or opcode, no question).
pub fn parse(msg: &[u8]) -> Result<Option<Response>, DnsError> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16("the header")?;
    let flags = r.u16("the header")?;
    let qd = r.u16("the header")?;
    let an = r.u16("the header")?;
    r.take(4, "the header")?;
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = flags & 0xf;
    let truncated = flags & 0x0200 != 0;
    debug_assert_eq!(r.pos, HEADER);
    if !response || opcode != 0 || rcode != 0 || qd != 1 || an == 0 {
        return Ok(None);
    }
    let question = r.name()?;
    let qtype = r.u16("the question")?;
    let qclass = r.u16("the question")?;
    if qclass != CLASS_IN {
        return Ok(None);
    }
    let mut answers = Vec::new();
    for _ in 0..usize::from(an).min(MAX_ANSWERS) {
        match record(&mut r) {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => {}
            // A truncated answer keeps the records that arrived whole.
            Err(DnsError::Truncated(_)) if truncated => break,
            Err(e) => return Err(e),
        }
    }
    Ok((!answers.is_empty()).then_some(Response {
        id,
        question,
        qtype,
        answers,
        truncated,
        flags,
    }))
}

/// One answer record; `None` for the types and classes not read.
fn record(r: &mut Reader<'_>) -> Result<Option<Answer>, DnsError> {
    let name = r.name()?;
    let rtype = r.u16("a record")?;
    let class = r.u16("a record")?;
    let ttl = r.u32("a record")?;
    let rdlen = usize::from(r.u16("a record")?);
    let rdata_at = r.pos;
    let rdata = r.take(rdlen, "record data")?;
    let ttl = if ttl & 0x8000_0000 != 0 { 0 } else { ttl };
    if class != CLASS_IN {
        return Ok(None);
    }
    let data = match rtype {
        TYPE_A => Data::A(Ipv4Addr::from(
            <[u8; 4]>::try_from(rdata).map_err(|_| DnsError::Rdata("A", rdlen))?,
        )),
        TYPE_AAAA => Data::Aaaa(Ipv6Addr::from(
            <[u8; 16]>::try_from(rdata).map_err(|_| DnsError::Rdata("AAAA", rdlen))?,
        )),
        TYPE_CNAME => {
            let (target, end) = read_name(&r.msg[..rdata_at + rdlen], rdata_at)?;
            if end != rdata_at + rdlen {
                return Err(DnsError::Rdata("CNAME", rdlen));
            }
            Data::Cname(target)
        }
        _ => return Ok(None),
    };
    Ok(Some(Answer { name, ttl, data }))
}

/// A DNS message found in a captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Captured<'a> {
    pub transport: Proto,
    /// The answering side (port 53).
    pub server: SocketAddr,
    pub client: SocketAddr,
    pub message: &'a [u8],
}

/// Finds the DNS response in one IP packet (no link header): UDP, or a TCP
/// segment that holds a whole length-prefixed message, from port 53. `Ok(None)`
/// for packets that carry no message to read: TCP segments without data or with
/// part of a message (not reassembled), fragments, IPv6 extension headers, other
/// ports. Headers that contradict themselves are errors.
pub fn captured(packet: &[u8]) -> Result<Option<Captured<'_>>, DnsError> {
    let bad = DnsError::Packet;
    let version = packet.first().ok_or(bad("empty"))? >> 4;
    let (src, dst, proto, l4) = match version {
        4 => {
            let ihl = usize::from(packet[0] & 0xf) * 4;
            if ihl < 20 || packet.len() < ihl {
                return Err(bad("short IPv4 header"));
            }
            let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
            if total < ihl || total > packet.len() {
                return Err(bad("IPv4 length"));
            }
            if u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
                return Ok(None); // a fragment
            }
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    packet[o],
                    packet[o + 1],
                    packet[o + 2],
                    packet[o + 3],
                ))
            };
            (ip(12), ip(16), packet[9], &packet[ihl..total])
        }
        6 => {
            if packet.len() < 40 {
                return Err(bad("short IPv6 header"));
            }
            let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
            let l4 = packet.get(40..40 + payload).ok_or(bad("IPv6 length"))?;
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&packet[o..o + 16]);
                crate::core::event::normalize(IpAddr::V6(Ipv6Addr::from(a)))
            };
            (ip(8), ip(24), packet[6], l4)
        }
        _ => return Err(bad("not IP")),
    };
    if !matches!(proto, 6 | 17) {
        return Ok(None); // IPv6 extension headers, other protocols
    }
    let port = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
    let (transport, sport, dport, message) = match proto {
        17 => {
            if l4.len() < 8 {
                return Err(bad("short UDP header"));
            }
            let len = usize::from(port(4));
            let data = l4.get(8..len).ok_or(bad("UDP length"))?;
            (Proto::Udp, port(0), port(2), data)
        }
        6 => {
            if l4.len() < 20 {
                return Err(bad("short TCP header"));
            }
            let off = usize::from(l4[12] >> 4) * 4;
            if off < 20 {
                return Err(bad("TCP header length"));
            }
            let data = l4.get(off..).ok_or(bad("TCP header length"))?;
            let len = match data {
                [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
                _ => return Ok(None), // no data: SYN, ACK, FIN
            };
            let Some(msg) = data.get(2..2 + len) else {
                return Ok(None); // the message goes on in the next segments
            };
            (Proto::Tcp, port(0), port(2), msg)
        }
        _ => unreachable!("checked above"),
    };
    if sport != 53 {
        return Ok(None);
    }
    Ok(Some(Captured {
        transport,
        server: SocketAddr::new(src, sport),
        client: SocketAddr::new(dst, dport),
        message,
    }))
}

/// Test and fuzz helpers: DNS messages and packets built by hand.
pub mod build {
    /// A name in wire form (no compression).
    pub fn name(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    /// A response to `question` (type A) with these records: (owner, type, ttl, rdata).
    pub fn response(question: &str, records: &[(Vec<u8>, u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend(name(question));
        m.extend_from_slice(&[0, 1, 0, 1]);
        for (owner, t, ttl, rdata) in records {
            m.extend_from_slice(owner);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    /// `message` in an IPv4 UDP packet from `server`:53 to `client`:`port`.
    pub fn udp4(server: [u8; 4], client: [u8; 4], port: u16, message: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + message.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&server);
        p.extend_from_slice(&client);
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&((8 + message.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(message);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::build::{name, response, udp4};
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn a_record_answers_the_question() {
        let m = response(
            "Bar-Test.example",
            &[(name("bar-test.example"), TYPE_A, 300, vec![127, 0, 0, 77])],
        );
        let r = parse(&m).unwrap().unwrap();
        assert_eq!(r.question, d("bar-test.example"));
        let res = r.resolved();
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].ip, "127.0.0.77".parse::<IpAddr>().unwrap());
        assert_eq!(res[0].chain, vec![d("bar-test.example")]);
        assert_eq!(res[0].ttl, 300);
    }

    #[test]
    fn cname_chains_with_compression_lead_to_the_address() {
        // www.a.example CNAME edge.b.example (compressed: "edge" + pointer to "b.example"
        // spelled in the first CNAME's data), edge.b.example AAAA ::1.
        let mut m = response("www.a.example", &[]);
        m[7] = 3;
        let q = HEADER as u8;
        // Record 1: owner = pointer to the question; CNAME data = "cdn.b.example".
        let rd1 = name("cdn.b.example");
        let rd1_at = m.len() + 2 + 10;
        m.extend_from_slice(&[0xc0, q, 0, 5, 0, 1, 0, 0, 0, 60]);
        m.extend_from_slice(&(rd1.len() as u16).to_be_bytes());
        m.extend_from_slice(&rd1);
        // Record 2: owner = pointer to "cdn.b.example"; CNAME "edge" + pointer to "b.example".
        let rd2 = [4, b'e', b'd', b'g', b'e', 0xc0, (rd1_at + 4) as u8];
        let rd2_at = m.len() + 2 + 10;
        m.extend_from_slice(&[0xc0, rd1_at as u8, 0, 5, 0, 1, 0, 0, 0, 30]);
        m.extend_from_slice(&(rd2.len() as u16).to_be_bytes());
        m.extend_from_slice(&rd2);
        // Record 3: owner = pointer to "edge.b.example", AAAA.
        m.extend_from_slice(&[0xc0, rd2_at as u8, 0, 28, 0, 1, 0, 0, 1, 0, 0, 16]);
        m.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let r = parse(&m).unwrap().unwrap();
        let res = r.resolved();
        assert_eq!(res.len(), 1, "{r:?}");
        assert_eq!(
            res[0].chain,
            vec![d("www.a.example"), d("cdn.b.example"), d("edge.b.example")]
        );
        assert_eq!(res[0].ttl, 30, "the smallest TTL on the chain");
        assert_eq!(res[0].ip, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn records_for_other_names_are_not_believed() {
        let m = response(
            "good.example",
            &[
                (name("bank.example"), TYPE_A, 60, vec![10, 0, 0, 1]),
                (name("good.example"), TYPE_CNAME, 60, name("good.example")),
            ],
        );
        let r = parse(&m).unwrap().unwrap();
        assert!(r.resolved().is_empty(), "{:?}", r.resolved());
    }

    #[test]
    fn compression_loops_and_forward_pointers_are_refused() {
        let mut m = response("x.example", &[]);
        m[7] = 1;
        let at = m.len();
        // Owner name is a pointer to itself.
        m.extend_from_slice(&[0xc0, at as u8, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&m), Err(DnsError::Pointer(at)));
        // Two pointers to each other: the second one points forward.
        let mut m = response("x.example", &[]);
        m[7] = 1;
        let at = m.len();
        m.extend_from_slice(&[0xc0, (at + 2) as u8, 0xc0, at as u8]);
        assert!(matches!(parse(&m), Err(DnsError::Pointer(_))));
    }

    #[test]
    fn oversize_labels_and_names_and_bad_types_are_refused() {
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        let m = response("x.example", &[(long, TYPE_A, 1, vec![1, 2, 3, 4])]);
        assert_eq!(parse(&m), Err(DnsError::LongName));
        let mut m = response("x.example", &[]);
        m[7] = 1;
        m.extend_from_slice(&[0x80, 1]);
        assert_eq!(parse(&m), Err(DnsError::LabelType(0x80)));
        let m = response(
            "x.example",
            &[(name("x.example"), TYPE_A, 1, vec![1, 2, 3])],
        );
        assert_eq!(parse(&m), Err(DnsError::Rdata("A", 3)));
    }

    #[test]
    fn truncation_is_an_error_unless_the_tc_bit_says_so() {
        let m = response(
            "x.example",
            &[
                (name("x.example"), TYPE_A, 9, vec![1, 2, 3, 4]),
                (name("x.example"), TYPE_A, 9, vec![5, 6, 7, 8]),
            ],
        );
        let cut = &m[..m.len() - 2];
        assert_eq!(parse(cut), Err(DnsError::Truncated("record data")));
        let mut tc = cut.to_vec();
        tc[2] |= 0x02;
        let r = parse(&tc).unwrap().unwrap();
        assert!(r.truncated);
        assert_eq!(r.answers.len(), 1);
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
    }

    #[test]
    fn queries_errors_and_empty_answers_teach_nothing() {
        let mut m = response(
            "x.example",
            &[(name("x.example"), TYPE_A, 9, vec![1, 2, 3, 4])],
        );
        assert!(parse(&m).unwrap().is_some());
        m[3] = 0x83; // NXDOMAIN
        assert_eq!(parse(&m), Ok(None));
        m[3] = 0x80;
        m[2] = 0x01; // a query
        assert_eq!(parse(&m), Ok(None));
        assert_eq!(parse(&response("x.example", &[])), Ok(None));
    }

    #[test]
    fn finds_the_message_in_udp_and_tcp_packets() {
        let m = response(
            "x.example",
            &[(name("x.example"), TYPE_A, 9, vec![1, 2, 3, 4])],
        );
        let p = udp4([127, 0, 0, 53], [127, 0, 0, 1], 40000, &m);
        let c = captured(&p).unwrap().unwrap();
        assert_eq!(c.transport, Proto::Udp);
        assert_eq!(c.server, "127.0.0.53:53".parse().unwrap());
        assert_eq!(c.client, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(c.message, &m[..]);
        // The same message over TCP (length prefix).
        let mut seg = vec![
            0, 53, 0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0,
        ];
        seg.extend_from_slice(&(m.len() as u16).to_be_bytes());
        seg.extend_from_slice(&m);
        let mut p = udp4([127, 0, 0, 53], [127, 0, 0, 1], 0, &[]);
        p.truncate(20);
        p[9] = 6;
        p[2..4].copy_from_slice(&((20 + seg.len()) as u16).to_be_bytes());
        p.extend_from_slice(&seg);
        let c = captured(&p).unwrap().unwrap();
        assert_eq!((c.transport, c.message), (Proto::Tcp, &m[..]));
        // Half a message over TCP, a fragment, another port: not followed.
        let short = p.len() - 1;
        p[2..4].copy_from_slice(&(short as u16).to_be_bytes());
        assert_eq!(captured(&p[..short]), Ok(None));
        let mut frag = udp4([1, 1, 1, 1], [2, 2, 2, 2], 5, &m);
        frag[6] = 0x20;
        assert_eq!(captured(&frag), Ok(None));
        let mut other = udp4([1, 1, 1, 1], [2, 2, 2, 2], 5, &m);
        other[21] = 54;
        assert_eq!(captured(&other), Ok(None));
        // Lengths that contradict the packet.
        let mut lying = udp4([1, 1, 1, 1], [2, 2, 2, 2], 5, &m);
        lying[25] = 0xff;
        assert_eq!(captured(&lying), Err(DnsError::Packet("UDP length")));
        for n in 0..p.len() {
            let _ = captured(&p[..n]);
        }
    }
}
