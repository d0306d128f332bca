//! The JSON API and the control endpoints.

use crate::Tower;
use crate::error::AppError;
use crate::view;
use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use cutover_engine::control::{Outcome, operate};
use cutover_engine::model::{Action, NewEvent};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

type Conn = Option<Extension<ConnectInfo<SocketAddr>>>;

/// Compares without stopping at the first different byte.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Control always needs the token: 401 without one, 403 with a wrong one.
pub(crate) fn authorize(t: &Tower, headers: &HeaderMap) -> Result<(), AppError> {
    match bearer(headers) {
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "this action needs the operator token: send `Authorization: Bearer <token>`",
        )),
        Some(b) if same(b, &t.token) => Ok(()),
        Some(_) => Err(AppError::new(StatusCode::FORBIDDEN, "the token is not valid for this tower")),
    }
}

/// Reading needs the token only when the tower was started so; the token
/// may then also come as `?token=` (an EventSource cannot send headers).
pub(crate) fn authorize_read(t: &Tower, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<(), AppError> {
    if !t.protect_reads {
        return Ok(());
    }
    match (bearer(headers), query.get("token").map(String::as_str)) {
        (Some(b), _) | (None, Some(b)) if same(b, &t.token) => Ok(()),
        (None, None) => Err(AppError::new(StatusCode::UNAUTHORIZED, "reading this tower needs the token")),
        _ => Err(AppError::new(StatusCode::FORBIDDEN, "the token is not valid for this tower")),
    }
}

/// Who acted, for the audit trail: the name the operator gave and from where.
fn origin(headers: &HeaderMap, conn: &Conn) -> String {
    let who =
        headers.get("x-cutover-actor").and_then(|v| v.to_str().ok()).filter(|s| !s.is_empty()).unwrap_or("operator");
    let from = conn.as_ref().map(|Extension(ConnectInfo(a))| a.to_string()).unwrap_or_else(|| "unknown".into());
    let who: String = who.chars().filter(|c| !c.is_control()).take(64).collect();
    format!("{who} via the tower from {from}")
}

pub async fn runs(
    State(t): State<Tower>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    authorize_read(&t, &headers, &q)?;
    Ok(Json(json!(view::runs(&t.engine)?)))
}

pub async fn run(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    authorize_read(&t, &headers, &q)?;
    Ok(Json(json!(view::detail(&t.engine, &run, 200)?)))
}

pub async fn events(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    authorize_read(&t, &headers, &q)?;
    let after = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    t.engine.store().run(&run)?;
    Ok(Json(json!(t.engine.store().events(&run, after)?)))
}

pub async fn snapshot(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, AppError> {
    authorize_read(&t, &headers, &q)?;
    Ok(Json(view::snapshot(&t.engine, &run)?))
}

/// Server-Sent Events: every new event of the run, as it is recorded (by
/// this process or another one driving the run), with keep-alives.
pub async fn stream(
    State(t): State<Tower>,
    Path(run): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    authorize_read(&t, &headers, &q)?;
    t.engine.store().run(&run)?;
    // Start after what the page already shows.
    let start = q.get("after").and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        t.engine.store().last_events(&run, 1).ok().and_then(|e| e.last().map(|x| x.id)).unwrap_or(0)
    });
    let engine = t.engine.clone();
    let s = futures_util::stream::unfold(
        (engine, run, start, Vec::<SseEvent>::new()),
        |(engine, run, mut last, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (engine, run, last, queue)));
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                if let Ok(evs) = engine.store().events(&run, last) {
                    for e in evs.into_iter().rev() {
                        last = last.max(e.id);
                        let data =
                            json!({ "id": e.id, "kind": e.kind, "message": e.message, "ts": e.ts, "target": e.target });
                        queue.push(SseEvent::default().id(e.id.to_string()).event("run").data(data.to_string()));
                    }
                }
            }
        },
    );
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

type Acted = Result<(StatusCode, Json<Value>), AppError>;

