//! Parsing /proc/net socket tables (`tcp`, `tcp6`, `udp`, `udp6`): pure, on any
//! reader; `host::proc` reads the files. Used for the starting picture and for
//! polling without eBPF.
use std::fmt;
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::event::{normalize, Proto, State};
use crate::core::sanitize::{self, Comm};

/// One row of a /proc/net table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcSocket {
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: State,
    /// 0 for sockets no process holds (TIME_WAIT, NEW_SYN_RECV, orphans).
    pub inode: u64,
    pub uid: u32,
    /// Inode of the network namespace whose tables listed it (the reader sets it).
    pub netns: u32,
}

/// A line of a /proc/net table that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the file.
    pub line: usize,
    pub reason: String,
    /// The offending line, escaped (see [`sanitize::escape`]) and cut to 200 chars.
    pub text: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: `{}`", self.line, self.reason, self.text)
    }
}

impl std::error::Error for ParseError {}

const MAX_TEXT: usize = 200;

impl ParseError {
    fn new(line: usize, reason: String, raw: &[u8]) -> ParseError {
        // Escaped because the line may end up on a terminal or in a log.
        let mut text = sanitize::escape(&raw[..raw.len().min(MAX_TEXT)]);
        if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT) {
            text.truncate(cut);
        }
        ParseError { line, reason, text }
    }
}

/// Parses one /proc/net/{tcp,tcp6,udp,udp6} table. Bad lines are reported and
/// skipped; a read error ends the table and is reported as the last error.
/// Never panics, whatever the bytes.
pub fn parse_net<R: BufRead>(reader: R, proto: Proto) -> (Vec<ProcSocket>, Vec<ParseError>) {
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    if let Err((line, e)) = parse_into(reader, proto, &mut sockets, &mut errors) {
        errors.push(ParseError {
            line,
            reason: format!("read error: {e}"),
            text: String::new(),
        });
    }
    (sockets, errors)
}

/// Appends to `sockets` and `errors`; returns a read error with the line it hit,
/// so [`read_sockets`] can report it as an IO error.
pub(crate) fn parse_into<R: BufRead>(
    mut reader: R,
    proto: Proto,
    sockets: &mut Vec<ProcSocket>,
    errors: &mut Vec<ParseError>,
) -> Result<(), (usize, io::Error)> {
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0;
    loop {
        buf.clear();
        line_no += 1;
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err((line_no, e)),
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if line_no == 1 && is_header(line) {
            continue;
        }
        match parse_line(line, proto) {
            Ok(socket) => sockets.push(socket),
            Err(reason) => errors.push(ParseError::new(line_no, reason, line)),
        }
    }
}

fn is_header(line: &[u8]) -> bool {
    line.trim_ascii_start().starts_with(b"sl") || line.windows(13).any(|w| w == b"local_address")
}

