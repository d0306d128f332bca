//! The control tower over real HTTP on loopback: a `cutover serve` process
//! reading the state of a run that a `cutover run` process drives.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr};

const PLAN: &str = r#"name = "tower"
[[checks]]
name = "gate"
kind = "command"
command = "cat gate.txt"
interval = "300ms"
ok = "value == 'open'"
[[checks]]
name = "backups-off"
kind = "manual"
[[targets]]
name = "a"
labels = { region = "eu" }
[[phases]]
name = "work"
checks = ["gate"]
[[phases.steps]]
name = "first"
kind = "exec"
command = "while [ ! -f go ]; do sleep 0.05; done"
[[phases.steps]]
name = "second"
kind = "exec"
command = "touch second-ran"
"#;

/// Starts `cutover serve` on a free port; returns the child, its base URL and stderr.
pub(crate) fn serve(w: &Work) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = w
        .cmd(&["serve", "--listen", "127.0.0.1:0"])
        .env("CUTOVER_TOKEN", "tower-test-token")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("first line");
    let url = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .map(|a| format!("http://{a}"))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, url, err)
}

pub(crate) fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    })
}

/// What an SSE stream sends within `d`.
fn sse_for(url: &str, d: std::time::Duration) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let mut r = reqwest::Client::new().get(url).send().await.expect("stream");
        let mut out = String::new();
        let _ = tokio::time::timeout(d, async {
            while let Ok(Some(chunk)) = r.chunk().await {
                out.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        out
    })
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn the_api_shows_the_run_and_control_needs_the_token() {
    let w = Work::new();
    w.write("plan.toml", PLAN);
    w.write("gate.txt", "closed");
    let mut run = w.spawn(&["run", "plan.toml"]);
    wait_until(20, "the run to start", || {
        w.state().exists() && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
    });
    let id = w.run_id();
    let (server, base, _err) = serve(&w);
    assert_eq!(http("GET", &format!("{base}/healthz"), &[], None), (200, "ok\n".into()));
    // The check is probed by the driving process; the tower shows it.
    wait_until(20, "the gate check in alarm", || {
        http("GET", &format!("{base}/api/runs/{id}"), &[], None).1.contains("\"status\":\"alarm\"")
    });
    let page = http("GET", &format!("{base}/runs/{id}"), &[], None);
    assert_eq!(page.0, 200);
    assert!(page.1.contains("data-check=\"gate\"") && page.1.contains("data-status=\"alarm\""), "{}", page.1);
    // Control without a token: 401; with a wrong one: 403; nothing recorded.
    let pause = format!("{base}/api/runs/{id}/pause");
    assert_eq!(http("POST", &pause, &[], None).0, 401);
    assert_eq!(http("POST", &pause, &[("authorization", "Bearer nope")], None).0, 403);
    assert!(!w.events(&id).iter().any(|e| e["kind"] == "operator_pause"));
    // A tick and a pause with the token land in the event log with their origin.
    let auth = [("authorization", "Bearer tower-test-token"), ("x-cutover-actor", "alice")];
    let (code_tick, body) = http(
        "POST",
        &format!("{base}/api/runs/{id}/checks/backups-off/tick"),
        &auth,
        Some("{\"ok\": true, \"note\": \"off\"}"),
    );
    assert_eq!(code_tick, 200, "{body}");
    let (code_pause, body) = http("POST", &pause, &auth, None);
    assert_eq!(code_pause, 200, "{body}");
    w.write("go", "");
    assert_eq!(wait_exit(&mut run, 20), 3, "the run paused before its second step");
    assert!(!w.file("second-ran").exists());
    let events = w.events(&id);
    let origin = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert!(
        origin("operator_pause").starts_with("alice via the tower from 127.0.0.1:"),
        "{}",
        origin("operator_pause")
    );
    assert!(origin("check_ticked").starts_with("alice via the tower from 127.0.0.1:"), "{}", origin("check_ticked"));
    // Metrics and the event stream.
    let (_, metrics) = http("GET", &format!("{base}/metrics"), &[], None);
    assert!(
        metrics.contains(&format!("cutover_run_state{{run=\"{id}\",plan=\"tower\",state=\"paused\"}} 1")),
        "{metrics}"
    );
    assert!(metrics.contains("cutover_check_status{"), "{metrics}");
    let out = sse_for(&format!("{base}/api/runs/{id}/stream?after=0"), std::time::Duration::from_secs(2));
    assert!(out.contains("event: run") && out.contains("run_created"), "{out}");
    // Resuming through the tower: it drives the run itself.
    let (code_resume, body) = http("POST", &format!("{base}/api/runs/{id}/resume"), &auth, None);
    assert_eq!(code_resume, 202, "{body}");
    wait_until(20, "the tower to finish the run", || {
        w.file("second-ran").exists() && w.status(&id)["run"]["state"] == "succeeded"
    });
    // The snapshot is self-contained.
    let o = w.run(&["export", &id, "--html"]);
    let html = text(&o.stdout);
    assert!(
        html.contains("snapshot taken") && html.contains("<style>") && !html.contains("tower.js"),
        "{}",
        &html[..html.len().min(500)]
    );
    stop(server);
}

#[test]
fn a_real_browser_sees_the_check_turn_green_and_pauses_the_run() {
    let node_modules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/node_modules/playwright-core");
    assert!(node_modules.exists(), "playwright-core is missing: run scripts/install-test-deps");
    let w = Work::new();
    // The target waits for an approval first, given with the page's button.
    let plan = PLAN.replace(
        "[[phases.steps]]\nname = \"first\"",
        "[[phases.steps]]\nname = \"go-ahead\"\nkind = \"approve\"\n[[phases.steps]]\nname = \"first\"",
    );
    assert!(plan.contains("go-ahead"));
    w.write("plan.toml", &plan);
    w.write("gate.txt", "closed");
    let mut run = w.spawn(&["run", "plan.toml"]);
    wait_until(20, "the run to start", || {
        w.state().exists() && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
    });
    let id = w.run_id();
    let (server, base, _err) = serve(&w);
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).expect("dir");
    let shot = shots.join("run-page.png");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/run-page.mjs");
    let mut browser = std::process::Command::new("node")
        .arg(&script)
        .args([&format!("{base}/runs/{id}"), "tower-test-token", &shot.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "RED");
    w.write("gate.txt", "open");
    assert_eq!(next(), "GREEN");
    assert_eq!(next(), "APPROVED");
    assert_eq!(next(), "PAUSE");
    w.write("go", "");
    assert_eq!(next(), "PAUSED");
    assert!(browser.wait().expect("node").success());
    assert_eq!(wait_exit(&mut run, 20), 3);
    assert!(shot.exists(), "screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());
    let k = kinds(&w.events(&id));
    assert!(k.contains(&"operator_pause".to_string()));
    let approved = w.events(&id).into_iter().find(|e| e["kind"] == "approved").expect("approved through the page");
    assert!(approved["message"].as_str().unwrap_or("").starts_with("browser-test via the tower"), "{approved}");
    stop(server);
}
