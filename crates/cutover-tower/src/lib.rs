//! The control tower: a live web view of runs, served by the `cutover`
//! binary (`cutover serve`, or `--listen` on run, resume and watch).
//!
//! - Pages are rendered on the server (minijinja templates embedded in the
//!   binary) with a little JavaScript: Server-Sent Events say something
//!   changed and the page fetches its live part again; a lost connection is
//!   shown loudly.
//! - `/api/...` serves everything the page shows as JSON; `/metrics` serves
//!   Prometheus text; `/healthz` says the server is up.
//! - Control actions (pause, resume, abort, retry, skip, tick) need the bearer
//!   token; they go through the same `operate` as the CLI and are recorded
//!   with their origin.
//!
//! ```no_run
//! # async fn demo(engine: cutover_engine::Engine) -> std::io::Result<()> {
//! let tower = cutover_tower::Tower::new(engine, "s3cret-token".into(), false);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, cutover_tower::app(tower)).await
//! # }
//! ```
//!
//! Invariants: this crate only reads the store and calls the engine's
//! `operate`; it never changes a run's state by itself. It binds where it is
//! told (the CLI defaults to 127.0.0.1).

mod api;
mod error;
mod metrics;
mod pages;
pub mod view;

pub use pages::snapshot_html;

use axum::Router;
use axum::routing::{get, post};
use cutover_engine::Engine;
use std::sync::Arc;

/// What the handlers share.
#[derive(Clone)]
pub struct Tower {
    pub(crate) engine: Engine,
    pub(crate) token: Arc<str>,
    /// Whether reading also needs the token.
    pub(crate) protect_reads: bool,
}

impl Tower {
    pub fn new(engine: Engine, token: String, protect_reads: bool) -> Tower {
        Tower { engine, token: token.into(), protect_reads }
    }
}

/// The router, apart from serving, so tests call it without a socket.
pub fn app(tower: Tower) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/runs/{run}", get(pages::run))
        .route("/runs/{run}/live", get(pages::live))
        .route("/runs/{run}/snapshot.html", get(pages::snapshot))
        .route("/assets/tower.js", get(pages::script))
        .route("/assets/tower.css", get(pages::style))
        .route("/api/runs", get(api::runs))
        .route("/api/runs/{run}", get(api::run))
        .route("/api/runs/{run}/events", get(api::events))
        .route("/api/runs/{run}/stream", get(api::stream))
        .route("/api/runs/{run}/snapshot", get(api::snapshot))
        .route("/api/runs/{run}/{action}", post(api::act))
        .route("/api/runs/{run}/targets/{target}/{action}", post(api::act_target))
        .route("/api/runs/{run}/checks/{check}/tick", post(api::tick))
        .route("/api/runs/{run}/steps/{step}/approve", post(api::approve))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(tower)
}

/// A token for control actions: `CUTOVER_TOKEN`, or a random one to print.
pub fn token_from_env_or_random() -> (String, bool) {
    match std::env::var("CUTOVER_TOKEN") {
        Ok(t) if !t.trim().is_empty() => (t, false),
        _ => {
            // Enough randomness for a local operator token: the clock's
            // nanoseconds and the process id through a hash, twice.
            use std::hash::{BuildHasher, Hasher};
            let mut out = String::new();
            for _ in 0..2 {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(jiff::Timestamp::now().as_nanosecond() as u128);
                h.write_u32(std::process::id());
                out.push_str(&format!("{:016x}", h.finish()));
            }
            (out, true)
        }
    }
}

/// Serves the tower on `listener` until `shutdown` completes (connections
/// carry their peer address, recorded as the origin of control actions).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tower: Tower,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(tower).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
