//! The API server: axum on a Unix socket. Every request is checked against the
//! peer's credentials first; a refused client gets 403 and one line, no data.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use bytes::Bytes;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use super::access::{groups_of, secure_socket, Policy};
use super::Backend;
use crate::agent::Record;
use crate::core::filter::EndsFilter;
use crate::store::query::{AlertQuery, Query as HistoryQuery, RunError};
use crate::store::{ConnRow, Reader};

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another agent already serves {0}")]
    InUse(PathBuf),
    #[error("cannot create {0}: {1}")]
    Dir(PathBuf, std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(PathBuf, std::io::Error),
}

/// Binds the socket (a stale one from a killed agent is replaced) and secures it.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| BindError::Dir(dir.into(), e))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.into()));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|e| BindError::Bind(path.into(), e))?;
    secure_socket(path).map_err(|e| BindError::Bind(path.into(), e))?;
    Ok(l)
}

/// The peer's credentials, taken when it connects.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    uid: u32,
    gid: u32,
    pid: Option<u32>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UnixListener>>
    for Peer
{
    fn connect_info(s: axum::serve::IncomingStream<'_, UnixListener>) -> Self {
        match s.io().peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().and_then(|p| u32::try_from(p).ok()),
            },
            // Unknown credentials are nobody's.
            Err(_) => Peer {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    policy: Arc<Policy>,
    stop: watch::Receiver<bool>,
}

/// Proof that the caller passed the access check.
struct Allowed;

fn peer_of(parts: &Parts) -> Peer {
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0)
        .unwrap_or(Peer {
            uid: u32::MAX,
            gid: u32::MAX,
            pid: None,
        })
}

impl FromRequestParts<AppState> for Allowed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let peer = peer_of(parts);
        let groups = peer.pid.map(groups_of).unwrap_or_default();
        if st.policy.allows(peer.uid, peer.gid, &groups) {
            Ok(Allowed)
        } else {
            Err(line(StatusCode::FORBIDDEN, Policy::refusal(peer.uid)))
        }
    }
}

/// Proof that the caller may change the agent's state: root or the agent's own user
/// (group `netta` may read, not reset).
struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let peer = peer_of(parts);
        if st.policy.uids.contains(&peer.uid) {
            Ok(Admin)
        } else {
            Err(line(StatusCode::FORBIDDEN, Policy::refusal_admin(peer.uid)))
        }
    }
}

fn line(code: StatusCode, msg: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain")], msg + "\n").into_response()
}

/// A failed request: a status and its one line.
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        line(self.0, self.1)
    }
}

fn run_error(e: RunError) -> Fail {
    match e {
        RunError::Query(q) => Fail(StatusCode::BAD_REQUEST, q.to_string()),
        RunError::Sqlite(s) => Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the store: {s}"),
        ),
    }
}

fn unavailable(msg: String) -> Fail {
    Fail(StatusCode::SERVICE_UNAVAILABLE, msg)
}

fn reader(st: &AppState) -> Result<Reader, Fail> {
    let Some(path) = st.backend.store_path() else {
        return Err(Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent keeps no history (start it with --state-dir)".into(),
        ));
    };
    Reader::open(&path).map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "query task failed".into(),
        ))
    })
}

/// A view of the running agent, as JSON.
fn live<T: serde::Serialize + Send + 'static>(
    view: fn(&dyn Backend) -> T,
) -> MethodRouter<AppState> {
    get(move |_: Allowed, State(st): State<AppState>| async move { Json(view(&*st.backend)) })
}

