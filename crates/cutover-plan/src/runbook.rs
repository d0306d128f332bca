//! The three documents of a migration (seed 004's runbook, dashboard spec and
//! alerts spec), written from the plan itself so they cannot drift from what
//! runs. Markdown; no secret values (only where each secret comes from).

use crate::model::*;
use std::fmt::Write;

fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'").replace('\n', " "))
}

fn dur(d: std::time::Duration) -> String {
    crate::duration::format(d)
}

fn conditions(c: &Conditions) -> String {
    let mut parts = vec![];
    if let Some(e) = &c.ok {
        parts.push(format!("ok when {}", code(&e.source)));
    }
    if let Some((min, max)) = c.range {
        let b = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_else(|| "…".into());
        parts.push(format!("ok within [{}, {}]", b(min), b(max)));
    }
    if let Some(e) = &c.warn {
        parts.push(format!("warn when {}", code(&e.source)));
    }
    if let Some(e) = &c.alarm {
        parts.push(format!("alarm when {}", code(&e.source)));
    }
    if parts.is_empty() { "the kind's own test (2xx, exit 0, port open…)".into() } else { parts.join("; ") }
}

fn source(c: &Check) -> String {
    match &c.kind {
        CheckKind::Http { url, method, json_path, body_regex, .. } => {
            let what = json_path
                .as_deref()
                .map(|p| format!(", value at {}", code(p)))
                .or(body_regex.as_deref().map(|r| format!(", body matches {}", code(r))))
                .unwrap_or_else(|| ", value = status code".into());
            format!("HTTP {method} {}{what}", code(&url.source))
        }
        CheckKind::Sql { query, preset, .. } => match (query, preset) {
            (_, Some(p)) => format!("PostgreSQL preset {}", code(p)),
            (Some(q), _) => format!("SQL {}", code(q)),
            _ => "SQL".into(),
        },
        CheckKind::Tcp { address } => format!("TCP {}", code(&address.source)),
        CheckKind::Command { command, .. } => match command {
            Command::Shell(t) => format!("command {}", code(&t.source)),
            Command::Argv(v) => {
                format!("command {}", code(&v.iter().map(|t| t.source.as_str()).collect::<Vec<_>>().join(" ")))
            }
        },
        CheckKind::Prometheus { url, query } => format!("PromQL {} on {}", code(query), code(&url.source)),
        CheckKind::Log { file, command, steps, .. } => {
            let from = file.as_ref().map(|f| code(&f.source)).or(command.as_deref().map(code)).unwrap_or_default();
            format!(
                "log {from}, steps: {}",
                steps.iter().map(|(n, r)| format!("{n} = {}", code(r))).collect::<Vec<_>>().join(", ")
            )
        }
        CheckKind::Manual => "manual: an operator ticks it (`cutover check RUN NAME --ok`)".into(),
    }
}