async fn outcome(t: &Tower, run: &str, action: Action, target: Option<&str>, who: &str, note: Option<&str>) -> Acted {
    let o = operate(&t.engine, run, action, target, who, note).await?;
    let (status, applied, message) = match o {
        Outcome::Handed { pid, host, handled } => {
            (StatusCode::OK, handled, format!("{action} handed to process {pid} on {host}"))
        }
        Outcome::Applied(m) => (StatusCode::OK, true, m),
        Outcome::Refused(m) => return Err(AppError::new(StatusCode::CONFLICT, m)),
        Outcome::Drive(a) => {
            // Nobody drives the run: this server does, in the background.
            let (engine, id) = (t.engine.clone(), run.to_string());
            tokio::spawn(async move {
                let r = if a == Action::Abort { engine.abort_undriven(&id).await } else { engine.drive(&id).await };
                if let Err(e) = r {
                    let _ =
                        engine.emit(&id, NewEvent::run("run_error", format!("the tower could not drive the run: {e}")));
                }
            });
            (StatusCode::ACCEPTED, true, format!("{action}: the tower drives run {run} now"))
        }
    };
    let body =
        json!({ "run": run, "action": action, "target": target, "applied": applied, "message": message, "by": who });
    Ok((status, Json(body)))
}

#[derive(Deserialize, Default)]
pub struct ActBody {
    pub note: Option<String>,
}

fn body_note(body: &Option<Json<ActBody>>) -> Option<&str> {
    body.as_ref().and_then(|Json(b)| b.note.as_deref())
}

pub async fn act(
    State(t): State<Tower>,
    Path((run, action)): Path<(String, String)>,
    headers: HeaderMap,
    conn: Conn,
    body: Option<Json<ActBody>>,
) -> Acted {
    authorize(&t, &headers)?;
    let action = match action.as_str() {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "abort" => Action::Abort,
        other => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}: pause, resume or abort"),
            ));
        }
    };
    outcome(&t, &run, action, None, &origin(&headers, &conn), body_note(&body)).await
}

pub async fn act_target(
    State(t): State<Tower>,
    Path((run, target, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    conn: Conn,
    body: Option<Json<ActBody>>,
) -> Acted {
    authorize(&t, &headers)?;
    let action = match action.as_str() {
        "retry" => Action::Retry,
        "skip" => Action::Skip,
        other => return Err(AppError::new(StatusCode::NOT_FOUND, format!("unknown action {other:?}: retry or skip"))),
    };
    outcome(&t, &run, action, Some(&target), &origin(&headers, &conn), body_note(&body)).await
}

#[derive(Deserialize)]
pub struct TickBody {
    pub ok: bool,
    pub note: Option<String>,
    pub target: Option<String>,
}

pub async fn tick(
    State(t): State<Tower>,
    Path((run, check)): Path<(String, String)>,
    headers: HeaderMap,
    conn: Conn,
    Json(body): Json<TickBody>,
) -> Result<Json<Value>, AppError> {
    authorize(&t, &headers)?;
    let who = origin(&headers, &conn);
    match cutover_engine::control::tick(
        &t.engine,
        &run,
        &check,
        body.target.as_deref(),
        body.ok,
        &who,
        body.note.as_deref(),
    )? {
        Ok(_) => Ok(Json(json!({ "run": run, "check": check, "ok": body.ok, "by": who }))),
        Err(why) => Err(AppError::new(StatusCode::CONFLICT, why)),
    }
}

#[derive(Deserialize, Default)]
pub struct ApproveBody {
    pub target: Option<String>,
    pub note: Option<String>,
}

pub async fn approve(
    State(t): State<Tower>,
    Path((run, step)): Path<(String, String)>,
    headers: HeaderMap,
    conn: Conn,
    body: Option<Json<ApproveBody>>,
) -> Result<Json<Value>, AppError> {
    authorize(&t, &headers)?;
    let who = origin(&headers, &conn);
    let body = body.map(|Json(b)| b).unwrap_or_default();
    match cutover_engine::control::approve(&t.engine, &run, &step, body.target.as_deref(), &who, body.note.as_deref())?
    {
        Ok(targets) => {
            let message = format!("approved `{step}` for {}", targets.join(", "));
            Ok(Json(json!({ "run": run, "step": step, "approved": targets, "by": who, "message": message })))
        }
        Err(why) => Err(AppError::new(StatusCode::CONFLICT, why)),
    }
}
