//! The HTTP sink's URL and options, as given on the command line:
//! `http://HOST:PORT/PATH?QUERY#OPTIONS` (the fragment, never sent, holds the
//! client's options).
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `http://HOST:PORT/PATH?QUERY` (or `https://`, not built in yet: refused at parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSpec {
    /// `HOST:PORT`, as connected to and sent in `Host:`.
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
}

impl fmt::Display for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

impl FromStr for HttpSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<HttpSpec, String> {
        let bad = |why: &str| format!("invalid sink {s:?}: {why}");
        if s.starts_with("https://") {
            return Err(bad(
                "https is not supported yet; use http:// (or a local TLS proxy)",
            ));
        }
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://HOST:PORT/PATH"))?;
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
        if parts.is_empty() {
            String::new()
        } else {
            format!("#{}", parts.join(","))
        }
    }
}

/// `http://HOST:PORT/PATH[#OPTIONS]`. The fragment, never sent to a server,
/// holds the client's options: `gzip`, `batch=BYTES`, `age=DURATION` (e.g.
/// `#gzip,batch=262144,age=500ms`).
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
            _ => return Err(bad("expected gzip, batch=BYTES or age=DURATION")),
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
            "https://h:443/",
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
        for bad in [
            "http://h:1/#zip",
            "http://h:1/#batch=0",
            "http://h:1/#age=0s",
        ] {
            let e = parse_sink(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
