//! Process names are chosen by whoever runs the process (`prctl(PR_SET_NAME)`,
//! argv[0]), so they are hostile input. They are stored as raw bytes and only
//! ever leave netta through these functions. DNS names come off the wire, from
//! whoever answers: [`Domain`] makes them plain text once, as they enter, and so
//! does [`Text`] for executable paths, arguments, user and pod names.
use std::fmt;
use std::sync::Arc;

/// A task command name (`comm`): at most 16 raw bytes, not necessarily UTF-8.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    pub const EMPTY: Comm = Comm {
        bytes: [0; 16],
        len: 0,
    };

    /// From the kernel's NUL-padded buffer.
    pub fn from_kernel(raw: &[u8; 16]) -> Comm {
        let len = raw.iter().position(|b| *b == 0).unwrap_or(16);
        Comm {
            bytes: *raw,
            len: len as u8,
        }
        .trimmed()
    }

    /// From `/proc/<pid>/comm` (trailing newline dropped) or any byte string; longer
    /// input is cut at 16 bytes, as the kernel does.
    pub fn from_bytes(raw: &[u8]) -> Comm {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let len = raw.len().min(16);
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&raw[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }

    fn trimmed(mut self) -> Comm {
        for b in &mut self.bytes[self.len as usize..] {
            *b = 0;
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// On the agent's API the raw bytes travel as they are (a list of numbers), so an
/// attached view escapes the same bytes a standalone one would.
impl serde::Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_bytes())
    }
}

impl<'de> serde::Deserialize<'de> for Comm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Comm, D::Error> {
        let raw: Vec<u8> = serde::Deserialize::deserialize(d)?;
        let len = raw.len().min(16);
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&raw[..len]);
        Ok(Comm {
            bytes,
            len: len as u8,
        })
    }
}

/// Shows the name escaped (see [`escape`]); safe for a terminal or a log line.
impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape_into(self.as_bytes(), f)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Comm({self})")
    }
}

/// Characters that change how a terminal shows the rest of the line, besides
/// C0/C1 controls: bidi overrides and isolates ("Trojan Source"), zero-width
/// and line/paragraph separators.
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

/// Escapes raw bytes for display: printable text passes, `\` becomes `\\`,
/// control and layout-changing characters become `\u{..}` (`\n`, `\t`, `\r`, `\e` get
/// short forms), and bytes that are not UTF-8 become `\xNN`. The result is one line
/// of plain text that cannot drive a terminal.
pub fn escape(raw: &[u8]) -> String {
    let mut s = String::with_capacity(raw.len());
    let _ = escape_into(raw, &mut s);
    s
}

