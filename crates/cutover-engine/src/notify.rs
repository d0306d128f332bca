//! Webhooks: the events of a run that people want pushed to them (gate
//! transitions, target failures, approvals needed, the run's end), as JSON or
//! in Slack's `{"text": …}`, retried with backoff. Events are redacted before
//! they are recorded, so payloads carry no secret either.

use crate::Engine;
use crate::model::{Event, NewEvent};
use cutover_plan::{Notify, Plan};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Which group an event kind belongs to, if any.
pub fn group(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "gate_waiting" | "gate_passed" | "gate_failed" | "gate_inconclusive" | "target_throttled"
        | "throttle_cleared" | "gate_rollback" | "gate_abort" | "gate_error" | "wave_passed" | "wave_failed"
        | "wave_waiting" => "gate",
        "target_failed" | "target_rolled_back" | "target_needs_attention" => "target_failed",
        "approval_needed" => "approval_needed",
        "phase_completed" => "phase_completed",
        "check_status" => "check",
        "run_finished" | "watch_finished" => "run_finished",
        _ => return None,
    })
}

/// Whether a webhook wants a group: those it names, or with none named every
/// group but `check` (every status change of every check is a lot of posts).
pub fn wants(n: &Notify, group: &str) -> bool {
    if n.on.is_empty() { group != "check" } else { n.on.iter().any(|o| o == group) }
}

/// Starts a task that posts matching events until the engine's channel closes
/// or the handle is dropped.
pub fn start(
    engine: &Engine,
    run_id: &str,
    plan: Arc<Plan>,
    secrets: Arc<BTreeMap<String, String>>,
) -> Option<tokio::task::JoinHandle<()>> {
    if plan.notify.is_empty() {
        return None;
    }
    let mut rx = engine.subscribe();
    let (engine, run_id) = (engine.clone(), run_id.to_string());
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .ok()?;
    Some(tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if ev.run_id != run_id {
                continue;
            }
            let Some(g) = group(&ev.kind) else { continue };
            for n in plan.notify.iter().filter(|n| wants(n, g)) {
                send(&engine, &http, &plan, &secrets, n, &ev).await;
            }
            if g == "run_finished" {
                return;
            }
        }
    }))
}

fn payload(n: &Notify, plan: &Plan, ev: &Event) -> Value {
    if n.format == "slack" {
        let who = ev.target.as_deref().map(|t| format!(" `{t}`")).unwrap_or_default();
        json!({ "text": format!("*{}* · run {}{who}: {}", plan.name, ev.run_id, ev.message) })
    } else {
        json!({ "plan": plan.name, "run": ev.run_id, "kind": ev.kind, "group": group(&ev.kind), "target": ev.target, "step": ev.step, "message": ev.message, "ts": ev.ts, "data": ev.data })
    }
}

async fn send(
    engine: &Engine,
    http: &reqwest::Client,
    plan: &Plan,
    secrets: &BTreeMap<String, String>,
    n: &Notify,
    ev: &Event,
) {
    let ctx =
        json!({ "vars": plan.vars, "secrets": secrets, "plan": { "name": plan.name }, "run": { "id": ev.run_id } });
    let url = match cutover_plan::template::render(&n.url.source, &ctx) {
        Ok(u) => u,
        Err(e) => return failed(engine, n, ev, &format!("cannot render its url: {}", e.message)),
    };
    let body = payload(n, plan, ev).to_string();
    let mut last = String::new();
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
        }
        let mut req = http.post(&url).header("content-type", "application/json").body(body.clone());
        for (k, v) in &n.headers {
            if let Ok(v) = cutover_plan::template::render(&v.source, &ctx) {
                req = req.header(k.as_str(), v);
            }
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    failed(engine, n, ev, &format!("{last} (4 attempts)"));
}

fn failed(engine: &Engine, n: &Notify, ev: &Event, why: &str) {
    // The URL may hold a token: the message names the notification, not the URL.
    let _ = engine.emit(
        &ev.run_id,
        NewEvent::run("notify_failed", format!("notification `{}` of a {} event failed: {why}", n.name, ev.kind))
            .with_data(json!({ "notify": n.name })),
    );
}
