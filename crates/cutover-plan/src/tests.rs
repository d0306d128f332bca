//! Invalid plans, each with the exact position and message it must get.

use crate::load_str;
use std::path::Path;
use std::time::Duration;

const BASE: &str = r#"name = "p"
[[targets]]
name = "a"
vars = { dsn = "postgres://127.0.0.1/a" }
"#;

/// Validates `BASE` + `extra` and returns "line:col code: message" lines.
fn errors(extra: &str) -> Vec<String> {
    // A leading `^` puts the text before BASE, where top-level keys go.
    let text = match extra.strip_prefix('^') {
        Some(top) => format!("name = \"p\"\n{top}"),
        None => format!("{BASE}{extra}"),
    };
    match load_str("p.toml", &text, Path::new("."), None) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(|d| format!("{}:{} {}: {}", d.pos.line, d.pos.column, d.code, d.message)).collect(),
    }
}

fn check(extra: &str, expect: &[&str]) {
    let got = errors(extra);
    assert_eq!(got, expect, "plan:\n{BASE}{extra}");
}

const STEP: &str = "[[phases]]\nname = \"one\"\n[[phases.steps]]\nname = \"s1\"\n";

#[test]
fn a_valid_plan_has_no_errors() {
    check(&format!("{STEP}kind = \"exec\"\ncommand = \"echo {{{{ vars.dsn }}}}\"\n"), &[]);
}

