//! The HTTP sink's URL and options, as given on the command line:
//! `http[s]://HOST:PORT/PATH?QUERY#OPTIONS` (the fragment, never sent, holds the
//! client's options).
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// `http://HOST:PORT/PATH?QUERY` or `https://...` (TLS, never a plaintext fallback).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSpec {
    /// `https://`: the connection is TLS, the server's certificate verified.
    pub tls: bool,
    /// `HOST:PORT`, as connected to and sent in `Host:`.
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
}

impl fmt::Display for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

impl HttpSpec {
    /// The host, as the server's certificate must name it (IPv6 without brackets).
    pub fn host(&self) -> &str {
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl FromStr for HttpSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<HttpSpec, String> {
        let bad = |why: &str| format!("invalid sink {s:?}: {why}");
        let (tls, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => return Err(bad("expected http://HOST:PORT/PATH or https://...")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces or control characters in the path"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad("invalid host"));
        }
        if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .and_then(|ip| ip.parse::<std::net::Ipv6Addr>().ok())
                .ok_or_else(|| bad("not an IPv6 address between [ and ]"))?;
        } else if host.contains(':') {
            return Err(bad("IPv6 addresses need brackets"));
        }
        match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad("the port must be a number from 1 to 65535")),
            Ok(_) => Ok(HttpSpec {
                tls,
                authority: authority.to_string(),
                path,
            }),
        }
    }
}

/// Batching and buffering of the HTTP sink.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpOptions {
    /// A batch goes out once it holds this many bytes (uncompressed)...
    pub batch_bytes: usize,
    /// ...or once its oldest line is this old.
    pub max_age: Duration,
    pub gzip: bool,
    /// Most lines and bytes waiting; beyond either the oldest are dropped.
    pub buffer_lines: usize,
    pub buffer_bytes: usize,
    /// One request's time limit.
    pub timeout: Duration,
    /// `https://`: trust only the CA certificates in this PEM file (a private
    /// CA) instead of the system's roots.
    pub ca: Option<PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            batch_bytes: 1 << 20,
            max_age: Duration::from_secs(1),
            gzip: false,
            buffer_lines: 65_536,
            buffer_bytes: 8 << 20,
            timeout: Duration::from_secs(10),
            ca: None,
        }
    }
}

impl HttpOptions {
    /// The `#...` suffix that gives these options back (empty for the defaults).
    pub fn fragment(&self) -> String {
        let d = HttpOptions::default();
        let mut parts = Vec::new();
        if self.gzip {
            parts.push("gzip".to_string());
        }
        if self.batch_bytes != d.batch_bytes {
            parts.push(format!("batch={}", self.batch_bytes));
        }
        if self.max_age != d.max_age {
            parts.push(format!("age={}", humantime::format_duration(self.max_age)));
        }
        if self.buffer_lines != d.buffer_lines {
            parts.push(format!("buffer={}", self.buffer_lines));
        }
        if let Some(ca) = &self.ca {
            parts.push(format!("ca={}", ca.display()));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!("#{}", parts.join(","))
        }
    }
}

/// `http[s]://HOST:PORT/PATH[#OPTIONS]`. The fragment, never sent to a server,
/// holds the client's options: `gzip`, `batch=BYTES`, `age=DURATION`,
/// `buffer=LINES` (the outage buffer), and for https `ca=FILE` (PEM; trust this
/// private CA instead of the system's roots), e.g.
/// `#gzip,batch=262144,age=500ms` or `#ca=/etc/netta/ca.pem`.
pub fn parse_sink(s: &str) -> Result<(HttpSpec, HttpOptions), String> {
    let (url, frag) = s.split_once('#').unwrap_or((s, ""));
    let spec: HttpSpec = url.parse().map_err(|e: String| e.replace(url, s))?;
    let mut opts = HttpOptions::default();
    for opt in frag.split(',').filter(|o| !o.is_empty()) {
        let bad = |why: &str| format!("invalid sink {s:?}: option {opt:?}: {why}");
        match opt.split_once('=') {
            None if opt == "gzip" => opts.gzip = true,
            Some(("batch", n)) => {
                opts.batch_bytes = n
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0 && n <= opts.buffer_bytes)
                    .ok_or_else(|| bad("expected a byte count from 1 to 8 MiB"))?;
            }
            Some(("age", d)) => {
                opts.max_age = humantime::parse_duration(d)
                    .map_err(|e| bad(&e.to_string()))
                    .and_then(|d| {
                        (!d.is_zero())
                            .then_some(d)
                            .ok_or_else(|| bad("must be more than 0"))
                    })?;
            }
            Some(("buffer", n)) => {
                opts.buffer_lines = n
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0 && n <= HttpOptions::default().buffer_lines)
                    .ok_or_else(|| bad("expected a line count from 1 to 65536"))?;
            }
            Some(("ca", path)) if !path.is_empty() => {
                if !spec.tls {
                    return Err(bad("a CA file is for https:// sinks"));
                }
                opts.ca = Some(PathBuf::from(path));
            }
            _ => {
                return Err(bad(
                    "expected gzip, batch=BYTES, age=DURATION, buffer=LINES or ca=FILE",
                ))
            }
        }
    }
    Ok((spec, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let s: HttpSpec = "http://127.0.0.1:8123/?query=INSERT%20INTO%20t%20FORMAT%20JSONEachRow"
            .parse()
            .unwrap();
        assert_eq!(s.authority, "127.0.0.1:8123");
        assert_eq!(s.path, "/?query=INSERT%20INTO%20t%20FORMAT%20JSONEachRow");
        let s: HttpSpec = "http://[::1]:9000".parse().unwrap();
        assert_eq!((s.authority.as_str(), s.path.as_str()), ("[::1]:9000", "/"));
        assert_eq!(s.to_string().parse::<HttpSpec>().unwrap(), s);
        for bad in [
            "http://host",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://::1:80/",
            "http://h:80/a b",
            "ftp://h:80/",
            "https://h/",
        ] {
            let e = bad.parse::<HttpSpec>().unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let (_, o) = parse_sink("http://h:1/p#gzip,batch=1000,age=200ms").unwrap();
        assert!(o.gzip);
        assert_eq!(
            (o.batch_bytes, o.max_age),
            (1000, Duration::from_millis(200))
        );
        assert_eq!(o.fragment(), "#gzip,batch=1000,age=200ms");
        let (s, o) = parse_sink("https://[::1]:8443/in#ca=/etc/netta/ca.pem,buffer=100").unwrap();
        assert!(s.tls);
        assert_eq!(s.host(), "::1");
        assert_eq!(
            o.ca.as_deref(),
            Some(std::path::Path::new("/etc/netta/ca.pem"))
        );
        assert_eq!(o.buffer_lines, 100);
        assert_eq!(
            format!("{s}{}", o.fragment()),
            "https://[::1]:8443/in#buffer=100,ca=/etc/netta/ca.pem"
        );
        let (s, _) = parse_sink("https://logs.example.com:443").unwrap();
        assert_eq!(
            (s.host(), s.to_string().as_str()),
            ("logs.example.com", "https://logs.example.com:443/")
        );
        for bad in [
            "http://h:1/#zip",
            "http://h:1/#batch=0",
            "http://h:1/#age=0s",
            "http://h:1/#buffer=0",
            "http://h:1/#ca=/etc/ca.pem",
            "https://h:1/#ca=",
        ] {
            let e = parse_sink(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
