//! The API client views use to attach: HTTP/1.1 (hyper) over the Unix socket.
//! Every failure is one line that says what to do.
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no agent answers at {0} ({1})")]
    NotRunning(PathBuf, String),
    #[error("the agent's API at {0} refuses this user: {1}")]
    Denied(PathBuf, String),
    #[error("the agent at {0} says: {1}")]
    Status(PathBuf, String),
    #[error("talking to the agent at {0}: {1}")]
    Io(PathBuf, String),
}

impl ClientError {
    /// Nothing listens there: a view may run standalone instead.
    pub fn not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning(..))
    }
}

pub struct Client {
    path: PathBuf,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

fn one_line(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    crate::core::sanitize::escape(s.lines().next().unwrap_or("").trim().as_bytes())
}

impl Client {
    pub fn new(path: &Path) -> Client {
        Client { path: path.into() }
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        let p = || self.path.clone();
        let stream =
            match tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(&self.path))
                .await
            {
                Err(_) => return Err(ClientError::Io(p(), "connect timed out".into())),
                Ok(Err(e)) => {
                    return Err(match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                            ClientError::NotRunning(p(), e.to_string())
                        }
                        std::io::ErrorKind::PermissionDenied => ClientError::Denied(
                            p(),
                            format!("{e} (root or group `{}` only)", super::access::GROUP),
                        ),
                        _ => ClientError::Io(p(), e.to_string()),
                    })
                }
                Ok(Ok(s)) => s,
            };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Io(p(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn request(
        &self,
        path_and_query: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        self.request_with(hyper::Method::GET, path_and_query).await
    }

    async fn request_with(
        &self,
        method: hyper::Method,
        path_and_query: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let mut sender = self.connect().await?;
        let req = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, "netta")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = one_line(&body);
        Err(if status == StatusCode::FORBIDDEN {
            ClientError::Denied(self.path.clone(), msg)
        } else {
            ClientError::Status(self.path.clone(), msg)
        })
    }

    pub async fn get_bytes(&self, path_and_query: &str) -> Result<Bytes, ClientError> {
        let resp = self.request(path_and_query).await?;
        resp.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, ClientError> {
        let b = self.get_bytes(path_and_query).await?;
        serde_json::from_slice(&b)
            .map_err(|e| ClientError::Io(self.path.clone(), format!("bad reply: {e}")))
    }

    /// Calls `chunk` with each piece of a streamed body until it returns false or the stream ends.
    pub async fn stream(
        &self,
        path_and_query: &str,
        mut chunk: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let mut body = self.request(path_and_query).await?.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if !chunk(data) {
                    break;
                }
            }
        }
        Ok(())
    }

    pub async fn hello(&self) -> Result<super::Hello, ClientError> {
        self.get_json("/v1/hello").await
    }

    /// The agent's table; its closed rows too when `history`.
    pub async fn snapshot(
        &self,
        history: bool,
    ) -> Result<crate::core::table::Snapshot, ClientError> {
        self.get_json(&format!("/v1/view/snapshot?history={history}"))
            .await
    }

    /// `netta list`'s rows, selected and sorted by the agent: whole rows when
    /// `q.full`, else what the plain list shows of them.
    pub async fn list(
        &self,
        q: &super::list::ListQuery,
    ) -> Result<Vec<crate::core::table::Conn>, ClientError> {
        let path = format!("/v1/view/list?{}", q.to_query_string());
        if q.full {
            return self.get_json(&path).await;
        }
        let rows: Vec<super::list::ListRow> = self.get_json(&path).await?;
        Ok(rows
            .into_iter()
            .map(super::list::ListRow::into_conn)
            .collect())
    }

    /// What `netta top` shows of the agent's table now.
    pub async fn top(&self) -> Result<crate::core::top::Picture, ClientError> {
        self.get_json("/v1/view/top").await
    }

    pub async fn incidents(&self) -> Result<Vec<crate::detect::Alert>, ClientError> {
        self.get_json("/v1/view/incidents").await
    }

    /// The agent's live records, as a local subscription would give them. The
    /// channel closes when the agent goes away; a bad line ends it too.
    pub async fn records(
        &self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::agent::Record>, ClientError> {
        let mut body = self.request("/v1/view/records").await?.into_body();
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buf.extend_from_slice(data);
                let mut start = 0;
                while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
                    let line = &buf[start..start + i];
                    start += i + 1;
                    match serde_json::from_slice(line) {
                        Ok(r) => {
                            if tx.send(r).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            log::warn!("bad record from the agent: {e}");
                            return;
                        }
                    }
                }
                buf.drain(..start);
            }
        });
        Ok(rx)
    }

    pub async fn baseline(&self) -> Result<crate::core::stored::BaselineReport, ClientError> {
        self.get_json("/v1/baseline").await
    }

    /// Resets the baseline; returns the agent's one line.
    pub async fn reset_baseline(&self) -> Result<String, ClientError> {
        let resp = self
            .request_with(hyper::Method::POST, "/v1/baseline/reset")
            .await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))?;
        Ok(one_line(&body))
    }

    pub async fn history(
        &self,
        q: &crate::store::query::Query,
    ) -> Result<Vec<crate::store::ConnRow>, ClientError> {
        let qs = serde_urlencoded::to_string(q)
            .map_err(|e| ClientError::Io(self.path.clone(), e.to_string()))?;
        self.get_json(&format!("/v1/history?{qs}")).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::{mpsc, watch};

    use super::super::access::Policy;
    use super::super::{server, Backend, Hello};
    use super::*;
    use crate::agent::Record;
    use crate::core::clock::Clock;
    use crate::core::event::ConnEvent;
    use crate::core::table::Key;
    use crate::store::query::{EndsQuery, Query};
    use crate::store::tests::conn_row;
    use crate::store::{Row, Store};

    struct Fake {
        store: Option<PathBuf>,
        taps: Mutex<Vec<mpsc::Sender<Record>>>,
    }

    impl Backend for Fake {
        fn hello(&self) -> Hello {
            Hello {
                pid: 4242,
                uptime_s: 10_800,
                mode: "eBPF, ring buffer".into(),
                version: "test".into(),
                store: self.store.is_some(),
                clock_offset_ns: 0,
            }
        }
        fn table(&self) -> serde_json::Value {
            serde_json::json!([{"state": "LISTENING"}])
        }
        fn snapshot(&self, history: bool) -> crate::core::table::Snapshot {
            let mut s = crate::fixture::snapshot();
            if !history {
                s.history.clear();
            }
            s
        }
        fn top(&self) -> crate::core::top::Picture {
            crate::core::top::Picture::of_snapshot(&self.snapshot(false), 0)
        }
        fn incidents(&self) -> Vec<crate::detect::Alert> {
            Vec::new()
        }
        fn baseline(&self) -> Result<crate::core::stored::BaselineReport, String> {
            Err("no store".into())
        }
        fn reset_baseline(&self) -> Result<(), String> {
            Ok(())
        }
        fn stats(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn alerts(&self) -> serde_json::Value {
            serde_json::json!([])
        }
        fn subscribe(&self) -> mpsc::Receiver<Record> {
            let (tx, rx) = mpsc::channel(16);
            self.taps.lock().unwrap().push(tx);
            rx
        }
        fn clock(&self) -> Clock {
            Clock::fixed(0)
        }
        fn store_path(&self) -> Option<PathBuf> {
            self.store.clone()
        }
        fn metrics(&self, _: Option<&str>) -> (String, &'static str) {
            ("netta_up 1\n".into(), "text/plain; version=0.0.4")
        }
    }

    async fn start(
        policy: Policy,
        store: Option<PathBuf>,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        Arc<Fake>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/netta.sock");
        let l = server::bind(&sock).unwrap();
        let fake = Arc::new(Fake {
            store,
            taps: Mutex::new(Vec::new()),
        });
        let (tx, rx) = watch::channel(false);
        let h = tokio::spawn(server::serve(l, sock.clone(), fake.clone(), policy, rx));
        (dir, sock, fake, tx, h)
    }

    #[tokio::test]
    async fn serves_hello_history_and_metrics_with_a_secured_socket() {
        let sdir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(sdir.path()).unwrap();
        s.insert(&[
            Row::Conn(conn_row(1_000, 40_000, 8080, "client")),
            Row::Conn(conn_row(2_000, 40_001, 9090, "other")),
        ])
        .unwrap();
        let (_d, sock, _fake, stop, h) = start(Policy::standard(), Some(s.path().into())).await;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let c = Client::new(&sock);
        assert_eq!(c.hello().await.unwrap().pid, 4242);
        let rows = c
            .history(&Query {
                ends: EndsQuery {
                    dport: Some(8080),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].comm.to_string(), "client");
        let e = c
            .history(&Query {
                ends: EndsQuery {
                    src: Some("nonsense".into()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Status(..)), "{e}");
        assert!(e.to_string().contains("CIDR"), "{e}");
        let m = c.get_bytes("/metrics").await.unwrap();
        assert_eq!(&m[..], b"netta_up 1\n");
        // A second agent cannot take the socket of a live one.
        assert!(matches!(
            server::bind(&sock),
            Err(server::BindError::InUse(_))
        ));
        stop.send(true).unwrap();
        h.await.unwrap().unwrap();
        assert!(!sock.exists(), "the socket is removed at shutdown");
        let e = c.hello().await.unwrap_err();
        assert!(e.not_running(), "{e}");
    }

    #[tokio::test]
    async fn views_get_the_agents_own_snapshot_incidents_and_records() {
        let (_d, sock, fake, stop, h) = start(Policy::standard(), None).await;
        let c = Client::new(&sock);
        // The agent's table, its sockets keyed by opaque id (no kernel address).
        let ids = crate::host::identity::get().sock_ids;
        let mut want = crate::fixture::snapshot();
        assert!(want.conns.iter().any(|c| matches!(c.key, Key::Sock(_))));
        want.hide_sockets(&ids);
        let got = c.snapshot(true).await.unwrap();
        assert_eq!(got.conns, want.conns);
        assert_eq!(got.history, want.history);
        assert_eq!(got.counters, want.counters);
        assert!(c.snapshot(false).await.unwrap().history.is_empty());
        // `top`'s picture: the same connections, listeners counted apart.
        let pic = c.top().await.unwrap();
        let listening = want.conns.iter().filter(|c| c.state.is_listener()).count();
        assert_eq!(pic.listening, listening);
        assert_eq!(pic.rows.len(), want.conns.len() - listening);
        assert_eq!(pic.counters, want.counters);
        assert!(c.incidents().await.unwrap().is_empty());
        let mut rx = c.records(16).await.unwrap();
        let mut ev = conn_row(5_000_000, 40_001, 8080, "new").to_event();
        // A name no UTF-8 decoder keeps: the view must see the same bytes.
        ev.comm = crate::core::sanitize::Comm::from_bytes(b"a\xff\x1b[2J");
        let alert = crate::detect::Alert {
            rule: crate::detect::RuleId::PortScan,
            severity: crate::detect::Severity::High,
            key: "127.0.0.1".into(),
            message: "scan".into(),
            source_ip: Some("127.0.0.1".parse().unwrap()),
            first_ns: 1,
            last_ns: 2,
            updates: 3,
            ended: false,
            evidence: serde_json::json!({"ports": [1, 2]}),
        };
        let tap = fake.taps.lock().unwrap()[0].clone();
        tap.send(Record::Event(ev.clone())).await.unwrap();
        tap.send(Record::Alert(Arc::new(alert.clone())))
            .await
            .unwrap();
        match rx.recv().await.unwrap() {
            Record::Event(e) => {
                assert_eq!(e.sock, ids.opaque(ev.sock), "the socket by opaque id");
                assert_eq!(ConnEvent { sock: ev.sock, ..e }, ev);
            }
            r => panic!("{r:?}"),
        }
        match rx.recv().await.unwrap() {
            Record::Alert(a) => assert_eq!(*a, alert),
            r => panic!("{r:?}"),
        }
        stop.send(true).unwrap();
        h.await.unwrap().unwrap();
        assert!(rx.recv().await.is_none(), "the stream ends with the agent");
    }

    #[tokio::test]
    async fn a_refused_peer_gets_one_line_and_no_data() {
        let policy = Policy {
            uids: vec![u32::MAX - 1],
            group: None,
        };
        let (_d, sock, _f, stop, h) = start(policy, None).await;
        let c = Client::new(&sock);
        for path in [
            "/v1/hello",
            "/v1/table",
            "/v1/history",
            "/v1/events",
            "/metrics",
        ] {
            let e = c.get_bytes(path).await.unwrap_err();
            let ClientError::Denied(_, msg) = &e else {
                panic!("{path}: {e}")
            };
            assert!(msg.starts_with("permission denied: uid"), "{msg}");
            assert!(!msg.contains("LISTENING"));
        }
        stop.send(true).unwrap();
        h.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn history_without_a_store_says_so() {
        let (_d, sock, _f, stop, h) = start(Policy::standard(), None).await;
        let e = Client::new(&sock)
            .history(&Query::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("--state-dir"), "{e}");
        stop.send(true).unwrap();
        h.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn events_replay_stored_rows_then_follow_live() {
        let sdir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(sdir.path()).unwrap();
        s.insert(&[Row::Conn(conn_row(1_000_000, 40_000, 8080, "old"))])
            .unwrap();
        let (_d, sock, fake, stop, h) = start(Policy::standard(), Some(s.path().into())).await;
        let c = Client::new(&sock);
        let feeder = {
            let fake = fake.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let taps = fake.taps.lock().unwrap().clone();
                    if let Some(tx) = taps.first() {
                        let mut ev = crate::store::tests::conn_row(5_000_000, 40_001, 8080, "new")
                            .to_event();
                        ev.action = crate::core::event::Action::Closed;
                        let _ = tx.send(Record::Event(ev)).await;
                        break;
                    }
                }
            })
        };
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        c.stream("/v1/events?since_us=0", |chunk| {
            buf.extend_from_slice(chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = buf.drain(..=i).collect();
                lines.push(serde_json::from_slice::<serde_json::Value>(&l).unwrap());
            }
            lines.len() < 2
        })
        .await
        .unwrap();
        feeder.await.unwrap();
        assert_eq!(lines[0]["process"]["name"], "old");
        assert_eq!(lines[0]["@timestamp"], "1970-01-01T00:00:01.000000000Z");
        assert_eq!(lines[1]["process"]["name"], "new");
        stop.send(true).unwrap();
        h.await.unwrap().unwrap();
    }
}