pub fn router(backend: Arc<dyn Backend>, policy: Policy, stop: watch::Receiver<bool>) -> Router {
    let st = AppState {
        backend,
        policy: Arc::new(policy),
        stop,
    };
    Router::new()
        .route("/v1/hello", live(|b| b.hello()))
        .route("/v1/table", live(|b| b.table()))
        .route("/v1/stats", live(|b| b.stats()))
        .route("/v1/alerts", live(|b| b.alerts()))
        .route("/v1/view/snapshot", get(view_snapshot))
        .route("/v1/view/list", get(view_list))
        .route("/v1/view/top", get(view_top))
        .route(
            "/v1/view/incidents",
            get(|_: Allowed, State(st): State<AppState>| async move {
                match blocking(move || Ok(st.backend.incidents())).await {
                    Ok(v) => Json(v).into_response(),
                    Err(fail) => fail.into_response(),
                }
            }),
        )
        .route("/v1/view/records", get(view_records))
        .route(
            "/v1/baseline",
            get(|_: Allowed, State(st): State<AppState>| async move {
                match blocking(move || st.backend.baseline().map_err(unavailable)).await {
                    Ok(v) => Json(v).into_response(),
                    Err(fail) => fail.into_response(),
                }
            }),
        )
        .route(
            "/v1/baseline/reset",
            post(|_: Admin, State(st): State<AppState>| async move {
                match blocking(move || st.backend.reset_baseline().map_err(unavailable)).await {
                    Ok(()) => line(StatusCode::OK, "baseline reset: learning again".into()),
                    Err(fail) => fail.into_response(),
                }
            }),
        )
        .route("/v1/history", get(history))
        .route(
            "/v1/history/alerts",
            get(|a: Allowed, s: State<AppState>, q: Query<AlertQuery>| {
                stored_alerts(a, s, q, false)
            }),
        )
        .route(
            "/v1/history/incidents",
            get(|a: Allowed, s: State<AppState>, q: Query<AlertQuery>| {
                stored_alerts(a, s, q, true)
            }),
        )
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics))
        .with_state(st)
}

async fn history(
    _: Allowed,
    State(st): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(e) = q.validate() {
        return line(StatusCode::BAD_REQUEST, e.to_string());
    }
    from_store(st, move |r| q.run(r).map_err(run_error)).await
}

async fn stored_alerts(
    _: Allowed,
    State(st): State<AppState>,
    Query(q): Query<AlertQuery>,
    incidents: bool,
) -> Response {
    from_store(st, move |r| {
        q.run(r, incidents).map_err(|e| run_error(e.into()))
    })
    .await
}

/// Rows read from the store off the runtime, as a JSON response.
async fn from_store<T: serde::Serialize + Send + 'static>(
    st: AppState,
    query: impl FnOnce(&Reader) -> Result<T, Fail> + Send + 'static,
) -> Response {
    match blocking(move || query(&reader(&st)?)).await {
        Ok(rows) => Json(rows).into_response(),
        Err(fail) => fail.into_response(),
    }
}

async fn metrics(
    _: Allowed,
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, ctype) = st.backend.metrics(accept);
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct SnapshotParams {
    /// Include the closed rows kept in memory (a large reply: only views that need them).
    history: bool,
}