fn escape_into(mut raw: &[u8], out: &mut impl fmt::Write) -> fmt::Result {
    while !raw.is_empty() {
        let (valid, rest) = match std::str::from_utf8(raw) {
            Ok(s) => (s, &raw[raw.len()..]),
            Err(e) => {
                let (ok, bad) = raw.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` marks a UTF-8 prefix.
                (std::str::from_utf8(ok).unwrap_or(""), bad)
            }
        };
        for c in valid.chars() {
            match c {
                '\\' => out.write_str("\\\\")?,
                '\n' => out.write_str("\\n")?,
                '\r' => out.write_str("\\r")?,
                '\t' => out.write_str("\\t")?,
                '\x1b' => out.write_str("\\e")?,
                c if is_dangerous(c) => write!(out, "\\u{{{:x}}}", c as u32)?,
                c => out.write_char(c)?,
            }
        }
        if let Some((b, tail)) = rest.split_first() {
            write!(out, "\\x{b:02x}")?;
            raw = tail;
        } else {
            raw = rest;
        }
    }
    Ok(())
}

/// Untrusted text (a path, an argument, a user name) escaped once, as it enters
/// (see [`escape`]), and bounded: one line that cannot drive a terminal, which
/// every view, log line and JSON document can show as it is (CSV still needs
/// [`csv_cell`]). Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Arc<str>);

impl Text {
    /// Escapes the first `max` raw bytes of `raw`.
    pub fn escaped(raw: &[u8], max: usize) -> Text {
        Text(escape(&raw[..raw.len().min(max)]).into())
    }
}

/// `as_str`, Display, Debug (`Name(text)`) and Serialize of a shared string
/// that is safe to show as it is.
macro_rules! shown_str {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($t), "({})"), self.0)
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

shown_str!(Text);
shown_str!(Domain);

/// Text from the API or the store is taken as it is when nothing in it could
/// drive a terminal, and escaped otherwise: no raw text gets in this way either.
impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        Ok(Text::from_shown(&s))
    }
}

impl Text {
    /// Text that was escaped before (the store, the API): kept when it is safe.
    pub fn from_shown(s: &str) -> Text {
        if s.chars().any(is_dangerous) {
            Text(escape(s.as_bytes()).into())
        } else {
            Text(s.into())
        }
    }
}

/// A CSV cell that a spreadsheet will not evaluate: values starting with `=`, `+`,
/// `-`, `@`, tab or CR get a leading `'` (OWASP's advice for CSV injection).
pub fn csv_cell(value: &str) -> std::borrow::Cow<'_, str> {
    match value.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

/// A DNS name in presentation form, made safe when it is built: labels are
/// lower-cased (DNS compares names without case) and joined with `.`, and any
/// byte that is not printable ASCII, or is `.` or `\\` inside a label, becomes
/// `\\DDD` (RFC 1035's escape, decimal). So it is one line of printable ASCII
/// that cannot drive a terminal or break a log line; CSV still needs [`csv_cell`].
/// Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(Arc<str>);

impl Domain {
    /// From the wire labels of one name (each at most 63 bytes; the caller bounds
    /// their number). The root alone is `.`.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Domain {
        let mut s = String::new();
        for label in labels {
            if !s.is_empty() {
                s.push('.');
            }
            for &b in label {
                match b.to_ascii_lowercase() {
                    b'.' | b'\\' => push_decimal(&mut s, b),
                    c @ 0x21..=0x7e => s.push(c as char),
                    c => push_decimal(&mut s, c),
                }
            }
        }
        if s.is_empty() {
            s.push('.');
        }
        Domain(s.into())
    }

    /// From text already in this form (the store, the API, a flag): kept only when
    /// it is printable ASCII, so nothing unescaped gets in this way either.
    pub fn parse(text: &str) -> Option<Domain> {
        let ok = !text.is_empty()
            && text.len() <= 4 * 255
            && text.bytes().all(|b| (0x21..=0x7e).contains(&b));
        ok.then(|| Domain(text.to_ascii_lowercase().into()))
    }
}

fn push_decimal(s: &mut String, b: u8) {
    use fmt::Write as _;
    let _ = write!(s, "\\{b:03}");
}

/// Read back through [`Domain::parse`], so the API cannot smuggle raw text in.
impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Domain, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        Domain::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("not a DNS name in presentation form"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_printable_ascii_lowercase() {
        let d = Domain::from_labels([&b"Bar-Test"[..], b"EXAMPLE"]);
        assert_eq!(d.as_str(), "bar-test.example");
        let evil = Domain::from_labels([&b"a\x1b[2J\n.b\\"[..], "é".as_bytes(), b"x y"]);
        assert_eq!(
            evil.as_str(),
            "a\\027[2j\\010\\046b\\092.\\195\\169.x\\032y"
        );
        assert!(evil.as_str().bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(Domain::from_labels(std::iter::empty()).as_str(), ".");
        assert_eq!(
            Domain::parse("Bar.Example").unwrap().as_str(),
            "bar.example"
        );
        assert!(Domain::parse("a\nb").is_none());
        assert!(Domain::parse("bad\u{1b}").is_none());
        assert!(Domain::parse("sp ace").is_none());
        assert!(Domain::parse("").is_none());
    }

    #[test]
    fn plain_names_pass_unchanged() {
        assert_eq!(escape(b"nginx"), "nginx");
        assert_eq!(
            escape("kworker/0:1-ëvents".as_bytes()),
            "kworker/0:1-ëvents"
        );
    }

    #[test]
    fn terminal_escapes_and_newlines_are_neutralised() {
        let evil = b"\x1b]0;pwned\x07\x1b[2J\nfake line\r";
        let out = escape(evil);
        assert!(!out.chars().any(|c| c.is_control()), "{out:?}");
        assert_eq!(out, "\\e]0;pwned\\u{7}\\e[2J\\nfake line\\r");
    }

    #[test]
    fn invalid_utf8_and_bidi_are_visible() {
        assert_eq!(escape(b"a\xffb\xc3"), "a\\xffb\\xc3");
        assert_eq!(escape("x\u{202e}gpj.exe".as_bytes()), "x\\u{202e}gpj.exe");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        // C1 controls (U+0080..U+009F) are controls too.
        assert_eq!(escape("a\u{9b}31m".as_bytes()), "a\\u{9b}31m");
    }

    #[test]
    fn comm_from_kernel_stops_at_nul() {
        let mut raw = [0u8; 16];
        raw[..3].copy_from_slice(b"ab\n");
        let c = Comm::from_kernel(&raw);
        assert_eq!(c.as_bytes(), b"ab\n");
        assert_eq!(c.to_string(), "ab\\n");
        let full = Comm::from_kernel(&[b'x'; 16]);
        assert_eq!(full.as_bytes().len(), 16);
        assert_eq!(Comm::from_bytes(b"sshd\n").as_bytes(), b"sshd");
        assert_eq!(Comm::from_bytes(&[b'y'; 40]).as_bytes().len(), 16);
    }

    #[test]
    fn text_is_escaped_once_and_bounded() {
        let t = Text::escaped(b"/tmp/a\x1b[2J\n\xff", 64);
        assert_eq!(t.as_str(), "/tmp/a\\e[2J\\n\\xff");
        assert_eq!(Text::escaped(b"abcdef", 3).as_str(), "abc");
        // What the API hands back stays as it was shown, raw controls do not.
        let back: Text = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(Text::from_shown("a\u{202e}b").as_str(), "a\\u{202e}b");
        assert_eq!(Text::from_shown("a\x1bb").as_str(), "a\\eb");
        assert_eq!(
            Text::from_shown("C:\\x").as_str(),
            "C:\\x",
            "shown text stays"
        );
    }

    #[test]
    fn csv_formulas_are_defused() {
        for evil in ["=cmd|' /C calc'!A0", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(evil).starts_with('\''), "{evil:?}");
        }
        assert_eq!(csv_cell("nginx"), "nginx");
        assert_eq!(csv_cell(""), "");
    }
}