#[test]
fn invalid_plans_are_reported_at_their_position() {
    let cases: &[(&str, &[&str])] = &[
        // 1. A TOML syntax error.
        ("[[phases]\n", &["5:10 syntax: invalid TOML: unclosed array table, expected `]`"]),
        // 2. No phases at all.
        ("", &["1:1 missing-key: missing key `phases` in plan `p`"]),
        // 3. An unknown top-level key, with a suggestion.
        (
            "^phasez = []\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &[
                "2:1 unknown-key: unknown key `phasez` in plan `p` (expected one of: $schema, name, description, targets, select, vars, secrets, concurrency, checks, waves, max_fail_percent, wave_gate, notify, schedule, phases)",
            ],
        ),
        // 4. An unknown step kind.
        (
            &format!("{STEP}kind = \"shell\"\n"),
            &[
                "9:8 unknown-kind: unknown step kind \"shell\" for `kind` (expected one of: exec, sql, http, wait, approve, block, pg.preflight, pg.copy, pg.verify, pg.backup, pg.restore, pg.bigint, pg.migrate)",
            ],
        ),
        // 5. A step without kind.
        (&format!("{STEP}command = \"x\"\n"), &["7:1 missing-key: missing key `kind` in step `s1`"]),
        // 6. A key of another kind.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nurl = \"http://x\"\n"),
            &[
                "11:1 unknown-key: unknown key `url` in step `s1` (expected one of: name, kind, description, when, timeout, retries, backoff, idempotent, command, env, cwd)",
            ],
        ),
        // 7. A bad duration.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\ntimeout = \"5 parsecs\"\n"),
            &[
                "11:11 duration: invalid duration \"5 parsecs\" for `timeout`: expected a number followed by a unit (ms, s, m, h)",
            ],
        ),
        // 8. A number where a duration is wanted.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\ntimeout = 30\n"),
            &["11:11 type: `timeout` must be a duration such as \"30s\", \"5m\" or \"1h30m\", found an integer"],
        ),
        // 9. Retries out of range.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nretries = -1\n"),
            &["11:11 range: `retries` must be from 0 to 1000, found -1"],
        ),
        // 10. A CEL syntax error, pointed inside the expression.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nwhen = \"labels.x == \"\n"),
            &["11:21 cel: invalid CEL expression: the expression ends too early"],
        ),
        // 11. An unknown variable in CEL.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nwhen = \"lables.x == 'y'\"\n"),
            &[
                "11:9 unknown-variable: unknown variable `lables` (expected one of: name, target, labels, vars, outputs)",
            ],
        ),
        // 12. A template syntax error.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"echo {{{{ vars.dsn \"\n"),
            &[
                "10:25 template: invalid template: syntax error: unexpected end of input, expected end of variable block",
            ],
        ),
        // 13. A var no target has.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"echo {{{{ vars.nope }}}}\"\n"),
            &["10:12 missing-var: var `nope` is not set for target a"],
        ),
        // 14. Outputs of a step that comes later.
        (
            &format!(
                "{STEP}kind = \"exec\"\ncommand = \"echo {{{{ outputs.s2.x }}}}\"\n[[phases.steps]]\nname = \"s2\"\nkind = \"exec\"\ncommand = \"true\"\n"
            ),
            &["10:12 unknown-output: `outputs.s2` refers to no earlier step"],
        ),
        // 15. An undeclared secret.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"echo {{{{ secrets.pw }}}}\"\n"),
            &["10:12 unknown-secret: secret `pw` is not declared"],
        ),
        // 16. A secret written as a value.
        (
            "[secrets]\npw = \"hunter2\"\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["6:7 secret-ref: secret `pw` must be a reference, not a value"],
        ),
        // 17. Duplicate step names.
        (
            &format!(
                "{STEP}kind = \"exec\"\ncommand = \"true\"\n[[phases.steps]]\nname = \"s1\"\nkind = \"exec\"\ncommand = \"true\"\n"
            ),
            &["11:1 duplicate-step: step `s1` is defined twice (first at p.toml:7:1); step names are unique in a plan"],
        ),
        // 18. SQL placeholders without params.
        (
            &format!("{STEP}kind = \"sql\"\nsql = \"update t set x = $1 where id = $2\"\nparams = [\"1\"]\n"),
            &["10:8 sql-params: the statement uses 2 bind parameter(s) ($1…) but 1 are given in `params`"],
        ),
        // 19. An `after` naming no target.
        (
            "[[targets]]\nname = \"b\"\nafter = [\"c\"]\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["5:1 after: target `b` comes after `c`, which is not a target"],
        ),
        // 20. A cycle in `after`.
        (
            "[[targets]]\nname = \"b\"\nafter = [\"c\"]\n[[targets]]\nname = \"c\"\nafter = [\"b\"]\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["5:1 after-cycle: the `after` order has a cycle: b → c → b"],
        ),
        // 21. A duplicate target.
        (
            "[[targets]]\nname = \"a\"\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["5:1 duplicate-target: target `a` is defined twice (first at p.toml:2:1)"],
        ),
        // 22. A wrong type for a label map.
        (
            "[[phases]]\nname = \"x\"\nsteps = \"none\"\n",
            &["7:9 type: `steps` must be an array of steps, found a string"],
        ),
        // 23. An unknown HTTP method, with a suggestion.
        (
            &format!("{STEP}kind = \"http\"\nurl = \"http://127.0.0.1/\"\nmethod = \"PSOT\"\n"),
            &[
                "11:10 enum: unknown value \"PSOT\" for `method` (expected one of: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)",
            ],
        ),
        // 24. A wait probe that is a block.
        (
            &format!(
                "{STEP}kind = \"wait\"\nuntil = \"probe.ok\"\nprobe = {{ name = \"p\", kind = \"block\", steps = [] }}\n"
            ),
            &[
                "11:9 probe-kind: a wait probe must be an exec, sql or http step, not block",
                "11:9 empty-block: block `p` has no steps",
            ],
        ),
        // 25. A select that does not compile.
        (
            "^select = \"labels.region ==\"\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["2:27 cel: invalid CEL expression: the expression ends too early"],
        ),
        // 26b. A `when` that is not a condition (type-checked against every target).
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nwhen = \"name + 1\"\n"),
            &[
                "11:9 cel-eval: `when` cannot be evaluated for target `a`: Unsupported binary operator 'add': String(\"a\"), Int(1)",
            ],
        ),
        // 26c. A `when` comparing a label to a number.
        (
            &format!("{STEP}kind = \"exec\"\ncommand = \"true\"\nwhen = \"labels.size > 3\"\n"),
            &["11:9 cel-eval: `when` cannot be evaluated for target `a`: No such key: size"],
        ),
        // 27. An unknown check kind.
        (
            "[[checks]]\nname = \"c\"\nkind = \"ping\"\n[[phases]]\nname = \"x\"\n",
            &[
                "7:8 unknown-kind: unknown check kind \"ping\" for `kind` (expected one of: http, sql, tcp, command, prometheus, log, manual)",
            ],
        ),
        // 28. A phase listing an undeclared check, with a suggestion.
        (
            "[[checks]]\nname = \"app-503\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\n[[phases]]\nname = \"x\"\nchecks = [\"app-053\"]\n",
            &["9:1 unknown-check: phase `x` lists check `app-053`, which the plan does not declare"],
        ),
        // 29. A check condition reading an unknown variable.
        (
            "[[checks]]\nname = \"c\"\nkind = \"http\"\nurl = \"http://127.0.0.1/\"\nok = \"exit_code == 0\"\n[[phases]]\nname = \"x\"\n",
            &[
                "9:7 unknown-variable: unknown variable `exit_code` (expected one of: value, vars, phase, http_status, body)",
            ],
        ),
        // 30. Expectations for a phase the plan does not have.
        (
            "[[checks]]\nname = \"c\"\nkind = \"manual\"\nexpect = { reopn = { ok = \"value\" } }\n[[phases]]\nname = \"reopen\"\n",
            &["5:1 unknown-phase: check `c` has expectations for phase `reopn`, which the plan does not have"],
        ),
        // 31. An sql check with both a query and a preset.
        (
            "[[checks]]\nname = \"c\"\nkind = \"sql\"\nquery = \"select 1\"\npreset = \"connections\"\n[[phases]]\nname = \"x\"\n",
            &[
                "5:1 missing-var: var `dsn` is not set in the plan's [vars]",
                "5:1 sql-check: sql check `c` needs exactly one of `query` and `preset`",
            ],
        ),
        // 32. An invalid regex in a log check.
        (
            "[[checks]]\nname = \"c\"\nkind = \"log\"\nfile = \"m.log\"\nsteps = { copy = \"copy (\" }\n[[phases]]\nname = \"x\"\n",
            &[
                "5:1 regex: invalid regex in step `copy` of check `c`: regex parse error:\n    copy (\n         ^\nerror: unclosed group",
            ],
        ),
        // 26. A targets file that does not exist.
        (
            "^targets = { file = \"nope.csv\" }\n[[phases]]\nname = \"x\"\nsteps = []\n",
            &["2:11 targets: cannot read the targets file ./nope.csv: No such file or directory (os error 2)"],
        ),
    ];
    let mut failures = vec![];
    for (i, (extra, expect)) in cases.iter().enumerate() {
        let got = errors(extra);
        if got != *expect {
            failures.push(format!("case {}: expected {expect:#?}\n got {got:#?}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let got = errors(&format!(
        "{STEP}kind = \"exec\"\ncommand = \"true\"\ntimeout = \"x\"\nretries = \"3\"\nwhen = \"nope\"\n"
    ));
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[test]
fn json_plans_get_positions_too() {
    let text = "{\n  \"name\": \"p\",\n  \"phases\": [\n    {\"name\": \"x\", \"steps\": [{\"name\": \"s\", \"kind\": \"exec\", \"comand\": \"true\"}]}\n  ]\n}\n";
    let d = load_str("p.json", text, Path::new("."), None).expect_err("invalid");
    let first = &d.0[0];
    assert_eq!((first.pos.line, first.pos.column, first.code), (4, 29, "missing-key"));
    assert_eq!((d.0[1].pos.line, d.0[1].pos.column, d.0[1].code), (4, 59, "unknown-key"));
}

// Regression: a step kind the shape knew but the builder did not was
// silently dropped from the plan (the approve step, once).
#[test]
fn every_step_kind_builds() {
    let text = r#"name = "kinds"
[[phases]]
name = "p"
[[phases.steps]]
name = "e"
kind = "exec"
command = "true"
[[phases.steps]]
name = "q"
kind = "sql"
dsn = "postgres://127.0.0.1/x"
sql = "select 1"
[[phases.steps]]
name = "h"
kind = "http"
url = "http://127.0.0.1/"
[[phases.steps]]
name = "w"
kind = "wait"
until = "true"
[[phases.steps]]
name = "a"
kind = "approve"
[[phases.steps]]
name = "b"
kind = "block"
steps = [{ name = "inner", kind = "exec", command = "true" }]
[[phases.steps]]
name = "pf"
kind = "pg.preflight"
dsn = "postgres://127.0.0.1/x"
target_version = 15
[[phases.steps]]
name = "pc"
kind = "pg.copy"
dsn = "postgres://127.0.0.1/x"
target_dsn = "postgres://127.0.0.1/y"
jobs = 2
[[phases.steps]]
name = "pv"
kind = "pg.verify"
dsn = "postgres://127.0.0.1/x"
target_dsn = "postgres://127.0.0.1/y"
[[phases.steps]]
name = "pb"
kind = "pg.backup"
dsn = "postgres://127.0.0.1/x"
[[phases.steps]]
name = "pr"
kind = "pg.restore"
from = "{{ outputs.pb.id }}"
target_dsn = "postgres://127.0.0.1/z"
[[phases.steps]]
name = "pi"
kind = "pg.bigint"
table = "public.orders"
[[phases.steps]]
name = "pm"
kind = "pg.migrate"
dsn = "postgres://127.0.0.1/x"
dir = "db/migrations"
"#;
    let plan = load_str("k.toml", text, Path::new("."), None).expect("valid");
    let kinds: Vec<&str> = plan.phases[0].steps.iter().map(|s| s.kind.name()).collect();
    // One step of each kind, in the order the shape lists them.
    assert_eq!(kinds, crate::shape::STEP_KINDS);
}

/// A `pg.bigint` step of `STEP` with `extra` lines.
fn bigint(extra: &str) -> String {
    format!("{STEP}kind = \"pg.bigint\"\ntable = \"public.orders\"\n{extra}")
}

/// The diagnostic codes of a plan with one `pg.bigint` step.
fn bigint_codes(extra: &str) -> Vec<String> {
    errors(&bigint(extra))
        .iter()
        .filter_map(|e| e.split_once(' ')?.1.split_once(':').map(|(c, _)| c.to_string()))
        .collect()
}

#[test]
fn a_pg_bigint_step_gets_its_defaults() {
    let text = format!("{BASE}{}", bigint(""));
    let plan = load_str("p.toml", &text, Path::new("."), None).expect("valid");
    let step = &plan.phases[0].steps[0];
    assert!(step.idempotent);
    assert_eq!(step.kind.name(), "pg.bigint");
    let crate::StepKind::PgBigint(b) = &step.kind else { panic!("not pg.bigint: {:?}", step.kind) };
    assert_eq!(b.dsn.source, "{{ vars.dsn }}");
    assert_eq!(b.table.source, "public.orders");
    assert_eq!(b.column, None);
    assert_eq!(b.action, "convert");
    assert_eq!((b.until.as_deref(), b.from.as_deref()), (None, None));
    assert!(!b.approve_cutover);
    assert_eq!(b.lock_timeout, Duration::from_millis(500));
    assert_eq!(b.statement_timeout, Duration::from_secs(1));
    assert_eq!(b.attempts, 30);
    assert_eq!(b.batch_time, Duration::from_millis(200));
    assert_eq!(b.batch_rows, 1000);
    assert_eq!(b.max_replication_lag, Duration::from_secs(10));
    assert_eq!(b.max_transaction_age, Duration::from_secs(600));
    assert_eq!(b.max_active, None);
}

#[test]
fn a_pg_bigint_step_takes_every_field() {
    let text = format!(
        "{BASE}{}",
        bigint(
            "dsn = \"postgres://127.0.0.1/shop\"\ncolumn = \"id\"\nuntil = \"prepare\"\nfrom = \"backfill\"\n\
             approve_cutover = true\nlock_timeout = \"2s\"\nstatement_timeout = \"10s\"\nattempts = 5\n\
             batch_time = \"1s\"\nbatch_rows = 50\nmax_replication_lag = \"30s\"\nmax_transaction_age = \"1h\"\n\
             max_active = 8\nidempotent = false\n"
        )
    );
    let plan = load_str("p.toml", &text, Path::new("."), None).expect("valid");
    let step = &plan.phases[0].steps[0];
    assert!(!step.idempotent);
    let crate::StepKind::PgBigint(b) = &step.kind else { panic!("not pg.bigint: {:?}", step.kind) };
    assert_eq!(b.dsn.source, "postgres://127.0.0.1/shop");
    assert_eq!(b.column.as_ref().map(|c| c.source.as_str()), Some("id"));
    assert_eq!((b.from.as_deref(), b.until.as_deref()), (Some("backfill"), Some("prepare")));
    assert!(b.approve_cutover);
    assert_eq!((b.lock_timeout, b.statement_timeout), (Duration::from_secs(2), Duration::from_secs(10)));
    assert_eq!((b.attempts, b.batch_rows, b.max_active), (5, 50, Some(8)));
    assert_eq!(b.batch_time, Duration::from_secs(1));
    assert_eq!((b.max_replication_lag, b.max_transaction_age), (Duration::from_secs(30), Duration::from_secs(3600)));
    let r = crate::runbook::runbook(&plan);
    assert!(
        r.contains(
            "convert `public.orders.id` and the foreign keys referencing it to bigint (online; stages backfill to prepare; **approval** before the cut-over; cut-over lock ≤ 2s)"
        ),
        "{r}"
    );
}

#[test]
fn pg_bigint_mistakes_get_their_codes() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("action = \"rollback\"\n", &[]),
        ("until = \"verify\"\nfrom = \"verify\"\n", &[]),
        ("lock_timeout = \"10s\"\nstatement_timeout = \"1ms\"\n", &[]),
        // Values the shape knows.
        ("action = \"revert\"\n", &["enum"]),
        ("until = \"swap\"\n", &["enum"]),
        ("from = \"copy\"\n", &["enum"]),
        ("attempts = 0\n", &["range"]),
        ("batch_rows = 0\n", &["range"]),
        ("lock_timeout = \"soon\"\n", &["duration"]),
        ("tabel = \"x\"\n", &["unknown-key"]),
        // Stages only with convert, and in order.
        ("action = \"contract\"\nuntil = \"verify\"\n", &["bigint-stage"]),
        ("action = \"abort\"\nuntil = \"verify\"\nfrom = \"expand\"\n", &["bigint-stage", "bigint-stage"]),
        ("from = \"cutover\"\nuntil = \"backfill\"\n", &["bigint-stage-order"]),
        // Short locks.
        ("lock_timeout = \"0s\"\n", &["bigint-timeout"]),
        ("lock_timeout = \"11s\"\n", &["bigint-timeout"]),
        ("statement_timeout = \"1m\"\n", &["bigint-timeout"]),
        // Templates, as pg.copy's.
        ("column = \"{{ vars.nope }}\"\n", &["missing-var"]),
    ];
    let mut failures = vec![];
    for (extra, expect) in cases {
        let got = bigint_codes(extra);
        if got != *expect {
            failures.push(format!("{extra:?}: expected {expect:?}, got {got:?} ({:#?})", errors(&bigint(extra))));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A step without `table`.
    let got = errors(&format!("{STEP}kind = \"pg.bigint\"\n"));
    assert_eq!(got, ["7:1 missing-key: missing key `table` in step `s1`"]);
    // The message of a stage order mistake.
    assert_eq!(
        errors(&bigint("from = \"cutover\"\nuntil = \"backfill\"\n")),
        [
            "7:1 bigint-stage-order: pg.bigint step `s1` starts at stage cutover (`from`), after the stage it stops at, backfill (`until`)"
        ]
    );
}

/// A `pg.migrate` step of `STEP` with `extra` lines.
fn migrate(extra: &str) -> String {
    format!("{STEP}kind = \"pg.migrate\"\ndsn = \"{{{{ vars.dsn }}}}\"\ndir = \"db/migrations\"\n{extra}")
}

/// The diagnostic codes of a plan with one `pg.migrate` step.
fn migrate_codes(extra: &str) -> Vec<String> {
    errors(&migrate(extra))
        .iter()
        .filter_map(|e| e.split_once(' ')?.1.split_once(':').map(|(c, _)| c.to_string()))
        .collect()
}

#[test]
fn a_pg_migrate_step_gets_its_defaults() {
    let text = format!("{BASE}{}", migrate(""));
    let plan = load_str("p.toml", &text, Path::new("."), None).expect("valid");
    let step = &plan.phases[0].steps[0];
    // Migrations keep their state in the database: a re-run applies nothing twice.
    assert!(step.idempotent);
    assert_eq!(step.kind.name(), "pg.migrate");
    let crate::StepKind::PgMigrate(m) = &step.kind else { panic!("not pg.migrate: {:?}", step.kind) };
    assert_eq!(m.dsn.source, "{{ vars.dsn }}");
    assert_eq!(m.dir, "db/migrations");
    assert_eq!(m.to, None);
    assert!(!m.allow_out_of_order && !m.allow_changed && !m.lint);
    assert_eq!(m.lock_wait, Duration::from_secs(30));
    assert_eq!((m.lock_timeout, m.statement_timeout), (None, None));
    assert_eq!(m.golang_migrate_table, None);
    let r = crate::runbook::runbook(&plan);
    assert!(r.contains("apply migrations from `db/migrations` (up to the newest)"), "{r}");
}

#[test]
fn a_pg_migrate_step_takes_every_field() {
    let text = format!(
        "{BASE}{}",
        migrate(
            "to = 20261121103000\nallow_out_of_order = true\nallow_changed = true\nlock_wait = \"2m\"\n\
             lock_timeout = \"3s\"\nstatement_timeout = \"15m\"\nlint = true\nidempotent = false\n\
             golang_migrate_table = \"app_versions\"\n"
        )
    );
    let plan = load_str("p.toml", &text, Path::new("."), None).expect("valid");
    let step = &plan.phases[0].steps[0];
    assert!(!step.idempotent);
    let crate::StepKind::PgMigrate(m) = &step.kind else { panic!("not pg.migrate: {:?}", step.kind) };
    assert_eq!(m.to, Some(20_261_121_103_000));
    assert!(m.allow_out_of_order && m.allow_changed && m.lint);
    assert_eq!(m.lock_wait, Duration::from_secs(120));
    assert_eq!(m.lock_timeout, Some(Duration::from_secs(3)));
    assert_eq!(m.statement_timeout, Some(Duration::from_secs(900)));
    assert_eq!(m.golang_migrate_table.as_deref(), Some("app_versions"));
    let r = crate::runbook::runbook(&plan);
    assert!(
        r.contains(
            "apply migrations from `db/migrations` (to version 20261121103000, rolling back any newer one; refused on a lint error; out-of-order files applied; edited files allowed)"
        ),
        "{r}"
    );
    // A git source is taken as it is, and version 0 means every migration rolled back.
    let text = format!("{BASE}{}", migrate("to = 0\n").replace("db/migrations", "git:../app.git#v1.4.0:db"));
    let plan = load_str("p.toml", &text, Path::new("."), None).expect("valid");
    let crate::StepKind::PgMigrate(m) = &plan.phases[0].steps[0].kind else { panic!("not pg.migrate") };
    assert_eq!((m.dir.as_str(), m.to), ("git:../app.git#v1.4.0:db", Some(0)));
    assert!(crate::runbook::runbook(&plan).contains("**down** to version 0"));
}

#[test]
fn pg_migrate_mistakes_get_their_codes() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("to = 3\nlock_wait = \"1ms\"\n", &[]),
        // Values the shape knows.
        ("to = -1\n", &["range"]),
        ("to = \"3\"\n", &["type"]),
        ("lint = \"yes\"\n", &["type"]),
        ("lock_wait = \"soon\"\n", &["duration"]),
        ("direction = \"up\"\n", &["unknown-key"]),
        // Timeouts above 0.
        ("lock_wait = \"0s\"\n", &["migrate-timeout"]),
        ("lock_timeout = \"0ms\"\nstatement_timeout = \"0s\"\n", &["migrate-timeout", "migrate-timeout"]),
        // golang-migrate's table: a PostgreSQL name.
        ("golang_migrate_table = \"\"\n", &["migrate-golang-table"]),
        ("golang_migrate_table = \"app_versions\"\n", &[]),
    ];
    let mut failures = vec![];
    for (extra, expect) in cases {
        let got = migrate_codes(extra);
        if got != *expect {
            failures.push(format!("{extra:?}: expected {expect:?}, got {got:?} ({:#?})", errors(&migrate(extra))));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Without `dsn` and `dir`: both are required (no default DSN: a tenant's database is named on purpose).
    let got = errors(&format!("{STEP}kind = \"pg.migrate\"\n"));
    assert_eq!(
        got,
        ["7:1 missing-key: missing key `dsn` in step `s1`", "7:1 missing-key: missing key `dir` in step `s1`"]
    );
    // A DSN that reads an undeclared secret.
    let got = errors(&format!("{STEP}kind = \"pg.migrate\"\ndsn = \"{{{{ secrets.pg }}}}\"\ndir = \"m\"\n"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("unknown-secret"), "{got:?}");
    // A directory that names nothing, and a git source without its ref, at the value's position.
    let with_dir =
        |dir: &str| errors(&format!("{STEP}kind = \"pg.migrate\"\ndsn = \"{{{{ vars.dsn }}}}\"\ndir = \"{dir}\"\n"));
    assert_eq!(with_dir(" "), ["11:8 migrate-dir: `dir` of pg.migrate step `s1` is empty: \" \""]);
    assert_eq!(
        with_dir("git:https://example.com/app.git"),
        [
            "11:8 migrate-dir: `dir` of pg.migrate step `s1` is a git source without a ref: \"git:https://example.com/app.git\""
        ]
    );
    assert_eq!(with_dir("git:https://example.com/app.git#main"), Vec::<String>::new());
}