async fn view_snapshot(
    _: Allowed,
    State(st): State<AppState>,
    Query(p): Query<SnapshotParams>,
) -> Response {
    match blocking(move || {
        let mut snap = st.backend.snapshot(p.history);
        snap.hide_sockets(&crate::host::identity::get().sock_ids);
        serde_json::to_vec(&snap)
            .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await
    {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(fail) => fail.into_response(),
    }
}

/// `netta list`'s rows: selected and sorted here, so only those travel; whole
/// rows (sockets by opaque id) or the plain list's columns.
async fn view_list(
    _: Allowed,
    State(st): State<AppState>,
    Query(q): Query<super::list::ListQuery>,
) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return line(StatusCode::BAD_REQUEST, e),
    };
    match blocking(move || {
        let body = if q.full {
            let ids = crate::host::identity::get().sock_ids;
            let rows: Vec<_> = st
                .backend
                .select(&filter)
                .into_iter()
                .map(|mut c| {
                    c.key = c.key.hidden(&ids);
                    c
                })
                .collect();
            serde_json::to_vec(&rows)
        } else {
            serde_json::to_vec(&st.backend.select_list(&filter))
        };
        body.map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await
    {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(fail) => fail.into_response(),
    }
}

async fn view_top(_: Allowed, State(st): State<AppState>) -> Response {
    match blocking(move || {
        serde_json::to_vec(&st.backend.top())
            .map_err(|e| Fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await
    {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(fail) => fail.into_response(),
    }
}

/// Chunks of JSON lines to a client, as an NDJSON response body.
type Lines = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// An NDJSON response fed by `produce`, which runs on its own task and sends
/// chunks until it returns or the client goes.
fn ndjson<F>(produce: impl FnOnce(Lines) -> F) -> Response
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(produce(tx));
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// Follows the live bus until `stop`, the bus closes or the client goes. Each
/// wakeup sends one chunk: the record that woke it and what is already waiting
/// (up to 64 KiB), each written by `write` (which may write nothing).
async fn follow(
    mut live: mpsc::Receiver<Record>,
    mut stop: watch::Receiver<bool>,
    tx: &Lines,
    mut write: impl FnMut(&mut Vec<u8>, &Record),
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = live.recv() => {
                let Some(r) = r else { break };
                let mut buf = Vec::with_capacity(512);
                write(&mut buf, &r);
                while buf.len() < 1 << 16 {
                    match live.try_recv() {
                        Ok(r) => write(&mut buf, &r),
                        Err(_) => break,
                    }
                }
                if !buf.is_empty() && tx.send(Ok(buf.into())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The live record bus as netta's own JSON lines (what attached views read).
async fn view_records(_: Allowed, State(st): State<AppState>) -> Response {
    let live = st.backend.subscribe();
    let stop = st.stop.clone();
    ndjson(|tx| async move { follow(live, stop, &tx, write_record).await })
}

/// A record as attached views read it: its socket by opaque id, never the
/// kernel's address.
fn write_record(buf: &mut Vec<u8>, r: &Record) {
    let hidden;
    let r = match r {
        Record::Event(ev) if ev.sock != 0 => {
            let mut ev = ev.clone();
            ev.sock = crate::host::identity::get().sock_ids.opaque(ev.sock);
            hidden = Record::Event(ev);
            &hidden
        }
        r => r,
    };
    if serde_json::to_writer(&mut *buf, r).is_ok() {
        buf.push(b'\n');
    }
}

/// JSON lines: stored rows from `since_us` (as ECS events), then live records.
async fn events(
    _: Allowed,
    State(st): State<AppState>,
    Query(p): Query<super::EventsQuery>,
) -> Response {
    let filter = match EndsFilter::from_query(&p.ends) {
        Ok(f) => f,
        Err(e) => return line(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Subscribe before replaying, so nothing falls between the two.
    let live = st.backend.subscribe();
    let clock = st.backend.clock();
    let stop = st.stop.clone();
    ndjson(|tx| async move {
        let mut replayed_until = i64::MIN;
        if let Some(since) = p.since_us {
            let rows = blocking(move || {
                let r = reader(&st)?;
                HistoryQuery {
                    since_us: Some(since),
                    ends: p.ends.clone(),
                    limit: Some(u64::MAX >> 1),
                    ..Default::default()
                }
                .run(&r)
                .map_err(run_error)
            })
            .await;
            match rows {
                Ok(rows) => {
                    for chunk in rows.chunks(1024) {
                        let mut buf = Vec::with_capacity(chunk.len() * 400);
                        for row in chunk {
                            replayed_until = replayed_until.max(row.ts_us);
                            write_row(&mut buf, row);
                        }
                        if tx.send(Ok(buf.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Err(_) => {
                    let _ = tx
                        .send(Ok(Bytes::from_static(
                            b"{\"error\":\"the agent keeps no history to replay\"}\n",
                        )))
                        .await;
                }
            }
        }
        follow(live, stop, &tx, |buf, r| {
            if !r.passes(&filter) {
                return;
            }
            if let Record::Event(ev) = r {
                let ts = crate::store::row::wall_us(&clock, ev.ts_ns);
                if ts <= replayed_until && crate::store::row::action_name(ev.action).is_some() {
                    return; // already sent from the store
                }
            }
            r.write_json(buf, &clock);
        })
        .await;
    })
}

/// A stored row as the same ECS line the live stream writes.
fn write_row(buf: &mut Vec<u8>, row: &ConnRow) {
    crate::render::ecs::write_line(buf, &row.to_event(), &crate::core::clock::Clock::fixed(0));
}

/// Serves until `stop` turns true, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    backend: Arc<dyn Backend>,
    policy: Policy,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = router(backend, policy, stop.clone());
    let mut s = stop.clone();
    let r = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            let _ = s.wait_for(|v| *v).await;
        })
        .await;
    let _ = std::fs::remove_file(&path);
    r
}