fn step_line(s: &Step, depth: usize, out: &mut String) {
    let indent = "   ".repeat(depth);
    let what = match &s.kind {
        StepKind::Exec(x) => match &x.command {
            Command::Shell(t) => format!("run {}", code(&t.source)),
            Command::Argv(v) => {
                format!("run {}", code(&v.iter().map(|t| t.source.as_str()).collect::<Vec<_>>().join(" ")))
            }
        },
        StepKind::Sql(x) => format!(
            "SQL on {}: {}",
            code(&x.dsn.source),
            x.statements.iter().map(|s| code(s.sql.trim())).collect::<Vec<_>>().join(", ")
        ),
        StepKind::Http(x) => format!("HTTP {} {}", x.method, code(&x.url.source)),
        StepKind::Wait(x) => format!("wait until {}", code(&x.until.source)),
        StepKind::Approve(x) => format!(
            "**approval**: {}",
            x.message.as_ref().map(|m| m.source.clone()).unwrap_or_else(|| "a human's go".into())
        ),
        StepKind::Block(_) => "block (its *finally* steps always run once it started)".into(),
        StepKind::PgVerify(x) => format!(
            "PostgreSQL verify: {} against its copy {} (row counts, checksums, sequences, objects)",
            code(&x.dsn.source),
            code(&x.target_dsn.source)
        ),
        StepKind::PgCopy(x) => format!(
            "PostgreSQL copy of {} into {} ({} method, {} job(s))",
            code(&x.dsn.source),
            code(&x.target_dsn.source),
            x.method,
            x.jobs
        ),
        StepKind::PgBackup(x) => {
            format!(
                "PostgreSQL backup of {} into {} (pg_dump archive + manifest)",
                code(&x.dsn.source),
                code(&x.dir.source)
            )
        }
        StepKind::PgRestore(x) => format!(
            "PostgreSQL restore of backup {} into {}{}",
            code(&x.from.source),
            code(&x.target_dsn.source),
            if x.clean { " (dropping what it replaces)" } else { "" }
        ),
        StepKind::PgBigint(x) => bigint_line(x),
        StepKind::PgMigrate(x) => migrate_line(x),
        StepKind::PgPreflight(x) => format!(
            "PostgreSQL preflight of {} for version {} (fails on a {}{})",
            code(&x.dsn.source),
            x.target_version.map(|v| v.to_string()).unwrap_or_else(|| "of the target server".into()),
            x.fail_on,
            if x.ignore.is_empty() { String::new() } else { format!("; ignores {}", x.ignore.join(", ")) }
        ),
    };
    let mut notes = vec![];
    if let Some(w) = &s.when {
        notes.push(format!("only when {}", code(&w.source)));
    }
    if let Some(t) = s.timeout {
        notes.push(format!("timeout {}", dur(t)));
    }
    if s.retries > 0 {
        notes.push(format!("{} retries", s.retries));
    }
    notes.push(if s.idempotent {
        "re-run after a crash".into()
    } else {
        "**not** re-run after a crash: needs a decision".into()
    });
    let _ = writeln!(out, "{indent}- **{}** — {what} ({})", s.name, notes.join(", "));
    if let StepKind::Block(b) = &s.kind {
        for i in &b.steps {
            step_line(i, depth + 1, out);
        }
        if !b.finally.is_empty() {
            let _ = writeln!(out, "{indent}   - finally:");
            for f in &b.finally {
                step_line(f, depth + 2, out);
            }
        }
    }
}

/// What a `pg.bigint` step does, in one line: "convert `public.orders.id` and
/// the foreign keys referencing it to bigint (online; cut-over lock ≤ 500ms)".
fn bigint_line(x: &PgBigintStep) -> String {
    let key = match &x.column {
        Some(c) => code(&format!("{}.{}", x.table.source, c.source)),
        None => format!("the primary key of {}", code(&x.table.source)),
    };
    match x.action.as_str() {
        "rollback" => format!("roll the bigint conversion of {key} back to int"),
        "contract" => format!("drop the old int columns of the bigint conversion of {key}"),
        "abort" => format!("abort the unfinished bigint conversion of {key}"),
        _ => {
            let mut notes = vec!["online".to_string()];
            match (&x.from, &x.until) {
                (Some(f), Some(u)) if f == u => notes.push(format!("stage {f} only")),
                (Some(f), Some(u)) => notes.push(format!("stages {f} to {u}")),
                (Some(f), None) => notes.push(format!("from stage {f}")),
                (None, Some(u)) => notes.push(format!("until stage {u}")),
                (None, None) => {}
            }
            if x.approve_cutover {
                notes.push("**approval** before the cut-over".into());
            }
            notes.push(format!("cut-over lock ≤ {}", dur(x.lock_timeout)));
            format!("convert {key} and the foreign keys referencing it to bigint ({})", notes.join("; "))
        }
    }
}

