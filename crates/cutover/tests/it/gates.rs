//! Gates: pause_when holds new work and releases it; rollback_when rolls
//! back; proceed_when waits; approvals block until given; a wave over its
//! failure limit stops the ramp; abort_when aborts.

use crate::support::*;

fn lag_check(extra: &str) -> String {
    format!(
        r#"[[checks]]
name = "lag"
kind = "command"
command = "cat lag.txt"
interval = "150ms"
{extra}
"#
    )
}

#[test]
fn pause_when_throttles_new_work_and_releases_it() {
    let w = Work::new();
    w.write("lag.txt", "50");
    w.write(
        "p.toml",
        &format!(
            "name = \"throttle\"\n{}[[targets]]\nname = \"a\"\n[[phases]]\nname = \"copy\"\npause_when = \"checks.lag.value > 10\"\ngate_interval = \"100ms\"\n[[phases.steps]]\nname = \"s1\"\nkind = \"exec\"\ncommand = \"touch s1\"\n",
            lag_check("")
        ),
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the throttle", || {
        w.state().exists()
            && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
            && kinds(&w.events(&w.run_id())).contains(&"target_throttled".to_string())
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert!(!w.file("s1").exists(), "no step starts while pause_when holds");
    w.write("lag.txt", "2");
    assert_eq!(wait_exit(&mut child, 20), 0);
    assert!(w.file("s1").exists());
    let events = w.events(&w.run_id());
    let throttled = events.iter().find(|e| e["kind"] == "target_throttled").expect("throttled");
    assert_eq!(throttled["message"], "throttled: checks.lag.value > 10");
    assert!(kinds(&events).contains(&"throttle_cleared".to_string()));
}

#[test]
fn rollback_when_rolls_the_target_back_and_proceed_when_waits() {
    let w = Work::new();
    w.write("lag.txt", "0");
    w.write("errors.txt", "0");
    w.write(
        "p.toml",
        &format!(
            r#"name = "rollback-gate"
{}
[[checks]]
name = "errors"
kind = "command"
command = "cat errors.txt"
interval = "100ms"
[[targets]]
name = "a"
[[phases]]
name = "prepare"
proceed_when = "checks.lag.ok && checks.lag.value == 0"
gate_interval = "100ms"
[[phases.steps]]
name = "s1"
kind = "exec"
command = "touch s1; echo 3 > errors.txt; sleep 0.6"
[[phases.steps]]
name = "s2"
kind = "exec"
command = "touch s2"
[[phases]]
name = "later"
rollback_when = "checks.errors.value > 0"
[[phases.steps]]
name = "s3"
kind = "exec"
command = "touch s3"
[[phases.rollback]]
name = "undo"
kind = "exec"
command = "touch undone"
"#,
            lag_check("ok = \"value < 5\"")
        ),
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    assert!(w.file("s1").exists() && w.file("s2").exists());
    assert!(!w.file("s3").exists(), "the gate stopped s3");
    assert!(w.file("undone").exists(), "rollback steps ran");
    assert_eq!(w.target_state(&run, "a"), "rolled_back");
    let k = kinds(&w.events(&run));
    assert!(k.contains(&"gate_rollback".to_string()), "{k:?}");
}

#[test]
fn an_approval_blocks_until_given_and_names_who() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "approve"
[[targets]]
name = "a"
[[targets]]
name = "b"
[[phases]]
name = "switch"
[[phases.steps]]
name = "go"
kind = "approve"
message = "cut over {{ name }}?"
[[phases.steps]]
name = "cutover"
kind = "exec"
command = "touch cut-{{ name }}"
"#,
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "approval requests", || {
        w.state().exists()
            && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
            && w.events(&w.run_id()).iter().filter(|e| e["kind"] == "approval_needed").count() == 2
    });
    let run = w.run_id();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!w.file("cut-a").exists() && !w.file("cut-b").exists(), "nothing cuts over without approval");
    let o = w.run(&["approve", &run, "go", "--target", "a", "--note", "lag 0"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    wait_until(20, "a to cut over", || w.file("cut-a").exists());
    assert!(!w.file("cut-b").exists(), "b still waits for its own approval");
    assert_eq!(code(&w.run(&["approve", &run, "go"])), 0);
    assert_eq!(wait_exit(&mut child, 20), 0);
    let events = w.events(&run);
    let out = events
        .iter()
        .find(|e| e["kind"] == "step_succeeded" && e["target"] == "a" && e["step"] == "go")
        .expect("approved step");
    assert_eq!(out["data"]["outputs"]["approved_by"], "tester");
    assert_eq!(out["data"]["outputs"]["note"], "lag 0");
    // Approving a step that is not an approve step is refused.
    assert_eq!(code(&w.run(&["approve", &run, "cutover"])), 2);
}

fn wave_plan(fail_first: bool) -> String {
    let mut p = String::from(
        "name = \"waves\"\nwaves = [1, \"40%\", \"100%\"]\nmax_fail_percent = 0\n[concurrency]\nlimit = 5\n",
    );
    for i in 0..5 {
        p.push_str(&format!("[[targets]]\nname = \"t{i}\"\n"));
    }
    let cmd = if fail_first { "[ {{ name }} != t0 ] && touch ran-{{ name }}" } else { "touch ran-{{ name }}" };
    p.push_str(&format!(
        "[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"s\"\nkind = \"exec\"\ncommand = \"{cmd}\"\n"
    ));
    p
}

#[test]
fn a_failed_canary_stops_the_ramp_and_a_good_one_opens_it() {
    let w = Work::new();
    w.write("p.toml", &wave_plan(true));
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1);
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "t0"), "failed");
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(w.target_state(&run, t), "pending", "{t} must not start after the canary failed");
    }
    let ev = w.events(&run);
    let failed = ev.iter().find(|e| e["kind"] == "wave_failed").expect("wave_failed");
    assert_eq!(failed["data"]["wave"], 1);

    let w = Work::new();
    w.write("p.toml", &wave_plan(false));
    assert_eq!(code(&w.run(&["run", "p.toml"])), 0);
    let run = w.run_id();
    let ev = w.events(&run);
    let passed: Vec<i64> =
        ev.iter().filter(|e| e["kind"] == "wave_passed").filter_map(|e| e["data"]["wave"].as_i64()).collect();
    assert_eq!(passed, [1, 2]);
    // Wave 2 (up to 40 % = 2 targets) started only after the canary ended.
    let s = w.status(&run);
    let at = |n: &str, f: &str| {
        s["targets"]
            .as_array()
            .and_then(|a| a.iter().find(|t| t["name"] == n))
            .and_then(|t| t[f].as_str())
            .unwrap_or("")
            .to_string()
    };
    assert!(at("t0", "finished_at") <= at("t1", "started_at"));
    assert!(at("t1", "finished_at") <= at("t2", "started_at"));
}

