//! The tiny HTTP server for `GET /metrics`.
use super::*;

/// Binds the metrics listener; the error is the bind's own, for the caller to
/// report (`cannot listen on ADDR: …`). Port 0 picks a free port (`local_addr`).
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves metrics on a bound listener until `shutdown` becomes true (or its sender
/// is dropped). Subscribes its tap before accepting the first client.
pub async fn serve_on(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let metrics = Arc::new(Metrics::for_agent(shared.clone()));
    let rx = shared.subscribe(TAP_CAPACITY);
    let tap = tokio::spawn(metrics.clone().follow(rx, stopped(shutdown.clone())));
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    log::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            handle(stream, m).await;
            drop(permit);
        });
    }
    let _ = tap.await;
    Ok(())
}

/// Resolves once the value is true or the sender is gone.
pub(super) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&v| v).await;
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) accept: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum HeadError {
    /// The client closed before sending anything.
    Closed,
    TooLarge,
    Malformed,
}

/// Reads up to the blank line ending the head; refuses heads over [`MAX_HEAD`].
pub(super) async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = r.read(&mut chunk).await.map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Malformed
            });
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf, from) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            return parse_head(&buf[..end]);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// End of the head (after its blank line), searching from `from`.
pub(super) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1..].starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if buf[i + 1..].starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

pub(super) fn parse_head(head: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.lines();
    let mut parts = lines.next().unwrap_or("").split_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Head {
        method: method.to_string(),
        path: path.to_string(),
        accept,
    })
}

pub(super) struct Response {
    pub(super) status: &'static str,
    pub(super) content_type: &'static str,
    pub(super) extra: &'static str,
    pub(super) body: String,
}

impl Response {
    pub(super) fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: body.into(),
        }
    }

    pub(super) fn bytes(&self, with_body: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra,
        )
        .into_bytes();
        if with_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

pub(super) const INDEX: &str = "netta agent: Prometheus metrics are at /metrics\n";

pub(super) async fn route(head: &Head, metrics: &Arc<Metrics>) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        let mut r = Response::text("405 Method Not Allowed", "only GET and HEAD\n");
        r.extra = "Allow: GET, HEAD\r\n";
        return r;
    }
    match head.path.as_str() {
        "/metrics" => {
            let format = Format::negotiate(head.accept.as_deref());
            let m = metrics.clone();
            // Reading the table can take a few ms on a large table: off the async workers.
            match tokio::task::spawn_blocking(move || m.render(format)).await {
                Ok(body) => Response {
                    status: "200 OK",
                    content_type: format.content_type(),
                    extra: "",
                    body,
                },
                Err(e) => {
                    log::warn!("metrics: rendering failed: {e}");
                    Response::text("500 Internal Server Error", "rendering metrics failed\n")
                }
            }
        }
        "/" => Response::text("200 OK", INDEX),
        _ => Response::text("404 Not Found", "not found; metrics are at /metrics\n"),
    }
}

pub(super) async fn handle(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let (resp, with_body) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => (
            Response::text("408 Request Timeout", "timed out reading the request\n"),
            true,
        ),
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => (
            Response::text(
                "431 Request Header Fields Too Large",
                format!("request head over {MAX_HEAD} bytes\n"),
            ),
            true,
        ),
        Ok(Err(HeadError::Malformed)) => (Response::text("400 Bad Request", "bad request\n"), true),
        Ok(Ok(head)) => (route(&head, &metrics).await, head.method != "HEAD"),
    };
    let bytes = resp.bytes(with_body);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await?;
        // Read what the client still sends (an oversized head, say) so closing
        // does not reset the connection before it has read the answer.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
        io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_heads() {
        let mut r: &[u8] =
            b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(
            read_head(&mut r).await,
            Ok(Head {
                method: "GET".into(),
                path: "/metrics".into(),
                accept: Some("application/openmetrics-text".into()),
            })
        );
        let mut r: &[u8] = b"GET / HTTP/1.0\n\n";
        assert_eq!(read_head(&mut r).await.unwrap().path, "/");
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let mut r = big.as_bytes();
        assert_eq!(read_head(&mut r).await, Err(HeadError::TooLarge));
        let mut r: &[u8] = b"";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Closed));
        let mut r: &[u8] = b"hello\r\n\r\n";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Malformed));
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost";
        assert_eq!(read_head(&mut r).await, Err(HeadError::Malformed));
    }
}