/// What a `pg.migrate` step does, in one line: "apply migrations from
/// `db/migrations` (up to the newest; lint errors refuse)".
fn migrate_line(x: &PgMigrateStep) -> String {
    let mut notes = vec![match x.to {
        Some(0) => "**down** to version 0: every applied migration rolled back".to_string(),
        Some(v) => format!("to version {v}, rolling back any newer one"),
        None => "up to the newest".to_string(),
    }];
    if x.lint {
        notes.push("refused on a lint error".into());
    }
    if x.allow_out_of_order {
        notes.push("out-of-order files applied".into());
    }
    if x.allow_changed {
        notes.push("edited files allowed".into());
    }
    format!("apply migrations from {} ({})", code(&x.dir), notes.join("; "))
}

fn gates(g: &Gates) -> Vec<(&'static str, &'static str, String)> {
    let mut v = vec![];
    if let Some(e) = &g.proceed_when {
        v.push(("Proceed", "green", format!("start the phase only when {}", code(&e.source))));
    }
    if let Some(e) = &g.fail_when {
        v.push((
            "Fail",
            "red",
            format!(
                "a measurement fails when {}; over {} failure(s) the target fails",
                code(&e.source),
                g.failure_limit
            ),
        ));
    }
    if let Some(n) = g.count {
        v.push((
            "Analysis",
            "yellow",
            format!(
                "{n} measurement(s), one every {}; over {} inconclusive result(s) a human decides",
                crate::duration::format(g.interval),
                g.inconclusive_limit
            ),
        ));
    }
    if let Some(e) = &g.pause_when {
        v.push(("Pause / throttle", "yellow", format!("no new step while {}", code(&e.source))));
    }
    if let Some(e) = &g.rollback_when {
        v.push(("Rollback", "red", format!("roll the target back when {}", code(&e.source))));
    }
    if let Some(e) = &g.abort_when {
        v.push(("Abort", "red", format!("abort the run when {}", code(&e.source))));
    }
    v
}