/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode`;
/// later fields differ between TCP and UDP and are ignored.
const FIELDS: usize = 10;

fn parse_line(line: &[u8], proto: Proto) -> Result<ProcSocket, String> {
    let mut f: [&[u8]; FIELDS] = [&[]; FIELDS];
    let n = split_fields(line, &mut f);
    if n == 0 {
        return Err("empty line".into());
    }
    if n < FIELDS {
        return Err(format!("truncated line: {n} of {FIELDS} fields"));
    }
    match f[0].strip_suffix(b":") {
        Some(sl) if parse_dec(sl).is_some() => {}
        _ => return Err(format!("bad slot number `{}`", show(f[0]))),
    }
    let (local, local_v6) = parse_addr(f[1]).map_err(|e| format!("local address: {e}"))?;
    let (remote, remote_v6) = parse_addr(f[2]).map_err(|e| format!("remote address: {e}"))?;
    if local_v6 != remote_v6 {
        return Err("local and remote address families differ".into());
    }
    let st = parse_hex(f[3], 2).ok_or_else(|| format!("bad state `{}`", show(f[3])))? as u8;
    let state = match proto {
        Proto::Tcp => State::from_tcp(st).ok_or_else(|| format!("unknown TCP state 0x{st:02X}"))?,
        // The kernel reuses TCP numbers for UDP: TCP_CLOSE (7) when unconnected,
        // TCP_ESTABLISHED (1) after connect().
        Proto::Udp => match st {
            7 => State::Unconn,
            1 => State::Established,
            _ => return Err(format!("unknown UDP state 0x{st:02X}")),
        },
    };
    let uid = parse_dec(f[7])
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("bad uid `{}`", show(f[7])))?;
    let inode = parse_dec(f[9]).ok_or_else(|| format!("bad inode `{}`", show(f[9])))?;
    Ok(ProcSocket {
        proto,
        local,
        remote,
        state,
        inode,
        uid,
        netns: 0,
    })
}

/// Splits off the first `FIELDS` fields, separated by runs of bytes <= b' '
/// (space, tab, CR, other controls); returns how many there were. Works on
/// 64-byte blocks turned into bitmasks: a byte-wise loop mispredicts at every
/// field boundary and took most of the parsing time.
fn split_fields<'a>(line: &'a [u8], f: &mut [&'a [u8]; FIELDS]) -> usize {
    let mut n = 0;
    let mut start = 0;
    let mut in_field = false;
    let mut prev_space = true;
    let (blocks, rest) = line.as_chunks::<64>();
    let mut tail = [b' '; 64];
    tail[..rest.len()].copy_from_slice(rest);
    let tail = (!rest.is_empty()).then_some(&tail);
    for (bi, block) in blocks.iter().chain(tail).enumerate() {
        let mut space = 0u64;
        for (j, word) in block.as_chunks::<8>().0.iter().enumerate() {
            space |= u64::from(space_bits(u64::from_le_bytes(*word))) << (j * 8);
        }
        // A set bit in `edges` is where a field starts or ends.
        let mut edges = space ^ ((space << 1) | u64::from(prev_space));
        prev_space = space >> 63 == 1;
        while edges != 0 {
            let at = bi * 64 + edges.trailing_zeros() as usize;
            edges &= edges - 1;
            if in_field {
                f[n] = &line[start..at];
                n += 1;
                if n == FIELDS {
                    return n;
                }
            } else {
                start = at;
            }
            in_field = !in_field;
        }
    }
    if in_field {
        f[n] = &line[start..];
        n += 1;
    }
    n
}

/// One bit per byte of `word` (byte 0 = bit 0), set where the byte is <= b' '.
fn space_bits(word: u64) -> u8 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit of `over` is set if the low 7 bits exceed 0x20;
    // no carry crosses a byte (0x7F + 0x5F < 0x100).
    let over = (word & LOW7) + 0x5F5F_5F5F_5F5F_5F5F;
    let space = !(word | over) & HIGH;
    // Gather the eight high bits into the top byte; the terms never overlap.
    ((space >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// `HEX:PORT`; returns whether the address was written as IPv6 (before
/// normalising IPv4-mapped addresses).
fn parse_addr(field: &[u8]) -> Result<(SocketAddr, bool), String> {
    let colon = field
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("no port in `{}`", show(field)))?;
    let (hex, port) = (&field[..colon], &field[colon + 1..]);
    let port = parse_hex(port, 4).ok_or_else(|| format!("bad port `{}`", show(port)))? as u16;
    let bad_hex = || format!("bad hex `{}`", show(hex));
    // The kernel prints each 32-bit word of the address as loaded from memory
    // (`%08X`), so the word's native-endian bytes are the address bytes.
    let (ip, v6) = match hex.len() {
        8 => {
            let w = parse_hex(hex, 8).ok_or_else(bad_hex)?;
            (IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())), false)
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (out, word) in bytes.chunks_exact_mut(4).zip(hex.chunks_exact(8)) {
                out.copy_from_slice(&parse_hex(word, 8).ok_or_else(bad_hex)?.to_ne_bytes());
            }
            (IpAddr::V6(Ipv6Addr::from(bytes)), true)
        }
        n => return Err(format!("{n} hex digits in `{}`, want 8 or 32", show(hex))),
    };
    Ok((SocketAddr::new(normalize(ip), port), v6))
}

/// 1 to `max_digits` hex digits; stricter than `from_str_radix`, which takes a sign.
fn parse_hex(s: &[u8], max_digits: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_digits || max_digits > 8 {
        return None;
    }
    s.iter().try_fold(0u32, |acc, &b| {
        let d = HEX[b as usize];
        (d != 0xFF).then_some((acc << 4) | u32::from(d))
    })
}

const HEX: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

pub(crate) fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A field quoted in an error reason: escaped and short.
fn show(field: &[u8]) -> String {
    sanitize::escape(&field[..field.len().min(40)])
}

/// The process that holds a socket open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub comm: Comm,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::BufReader;
    use std::io::{Cursor, Read};

    pub(crate) const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    pub(crate) const TCP_LISTEN: &str = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
    const TCP_ESTAB: &str = "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 23456 1 0000000000000000 20 4 30 10 -1\n";
    pub(crate) const TCP_TIME_WAIT: &str = "   2: 0100007F:9C42 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n";

    pub(crate) fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn parse(text: &[u8], proto: Proto) -> (Vec<ProcSocket>, Vec<ParseError>) {
        parse_net(Cursor::new(text), proto)
    }

    /// One line a socket: protocol, ends, state, inode and owner.
    fn summary(sockets: &[ProcSocket]) -> Vec<String> {
        sockets
            .iter()
            .map(|s| {
                let (p, l, r, st) = (s.proto, s.local, s.remote, s.state);
                format!("{p:?} {l} {r} {st:?} {} uid {}", s.inode, s.uid)
            })
            .collect()
    }

    fn error_lines(errors: &[ParseError]) -> Vec<usize> {
        errors.iter().map(|e| e.line).collect()
    }

    #[test]
    fn ipv4_listen_established_time_wait() {
        let text = format!("{TCP_HEADER}{TCP_LISTEN}{TCP_ESTAB}{TCP_TIME_WAIT}");
        let (sockets, errors) = parse(text.as_bytes(), Proto::Tcp);
        assert_eq!(errors, vec![]);
        assert_eq!(
            sockets,
            vec![
                ProcSocket {
                    proto: Proto::Tcp,
                    local: sa("127.0.0.1:8080"),
                    remote: sa("0.0.0.0:0"),
                    state: State::Listen,
                    inode: 12345,
                    uid: 0,
                    netns: 0,
                },
                ProcSocket {
                    proto: Proto::Tcp,
                    local: sa("127.0.0.1:40000"),
                    remote: sa("127.0.0.1:8080"),
                    state: State::Established,
                    inode: 23456,
                    uid: 1000,
                    netns: 0,
                },
                ProcSocket {
                    proto: Proto::Tcp,
                    local: sa("127.0.0.1:40002"),
                    remote: sa("127.0.0.1:8080"),
                    state: State::TimeWait,
                    inode: 0,
                    uid: 0,
                    netns: 0,
                },
            ]
        );
    }

    #[test]
    fn ipv6_loopback_global_and_mapped() {
        let text = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:D431 01 00000000:00000000 02:00000A3C 00000000     0        0 45678 4 0000000000000000 20 4 31 10 -1
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:B3A6 01 00000000:00000000 00:00000000 00000000   101        0 56789 1 0000000000000000 20 4 30 10 -1
";
        let (sockets, errors) = parse(text.as_bytes(), Proto::Tcp);
        assert_eq!(errors, vec![]);
        assert_eq!(
            summary(&sockets),
            [
                "Tcp [::1]:631 [::]:0 Listen 34567 uid 0",
                "Tcp [2001:db8::1]:22 [2001:db8::2]:54321 Established 45678 uid 0",
                // IPv4-mapped comes out as plain IPv4.
                "Tcp 127.0.0.1:8080 127.0.0.1:45990 Established 56789 uid 101",
            ]
        );
    }

    #[test]
    fn udp_unconn_and_connected() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 18231 2 0000000000000000 0
  456: 0100007F:A1B2 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 18232 2 0000000000000000 0
  457: 0100007F:A1B3 08080808:0035 0A 00000000:00000000 00:00000000 00000000  1000        0 18233 2 0000000000000000 0
";
        let (sockets, errors) = parse(text.as_bytes(), Proto::Udp);
        assert_eq!(
            summary(&sockets),
            [
                "Udp 0.0.0.0:68 0.0.0.0:0 Unconn 18231 uid 0",
                "Udp 127.0.0.1:41394 8.8.8.8:53 Established 18232 uid 1000",
            ]
        );
        assert_eq!(error_lines(&errors), vec![4]);
        assert_eq!(errors[0].reason, "unknown UDP state 0x0A");
    }

    #[test]
    fn bad_lines_are_reported_and_good_lines_kept() {
        let good = |sl: u32, inode: u32| {
            format!("   {sl}: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n")
        };
        let mut text: Vec<u8> = TCP_HEADER.as_bytes().to_vec();
        text.extend(good(0, 100).as_bytes()); // line 2
        text.extend(b"   1: 0100007F:1F90 00000000:00\n"); // 3: truncated
        text.extend(good(2, 102).as_bytes()); // 4
        text.extend(b"   3: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 103 1\n"); // 5: bad hex
        text.extend(b"   4: 0100007F:1F90 00000000:0000 0F 00000000:00000000 00:00000000 00000000     0        0 104 1\n"); // 6: unknown state
        text.extend(b"\xff\xfe\x00garbage \x1b[31m\xc3\n"); // 7: garbage bytes
        text.extend(b"\n"); // 8: empty
        text.extend(b"   \t \n"); // 9: blank
        text.extend(good(5, 105).as_bytes()); // 10
        text.extend(b"   6: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 106 1\n"); // 11: no port
        text.extend(b"   7: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 184467440737095516160 1\n"); // 12: inode overflow
        text.extend(b"   8: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 4294967296        0 108 1\n"); // 13: uid overflow
        text.extend(b"   9: 10100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 109 1\n"); // 14: 9 hex digits
        text.extend(b"  10: 0100007F:11F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 110 1\n"); // 15: port overflow
        text.extend(b"  11: 0100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n"); // 16: mixed families
        text.extend(b"  12: +100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1\n"); // 17: sign
        text.extend(b"0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1 0 0 0\n"); // 18: no slot
        text.extend(good(14, 114).as_bytes()[..40].iter()); // 19: truncated final line, no newline

        let (sockets, errors) = parse(&text, Proto::Tcp);
        let inodes: Vec<u64> = sockets.iter().map(|s| s.inode).collect();
        assert_eq!(inodes, vec![100, 102, 105]);
        assert_eq!(
            error_lines(&errors),
            vec![3, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19]
        );
        let reason = |line: usize| {
            errors
                .iter()
                .find(|e| e.line == line)
                .map(|e| e.reason.as_str())
                .unwrap()
        };
        assert_eq!(reason(3), "truncated line: 3 of 10 fields");
        assert_eq!(reason(5), "local address: bad hex `0100007G`");
        assert_eq!(reason(6), "unknown TCP state 0x0F");
        assert_eq!(reason(8), "empty line");
        assert_eq!(reason(9), "empty line");
        assert_eq!(reason(12), "bad inode `184467440737095516160`");
        assert_eq!(reason(13), "bad uid `4294967296`");
        assert_eq!(reason(16), "local and remote address families differ");
        // Garbage is escaped, so the error is safe to print.
        let garbage = errors.iter().find(|e| e.line == 7).unwrap();
        assert_eq!(garbage.text, "\\xff\\xfe\\u{0}garbage \\e[31m\\xc3");
    }

    #[test]
    fn header_missing_or_input_empty() {
        let (sockets, errors) = parse(TCP_LISTEN.as_bytes(), Proto::Tcp);
        assert_eq!((sockets.len(), errors), (1, vec![]));
        let (sockets, errors) = parse(b"", Proto::Tcp);
        assert_eq!((sockets, errors), (vec![], vec![]));
        let (sockets, errors) = parse(TCP_HEADER.as_bytes(), Proto::Udp);
        assert_eq!((sockets, errors), (vec![], vec![]));
        // Only the first line can be the header.
        let text = format!("{TCP_LISTEN}{TCP_HEADER}");
        let (sockets, errors) = parse(text.as_bytes(), Proto::Tcp);
        assert_eq!((sockets.len(), error_lines(&errors)), (1, vec![2]));
    }

    #[test]
    fn crlf_and_tabs_are_whitespace() {
        let text = TCP_LISTEN.replace('\n', "\r\n").replace("     0", "\t0");
        let (sockets, errors) = parse(text.as_bytes(), Proto::Tcp);
        assert_eq!((sockets.len(), errors), (1, vec![]));
    }

    #[test]
    fn read_error_is_reported() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let text = format!("{TCP_HEADER}{TCP_LISTEN}");
        let reader = BufReader::new(Cursor::new(text.into_bytes()).chain(Broken));
        let (sockets, errors) = parse_net(reader, Proto::Tcp);
        assert_eq!(sockets.len(), 1);
        assert_eq!(error_lines(&errors), vec![3]);
        assert_eq!(errors[0].reason, "read error: boom");
    }

    #[test]
    fn error_display_and_truncation() {
        let long = format!("   0: {}", "Z".repeat(500));
        let (_, errors) = parse(long.as_bytes(), Proto::Tcp);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].text.chars().count(), MAX_TEXT);
        assert!(long.starts_with(&errors[0].text));
        // Escapes grow the text; it is still cut to 200 chars.
        let (_, errors) = parse(&[0x1b; 300], Proto::Tcp);
        assert_eq!(errors[0].text.chars().count(), MAX_TEXT);

        let (_, errors) = parse(b"hdr\n\n   1: x", Proto::Tcp);
        assert_eq!(
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec![
                "line 1: truncated line: 1 of 10 fields: `hdr`",
                "line 2: empty line: ``",
                "line 3: truncated line: 2 of 10 fields: `   1: x`",
            ]
        );
    }

    #[test]
    fn never_panics_on_mangled_input() {
        let base = format!("{TCP_HEADER}{TCP_LISTEN}{TCP_ESTAB}{TCP_TIME_WAIT}").into_bytes();
        // Every prefix (truncation at any byte).
        for end in 0..base.len() {
            for proto in [Proto::Tcp, Proto::Udp] {
                let _ = parse(&base[..end], proto);
            }
        }
        // Random byte substitutions from a small fixed-seed generator.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789ABCDEFabcdefXYZ: \t\n\r\xff\x00-+";
        for _ in 0..2000 {
            let mut text = base.clone();
            for _ in 0..(next() % 8 + 1) {
                let at = (next() as usize) % text.len();
                text[at] = alphabet[(next() as usize) % alphabet.len()];
            }
            let (sockets, errors) = parse(&text, Proto::Tcp);
            // Each line yields a socket, an error, or was the header.
            let lines = text.split(|&b| b == b'\n').count() - usize::from(text.ends_with(b"\n"));
            assert!(sockets.len() + errors.len() <= lines);
            assert!(sockets.len() + errors.len() + 1 >= lines);
        }
    }

    #[test]
    fn large_table() {
        let mut text = TCP_HEADER.to_string();
        for i in 0..50_000u32 {
            text.push_str(&format!(
                "{i:>4}: 0100007F:{:04X} 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 {} 1 0000000000000000 20 4 30 10 -1\n",
                i % 65536,
                i + 1
            ));
        }
        let (sockets, errors) = parse(text.as_bytes(), Proto::Tcp);
        assert_eq!((sockets.len(), errors.len()), (50_000, 0));
        assert_eq!(sockets[49_999].inode, 50_000);
    }

    #[test]
    fn space_bits_matches_bytewise() {
        let mut x = 0x0123_4567_89AB_CDEFu64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Bias bytes towards the interesting range around b' '.
            let word = (x & 0x3F3F_3F3F_3F3F_3F3F) | (x & 0x8000_0080_0000_8000);
            let want = word
                .to_le_bytes()
                .iter()
                .enumerate()
                .fold(0u8, |m, (i, &b)| m | (u8::from(b <= b' ') << i));
            assert_eq!(space_bits(word), want, "{word:016x}");
        }
        assert_eq!(
            space_bits(u64::from_le_bytes(*b" \t\0!\x20\x21\xa0\xff")),
            0b0001_0111
        );
    }

    #[test]
    fn split_fields_across_blocks() {
        for len in [0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 200] {
            for pad in 0..3 {
                // Fields of varying width so boundaries fall everywhere in a block.
                let mut line = " ".repeat(pad).into_bytes();
                let mut k = 0;
                while line.len() < len {
                    line.extend(std::iter::repeat_n(b'a' + (k % 26) as u8, k % 11 + 1));
                    line.extend(std::iter::repeat_n(b' ', k % 3 + 1));
                    k += 1;
                }
                line.truncate(len);
                let want: Vec<&[u8]> = line
                    .split(|&b| b <= b' ')
                    .filter(|s| !s.is_empty())
                    .take(FIELDS)
                    .collect();
                let mut f: [&[u8]; FIELDS] = [&[]; FIELDS];
                let n = split_fields(&line, &mut f);
                assert_eq!(&f[..n], &want[..], "len {len} pad {pad}");
            }
        }
    }
}