#[test]
fn abort_when_aborts_the_run() {
    let w = Work::new();
    w.write("lag.txt", "0");
    w.write(
        "p.toml",
        &format!(
            "name = \"abort-gate\"\n{}[[targets]]\nname = \"a\"\n[[phases]]\nname = \"copy\"\nabort_when = \"checks.lag.value > 100\"\n[[phases.steps]]\nname = \"maint\"\nkind = \"block\"\n[[phases.steps.steps]]\nname = \"long\"\nkind = \"exec\"\ncommand = \"touch long.started; sleep 30\"\n[[phases.steps.finally]]\nname = \"off\"\nkind = \"exec\"\ncommand = \"touch off\"\n",
            lag_check("")
        ),
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the long step", || w.file("long.started").exists());
    w.write("lag.txt", "500");
    assert_eq!(wait_exit(&mut child, 20), 3);
    assert!(w.file("off").exists(), "finally ran after the gate's abort");
    let run = w.run_id();
    assert_eq!(w.status(&run)["run"]["state"], "aborted");
    assert!(kinds(&w.events(&run)).contains(&"gate_abort".to_string()));
}

#[test]
fn approve_without_a_target_approves_only_those_waiting() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "approve-some"
[[targets]]
name = "a"
[[phases]]
name = "switch"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "work"
kind = "exec"
command = "true"
[[phases.steps.finally]]
name = "go-back"
kind = "approve"
"#,
    );
    // An approve step cannot be a finally step.
    let o = w.run(&["validate", "p.toml"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("error[approve-place]"), "{}", text(&o.stderr));
    w.write("p.toml", "name = \"approve-some\"\n[[targets]]\nname = \"a\"\n[[phases]]\nname = \"switch\"\n[[phases.steps]]\nname = \"go\"\nkind = \"approve\"\n");
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the approval request", || {
        w.state().exists()
            && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
            && kinds(&w.events(&w.run_id())).contains(&"approval_needed".to_string())
    });
    let run = w.run_id();
    let o = w.run(&["approve", &run, "go", "--output", "json"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["approved"], serde_json::json!(["a"]));
    assert_eq!(wait_exit(&mut child, 20), 0);
    // Nobody waits now: approving without a target is refused.
    let o = w.run(&["approve", &run, "go"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("no target is waiting at step `go`"), "{}", text(&o.stderr));
}

/// A plan whose second phase has an Argo-style proceed gate over the `err`
/// check (the first phase gives the check time for its first reading).
fn analysis_plan(gate: &str) -> String {
    format!(
        r#"name = "analysis"
[[checks]]
name = "err"
kind = "command"
command = "cat err.txt"
interval = "100ms"
[[targets]]
name = "a"
[[phases]]
name = "prep"
[[phases.steps]]
name = "warm"
kind = "exec"
command = "sleep 0.5"
[[phases.rollback]]
name = "undo"
kind = "exec"
command = "touch undone"
[[phases]]
name = "switch"
proceed_when = "checks.err.value == 0"
fail_when = "checks.err.value > 5"
gate_interval = "100ms"
{gate}
[[phases.steps]]
name = "cut"
kind = "exec"
command = "touch cut"
"#
    )
}

#[test]
fn an_analysis_gate_fails_past_its_limit_and_rolls_back() {
    let w = Work::new();
    w.write("err.txt", "9");
    w.write("p.toml", &analysis_plan("gate_count = 5\ngate_failure_limit = 1"));
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "a"), "rolled_back");
    assert!(!w.file("cut").exists() && w.file("undone").exists());
    let ev = w.events(&run);
    let failed = ev.iter().find(|e| e["kind"] == "gate_failed").expect("gate_failed");
    assert_eq!(failed["data"]["failures"], 2, "one more than the limit of 1: {failed}");
    assert_eq!(ev.iter().filter(|e| e["kind"] == "gate_measured").count(), 1, "the first failure is within the limit");
}