/// The runbook: classification, targets, phases with steps, gates and rollback.
pub fn runbook(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Runbook: {}\n", plan.name);
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "{d}\n");
    }
    let _ =
        writeln!(o, "Generated by `cutover docs` from `{}`; the plan is the source of truth.\n", plan.path.display());
    let rollback = plan.phases.iter().filter(|p| !p.rollback.is_empty()).count();
    let regions: std::collections::BTreeSet<&str> =
        plan.targets.iter().filter_map(|t| t.labels.get("region").map(String::as_str)).collect();
    let _ = writeln!(o, "## Classification\n");
    let _ = writeln!(
        o,
        "- Blast radius: {} target(s){}.",
        plan.targets.len(),
        if regions.is_empty() { String::new() } else { format!(" in {} region(s)", regions.len()) }
    );
    let _ = writeln!(o, "- Rollback: {} of {} phase(s) have rollback steps.", rollback, plan.phases.len());
    let _ = writeln!(
        o,
        "- Concurrency: at most {} at once{}.",
        plan.concurrency.limit,
        plan.concurrency.per_label.iter().map(|(l, n)| format!(", {n} per `{l}`")).collect::<String>()
    );
    if !plan.waves.is_empty() {
        let w: Vec<String> = plan
            .waves
            .iter()
            .map(|w| match w {
                WaveSize::Count(c) => c.to_string(),
                WaveSize::Percent(p) => format!("{p}%"),
            })
            .collect();
        let _ = writeln!(
            o,
            "- Waves (canary, ramp): {}; a wave stops the ramp when more than {} % of it fails.",
            w.join(" → "),
            plan.max_fail_percent
        );
        if let Some(e) = &plan.wave_gate.proceed_when {
            let _ = writeln!(o, "- The next wave starts only when {}.", code(&e.source));
        }
        if let Some(e) = &plan.wave_gate.fail_when {
            let _ = writeln!(o, "- A wave fails (the ramp stops) when {}.", code(&e.source));
        }
    }
    if let Some(s) = &plan.select {
        let _ = writeln!(o, "- Applies to targets where {}.", code(&s.source));
    }
    if !plan.secrets.is_empty() {
        let _ = writeln!(o, "\n## Secrets needed\n");
        for s in &plan.secrets {
            let from = s.reference.split(':').next().unwrap_or("");
            let _ = writeln!(o, "- `{}` from {from} (never stored or printed)", s.name);
        }
    }
    let _ = writeln!(o, "\n## Phases\n");
    for (i, p) in plan.phases.iter().enumerate() {
        let _ = writeln!(o, "### {}. {}\n", i + 1, p.name);
        if let Some(d) = &p.description {
            let _ = writeln!(o, "{d}\n");
        }
        let g = gates(&p.gates);
        if !g.is_empty() || !p.checks.is_empty() {
            let _ = writeln!(o, "| Gate | Colour | Condition |\n|---|---|---|");
            if !p.checks.is_empty() {
                let _ = writeln!(
                    o,
                    "| Complete | green | checks ok: {} |",
                    p.checks.iter().map(|c| code(c)).collect::<Vec<_>>().join(", ")
                );
            }
            for (name, colour, cond) in g {
                let _ = writeln!(o, "| {name} | {colour} | {cond} |");
            }
            let _ = writeln!(o);
        }
        if !p.steps.is_empty() {
            let _ = writeln!(o, "Steps, per target:\n");
            for s in &p.steps {
                step_line(s, 0, &mut o);
            }
            let _ = writeln!(o);
        }
        if !p.rollback.is_empty() {
            let _ = writeln!(o, "Rollback (when a target fails in or after this phase; last phase first):\n");
            for s in &p.rollback {
                step_line(s, 0, &mut o);
            }
            let _ = writeln!(o);
        }
    }
    let _ = writeln!(o, "## Operating the run\n");
    let _ = writeln!(
        o,
        "- Start: `cutover run {} --listen 127.0.0.1:8080` (the control tower shows phases, checks, progress and events).",
        plan.path.display()
    );
    let _ = writeln!(
        o,
        "- Pause / resume / abort: `cutover pause|resume|abort RUN`; a target that needs attention: `cutover retry|skip RUN TARGET`."
    );
    let _ = writeln!(o, "- Ctrl-C pauses cleanly; a second Ctrl-C aborts (finally steps still run).");
    let _ = writeln!(o, "\n## Close-out\n");
    let _ = writeln!(o, "- [ ] Every target succeeded or was skipped with a reason (`cutover status RUN`).");
    for c in plan.checks.iter().filter(|c| matches!(c.kind, CheckKind::Manual)) {
        let _ = writeln!(o, "- [ ] {} ticked ok (`cutover check RUN {} --ok`).", c.name, c.name);
    }
    let _ = writeln!(
        o,
        "- [ ] Snapshot kept for the post-mortem: `cutover export RUN --html --file {}-RUN.html`.",
        plan.name
    );
    o
}

/// The dashboard spec: every check, where it comes from, what is ok, and the
/// metrics the tower exports.
pub fn dashboard(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Dashboard: {}\n", plan.name);
    let _ = writeln!(
        o,
        "The control tower (`cutover serve`) shows this live; any Prometheus/Grafana can read `/metrics`.\n"
    );
    let _ =
        writeln!(o, "## Checks\n\n| Check | Scope | Every | Source | Expected | By phase |\n|---|---|---|---|---|---|");
    for c in &plan.checks {
        let by_phase: Vec<String> = c.expect.iter().map(|(p, x)| format!("{p}: {}", conditions(x))).collect();
        let scope = match c.scope {
            CheckScope::Run => "run",
            CheckScope::Target => "each target",
        };
        let _ = writeln!(
            o,
            "| {} | {scope} | {} | {} | {} | {} |",
            c.name,
            dur(c.interval),
            source(c),
            conditions(&c.conditions),
            by_phase.join("; ")
        );
    }
    let _ = writeln!(
        o,
        "\nA result older than its `stale_after` (3 intervals by default) shows **stale**, never ok; a failing probe shows **error**.\n"
    );
    let _ = writeln!(
        o,
        "## Progress\n\n- Targets done / total, with the rate over the last 5 minutes and an ETA (N/A under 0.1 %, \"due\" at 100 %)."
    );
    let _ = writeln!(o, "\n## Metrics (`/metrics`)\n");
    for m in [
        ("cutover_run_state{run,plan,state}", "1 for the state a run is in"),
        ("cutover_targets{run,state}", "targets by state"),
        ("cutover_progress_ratio{run}", "share of targets done"),
        ("cutover_eta_seconds{run}", "estimated seconds left"),
        ("cutover_check_status{run,check,target,status}", "1 for the status a check shows"),
        ("cutover_check_value{run,check,target}", "the latest numeric value of a check"),
    ] {
        let _ = writeln!(o, "- `{}` — {}", m.0, m.1);
    }
    o
}

