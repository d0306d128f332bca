//! Prometheus text exposition of runs that have not ended, plus the latest
//! run: states, targets, check values and statuses, progress and ETA.

use crate::Tower;
use crate::api::authorize_read;
use crate::error::AppError;
use crate::view;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use cutover_engine::model::RunState;
use std::collections::HashMap;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub async fn metrics(
    State(t): State<Tower>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, AppError> {
    authorize_read(&t, &headers, &q)?;
    let runs = view::runs(&t.engine)?;
    let latest = runs.first().map(|r| r.id.clone());
    let mut out = String::new();
    let _ = writeln!(out, "# HELP cutover_run_state 1 for the state a run is in.\n# TYPE cutover_run_state gauge");
    let mut details = vec![];
    for r in &runs {
        let live = !matches!(r.state, RunState::Succeeded | RunState::Aborted | RunState::Failed);
        if !live && Some(&r.id) != latest.as_ref() {
            continue;
        }
        for s in RunState::ALL {
            let _ = writeln!(
                out,
                "cutover_run_state{{run=\"{}\",plan=\"{}\",state=\"{s}\"}} {}",
                esc(&r.id),
                esc(&r.plan),
                u8::from(*s == r.state)
            );
        }
        details.push(view::detail(&t.engine, &r.id, 0)?);
    }
    let _ = writeln!(out, "# HELP cutover_targets Targets of a run by state.\n# TYPE cutover_targets gauge");
    for d in &details {
        for (s, n) in &d.counts {
            let _ = writeln!(out, "cutover_targets{{run=\"{}\",state=\"{s}\"}} {n}", esc(&d.id));
        }
    }
    let _ = writeln!(
        out,
        "# HELP cutover_progress_ratio Share of targets done (0-1).\n# TYPE cutover_progress_ratio gauge"
    );
    for d in &details {
        let _ = writeln!(out, "cutover_progress_ratio{{run=\"{}\"}} {}", esc(&d.id), d.progress.percent / 100.0);
    }
    let _ = writeln!(
        out,
        "# HELP cutover_eta_seconds Estimated seconds left (absent when unknown).\n# TYPE cutover_eta_seconds gauge"
    );
    for d in &details {
        if let Some(e) = d.progress.eta_seconds {
            let _ = writeln!(out, "cutover_eta_seconds{{run=\"{}\"}} {e}", esc(&d.id));
        }
    }
    // Each running step's own progress (rows of a pg.bigint backfill, bytes
    // of a pg.copy…), with its rate, ETA and, while throttled, the reason.
    let mut step =
        String::from("# HELP cutover_step_done Units a running step has done.\n# TYPE cutover_step_done gauge\n");
    let mut step_total = String::from(
        "# HELP cutover_step_total Units a running step expects in all.\n# TYPE cutover_step_total gauge\n",
    );
    let mut step_rate = String::from(
        "# HELP cutover_step_rate Units per second of a running step, recent window.\n# TYPE cutover_step_rate gauge\n",
    );
    let mut step_eta = String::from(
        "# HELP cutover_step_eta_seconds Seconds a running step has left (absent when unknown).\n# TYPE cutover_step_eta_seconds gauge\n",
    );
    let mut throttled = String::from(
        "# HELP cutover_step_throttled 1 while a running step says it is throttled, with the reason.\n# TYPE cutover_step_throttled gauge\n",
    );
    for d in &details {
        for t in &d.targets {
            let Some(p) = &t.progress else { continue };
            let labels = format!(
                "run=\"{}\",target=\"{}\",step=\"{}\",unit=\"{}\"",
                esc(&d.id),
                esc(&t.name),
                esc(t.step.as_deref().unwrap_or("")),
                esc(&p.unit)
            );
            let _ = writeln!(step, "cutover_step_done{{{labels}}} {}", p.done);
            let _ = writeln!(step_total, "cutover_step_total{{{labels}}} {}", p.total);
            let _ = writeln!(step_rate, "cutover_step_rate{{{labels}}} {}", p.rate);
            if let Some(e) = p.eta_seconds {
                let _ = writeln!(step_eta, "cutover_step_eta_seconds{{{labels}}} {e}");
            }
            if let Some(reason) = p.note.as_deref().and_then(|n| n.strip_prefix("throttled: ")) {
                let _ = writeln!(throttled, "cutover_step_throttled{{{labels},reason=\"{}\"}} 1", esc(reason));
            }
        }
    }
    for part in [step, step_total, step_rate, step_eta, throttled] {
        out.push_str(&part);
    }
    let _ =
        writeln!(out, "# HELP cutover_check_status 1 for the status a check shows.\n# TYPE cutover_check_status gauge");
    // Each family's samples follow its own HELP and TYPE lines.
    let mut values = String::from(
        "# HELP cutover_check_value The latest numeric value of a check.\n# TYPE cutover_check_value gauge\n",
    );
    for d in &details {
        for c in &d.checks {
            let target = esc(c.target.as_deref().unwrap_or(""));
            let _ = writeln!(
                out,
                "cutover_check_status{{run=\"{}\",check=\"{}\",target=\"{target}\",status=\"{}\"}} 1",
                esc(&d.id),
                esc(&c.check),
                c.status
            );
            if let Ok(v) = c.value.parse::<f64>() {
                let _ = writeln!(
                    values,
                    "cutover_check_value{{run=\"{}\",check=\"{}\",target=\"{target}\"}} {v}",
                    esc(&d.id),
                    esc(&c.check)
                );
            }
        }
    }
    out.push_str(&values);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
