//! Webhooks: JSON and Slack payloads on target failures and the run's end,
//! retried after a failed delivery, with secrets redacted.

use crate::support::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

fn hook_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let handler = |path: &'static str| {
                move |State(s): State<Seen>, headers: HeaderMap, body: String| async move {
                    let mut v = s.lock().expect("lock");
                    let token = headers.get("x-token").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                    v.push((path.to_string(), token, body));
                    // The very first delivery fails: it must be retried.
                    if v.len() == 1 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                }
            };
            let app = Router::new()
                .route("/json", post(handler("json")))
                .route("/slack", post(handler("slack")))
                .with_state(s);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send");
            axum::serve(l, app).await.expect("serve");
        });
    });
    (format!("http://{}", rx.recv().expect("addr")), seen)
}

#[test]
fn webhooks_post_failures_and_the_end_with_retries_and_no_secrets() {
    let (url, seen) = hook_server();
    let w = Work::new();
    w.write(
        "p.toml",
        &format!(
            r#"name = "hooks"
[vars]
hooks = "{url}"
[secrets]
hook = "env:CUTOVER_TEST_HOOK_TOKEN"
[[notify]]
name = "ops-json"
url = "{{{{ vars.hooks }}}}/json"
on = ["target_failed", "run_finished"]
headers = {{ X-Token = "{{{{ secrets.hook }}}}" }}
[[notify]]
name = "ops-slack"
url = "{{{{ vars.hooks }}}}/slack"
format = "slack"
on = ["run_finished"]
[[targets]]
name = "a"
[[phases]]
name = "p"
[[phases.steps]]
name = "s"
kind = "exec"
command = "echo 'bad token {{{{ secrets.hook }}}}' >&2; exit 1"
"#
        ),
    );
    let o = w.cmd(&["run", "p.toml"]).env("CUTOVER_TEST_HOOK_TOKEN", "hook-s3cret-9").output().expect("run");
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let seen = seen.lock().expect("lock").clone();
    let json_bodies: Vec<serde_json::Value> =
        seen.iter().filter(|(p, _, _)| p == "json").map(|(_, _, b)| serde_json::from_str(b).expect("json")).collect();
    // target_failed twice (the first delivery failed and was retried), then run_finished.
    let kinds: Vec<&str> = json_bodies.iter().filter_map(|b| b["kind"].as_str()).collect();
    assert_eq!(kinds, ["target_failed", "target_failed", "run_finished"]);
    assert_eq!(json_bodies[1]["target"], "a");
    assert!(json_bodies[1]["message"].as_str().unwrap_or("").contains("bad token [redacted]"), "{}", json_bodies[1]);
    assert!(
        seen.iter().filter(|(p, _, _)| p == "json").all(|(_, t, _)| t == "hook-s3cret-9"),
        "the header carries the real secret"
    );
    let slack: Vec<&(String, String, String)> = seen.iter().filter(|(p, _, _)| p == "slack").collect();
    assert_eq!(slack.len(), 1);
    let text_field = serde_json::from_str::<serde_json::Value>(&slack[0].2).expect("json")["text"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(text_field.starts_with("*hooks* · run ") && text_field.contains("the run ended: failed"), "{text_field}");
    for (_, _, body) in &seen {
        assert!(!body.contains("hook-s3cret-9"), "a payload carried the secret: {body}");
    }
}

#[test]
fn checks_going_stale_and_phases_completing_are_announced() {
    let (url, seen) = hook_server();
    let w = Work::new();
    // One reading, then none for 30 s: stale after 5 s, while the step runs.
    w.write(
        "p.toml",
        &format!(
            r#"name = "stale"
[[notify]]
name = "ops"
url = "{url}/json"
on = ["check", "phase_completed"]
[[checks]]
name = "slow"
kind = "command"
command = "echo 1"
interval = "30s"
stale_after = "5s"
[[targets]]
name = "a"
[[targets]]
name = "b"
[[phases]]
name = "first"
[[phases.steps]]
name = "quick"
kind = "exec"
command = "true"
[[phases]]
name = "second"
[[phases.steps]]
name = "long"
kind = "exec"
command = "sleep 6.5"
"#
        ),
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let events = w.events(&w.run_id());
    let stale = events
        .iter()
        .find(|e| e["kind"] == "check_status" && e["data"]["to"] == "stale")
        .expect("a stale event while nothing read the check");
    assert!(stale["message"].as_str().unwrap_or("").contains("no reading for"), "{stale}");
    let phases: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "phase_completed").filter_map(|e| e["data"]["phase"].as_str()).collect();
    assert_eq!(phases, ["first", "second"]);
    let bodies: Vec<serde_json::Value> =
        seen.lock().expect("lock").iter().map(|(_, _, b)| serde_json::from_str(b).expect("json")).collect();
    let posted: Vec<&str> = bodies.iter().filter_map(|b| b["kind"].as_str()).collect();
    assert!(posted.contains(&"phase_completed"), "{posted:?}");
    assert!(bodies.iter().any(|b| b["kind"] == "check_status" && b["data"]["to"] == "stale"), "{posted:?}");
    assert!(!posted.contains(&"run_finished"), "only the groups asked for: {posted:?}");
}