#[test]
fn an_inconclusive_analysis_waits_for_a_human_and_a_retry_measures_again() {
    let w = Work::new();
    // 2 is neither a success (0) nor a failure (> 5): inconclusive.
    w.write("err.txt", "2");
    w.write("p.toml", &analysis_plan("gate_count = 3"));
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "a"), "needs_attention");
    assert!(kinds(&w.events(&run)).contains(&"gate_inconclusive".to_string()));
    w.write("err.txt", "0");
    assert_eq!(code(&w.run(&["retry", &run, "a"])), 0);
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(w.file("cut").exists());
    let ev = w.events(&run);
    let passed = ev.iter().find(|e| e["kind"] == "gate_passed").expect("gate_passed");
    assert_eq!(passed["data"]["successes"], 3, "{passed}");
    assert_eq!(ev.iter().filter(|e| e["kind"] == "gate_measured").count(), 2, "3 measurements, the last one decides");
    // A count with nothing to measure is refused.
    w.write("q.toml", "name = \"q\"\n[[targets]]\nname = \"a\"\n[[phases]]\nname = \"p\"\ngate_count = 3\n");
    let o = w.run(&["validate", "q.toml"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("error[gate-analysis]"), "{}", text(&o.stderr));
}

fn wave_gate_plan() -> String {
    let mut p = String::from(
        r#"name = "wave-gate"
waves = [1, "100%"]
wave_gate = { proceed_when = "checks.canary.value == 1 && wave.failed == 0", fail_when = "checks.canary.value == 2" }
[concurrency]
limit = 3
[[checks]]
name = "canary"
kind = "command"
command = "cat canary.txt"
interval = "100ms"
"#,
    );
    for i in 0..3 {
        p.push_str(&format!("[[targets]]\nname = \"t{i}\"\n"));
    }
    p.push_str("[[phases]]\nname = \"p\"\n[[phases.steps]]\nname = \"s\"\nkind = \"exec\"\ncommand = \"touch ran-{{ name }}\"\n");
    p
}

