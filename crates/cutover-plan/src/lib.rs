//! The plan model of cutover: a declarative TOML (or JSON) file describing one
//! migration — targets, secrets, phases and steps — parsed and validated
//! without touching any target. Every problem is reported at once, each with
//! the `file:line:column` where it was written.
//!
//! This crate touches no database, serves nothing and runs no step; the only
//! outside effect it may have is running a plan's inventory command
//! (`targets.command`) to learn its targets.
//!
//! ```
//! let text = r#"
//! name = "demo"
//! [[targets]]
//! name = "db1"
//! vars = { dsn = "postgres://127.0.0.1/db1" }
//! [[phases]]
//! name = "check"
//! [[phases.steps]]
//! name = "hello"
//! kind = "exec"
//! command = "echo hello {{ target.name }}"
//! "#;
//! let plan = cutover_plan::load_str("demo.toml", text, std::path::Path::new("."), None).unwrap();
//! assert_eq!(plan.targets[0].name, "db1");
//! assert_eq!(plan.phases[0].steps[0].name, "hello");
//! ```

pub mod build;
pub mod check;
pub mod diag;
pub mod duration;
pub mod estimate;
pub mod expr;
pub mod inventory;
pub mod model;
pub mod runbook;
pub mod schedule;
pub mod shape;
pub mod template;
pub mod tree;
pub mod window;

#[cfg(test)]
mod tests;

pub use diag::{Diagnostic, Diagnostics, Pos, Source};
pub use model::*;

use std::path::{Path, PathBuf};

/// Reads and validates a plan file.
pub fn load_file(path: &Path) -> Result<Plan, Diagnostics> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(Pos::file(shown.as_str()), "read", format!("cannot read the plan: {e}"))])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    load_str(&shown, &text, &dir, None)
}

/// Validates a plan from its text. `dir` is where relative paths start;
/// `targets`, when given, replaces the plan's inventory (a resumed run uses
/// the targets recorded when it started, not a fresh inventory).
pub fn load_str(path: &str, text: &str, dir: &Path, targets: Option<Vec<Target>>) -> Result<Plan, Diagnostics> {
    let src = Source::new(path, text);
    let root = tree::parse(&src)?;
    let mut diags = Diagnostics::default();
    shape::check_plan(&src, &root, &mut diags);
    let b = build::Builder { src: &src };

    let vars = b.vars(&root, "vars");
    let all_targets = match targets {
        Some(t) => t,
        None => inline_or_inventory(&b, &root, dir, &mut diags),
    };
    check::targets(&all_targets, &mut diags);
    schedule::check_targets(&all_targets, &mut diags);
    let schedule = schedule::build(&b, root.get("schedule"), &mut diags);
    let select = root.get("select").and_then(|n| Some(Expr { source: n.as_str()?.to_string(), pos: b.content_pos(n) }));
    let mut selected = check::select(select.as_ref(), &all_targets, &vars, &mut diags);
    if let Some(seed) = schedule.shuffle_seed {
        schedule::shuffle(&mut selected, seed);
    }

    let secrets = b.secrets(root.get("secrets"));
    check::secrets(&secrets, &mut diags);
    let phases = root
        .get("phases")
        .and_then(tree::Node::as_array)
        .map(|a| a.iter().map(|p| b.phase(p)).collect())
        .unwrap_or_default();
    let plan = Plan {
        name: root.get("name").and_then(tree::Node::as_str).unwrap_or_default().to_string(),
        description: root.get("description").and_then(tree::Node::as_str).map(str::to_string),
        path: PathBuf::from(path),
        dir: dir.to_path_buf(),
        select,
        vars,
        secrets,
        concurrency: b.concurrency(root.get("concurrency")),
        all_targets,
        targets: selected,
        phases,
        checks: root
            .get("checks")
            .and_then(tree::Node::as_array)
            .map(|a| a.iter().filter_map(|c| b.check(c)).collect())
            .unwrap_or_default(),
        waves: b.waves(root.get("waves")),
        wave_gate: b.wave_gate(root.get("wave_gate")),
        notify: b.notify(root.get("notify")),
        max_fail_percent: root
            .get("max_fail_percent")
            .and_then(|n| match n.value {
                tree::Value::Int(i) => u32::try_from(i).ok(),
                _ => None,
            })
            .unwrap_or(0),
        schedule,
        warnings: vec![],
    };
    check::phases(&plan, &mut diags);
    check::checks(&plan, &mut diags);
    check::waves(&plan, &mut diags);
    check::notify(&plan, &mut diags);
    check::approve_places(&plan, &mut diags);
    for w in root.get("waves").and_then(tree::Node::as_array).unwrap_or_default() {
        if let Some(text) = w.as_str()
            && text.trim().strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok()).is_none()
        {
            diags.push(
                Diagnostic::new(
                    b.content_pos(w),
                    "waves",
                    format!("wave {text:?} is neither a number of targets nor a percentage"),
                )
                .with_help("write waves = [1, \"10%\", \"100%\"]"),
            );
        }
    }
    if diags.is_empty() {
        let mut plan = plan;
        plan.warnings = inline_password_warnings(&plan);
        Ok(plan)
    } else {
        diags.sort();
        Err(diags)
    }
}

