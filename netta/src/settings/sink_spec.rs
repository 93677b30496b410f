//! Sink specifications (`--sink`, `sinks = [...]`): where JSON lines go.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A destination for JSON lines, as given on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum SinkSpec {
    /// `-` or `stdout`.
    Stdout,
    /// `file:PATH`, or a path starting with `/` or `.`.
    File(PathBuf),
    /// `tcp://HOST:PORT` or `tcp:HOST:PORT` (IPv6 in brackets: `tcp://[::1]:9000`).
    Tcp(String),
    /// `unix:PATH` or `unix://PATH`: a stream socket.
    Unix(PathBuf),
    /// `http[s]://HOST:PORT/PATH[#OPTIONS]`: NDJSON batches POSTed to a collector.
    Http(super::http_spec::HttpSpec, super::http_spec::HttpOptions),
}

/// Why a sink specification was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseSinkError(String);

const SINK_FORMS: &str = "expected -, stdout, file:PATH, a path starting with / or ., \
                          tcp://HOST:PORT, unix:PATH, http://HOST:PORT/PATH or https://HOST:PORT/PATH";

fn check_host_port(spec: &str, addr: &str) -> Result<(), ParseSinkError> {
    let bad = |why: &str| ParseSinkError(format!("invalid sink {spec:?}: {why}"));
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ip = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("unclosed [ in the host"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address between [ and ]"))?;
    } else if host.contains(':') {
        return Err(bad("IPv6 addresses need brackets, as in tcp://[::1]:9000"));
    } else if host.contains(|c: char| c == '/' || c == '[' || c == ']' || c.is_whitespace()) {
        return Err(bad("invalid host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("the port must be a number from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

impl FromStr for SinkSpec {
    type Err = ParseSinkError;

    fn from_str(s: &str) -> Result<SinkSpec, ParseSinkError> {
        let path = |p: &str, form: &str| {
            if p.is_empty() {
                Err(ParseSinkError(format!(
                    "invalid sink {s:?}: missing path after {form}"
                )))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if s == "-" || s == "stdout" {
            Ok(SinkSpec::Stdout)
        } else if let Some(p) = s.strip_prefix("file:") {
            path(p, "file:").map(SinkSpec::File)
        } else if s.starts_with('/') || s.starts_with('.') {
            Ok(SinkSpec::File(PathBuf::from(s)))
        } else if let Some(a) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("tcp:")) {
            check_host_port(s, a)?;
            Ok(SinkSpec::Tcp(a.to_string()))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            super::http_spec::parse_sink(s)
                .map(|(spec, opts)| SinkSpec::Http(spec, opts))
                .map_err(ParseSinkError)
        } else if let Some(p) = s.strip_prefix("unix://") {
            path(p, "unix://").map(SinkSpec::Unix)
        } else if let Some(p) = s.strip_prefix("unix:") {
            path(p, "unix:").map(SinkSpec::Unix)
        } else if s.is_empty() {
            Err(ParseSinkError(format!("empty sink: {SINK_FORMS}")))
        } else {
            Err(ParseSinkError(format!("unknown sink {s:?}: {SINK_FORMS}")))
        }
    }
}

impl fmt::Display for SinkSpec {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Stdout => f.write_str("stdout"),
            SinkSpec::File(p) => write!(f, "file:{}", p.display()),
            SinkSpec::Tcp(a) => write!(f, "tcp://{a}"),
            SinkSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            SinkSpec::Http(spec, opts) => write!(f, "{spec}{}", opts.fragment()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SinkSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_form() {
        for (text, want) in [
            ("-", SinkSpec::Stdout),
            ("stdout", SinkSpec::Stdout),
            (
                "file:/var/log/netta.json",
                SinkSpec::File("/var/log/netta.json".into()),
            ),
            ("file:rel.json", SinkSpec::File("rel.json".into())),
            ("/tmp/x.json", SinkSpec::File("/tmp/x.json".into())),
            ("./x.json", SinkSpec::File("./x.json".into())),
            ("../x.json", SinkSpec::File("../x.json".into())),
            (
                "tcp://127.0.0.1:9000",
                SinkSpec::Tcp("127.0.0.1:9000".into()),
            ),
            (
                "tcp:vector.local:5170",
                SinkSpec::Tcp("vector.local:5170".into()),
            ),
            ("tcp://[::1]:9000", SinkSpec::Tcp("[::1]:9000".into())),
            (
                "unix:/run/vector.sock",
                SinkSpec::Unix("/run/vector.sock".into()),
            ),
            (
                "unix:///run/vector.sock",
                SinkSpec::Unix("/run/vector.sock".into()),
            ),
            ("unix:rel.sock", SinkSpec::Unix("rel.sock".into())),
        ] {
            assert_eq!(parse(text), want, "{text}");
        }
    }

    #[test]
    fn display_parses_back() {
        let all = [
            ("-", "stdout"),
            ("stdout", "stdout"),
            ("file:/var/log/n.json", "file:/var/log/n.json"),
            ("/var/log/n.json", "file:/var/log/n.json"),
            ("./n.json", "file:./n.json"),
            ("file:n.json", "file:n.json"),
            ("tcp:localhost:9000", "tcp://localhost:9000"),
            ("tcp://[::1]:9000", "tcp://[::1]:9000"),
            ("unix:///run/v.sock", "unix:/run/v.sock"),
            ("unix:v.sock", "unix:v.sock"),
            (
                "https://logs:8443/in#ca=/etc/netta/ca.pem",
                "https://logs:8443/in#ca=/etc/netta/ca.pem",
            ),
            ("http://c:8123#buffer=10", "http://c:8123/#buffer=10"),
        ];
        for (input, shown) in all {
            let spec = parse(input);
            assert_eq!(spec.to_string(), shown, "{input}");
            assert_eq!(parse(shown), spec, "{input}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        let cases = [
            ("", "empty sink"),
            ("netta.json", "unknown sink"),
            ("http://x", "expected HOST:PORT"),
            ("https://x/", "expected HOST:PORT"),
            ("https://x:443/#ca=", "expected gzip"),
            ("udp://127.0.0.1:9000", "unknown sink"),
            ("file:", "missing path"),
            ("unix:", "missing path"),
            ("unix://", "missing path"),
            ("tcp://", "expected HOST:PORT"),
            ("tcp://localhost", "expected HOST:PORT"),
            ("tcp://:9000", "missing host"),
            ("tcp://localhost:", "port must be"),
            ("tcp://localhost:0", "port must be"),
            ("tcp://localhost:70000", "port must be"),
            ("tcp://localhost:http", "port must be"),
            ("tcp://::1:9000", "need brackets"),
            ("tcp://[::1:9000", "unclosed ["),
            ("tcp://[nope]:9000", "not an IPv6"),
            ("tcp://host/path:9000", "invalid host"),
        ];
        for (input, want) in cases {
            let err = input.parse::<SinkSpec>().unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let err = "syslog".parse::<SinkSpec>().unwrap_err().to_string();
        assert!(
            err.contains("tcp://HOST:PORT") && err.contains("unix:PATH"),
            "{err}"
        );
    }
}
