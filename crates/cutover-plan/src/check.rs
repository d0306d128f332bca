//! Checks that need more than the shape: unique names, the `after` graph, CEL
//! expressions, templates and what they refer to. Nothing here touches a target.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::expr;
use crate::model::*;
use crate::shape::{PG_BIGINT_STAGES, closest};
use crate::template;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const CEL_ROOTS: &[&str] = &["name", "target", "labels", "vars", "outputs"];
const TEMPLATE_ROOTS: &[&str] = &["name", "target", "labels", "vars", "outputs", "secrets", "plan", "run", "phase"];

fn inside(pos: &Pos, line: usize, column: usize) -> Pos {
    pos.shifted(line.saturating_sub(1), column.saturating_sub(1))
}

/// Unique names, known `after` references, no cycles.
pub fn targets(all: &[Target], diags: &mut Diagnostics) {
    let mut seen: HashMap<&str, &Target> = HashMap::new();
    for t in all {
        if let Some(first) = seen.get(t.name.as_str()) {
            diags.push(Diagnostic::new(
                t.pos.clone(),
                "duplicate-target",
                format!("target `{}` is defined twice (first at {})", t.name, first.pos),
            ));
        } else {
            seen.insert(&t.name, t);
        }
    }
    for t in all {
        for a in &t.after {
            if a == &t.name {
                diags.push(Diagnostic::new(
                    t.pos.clone(),
                    "after",
                    format!("target `{}` cannot come after itself", t.name),
                ));
            } else if !seen.contains_key(a.as_str()) {
                let names: Vec<&str> = seen.keys().copied().collect();
                diags.push(
                    Diagnostic::new(
                        t.pos.clone(),
                        "after",
                        format!("target `{}` comes after `{a}`, which is not a target", t.name),
                    )
                    .suggest(a, &names, ""),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(all) {
        let pos = seen.get(cycle[0].as_str()).map(|t| t.pos.clone()).unwrap_or_default();
        diags.push(
            Diagnostic::new(pos, "after-cycle", format!("the `after` order has a cycle: {}", cycle.join(" → ")))
                .with_help("remove one of these `after` entries so that targets can be ordered"),
        );
    }
}

/// A cycle in the `after` graph, as a closed path of names.
fn find_cycle(all: &[Target]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = all.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; all.len()];
    let mut stack: Vec<usize> = vec![];
    fn dfs(
        i: usize,
        all: &[Target],
        index: &HashMap<&str, usize>,
        color: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        color[i] = 1;
        stack.push(i);
        for a in &all[i].after {
            let Some(&j) = index.get(a.as_str()) else { continue };
            if j == i {
                continue;
            }
            if color[j] == 1 {
                let start = stack.iter().position(|&k| k == j).unwrap_or(0);
                let mut path: Vec<String> = stack[start..].iter().map(|&k| all[k].name.clone()).collect();
                path.push(all[j].name.clone());
                return Some(path);
            }
            if color[j] == 0
                && let Some(c) = dfs(j, all, index, color, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        color[i] = 2;
        None
    }
    for i in 0..all.len() {
        if color[i] == 0
            && let Some(c) = dfs(i, all, &index, &mut color, &mut stack)
        {
            return Some(c);
        }
    }
    None
}

/// Keeps the targets `select` holds for; evaluation errors are diagnostics.
pub fn select(plan_select: Option<&Expr>, all: &[Target], plan_vars: &Vars, diags: &mut Diagnostics) -> Vec<Target> {
    let Some(sel) = plan_select else { return all.to_vec() };
    let program = match compile(sel, &["name", "target", "labels", "vars"], None, diags) {
        Some(p) => p,
        None => return vec![],
    };
    let mut kept = vec![];
    for t in all {
        let ctx = crate::context(t, plan_vars, &Default::default());
        match expr::eval_bool(&program, &ctx) {
            Ok(true) => kept.push(t.clone()),
            Ok(false) => {}
            Err(e) => diags.push(Diagnostic::new(
                sel.pos.clone(),
                "select",
                format!("`select` cannot be evaluated for target `{}`: {e}", t.name),
            )),
        }
    }
    kept
}

/// Compiles an expression and checks the variables it reads.
fn compile(e: &Expr, roots: &[&str], refs: Option<&Refs<'_>>, diags: &mut Diagnostics) -> Option<cel::Program> {
    let program = match expr::compile(&e.source) {
        Ok(p) => p,
        Err(err) => {
            diags.push(
                Diagnostic::new(
                    inside(&e.pos, err.line, err.column),
                    "cel",
                    format!("invalid CEL expression: {}", err.message),
                )
                .with_help("CEL looks like: labels.region == 'eu' && outputs.check.rows > 0"),
            );
            return None;
        }
    };
    for (root, field) in expr::references(&program) {
        check_ref(&e.pos, &root, field.as_deref(), roots, refs, diags);
    }
    Some(program)
}

/// What a step may refer to: the steps before it, the declared secrets, and
/// the vars every target has.
pub struct Refs<'a> {
    pub earlier_steps: &'a [String],
    /// The plan's checks, when `checks.<name>` may be read (gates).
    pub checks: Option<&'a [String]>,
    pub secrets: &'a BTreeSet<String>,
    pub targets: &'a [Target],
    pub plan_vars: &'a Vars,
}

fn check_ref(
    pos: &Pos,
    root: &str,
    field: Option<&str>,
    roots: &[&str],
    refs: Option<&Refs<'_>>,
    diags: &mut Diagnostics,
) {
    if !roots.contains(&root) {
        diags.push(
            Diagnostic::new(
                pos.clone(),
                "unknown-variable",
                format!("unknown variable `{root}` (expected one of: {})", roots.join(", ")),
            )
            .suggest(root, roots, ""),
        );
        return;
    }
    let (Some(refs), Some(field)) = (refs, field) else { return };
    match root {
        "outputs" if !refs.earlier_steps.iter().any(|s| s == field) => {
            let names: Vec<&str> = refs.earlier_steps.iter().map(String::as_str).collect();
            let mut d =
                Diagnostic::new(pos.clone(), "unknown-output", format!("`outputs.{field}` refers to no earlier step"));
            d = match closest(field, &names) {
                Some(c) => d.with_help(format!("did you mean `outputs.{c}`?")),
                None => d.with_help("a step can read the outputs of the steps that run before it"),
            };
            diags.push(d);
        }
        "checks" if refs.checks.is_some_and(|c| !c.iter().any(|x| x == field)) => {
            let names: Vec<&str> = refs.checks.unwrap_or(&[]).iter().map(String::as_str).collect();
            diags.push(
                Diagnostic::new(
                    pos.clone(),
                    "unknown-check",
                    format!("`checks.{field}` refers to no check of the plan"),
                )
                .suggest(field, &names, "checks."),
            );
        }
        "secrets" if !refs.secrets.contains(field) => {
            diags.push(
                Diagnostic::new(pos.clone(), "unknown-secret", format!("secret `{field}` is not declared"))
                    .with_help(format!("declare it under [secrets], e.g. {field} = \"env:{}\"", field.to_uppercase())),
            );
        }
        "vars" if !refs.plan_vars.contains_key(field) => {
            let missing: Vec<&str> =
                refs.targets.iter().filter(|t| !t.vars.contains_key(field)).map(|t| t.name.as_str()).collect();
            if missing == [RUN_SCOPE] {
                diags.push(
                    Diagnostic::new(
                        pos.clone(),
                        "missing-var",
                        format!("var `{field}` is not set in the plan's [vars]"),
                    )
                    .with_help(
                        "a run-scoped check sees only the plan's vars; use scope = \"target\" to read each target's",
                    ),
                );
            } else if !missing.is_empty() {
                let shown = if missing.len() > 3 {
                    format!("{} and {} more", missing[..3].join(", "), missing.len() - 3)
                } else {
                    missing.join(", ")
                };
                diags.push(
                    Diagnostic::new(pos.clone(), "missing-var", format!("var `{field}` is not set for target {shown}"))
                        .with_help("set it in each target's vars, or a default in the plan's [vars]"),
                );
            }
        }
        _ => {}
    }
}

fn check_template(t: &Template, refs: &Refs<'_>, diags: &mut Diagnostics) {
    check_template_in(t, TEMPLATE_ROOTS, refs, diags);
}

/// A template that may read only `roots`.
fn check_template_in(t: &Template, roots: &[&str], refs: &Refs<'_>, diags: &mut Diagnostics) {
    match template::references(&t.source) {
        Ok(found) => {
            for (root, field) in found {
                check_ref(&t.pos, &root, field.as_deref(), roots, Some(refs), diags);
            }
        }
        Err(e) => diags.push(
            Diagnostic::new(inside(&t.pos, e.line, e.column), "template", format!("invalid template: {}", e.message))
                .with_help("templates look like: {{ vars.dsn }} or {{ target.name }}"),
        ),
    }
}

/// Every step: names, expressions, templates, references.
pub fn phases(plan: &Plan, diags: &mut Diagnostics) {
    let secrets: BTreeSet<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
    let mut phase_names: BTreeMap<&str, &Pos> = BTreeMap::new();
    let mut step_names: BTreeMap<String, Pos> = BTreeMap::new();
    let mut earlier: Vec<String> = vec![];
    for phase in &plan.phases {
        if let Some(first) = phase_names.insert(&phase.name, &phase.pos) {
            diags.push(Diagnostic::new(
                phase.pos.clone(),
                "duplicate-phase",
                format!("phase `{}` is defined twice (first at {first})", phase.name),
            ));
        }
        for step in &phase.steps {
            check_step(plan, step, &secrets, &mut step_names, &mut earlier, diags);
        }
        check_gates(plan, phase, &secrets, &earlier, diags);
        // Rollback steps may read the outputs of any step of the phase; they
        // do not add to what later phases can read.
        let mut rb_earlier = earlier.clone();
        for step in &phase.rollback {
            check_step(plan, step, &secrets, &mut step_names, &mut rb_earlier, diags);
        }
    }
}

/// What gates read: checks, progress and the run, besides the target.
const GATE_ROOTS: &[&str] = &["checks", "progress", "run", "name", "target", "labels", "vars", "outputs", "phase"];

fn check_gates(plan: &Plan, phase: &Phase, secrets: &BTreeSet<String>, earlier: &[String], diags: &mut Diagnostics) {
    let names: Vec<String> = plan.checks.iter().map(|c| c.name.clone()).collect();
    let refs =
        Refs { earlier_steps: earlier, checks: Some(&names), secrets, targets: &plan.targets, plan_vars: &plan.vars };
    let g = &phase.gates;
    for e in [&g.proceed_when, &g.fail_when, &g.pause_when, &g.rollback_when].into_iter().flatten() {
        compile(e, GATE_ROOTS, Some(&refs), diags);
    }
    let analysis = g.count.is_some() || g.failure_limit > 0 || g.inconclusive_limit > 0;
    if analysis && g.proceed_when.is_none() && g.fail_when.is_none() {
        diags.push(
            Diagnostic::new(
                phase.pos.clone(),
                "gate-analysis",
                format!(
                    "phase `{}` sets gate_count or a gate limit but has neither proceed_when nor fail_when to measure",
                    phase.name
                ),
            )
            .with_help("add proceed_when = \"…\" (a success) and, for Argo-style analysis, fail_when = \"…\""),
        );
    }
    // abort_when acts on the whole run: it reads no single target, so only
    // run-scoped checks.
    if let Some(e) = &g.abort_when {
        let run_checks: Vec<String> =
            plan.checks.iter().filter(|c| c.scope == CheckScope::Run).map(|c| c.name.clone()).collect();
        let refs = Refs { checks: Some(&run_checks), ..refs };
        compile(e, &["checks", "progress", "run", "phase"], Some(&refs), diags);
    }
}

/// Webhook URLs and headers are templates over the plan's vars and secrets.
pub fn notify(plan: &Plan, diags: &mut Diagnostics) {
    let secrets: BTreeSet<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
    let run_scope = [Target { name: RUN_SCOPE.into(), ..Target::default() }];
    let refs = Refs { earlier_steps: &[], checks: None, secrets: &secrets, targets: &run_scope, plan_vars: &plan.vars };
    let roots = ["vars", "secrets", "plan", "run"];
    for n in &plan.notify {
        check_template_in(&n.url, &roots, &refs, diags);
        n.headers.values().for_each(|t| check_template_in(t, &roots, &refs, diags));
    }
}

/// Approve steps wait for people: not in finally, rollback or probe steps,
/// which run on the way out (or at every check of a wait).
pub fn approve_places(plan: &Plan, diags: &mut Diagnostics) {
    let mut out: Vec<&Step> = vec![];
    for p in &plan.phases {
        for s in &p.rollback {
            s.walk(&mut |x| out.push(x));
        }
        for s in &p.steps {
            s.walk(&mut |x| match &x.kind {
                StepKind::Block(b) => b.finally.iter().for_each(|f| f.walk(&mut |y| out.push(y))),
                StepKind::Wait(w) => {
                    if let Some(p) = &w.probe {
                        out.push(p);
                    }
                }
                _ => {}
            });
        }
    }
    for s in out.into_iter().filter(|s| matches!(s.kind, StepKind::Approve(_))) {
        diags.push(Diagnostic::new(
            s.pos.clone(),
            "approve-place",
            format!(
                "approve step `{}` cannot be a finally, rollback or probe step: those run without waiting for people",
                s.name
            ),
        ));
    }
}

/// Waves: sizes that grow, percentages up to 100; the wave gate reads the
/// run, its run-scoped checks and the wave that settled.
pub fn waves(plan: &Plan, diags: &mut Diagnostics) {
    let g = &plan.wave_gate;
    let gated: Vec<&Expr> = [&g.proceed_when, &g.fail_when].into_iter().flatten().collect();
    if let Some(first) = gated.first()
        && plan.waves.is_empty()
    {
        diags.push(
            Diagnostic::new(first.pos.clone(), "wave-gate", "wave_gate is set but the plan has no waves")
                .with_help("add waves = [1, \"10%\", \"100%\"], or move the condition to a phase's proceed_when"),
        );
    }
    let secrets: BTreeSet<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
    let run_checks: Vec<String> =
        plan.checks.iter().filter(|c| c.scope == CheckScope::Run).map(|c| c.name.clone()).collect();
    let refs = Refs {
        earlier_steps: &[],
        checks: Some(&run_checks),
        secrets: &secrets,
        targets: &plan.targets,
        plan_vars: &plan.vars,
    };
    for e in gated {
        compile(e, &["checks", "progress", "run", "wave"], Some(&refs), diags);
    }
    for w in &plan.waves {
        if let WaveSize::Percent(p) = w
            && !(*p > 0.0 && *p <= 100.0)
        {
            diags.push(Diagnostic::new(
                Pos::file(plan.path.display().to_string()),
                "waves",
                format!("a wave of {p}% is not between 0 and 100 %"),
            ));
        }
    }
}

fn check_step(
    plan: &Plan,
    step: &Step,
    secrets: &BTreeSet<String>,
    names: &mut BTreeMap<String, Pos>,
    earlier: &mut Vec<String>,
    diags: &mut Diagnostics,
) {
    if step.name.is_empty() || !step.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        diags.push(
            Diagnostic::new(step.pos.clone(), "step-name", format!("invalid step name {:?}", step.name))
                .with_help("use letters, digits, `_` and `-`; with `_` the name reads well as outputs.<name>"),
        );
    }
    if let Some(first) = names.insert(step.name.clone(), step.pos.clone()) {
        diags.push(Diagnostic::new(
            step.pos.clone(),
            "duplicate-step",
            format!("step `{}` is defined twice (first at {first}); step names are unique in a plan", step.name),
        ));
    }
    let refs = Refs { earlier_steps: earlier, checks: None, secrets, targets: &plan.targets, plan_vars: &plan.vars };
    if let Some(w) = &step.when
        && let Some(program) = compile(w, CEL_ROOTS, Some(&refs), diags)
    {
        type_check(w, &program, plan, "when", diags);
    }
    match &step.kind {
        StepKind::Exec(x) => {
            match &x.command {
                Command::Shell(t) => {
                    // A missing command was reported by the shape check (the
                    // builder then gives an empty one at the step's position).
                    if t.source.trim().is_empty() && t.pos != step.pos {
                        diags.push(Diagnostic::new(t.pos.clone(), "empty-command", "the command is empty"));
                    }
                    check_template(t, &refs, diags);
                }
                Command::Argv(v) => {
                    if v.is_empty() {
                        diags.push(Diagnostic::new(step.pos.clone(), "empty-command", "the command is empty"));
                    }
                    v.iter().for_each(|t| check_template(t, &refs, diags));
                }
            }
            x.env.values().for_each(|t| check_template(t, &refs, diags));
            if let Some(c) = &x.cwd {
                check_template(c, &refs, diags);
            }
        }
        StepKind::Sql(s) => {
            check_template(&s.dsn, &refs, diags);
            if s.statements.is_empty() {
                diags.push(
                    Diagnostic::new(
                        step.pos.clone(),
                        "missing-key",
                        format!("sql step `{}` has no `sql` and no `statements`", step.name),
                    )
                    .with_help("write sql = \"…\" (with $1, $2… for values and params = […]) or [[…statements]]"),
                );
            }
            for st in &s.statements {
                let wanted = max_placeholder(&st.sql);
                if wanted != st.params.len() {
                    diags.push(
                        Diagnostic::new(
                            st.pos.clone(),
                            "sql-params",
                            format!(
                                "the statement uses {wanted} bind parameter(s) ($1…) but {} are given in `params`",
                                st.params.len()
                            ),
                        )
                        .with_help("values go in params = [\"{{ … }}\", …], never into the SQL text"),
                    );
                }
                st.params.iter().for_each(|t| check_template(t, &refs, diags));
            }
        }
        StepKind::Http(h) => {
            check_template(&h.url, &refs, diags);
            h.headers.values().for_each(|t| check_template(t, &refs, diags));
            if let Some(b) = &h.body {
                check_template(b, &refs, diags);
            }
        }
        StepKind::Wait(w) => {
            let mut roots = CEL_ROOTS.to_vec();
            if let Some(p) = &w.probe {
                if matches!(p.kind, StepKind::Wait(_) | StepKind::Block(_)) {
                    diags.push(Diagnostic::new(
                        p.pos.clone(),
                        "probe-kind",
                        format!("a wait probe must be an exec, sql or http step, not {}", p.kind.name()),
                    ));
                }
                // The probe's outputs are `probe`, not `outputs.<name>`.
                let mut scratch = earlier.clone();
                check_step(plan, p, secrets, names, &mut scratch, diags);
                if p.when.is_some() || p.retries > 0 {
                    diags.push(
                        Diagnostic::new(
                            p.pos.clone(),
                            "probe-fields",
                            "a probe takes no `when` or `retries`: it runs at every check of the wait",
                        )
                        .with_help("put `when` on the wait step itself; a failing probe is seen as probe.error"),
                    );
                }
                roots.push("probe");
            }
            let refs =
                Refs { earlier_steps: earlier, checks: None, secrets, targets: &plan.targets, plan_vars: &plan.vars };
            compile(&w.until, &roots, Some(&refs), diags);
        }
        StepKind::Approve(a) => {
            if let Some(m) = &a.message {
                check_template(m, &refs, diags);
            }
        }
        StepKind::PgVerify(v) => {
            check_template(&v.dsn, &refs, diags);
            check_template(&v.target_dsn, &refs, diags);
        }
        StepKind::PgCopy(c) => {
            check_template(&c.dsn, &refs, diags);
            check_template(&c.target_dsn, &refs, diags);
        }
        StepKind::PgBigint(b) => {
            check_template(&b.dsn, &refs, diags);
            check_template(&b.table, &refs, diags);
            if let Some(c) = &b.column {
                check_template(c, &refs, diags);
            }
            pg_bigint(step, b, diags);
        }
        StepKind::PgMigrate(m) => {
            check_template(&m.dsn, &refs, diags);
            pg_migrate(step, m, diags);
        }
        StepKind::PgBackup(b) => {
            check_template(&b.dsn, &refs, diags);
            check_template(&b.dir, &refs, diags);
        }
        StepKind::PgRestore(r) => {
            check_template(&r.from, &refs, diags);
            check_template(&r.target_dsn, &refs, diags);
            check_template(&r.dir, &refs, diags);
        }
        StepKind::PgPreflight(p) => {
            check_template(&p.dsn, &refs, diags);
            if let Some(t) = &p.target_dsn {
                check_template(t, &refs, diags);
            }
            if p.target_dsn.is_none() && p.target_version.is_none() {
                diags.push(
                    Diagnostic::new(
                        step.pos.clone(),
                        "missing-key",
                        format!("pg.preflight step `{}` needs target_version or target_dsn", step.name),
                    )
                    .with_help("write target_version = 15, or target_dsn = \"{{ vars.new_dsn }}\" to compare with the new server"),
                );
            }
        }
        StepKind::Block(b) => {
            if step.timeout.is_some() || step.retries > 0 {
                diags.push(
                    Diagnostic::new(
                        step.pos.clone(),
                        "block-fields",
                        format!("block `{}` takes no `timeout` or `retries`", step.name),
                    )
                    .with_help("set them on the steps inside the block"),
                );
            }
            if b.steps.is_empty() {
                diags.push(Diagnostic::new(
                    step.pos.clone(),
                    "empty-block",
                    format!("block `{}` has no steps", step.name),
                ));
            }
            for s in &b.steps {
                check_step(plan, s, secrets, names, earlier, diags);
            }
            for s in &b.finally {
                check_step(plan, s, secrets, names, earlier, diags);
            }
        }
    }
    earlier.push(step.name.clone());
}

/// The longest `lock_timeout` and `statement_timeout` of a `pg.bigint` step:
/// writers queue behind a lock that waits, so the cut-over's must be short.
const BIGINT_MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// What the shape cannot say about a `pg.bigint` step: stages only with
/// `convert` and in order, short lock timeouts. Unknown actions and stage
/// names, and attempts or batch_rows below 1, were reported by the shape.
fn pg_bigint(step: &Step, b: &PgBigintStep, diags: &mut Diagnostics) {
    let stages = [("until", &b.until), ("from", &b.from)];
    if b.action != "convert" {
        for (key, _) in stages.iter().filter(|(_, v)| v.is_some()) {
            diags.push(
                Diagnostic::new(
                    step.pos.clone(),
                    "bigint-stage",
                    format!(
                        "pg.bigint step `{}` sets `{key}`, which only applies to action = \"convert\", not \"{}\"",
                        step.name, b.action
                    ),
                )
                .with_help(
                    "rollback, contract and abort run whole; remove `until`/`from`, or use action = \"convert\"",
                ),
            );
        }
    }
    let index = |s: &Option<String>| s.as_deref().and_then(|s| PG_BIGINT_STAGES.iter().position(|x| *x == s));
    if let (Some(from), Some(until)) = (index(&b.from), index(&b.until))
        && from > until
    {
        diags.push(
            Diagnostic::new(
                step.pos.clone(),
                "bigint-stage-order",
                format!(
                    "pg.bigint step `{}` starts at stage {} (`from`), after the stage it stops at, {} (`until`)",
                    step.name, PG_BIGINT_STAGES[from], PG_BIGINT_STAGES[until]
                ),
            )
            .with_help(format!("the stages run in this order: {}", PG_BIGINT_STAGES.join(", "))),
        );
    }
    for (key, d) in [("lock_timeout", b.lock_timeout), ("statement_timeout", b.statement_timeout)] {
        if d.is_zero() || d > BIGINT_MAX_TIMEOUT {
            diags.push(
                Diagnostic::new(
                    step.pos.clone(),
                    "bigint-timeout",
                    format!(
                        "`{key}` of pg.bigint step `{}` is {}; it must be above 0 and at most {}",
                        step.name,
                        crate::duration::format(d),
                        crate::duration::format(BIGINT_MAX_TIMEOUT)
                    ),
                )
                .with_help("writers wait behind a lock that waits: keep the cut-over's lock short (e.g. \"500ms\") and raise `attempts` instead"),
            );
        }
    }
}

/// What the shape cannot say about a `pg.migrate` step: a directory that
/// names something, a `git:` source with its ref, timeouts above 0. Whether
/// the directory exists is left to the run: a recorded plan is loaded again
/// elsewhere (the tower, `cutover report`), where the directory may not be.
fn pg_migrate(step: &Step, m: &PgMigrateStep, diags: &mut Diagnostics) {
    let dir = m.dir.trim();
    let git_ok = |spec: &str| spec.rsplit_once('#').is_some_and(|(repo, rest)| !repo.is_empty() && !rest.is_empty());
    let problem = match dir.strip_prefix("git:") {
        // A missing `dir` was reported by the shape check (the builder then
        // gives an empty one at the step's position).
        None if dir.is_empty() && m.dir_pos == step.pos => None,
        None if dir.is_empty() => Some("is empty"),
        Some(spec) if !git_ok(spec) => Some("is a git source without a ref"),
        _ => None,
    };
    if let Some(problem) = problem {
        diags.push(
            Diagnostic::new(
                m.dir_pos.clone(),
                "migrate-dir",
                format!("`dir` of pg.migrate step `{}` {problem}: {:?}", step.name, m.dir),
            )
            .with_help(
                "write a directory beside the plan (\"db/migrations\") or git:PATH_OR_URL#REF:DIR (\"git:https://example.com/app.git#v1.4.0:db/migrations\")",
            ),
        );
    }
    let timeouts = [
        ("lock_wait", Some(m.lock_wait)),
        ("lock_timeout", m.lock_timeout),
        ("statement_timeout", m.statement_timeout),
    ];
    for (key, d) in timeouts {
        if d.is_some_and(|d| d.is_zero()) {
            diags.push(
                Diagnostic::new(
                    step.pos.clone(),
                    "migrate-timeout",
                    format!("`{key}` of pg.migrate step `{}` is 0s; it must be above 0", step.name),
                )
                .with_help(if key == "lock_wait" {
                    "how long to wait for another runner's migration lock, e.g. \"30s\""
                } else {
                    "leave it out to keep the server's setting, or give a duration such as \"5s\""
                }),
            );
        }
    }
    if let Some(t) = &m.golang_migrate_table
        && (t.is_empty() || t.len() > 63)
    {
        diags.push(
            Diagnostic::new(
                step.pos.clone(),
                "migrate-golang-table",
                format!(
                    "`golang_migrate_table` of pg.migrate step `{}` is {} bytes long: a PostgreSQL table name has 1 to 63",
                    step.name,
                    t.len()
                ),
            )
            .with_help("the x-migrations-table golang-migrate ran with, e.g. \"app_versions\"; leave it out for schema_migrations"),
        );
    }
}

/// CEL has no static type checker in the `cel` crate; an expression that
/// reads only what is known before the run (name, labels, vars) is evaluated
/// for every target now, so a type error or a non-boolean result is found
/// here rather than halfway through a migration. The first failing target is
/// reported.
fn type_check(e: &Expr, program: &cel::Program, plan: &Plan, what: &str, diags: &mut Diagnostics) {
    // Outputs are only known at run time; unknown variables were reported already.
    if expr::references(program).iter().any(|(root, _)| root == "outputs" || !CEL_ROOTS.contains(&root.as_str())) {
        return;
    }
    for t in &plan.targets {
        let ctx = crate::context(t, &plan.vars, &Default::default());
        if let Err(err) = expr::eval_bool(program, &ctx) {
            diags.push(Diagnostic::new(
                e.pos.clone(),
                "cel-eval",
                format!("`{what}` cannot be evaluated for target `{}`: {err}", t.name),
            ));
            return;
        }
    }
}

/// The highest `$N` placeholder in a statement, skipping quoted text and
/// dollar-quoted bodies; a rough scan, since the SQL text is not parsed here.
fn max_placeholder(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut max) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'$' if i + 1 < b.len() && b[i + 1].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if let Ok(n) = sql[start..j].parse::<usize>() {
                    max = max.max(n);
                }
                i = j;
                continue;
            }
            b'$' => {
                // A dollar-quoted string: $tag$ … $tag$.
                if let Some(end) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + end + 2];
                    if tag[1..tag.len() - 1].chars().all(|c| c.is_alphanumeric() || c == '_')
                        && let Some(close) = sql[i + tag.len()..].find(tag)
                    {
                        i += tag.len() + close + tag.len();
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    max
}

/// Secrets must name where their value comes from.
pub fn secrets(defs: &[SecretDef], diags: &mut Diagnostics) {
    for s in defs {
        let ok = ["env:", "file:", "command:"]
            .iter()
            .any(|p| s.reference.strip_prefix(p).is_some_and(|rest| !rest.trim().is_empty()));
        if !ok {
            diags.push(
                Diagnostic::new(s.pos.clone(), "secret-ref", format!("secret `{}` must be a reference, not a value", s.name))
                    .with_help("write \"env:NAME\", \"file:PATH\" or \"command:CMD\" (e.g. command:vault kv get -field=pw secret/db)"),
            );
        }
    }
}

/// The stand-in target a run-scoped check is validated against.
const RUN_SCOPE: &str = "(run scope)";

/// What a check's conditions may read, besides `value`.
fn check_roots(kind: &CheckKind, scope: CheckScope) -> Vec<&'static str> {
    let mut roots = vec!["value", "vars", "phase"];
    if scope == CheckScope::Target {
        roots.extend(["name", "target", "labels"]);
    }
    roots.extend(match kind {
        CheckKind::Http { .. } => &["http_status", "body"][..],
        CheckKind::Command { .. } => &["exit_code", "stdout"][..],
        CheckKind::Log { .. } => &["step", "alive", "since"][..],
        _ => &[][..],
    });
    roots
}

/// Checks: unique names, their expressions, regexes and templates; phases
/// name existing checks; `expect` names existing phases.
pub fn checks(plan: &Plan, diags: &mut Diagnostics) {
    let mut names: BTreeMap<&str, &Pos> = BTreeMap::new();
    let secrets: BTreeSet<String> = plan.secrets.iter().map(|s| s.name.clone()).collect();
    let phase_names: Vec<&str> = plan.phases.iter().map(|p| p.name.as_str()).collect();
    // A run-scoped check sees only the plan's vars.
    let run_scope = [Target { name: RUN_SCOPE.into(), ..Target::default() }];
    for c in &plan.checks {
        if let Some(first) = names.insert(&c.name, &c.pos) {
            diags.push(Diagnostic::new(
                c.pos.clone(),
                "duplicate-check",
                format!("check `{}` is defined twice (first at {first})", c.name),
            ));
        }
        let targets: &[Target] = match c.scope {
            CheckScope::Run => &run_scope,
            CheckScope::Target => &plan.targets,
        };
        let refs = Refs { earlier_steps: &[], checks: None, secrets: &secrets, targets, plan_vars: &plan.vars };
        let roots = check_roots(&c.kind, c.scope);
        // What a check's templates see at run time.
        let troots: &[&str] = match c.scope {
            CheckScope::Run => &["vars", "secrets", "phase"],
            CheckScope::Target => &["vars", "secrets", "phase", "name", "target", "labels"],
        };
        let all_conditions = std::iter::once((None, &c.conditions)).chain(c.expect.iter().map(|(p, x)| (Some(p), x)));
        for (phase, cond) in all_conditions {
            for e in [&cond.ok, &cond.warn, &cond.alarm].into_iter().flatten() {
                compile(e, &roots, Some(&refs), diags);
            }
            if let Some(p) = phase
                && !phase_names.contains(&p.as_str())
            {
                diags.push(
                    Diagnostic::new(
                        c.pos.clone(),
                        "unknown-phase",
                        format!("check `{}` has expectations for phase `{p}`, which the plan does not have", c.name),
                    )
                    .suggest(p, &phase_names, ""),
                );
            }
        }
        if let Some(h) = &c.href {
            check_template_in(h, troots, &refs, diags);
        }
        let regex = |r: &str, what: &str, diags: &mut Diagnostics| {
            if let Err(e) = regex::Regex::new(r) {
                diags.push(Diagnostic::new(
                    c.pos.clone(),
                    "regex",
                    format!("invalid regex in {what} of check `{}`: {e}", c.name),
                ));
            }
        };
        match &c.kind {
            CheckKind::Http { url, headers, body_regex, .. } => {
                check_template_in(url, troots, &refs, diags);
                headers.values().for_each(|t| check_template_in(t, troots, &refs, diags));
                if let Some(r) = body_regex {
                    regex(r, "`body_regex`", diags);
                }
            }
            CheckKind::Sql { dsn, query, params, preset } => {
                check_template_in(dsn, troots, &refs, diags);
                params.iter().for_each(|t| check_template_in(t, troots, &refs, diags));
                match (query, preset) {
                    (Some(q), None) => {
                        if max_placeholder(q) != params.len() {
                            diags.push(Diagnostic::new(
                                c.pos.clone(),
                                "sql-params",
                                format!("the query of check `{}` uses {} bind parameter(s) but {} are given in `params`", c.name, max_placeholder(q), params.len()),
                            ));
                        }
                    }
                    (None, Some(_)) => {}
                    _ => diags.push(
                        Diagnostic::new(c.pos.clone(), "sql-check", format!("sql check `{}` needs exactly one of `query` and `preset`", c.name))
                            .with_help("presets: connections, blocking_locks, long_transactions, replication_lag, progress_copy, progress_create_index, progress_cluster, progress_vacuum"),
                    ),
                }
            }
            CheckKind::Tcp { address } => check_template_in(address, troots, &refs, diags),
            CheckKind::Command { command, env } => {
                match command {
                    Command::Shell(t) => check_template_in(t, troots, &refs, diags),
                    Command::Argv(v) => v.iter().for_each(|t| check_template_in(t, troots, &refs, diags)),
                }
                env.values().for_each(|t| check_template_in(t, troots, &refs, diags));
            }
            CheckKind::Prometheus { url, .. } => check_template_in(url, troots, &refs, diags),
            CheckKind::Log { file, command, steps, heartbeat, .. } => {
                if file.is_some() == command.is_some() {
                    diags.push(Diagnostic::new(
                        c.pos.clone(),
                        "log-source",
                        format!("log check `{}` needs exactly one of `file` and `command`", c.name),
                    ));
                }
                if let Some(f) = file {
                    check_template_in(f, troots, &refs, diags);
                }
                for (step, r) in steps {
                    regex(r, &format!("step `{step}`"), diags);
                }
                if let Some(h) = heartbeat {
                    regex(h, "`heartbeat`", diags);
                }
            }
            CheckKind::Manual => {}
        }
    }
    for p in &plan.phases {
        for name in &p.checks {
            if !names.contains_key(name.as_str()) {
                let known: Vec<&str> = names.keys().copied().collect();
                diags.push(
                    Diagnostic::new(
                        p.pos.clone(),
                        "unknown-check",
                        format!("phase `{}` lists check `{name}`, which the plan does not declare", p.name),
                    )
                    .suggest(name, &known, ""),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_skip_strings_and_dollar_quotes() {
        assert_eq!(max_placeholder("select $1, $2"), 2);
        assert_eq!(max_placeholder("select '$3', $1"), 1);
        assert_eq!(max_placeholder("do $$ select $4 $$; select $1"), 1);
        assert_eq!(max_placeholder("select 1"), 0);
    }
}