fn inline_or_inventory(b: &build::Builder<'_>, root: &tree::Node, dir: &Path, diags: &mut Diagnostics) -> Vec<Target> {
    let Some(node) = root.get("targets") else {
        return vec![];
    };
    if let Some(items) = node.as_array() {
        return items.iter().map(|n| b.target(n)).collect();
    }
    let file = node.get("file").and_then(tree::Node::as_str);
    let command = node.get("command").and_then(tree::Node::as_str);
    let at = b.pos(node.span);
    match (file, command) {
        (Some(f), None) => inventory::from_file(&dir.join(f), &at, diags),
        (None, Some(c)) => inventory::from_command(c, dir, &at, diags),
        (Some(_), Some(_)) => {
            diags.push(Diagnostic::new(at, "targets", "`targets` takes either `file` or `command`, not both"));
            vec![]
        }
        (None, None) => {
            diags.push(
                Diagnostic::new(at, "targets", "`targets` needs `file` or `command`")
                    .with_help("or list targets inline with [[targets]]"),
            );
            vec![]
        }
    }
}

/// The password part of `scheme://user:password@host…`, if any.
pub fn url_password(value: &str) -> Option<String> {
    let rest = value.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

/// Passwords written inline in vars: the plan is recorded as written, so
/// they would be stored; say so (a warning, the plan still runs).
fn inline_password_warnings(plan: &Plan) -> Vec<Diagnostic> {
    fn find(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if url_password(s).is_some() => out.push(path.to_string()),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| find(x, &format!("{path}.{k}"), out)),
            serde_json::Value::Array(a) => a.iter().for_each(|x| find(x, path, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    let mut check = |vars: &Vars, pos: &Pos, whose: &str| {
        let mut found = vec![];
        find(&serde_json::Value::Object(vars.clone()), "vars", &mut found);
        for f in found {
            out.push(
                Diagnostic::new(pos.clone(), "inline-password", format!("`{f}` {whose}holds a password written in the plan"))
                    .with_help("the plan is recorded in the state store as written; put the password in [secrets] (e.g. env:DB_PASSWORD) and use {{ secrets.NAME }}"),
            );
        }
    };
    check(&plan.vars, &Pos::file(plan.path.display().to_string()), "");
    for t in &plan.all_targets {
        check(&t.vars, &t.pos, &format!("of target `{}` ", t.name));
    }
    out
}

/// The variables a target's expressions and templates see (secrets and
/// outputs are added by the engine at run time).
pub fn context(
    t: &Target,
    plan_vars: &Vars,
    outputs: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let mut vars = plan_vars.clone();
    for (k, v) in &t.vars {
        vars.insert(k.clone(), v.clone());
    }
    serde_json::json!({
        "name": t.name,
        "labels": t.labels,
        "vars": vars,
        "target": { "name": t.name, "labels": t.labels, "vars": vars },
        "outputs": outputs,
    })
}
