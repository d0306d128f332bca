//! The CLI's contract: exit codes, clear one-sentence errors, nothing
//! recorded when nothing could start.

use crate::support::*;

const OK_PLAN: &str = r#"name = "ok"
[[targets]]
name = "a"
[[phases]]
name = "p"
[[phases.steps]]
name = "touch"
kind = "exec"
command = "touch ran-{{ name }}"
"#;

#[test]
fn validate_reports_every_error_with_its_position_and_exits_2() {
    let w = Work::new();
    w.write(
        "bad.toml",
        "name = \"bad\"\n[[targets]]\nname = \"a\"\n[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"s\"\nkind = \"exec\"\ncommand = \"echo {{ vars.nope }}\"\ntimeout = \"soon\"\n",
    );
    let o = w.run(&["validate", "bad.toml"]);
    assert_eq!(code(&o), 2);
    let err = text(&o.stderr);
    assert!(err.contains("bad.toml:9:12: error[missing-var]"), "{err}");
    assert!(err.contains("bad.toml:10:11: error[duration]"), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
    // JSON output carries the same diagnostics.
    let j = w.json(&["validate", "bad.toml"]);
    assert_eq!(j["valid"], false);
    assert_eq!(j["diagnostics"].as_array().map(Vec::len), Some(2));
    assert_eq!(j["diagnostics"][0]["line"], 9);
}

#[test]
fn run_of_an_invalid_plan_records_nothing() {
    let w = Work::new();
    w.write("bad.toml", "name = \"bad\"\n[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"s\"\nkind = \"shell\"\n");
    let o = w.run(&["run", "bad.toml"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("unknown step kind \"shell\""), "{}", text(&o.stderr));
    assert!(!w.state().exists(), "an invalid plan must not create a state file");
}

#[test]
fn schema_is_json_schema_and_plan_executes_nothing() {
    let w = Work::new();
    let s = w.json(&["schema"]);
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let kinds = |def: &str| -> Vec<String> {
        s["$defs"][def]["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["properties"]["kind"]["const"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        kinds("step"),
        [
            "exec",
            "sql",
            "http",
            "wait",
            "approve",
            "block",
            "pg.preflight",
            "pg.copy",
            "pg.verify",
            "pg.backup",
            "pg.restore",
            "pg.bigint",
            "pg.migrate"
        ]
    );
    assert_eq!(kinds("check"), ["http", "sql", "tcp", "command", "prometheus", "log", "manual"]);
    w.write("ok.toml", OK_PLAN);
    let o = w.run(&["plan", "ok.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("exec: sh -c \"touch ran-a\""), "{}", text(&o.stdout));
    assert!(!w.file("ran-a").exists(), "plan must not execute steps");
    assert!(!w.state().exists());
}

#[test]
fn unknown_runs_and_targets_get_one_sentence_and_exit_2() {
    let w = Work::new();
    w.write("ok.toml", OK_PLAN);
    assert_eq!(code(&w.run(&["run", "ok.toml"])), 0);
    let o = w.run(&["status", "nope"]);
    assert_eq!(code(&o), 2);
    assert_eq!(text(&o.stderr).trim(), "error: no run \"nope\" in the state store (see `cutover runs`)");
    let run = w.run_id();
    let o = w.run(&["retry", &run, "zz"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("has no target \"zz\""), "{}", text(&o.stderr));
    // A run that ended cannot be resumed.
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("has already ended (succeeded)"), "{}", text(&o.stderr));
}

#[test]
fn a_state_file_from_a_newer_version_is_refused_and_left_alone() {
    let w = Work::new();
    w.write("ok.toml", OK_PLAN);
    assert_eq!(code(&w.run(&["run", "ok.toml"])), 0);
    let conn = rusqlite::Connection::open(w.state()).expect("open");
    conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'", []).expect("update");
    drop(conn);
    let before = std::fs::read(w.state()).expect("read");
    let o = w.run(&["runs"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("was written by a newer cutover (state schema 7"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(w.state()).expect("read"), before);
}

#[test]
fn a_locked_state_file_gets_a_clear_error() {
    let w = Work::new();
    w.write("ok.toml", OK_PLAN);
    assert_eq!(code(&w.run(&["run", "ok.toml"])), 0);
    let conn = rusqlite::Connection::open(w.state()).expect("open");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let o = w.cmd(&["run", "ok.toml"]).env("CUTOVER_BUSY_TIMEOUT_MS", "300").output().expect("run");
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("is locked by another process"), "{}", text(&o.stderr));
    conn.execute_batch("ROLLBACK").expect("unlock");
}

#[test]
fn a_missing_command_and_an_unreachable_database_fail_their_target_clearly() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "bad-env"
[[targets]]
name = "no-cmd"
vars = { dsn = "postgres://postgres@127.0.0.1:1/none" }
[[targets]]
name = "no-db"
vars = { dsn = "postgres://postgres@127.0.0.1:1/none" }
[[phases]]
name = "p"
[[phases.steps]]
name = "cmd"
kind = "exec"
when = "name == 'no-cmd'"
command = ["definitely-not-a-command-xyz", "--flag"]
[[phases.steps]]
name = "db"
kind = "sql"
when = "name == 'no-db'"
sql = "select 1"
"#,
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    let s = w.status(&run);
    let msg = |t: &str| {
        s["targets"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == t))
            .map(|x| x["message"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        msg("no-cmd"),
        "step `cmd` failed: command not found: definitely-not-a-command-xyz (is it installed and on PATH?)"
    );
    assert!(msg("no-db").starts_with("step `db` failed: cannot connect to 127.0.0.1:1/none:"), "{}", msg("no-db"));
    assert_eq!(s["run"]["state"], "failed");
}

#[test]
fn a_missing_secret_stops_before_anything_runs() {
    let w = Work::new();
    w.write(
        "p.toml",
        "name = \"s\"\n[secrets]\npw = \"env:CUTOVER_TEST_UNSET_SECRET\"\n[[targets]]\nname = \"a\"\n[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"s\"\nkind = \"exec\"\ncommand = \"touch ran\"\n",
    );
    let o = w.cmd(&["run", "p.toml"]).env_remove("CUTOVER_TEST_UNSET_SECRET").output().expect("run");
    assert_eq!(code(&o), 2);
    assert_eq!(
        text(&o.stderr).trim(),
        "error: secret `pw` cannot be read: the environment variable CUTOVER_TEST_UNSET_SECRET is not set"
    );
    assert!(!w.file("ran").exists());
}

#[test]
fn help_teaches_with_examples_and_completions_exist() {
    let w = Work::new();
    let o = w.run(&["--help"]);
    let h = text(&o.stdout);
    assert!(h.contains("Exit codes:") && h.contains("cutover run examples/hello.toml"), "{h}");
    let o = w.run(&["completions", "bash"]);
    assert!(text(&o.stdout).contains("_cutover()"), "bash completions");
}

#[test]
fn the_dry_run_hides_inline_passwords_and_shows_outputs_as_placeholders() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "dry"
[[targets]]
name = "a"
vars = { dsn = "postgres://app:hunter2-inline@db.internal/app" }
[[phases]]
name = "p"
[[phases.steps]]
name = "size"
kind = "exec"
command = "echo '{\"rows\": 5}'"
[[phases.steps]]
name = "copy"
kind = "exec"
command = ["pg-copy", "--source", "{{ vars.dsn }}", "--rows", "{{ outputs.size.rows }}"]
"#,
    );
    let o = w.run(&["plan", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(!out.contains("hunter2-inline"), "{out}");
    assert!(out.contains("\"postgres://app:[redacted]@db.internal/app\""), "{out}");
    assert!(out.contains("\"<outputs.size.rows>\""), "{out}");
    assert!(text(&o.stderr).contains("warning[inline-password]"), "{}", text(&o.stderr));
    let j = w.json(&["validate", "p.toml"]);
    assert_eq!(j["warnings"][0]["code"], "inline-password");
}

#[test]
fn docs_writes_the_runbook_dashboard_and_alerts() {
    let w = Work::new();
    w.write("ok.toml", OK_PLAN);
    let o = w.run(&["docs", "ok.toml", "--out", "rb"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let runbook = w.read("rb/ok.md");
    assert!(
        runbook.starts_with("# Runbook: ok") && runbook.contains("**touch** — run `touch ran-{{ name }}`"),
        "{runbook}"
    );
    assert!(w.read("rb/ok-dashboard.md").starts_with("# Dashboard: ok"));
    assert!(w.read("rb/ok-alerts.md").contains("Nobody: the plan has no `[[notify]]`"));
}
