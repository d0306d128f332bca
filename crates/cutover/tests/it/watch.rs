//! Watch mode, Pix's scenario: an app that answers 503 during maintenance,
//! client connections to a real PostgreSQL, a migration script's log with
//! "<step> - In progress/Done" and "alive" lines. The phases go red → green
//! in order; expectations flip with the phase.

use crate::support::*;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

fn app_server() -> (String, Arc<AtomicU16>) {
    let status = Arc::new(AtomicU16::new(200));
    let s = status.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let app = Router::new()
                .route(
                    "/",
                    get(|State(s): State<Arc<AtomicU16>>| async move {
                        let code = s.load(Ordering::SeqCst);
                        (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), format!("{{\"status\": {code}}}"))
                    }),
                )
                .with_state(s);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, app).await.expect("serve");
        });
    });
    (format!("http://{}", rx.recv().expect("addr")), status)
}

fn log(w: &Work, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(w.file("migration.log")).expect("log");
    writeln!(f, "{line}").expect("write");
}

#[test]
fn pix_control_tower_goes_red_to_green_through_the_phases() {
    let pg = cutover_testkit::shared(15);
    let db = cutover_testkit::unique_db_name("pix");
    let dsn = pg.create_database(&db).expect("db");
    let (url, app) = app_server();
    let w = Work::new();
    w.write(
        "watch.toml",
        &format!(
            r#"name = "pix-bigint"
[vars]
app = "{url}"
dsn = "{dsn}"

[[checks]]
name = "app-in-maintenance"
kind = "http"
url = "{{{{ vars.app }}}}/"
interval = "200ms"
ok = "value == 503"
expect = {{ reopen = {{ ok = "value == 200" }} }}

[[checks]]
name = "connections"
kind = "sql"
preset = "connections"
interval = "200ms"
range = {{ max = 0 }}

[[checks]]
name = "backups-off"
kind = "manual"

[[checks]]
name = "migration-step"
kind = "log"
file = "migration.log"
interval = "200ms"
steps = {{ "1/2" = "^copy - In progress", "2/2" = "^swap - In progress", "done" = "^swap - Done" }}
heartbeat = "^alive$"
liveness = "5s"
ok = "value == 'done'"

[[phases]]
name = "maintenance"
checks = ["app-in-maintenance", "connections", "backups-off"]

[[phases]]
name = "migration"
checks = ["migration-step"]

[[phases]]
name = "reopen"
checks = ["app-in-maintenance"]
"#
        ),
    );
    // A client holds a connection: the maintenance phase cannot complete.
    let client = std::process::Command::new(pg.psql_path())
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            &db,
            "-c",
            "select pg_sleep(3)",
        ])
        .spawn()
        .expect("psql client");
    let mut child = w.spawn(&["watch", "watch.toml"]);
    wait_until(30, "the watch to record its run", || {
        w.state().exists() && !w.json(&["runs"]).as_array().is_none_or(|a| a.is_empty())
    });
    let run = w.run_id();
    let status_of = |check: &str| {
        w.json(&["status", &run]);
        let conn = rusqlite::Connection::open(w.state()).expect("db");
        conn.query_row(
            "SELECT json_extract(result_json, '$.status') FROM check_results WHERE run_id = ?1 AND check_name = ?2",
            [&run, check],
            |r| r.get::<_, String>(0),
        )
        .unwrap_or_default()
    };
    // Red: the app answers 200 and a client is connected.
    wait_until(30, "app check in alarm", || status_of("app-in-maintenance") == "alarm");
    wait_until(30, "connections in alarm", || status_of("connections") == "alarm");
    // The operator puts the app in maintenance; the client goes away; backups are ticked off.
    app.store(503, Ordering::SeqCst);
    let mut client = client;
    client.wait().expect("client ends");
    wait_until(30, "app check ok", || status_of("app-in-maintenance") == "ok");
    wait_until(30, "connections ok", || status_of("connections") == "ok");
    let o = w.run(&["check", &run, "backups-off", "--ok", "--note", "disabled in the console"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    // The migration script logs its steps.
    log(&w, "copy - In progress");
    log(&w, "alive");
    wait_until(30, "the log step", || {
        w.events(&run).iter().any(|e| e["kind"] == "phase_started" && e["data"]["phase"] == "migration")
    });
    log(&w, "copy - Done");
    log(&w, "swap - In progress");
    log(&w, "alive");
    log(&w, "swap - Done");
    // Reopening: the app must now answer 200 — red until it does.
    wait_until(30, "the reopen phase", || {
        w.events(&run).iter().any(|e| e["kind"] == "phase_started" && e["data"]["phase"] == "reopen")
    });
    wait_until(30, "app check red again after the expectation flipped", || status_of("app-in-maintenance") == "alarm");
    app.store(200, Ordering::SeqCst);
    assert_eq!(wait_exit(&mut child, 30), 0);
    let events = w.events(&run);
    let phases: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "phase_completed")
        .map(|e| e["data"]["phase"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(phases, ["maintenance", "migration", "reopen"]);
    let ticked = events.iter().find(|e| e["kind"] == "check_ticked").expect("tick event");
    assert_eq!(ticked["data"]["actor"], "tester");
    assert_eq!(w.status(&run)["run"]["state"], "succeeded");
}

/// examples/pix-watch/run.sh end to end: a real PostgreSQL, the stand-in app
/// (python3), the migration script, and `cutover watch` with the tower.
#[test]
fn the_pix_watch_example_runs_end_to_end() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pix-watch/run.sh");
    let app_port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port");
    let o = std::process::Command::new("bash")
        .arg(&script)
        .env("CUTOVER", env!("CARGO_BIN_EXE_cutover"))
        .env("LISTEN", "127.0.0.1:0")
        .env("APP_PORT", app_port.to_string())
        .env("CUTOVER_ACTOR", "tester")
        .output()
        .expect("run.sh");
    let out = text(&o.stdout);
    let err = text(&o.stderr);
    assert_eq!(code(&o), 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("phases: maintenance=complete, migration=complete, reopen=complete · state: succeeded"),
        "{out}"
    );
    assert!(
        err.contains("phase `reopen` is current") && err.contains("check `app-in-maintenance` is alarm (was ok)"),
        "the expectation flipped at reopening: {err}"
    );
}

/// Every check kind against real peers: a Prometheus-style HTTP API on
/// loopback, open and closed TCP ports, PostgreSQL presets, a log followed
/// from a command's output. The watch completes once all of them are ok.
#[test]
fn every_check_kind_reads_a_real_source() {
    let pg = cutover_testkit::shared(15);
    let db = cutover_testkit::unique_db_name("kinds");
    let dsn = pg.create_database(&db).expect("db");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let app = Router::new().route(
                "/api/v1/query",
                get(|q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    let ok = q.get("query").map(String::as_str) == Some("sum(rate(errors[1m]))");
                    axum::Json(serde_json::json!({
                        "status": if ok { "success" } else { "error" },
                        "error": "unexpected query",
                        "data": { "resultType": "vector", "result": [ { "metric": {}, "value": [1700000000.0, "42.5"] } ] }
                    }))
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("addr");
    let w = Work::new();
    let names = ["prom", "tcp-open", "tcp-closed", "locks", "longtx", "lag", "copy", "index", "cmd-log"];
    w.write(
        "kinds.toml",
        &format!(
            r#"name = "kinds"
[vars]
dsn = "{dsn}"
[[checks]]
name = "prom"
kind = "prometheus"
url = "http://{addr}"
query = "sum(rate(errors[1m]))"
interval = "300ms"
ok = "value == 42.5"
[[checks]]
name = "tcp-open"
kind = "tcp"
address = "{addr}"
interval = "300ms"
[[checks]]
name = "tcp-closed"
kind = "tcp"
address = "127.0.0.1:1"
interval = "300ms"
ok = "value == false"
[[checks]]
name = "locks"
kind = "sql"
preset = "blocking_locks"
interval = "300ms"
# In every database of the shared server, where other tests may be waiting on a lock.
range = {{ min = 0, max = 1000 }}
[[checks]]
name = "longtx"
kind = "sql"
preset = "long_transactions"
interval = "300ms"
ok = "value < 3600.0"
[[checks]]
name = "lag"
kind = "sql"
preset = "replication_lag"
interval = "300ms"
range = {{ max = 10 }}
[[checks]]
name = "copy"
kind = "sql"
preset = "progress_copy"
interval = "300ms"
ok = "value.unit == 'bytes' && value.done >= 0"
[[checks]]
name = "index"
kind = "sql"
preset = "progress_create_index"
interval = "300ms"
ok = "value.unit == 'blocks'"
[[checks]]
name = "cmd-log"
kind = "log"
command = "printf 'copy - In progress\nalive\n'; sleep 20"
steps = {{ copy = "^copy - " }}
heartbeat = "^alive$"
interval = "300ms"
ok = "value == 'copy' && alive"
[[phases]]
name = "all"
checks = {names:?}
"#
        ),
    );
    let o = w.cmd(&["watch", "kinds.toml", "--output", "json"]).output().expect("watch");
    assert_eq!(code(&o), 0, "{}\n{}", text(&o.stdout), text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    for n in names {
        let c =
            v["checks"].as_array().and_then(|a| a.iter().find(|c| c["check"] == n)).unwrap_or_else(|| panic!("no {n}"));
        assert_eq!(c["status"], "ok", "{n}: {c}");
    }
    let prom = v["checks"].as_array().and_then(|a| a.iter().find(|c| c["check"] == "prom")).expect("prom");
    assert_eq!(prom["value"], 42.5);
}
