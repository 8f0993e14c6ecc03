//! The operations HTTP endpoint (`[http]`): health, readiness, Prometheus metrics and the
//! live snapshot of a shop.
//!
//! | path | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 when [`LiveView::ready`], else 503 |
//! | `GET /metrics` | the [`Metrics`] in the Prometheus text format |
//! | `GET /v1/shops/{shop_id}` | the shop's snapshot (SPEC §8 shape) plus `freshness`; 404 unknown shop, 503 while restoring |
//!
//! The pipeline of file mode is synchronous, so the server runs on its own single-threaded
//! tokio runtime in a background thread; it binds before [`HttpServer::start`] returns, so
//! a bad address fails startup and port 0 yields the real port ([`HttpServer::addr`]).

use crate::live::{Freshness, LiveView, Lookup};
use crate::output::Output;
use crate::telemetry::metrics::Metrics;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;

/// Starting the server failed.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} (http.addr / --http-addr): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the HTTP server thread: {0}")]
    Runtime(std::io::Error),
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    view: Arc<dyn LiveView>,
}

/// A running server; stops when dropped (or with [`HttpServer::stop`]).
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` and serves in a background thread.
    pub fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        view: Arc<dyn LiveView>,
    ) -> Result<HttpServer, HttpError> {
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| HttpError::Bind { addr, source })?;
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(HttpError::Runtime)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(AppState { metrics, view });
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "HTTP listener failed"),
                    };
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "HTTP server failed");
                    }
                })
            })
            .map_err(HttpError::Runtime)?;
        Ok(HttpServer { addr: bound, stop: Some(stop), thread: Some(thread) })
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/shops/{shop_id}", get(shop))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.view.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics.set_ready(s.view.ready());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, serde_json::json!({ "error": message }).to_string())
}

async fn shop(State(s): State<AppState>, Path(shop_id): Path<String>) -> Response {
    // State reads are quick local RocksDB gets; a blocking section keeps the runtime honest.
    let view = s.view.clone();
    let id = shop_id.clone();
    let lookup = match tokio::task::spawn_blocking(move || view.shop(&id)).await {
        Ok(l) => l,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match lookup {
        Lookup::Restoring => error(StatusCode::SERVICE_UNAVAILABLE, "state is being restored; retry shortly"),
        Lookup::NotFound => error(StatusCode::NOT_FOUND, &format!("no committed state for shop {shop_id:?}")),
        Lookup::Elsewhere { shard } => error(
            StatusCode::NOT_FOUND,
            &format!("shop {shop_id:?} is in shard {shard}, which another instance owns; ask that instance"),
        ),
        Lookup::Failed(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Lookup::Found { snapshot, freshness } => {
            json(StatusCode::OK, shop_json(&Output::Snapshot(snapshot).to_json(), &freshness))
        }
    }
}

/// The snapshot line with a `freshness` member appended:
/// `{…snapshot…,"freshness":{"watermark":…,"positions":[{"source","offset","end"}]}}`.
fn shop_json(snapshot_json: &str, freshness: &Freshness) -> String {
    let f = serde_json::json!({
        "watermark": freshness.watermark.map(|w| w.to_rfc3339()),
        "positions": freshness.positions,
    });
    let body = snapshot_json.strip_suffix('}').expect("a snapshot is a JSON object");
    format!("{body},\"freshness\":{f}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::telemetry::progress::Position;

    #[test]
    fn freshness_is_appended_to_the_snapshot_object() {
        let f = Freshness {
            watermark: Some(Timestamp::parse_rfc3339("2024-05-01T00:00:00+08:00").unwrap()),
            positions: vec![Position { source: "a".into(), offset: 3, end: None }],
        };
        let v: serde_json::Value = serde_json::from_str(&shop_json(r#"{"shop_id":"s"}"#, &f)).unwrap();
        assert_eq!(v["shop_id"], "s");
        assert_eq!(v["freshness"]["watermark"], "2024-05-01T00:00:00+08:00");
        assert_eq!(v["freshness"]["positions"][0], serde_json::json!({"source":"a","offset":3}));
    }
}
