//! Server-rendered pages (templates and assets embedded in the binary).

use crate::Tower;
use crate::api::authorize_read;
use crate::error::AppError;
use crate::view::{self, RunDetail};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use cutover_engine::model::TargetState;
use minijinja::{Environment, context};
use std::collections::HashMap;
use std::sync::OnceLock;

const CSS: &str = include_str!("../assets/tower.css");
const JS: &str = include_str!("../assets/tower.js");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // The templates are part of the binary; a broken one fails every
        // page with a 500 that names it (and the tests).
        for (name, src) in [
            ("index.html", include_str!("../templates/index.html")),
            ("run.html", include_str!("../templates/run.html")),
            ("live.html", include_str!("../templates/live.html")),
        ] {
            if let Err(e) = env.add_template(name, src) {
                eprintln!("cutover tower: template {name} does not parse: {e}");
            }
        }
        env
    })
}

fn ser<T: serde::Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}

fn render(name: &str, ctx: minijinja::Value) -> Result<String, AppError> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render {name}: {e}")))
}

/// The token passed on in links when reads are protected.
fn qs(t: &Tower, q: &HashMap<String, String>) -> String {
    match q.get("token") {
        Some(tok) if t.protect_reads => format!(
            "?token={}",
            tok.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect::<String>()
        ),
        _ => String::new(),
    }
}

fn page_context(d: &RunDetail, snapshot: bool, qs: &str) -> minijinja::Value {
    let attention: Vec<_> = d
        .targets
        .iter()
        .filter(|t| matches!(t.state, TargetState::Failed | TargetState::NeedsAttention | TargetState::RolledBack))
        .collect();
    let last_event = d.events.first().map(|e| e.id).unwrap_or(0);
    // Listing every running target of a 10,000-target fleet would drown the
    // page: the first 50 are shown, the grid shows the rest.
    let running: Vec<_> = d.targets.iter().filter(|t| t.state == TargetState::Running).take(50).collect();
    let states: Vec<&str> = TargetState::ALL.iter().map(|s| s.as_str()).collect();
    context! {
        d => ser(d),
        attention => ser(&attention),
        running => ser(&running),
        pct => format!("{:.1}", d.progress.percent),
        rate => format!("{:.1}", d.progress.rate * 60.0),
        last_event,
        states,
        snapshot,
        qs,
        css => CSS,
    }
}

pub async fn index(
    State(t): State<Tower>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, AppError> {
    authorize_read(&t, &headers, &q)?;
    let runs = view::runs(&t.engine)?;
    render("index.html", context! { runs => ser(&runs), qs => qs(&t, &q) }).map(Html)
}

pub async fn run(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, AppError> {
    authorize_read(&t, &headers, &q)?;
    let d = view::detail(&t.engine, &run, 200)?;
    render("run.html", page_context(&d, false, &qs(&t, &q))).map(Html)
}

pub async fn live(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Html<String>, AppError> {
    authorize_read(&t, &headers, &q)?;
    let d = view::detail(&t.engine, &run, 200)?;
    render("live.html", page_context(&d, false, &qs(&t, &q))).map(Html)
}

/// A self-contained page (styles inlined, no script): the post-mortem copy.
pub async fn snapshot(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, AppError> {
    authorize_read(&t, &headers, &q)?;
    let html = snapshot_html(&t.engine, &run)?;
    Ok(([(header::CONTENT_DISPOSITION, format!("inline; filename=\"cutover-{run}.html\""))], Html(html)))
}

/// The static page of a run, as `cutover export` writes it.
pub fn snapshot_html(engine: &cutover_engine::Engine, run: &str) -> Result<String, AppError> {
    let d = view::detail(engine, run, usize::MAX)?;
    render("run.html", page_context(&d, true, ""))
}

pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], JS)
}

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], CSS)
}
