//! `GET /metrics` over HTTP, served by axum (the same stack as the local API).
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

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
    let r = axum::serve(listener, router(metrics))
        .with_graceful_shutdown(stopped(shutdown))
        .await;
    let _ = tap.await;
    r
}

/// Resolves once the value is true or the sender is gone.
pub(super) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|&v| v).await;
}

pub(super) const INDEX: &str = "netta agent: Prometheus metrics are at /metrics\n";

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `/metrics` (GET and HEAD), `/`, and a one-line 404 for anything else.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(|| async { text(StatusCode::OK, INDEX) }))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n",
            )
        })
        .layer(middleware::from_fn(one_bounded_request))
        .with_state(metrics)
}

/// A request head over [`MAX_HEAD`] bytes is refused with 431 before any work;
/// every answer closes the connection (scrapers open one per scrape) and is not cached.
async fn one_bounded_request(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    let mut resp = if size > MAX_HEAD {
        text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large\n",
        )
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn scrape(State(m): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // Reading the table can take a few ms on a large table: off the async workers.
    match tokio::task::spawn_blocking(move || m.render(format)).await {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            log::warn!("metrics: rendering failed: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            )
        }
    }
}