#[test]
fn a_wave_gate_holds_the_next_wave_until_it_holds_or_fails_it() {
    for (answer, exit, state) in [("1", 0, "succeeded"), ("2", 1, "pending")] {
        let w = Work::new();
        w.write("canary.txt", "0");
        w.write("p.toml", &wave_gate_plan());
        let mut child = w.spawn(&["run", "p.toml"]);
        wait_until(20, "the wave gate", || {
            w.state().exists()
                && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty())
                && kinds(&w.events(&w.run_id())).contains(&"wave_waiting".to_string())
        });
        let run = w.run_id();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(w.file("ran-t0").exists() && !w.file("ran-t1").exists(), "wave 2 waits for the gate");
        w.write("canary.txt", answer);
        assert_eq!(wait_exit(&mut child, 20), exit);
        assert_eq!(w.target_state(&run, "t2"), state);
        let k = kinds(&w.events(&run));
        let decided = if exit == 0 { "wave_passed" } else { "wave_failed" };
        assert!(k.contains(&decided.to_string()), "{k:?}");
    }
    let w = Work::new();
    w.write("p.toml", &wave_gate_plan().replace("waves = [1, \"100%\"]\n", ""));
    let o = w.run(&["validate", "p.toml"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("error[wave-gate]"), "{}", text(&o.stderr));
}

#[test]
fn pause_when_holds_a_running_step_at_its_safe_points() {
    let w = Work::new();
    w.write("lag.txt", "0");
    // A batch loop that checks the throttle flag between batches, as a
    // gh-ost-style copier does.
    w.write(
        "copy.sh",
        "for i in $(seq 1 25); do\n  while [ -e \"$CUTOVER_THROTTLE_FILE\" ]; do touch held; sleep 0.05; done\n  echo $i >> batches\n  sleep 0.1\ndone\n",
    );
    w.write(
        "p.toml",
        &format!(
            "name = \"throttle-inside\"\n{}[[targets]]\nname = \"a\"\n[[phases]]\nname = \"copy\"\npause_when = \"checks.lag.value > 10\"\ngate_interval = \"100ms\"\n[[phases.steps]]\nname = \"copy\"\nkind = \"exec\"\ncommand = \"sh copy.sh\"\n",
            lag_check("")
        ),
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the first batches", || w.file("batches").exists() && w.lines("batches").len() >= 2);
    w.write("lag.txt", "50");
    wait_until(20, "the step to hold", || w.file("held").exists());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let during = w.lines("batches").len();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(w.lines("batches").len(), during, "no batch runs while pause_when holds");
    w.write("lag.txt", "0");
    assert_eq!(wait_exit(&mut child, 30), 0);
    assert_eq!(w.lines("batches").len(), 25);
    let ev = w.events(&w.run_id());
    let held = ev.iter().find(|e| e["kind"] == "target_throttled").expect("throttled");
    assert_eq!(held["step"], "copy");
    assert_eq!(held["data"]["in_step"], true);
    assert!(kinds(&ev).contains(&"throttle_cleared".to_string()));
}

#[test]
fn a_pause_interrupts_an_approval_wait_and_a_retry_asks_again() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "approve-again"
[[targets]]
name = "a"
[[phases]]
name = "switch"
[[phases.steps]]
name = "go"
kind = "approve"
[[phases.steps]]
name = "cut"
kind = "exec"
command = "[ -e ok ]"
[[phases.rollback]]
name = "undo"
kind = "exec"
command = "[ -e ok ]"
"#,
    );
    let asked = |w: &Work| w.events(&w.run_id()).iter().filter(|e| e["kind"] == "approval_needed").count();
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the approval request", || {
        w.state().exists() && w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty()) && asked(&w) == 1
    });
    let run = w.run_id();
    assert_eq!(code(&w.run(&["pause", &run])), 0);
    assert_eq!(wait_exit(&mut child, 20), 3, "a pause ends an approval wait");
    assert!(kinds(&w.events(&run)).contains(&"approval_paused".to_string()));
    // Approved in advance, the resumed run goes on; `cut` and its rollback fail.
    assert_eq!(code(&w.run(&["approve", &run, "go", "--target", "a"])), 0);
    assert_eq!(code(&w.run(&["resume", &run])), 1);
    assert_eq!(asked(&w), 1, "approved in advance: not asked again");
    assert_eq!(w.target_state(&run, "a"), "failed");
    // The phase is run again on retry: its approval is asked again.
    w.write("ok", "");
    assert_eq!(code(&w.run(&["retry", &run, "a"])), 0);
    let mut child = w.spawn(&["resume", &run]);
    wait_until(20, "a new approval request", || asked(&w) == 2);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(w.target_state(&run, "a"), "running", "the old approval does not pass the retried step");
    assert_eq!(code(&w.run(&["approve", &run, "go"])), 0);
    assert_eq!(wait_exit(&mut child, 20), 0);
}
