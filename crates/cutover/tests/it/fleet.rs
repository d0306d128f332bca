//! A run over 20 targets with exec, sql (real PostgreSQL 15 and 13) and http
//! (a local server) steps; the concurrency limits and the `after` order are
//! checked from the recorded timestamps.

use crate::support::*;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A real HTTP server on 127.0.0.1 that counts hits per target.
fn http_server() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let hits: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let h = hits.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let app = Router::new()
                .route(
                    "/hit",
                    get(
                        |State(h): State<Arc<Mutex<HashMap<String, u32>>>>,
                         Query(q): Query<HashMap<String, String>>| async move {
                            let t = q.get("target").cloned().unwrap_or_default();
                            let mut m = h.lock().expect("lock");
                            *m.entry(t.clone()).or_default() += 1;
                            axum::Json(serde_json::json!({ "target": t, "hits": m[&t] }))
                        },
                    ),
                )
                .with_state(h);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("addr");
    (format!("http://{addr}"), hits)
}

fn intervals(status: &Value) -> Vec<(String, String, String, String)> {
    status["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or("").to_string(),
                t["started_at"].as_str().expect("started").to_string(),
                t["finished_at"].as_str().expect("finished").to_string(),
                String::new(),
            )
        })
        .collect()
}

/// The most intervals open at once among those `keep` selects.
fn max_overlap(iv: &[(String, String, String, String)], keep: impl Fn(&str) -> bool) -> usize {
    let sel: Vec<_> = iv.iter().filter(|i| keep(&i.0)).collect();
    sel.iter().map(|a| sel.iter().filter(|b| b.1 <= a.1 && a.1 < b.2).count()).max().unwrap_or(0)
}

#[test]
fn twenty_targets_respect_limits_and_order_with_real_servers() {
    let pg15 = cutover_testkit::shared(15);
    let pg13 = cutover_testkit::shared(13);
    let db = cutover_testkit::unique_db_name("fleet");
    let dsn15 = pg15.create_database(&db).expect("db15");
    let dsn13 = pg13.create_database(&db).expect("db13");
    for (pg, _) in [(pg15, &dsn15), (pg13, &dsn13)] {
        pg.psql(&db, "create table visits (target text primary key, n int not null, at timestamptz default now())")
            .expect("table");
    }
    let (url, hits) = http_server();
    let regions = ["eu", "us", "ap", "sa"];
    let mut targets = String::new();
    for i in 0..20 {
        let name = format!("t{i:02}");
        let region = regions[i % 4];
        let dsn = if i % 2 == 0 { &dsn15 } else { &dsn13 };
        let after = match i {
            8 => "after = [\"t00\", \"t04\"]\n",
            12 => "after = [\"t08\"]\n",
            _ => "",
        };
        targets.push_str(&format!(
            "[[targets]]\nname = \"{name}\"\nlabels = {{ region = \"{region}\" }}\nvars = {{ dsn = \"{dsn}\", n = {i} }}\n{after}"
        ));
    }
    let w = Work::new();
    w.write(
        "fleet.toml",
        &format!(
            r#"name = "fleet"
[vars]
api = "{url}"
[concurrency]
limit = 6
per_label = {{ region = 2 }}
{targets}
[[phases]]
name = "work"
[[phases.steps]]
name = "prepare"
kind = "exec"
command = "sleep 0.25; echo '{{\"size\": {{{{ vars.n }}}}}}'"
[[phases.steps]]
name = "record"
kind = "sql"
sql = "insert into visits (target, n) values ($1, $2) returning n * 10 as tenfold, current_setting('server_version_num')::int / 10000 as major"
params = ["{{{{ name }}}}", "{{{{ outputs.prepare.size }}}}"]
[[phases.steps]]
name = "notify"
kind = "http"
url = "{{{{ vars.api }}}}/hit?target={{{{ name }}}}"
expect_status = 200
"#
        ),
    );
    let o = w.run(&["run", "fleet.toml"]);
    assert_eq!(code(&o), 0, "stderr: {}", text(&o.stderr));
    let run = w.run_id();
    let status = w.status(&run);
    assert_eq!(status["counts"]["succeeded"], 20, "{status:#}");

    // Concurrency held at every moment, and the limit was actually reached.
    let iv = intervals(&status);
    let global = max_overlap(&iv, |_| true);
    assert!(global <= 6, "more than 6 targets ran at once: {global}");
    assert!(global >= 4, "the run never ran targets in parallel ({global})");
    let region_of = |n: &str| regions[n[1..].parse::<usize>().unwrap_or(0) % 4];
    for r in regions {
        let m = max_overlap(&iv, |n| region_of(n) == r);
        assert!(m <= 2, "more than 2 targets of region {r} ran at once: {m}");
    }
    // `after` order: a target starts only once its dependencies finished.
    let at = |n: &str| iv.iter().find(|i| i.0 == n).cloned().expect("target");
    for (t, deps) in [("t08", vec!["t00", "t04"]), ("t12", vec!["t08"])] {
        for d in deps {
            assert!(at(d).2 <= at(t).1, "{t} started before {d} finished");
        }
    }

    // Every step did its real work: rows in both servers, one hit per target,
    // outputs carried from exec to sql (bind parameters as text into an int column).
    assert_eq!(pg15.psql(&db, "select count(*) from visits").expect("count"), "10");
    assert_eq!(pg13.psql(&db, "select count(*) from visits").expect("count"), "10");
    assert_eq!(pg13.psql(&db, "select n from visits where target = 't07'").expect("n"), "7");
    let hits = hits.lock().expect("lock");
    assert_eq!(hits.len(), 20);
    assert!(hits.values().all(|n| *n == 1));
    let events = w.events(&run);
    let record_out = |t: &str| {
        events
            .iter()
            .find(|e| e["kind"] == "step_succeeded" && e["target"] == t && e["step"] == "record")
            .map(|e| e["data"]["outputs"].clone())
            .expect("record outputs")
    };
    assert_eq!(record_out("t03")["tenfold"], 30);
    assert_eq!(record_out("t03")["major"], 13);
    assert_eq!(record_out("t04")["major"], 15);
}