/// The alerts spec: alarm conditions with their timing, gates that act, and
/// who is notified.
pub fn alerts(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Alerts: {}\n", plan.name);
    let _ = writeln!(o, "## Check conditions\n\n| Check | Fires when | Pending for | Kept for |\n|---|---|---|---|");
    for c in &plan.checks {
        let fires = match (&c.conditions.alarm, &c.conditions.warn) {
            (Some(a), _) => format!("alarm: {}", code(&a.source)),
            (None, Some(w)) => format!("warn: {}", code(&w.source)),
            _ => format!("not ok ({})", conditions(&c.conditions)),
        };
        let _ = writeln!(
            o,
            "| {} | {fires}; also on error and stale | {} | {} |",
            c.name,
            c.hold_for.map(dur).unwrap_or_else(|| "—".into()),
            c.keep_for.map(dur).unwrap_or_else(|| "—".into())
        );
    }
    let _ = writeln!(o, "\n## Gates that act\n");
    for p in &plan.phases {
        for (name, _, cond) in gates(&p.gates) {
            let _ = writeln!(o, "- {} / {name}: {cond}", p.name);
        }
    }
    let _ = writeln!(o, "\n## Who is notified\n");
    if plan.notify.is_empty() {
        let _ = writeln!(o, "Nobody: the plan has no `[[notify]]`. Watch the tower, or add a webhook.");
    }
    for n in &plan.notify {
        let on = if n.on.is_empty() { "every event group".to_string() } else { n.on.join(", ") };
        let _ = writeln!(o, "- `{}` ({}): {on}", n.name, n.format);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_thresholds_gates_and_no_secret_values() {
        let text = r#"name = "pg13-to-15"
[secrets]
token = "env:API_TOKEN"
[[checks]]
name = "lag"
kind = "sql"
preset = "replication_lag"
dsn = "postgres://127.0.0.1/x"
alarm = "value > 10"
for = "30s"
[[notify]]
name = "ops"
url = "http://127.0.0.1/hook?t={{ secrets.token }}"
on = ["gate"]
[[phases]]
name = "copy"
pause_when = "checks.lag.value > 10"
[[phases.steps]]
name = "copy-data"
kind = "exec"
command = "pg-copy"
[[phases.rollback]]
name = "point-back"
kind = "exec"
command = "switch --to old"
"#;
        let plan = crate::load_str("p.toml", text, std::path::Path::new("."), None).expect("valid");
        let r = runbook(&plan);
        assert!(r.contains("| Pause / throttle | yellow | no new step while `checks.lag.value > 10` |"), "{r}");
        assert!(r.contains("**point-back**") && r.contains("`token` from env"), "{r}");
        let a = alerts(&plan);
        assert!(a.contains("| lag | alarm: `value > 10`; also on error and stale | 30s | — |"), "{a}");
        assert!(a.contains("- `ops` (json): gate"), "{a}");
        let d = dashboard(&plan);
        assert!(d.contains("PostgreSQL preset `replication_lag`"), "{d}");
    }
}
