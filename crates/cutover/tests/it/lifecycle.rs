//! Blocks' finally steps, rollback, retries, pause, abort and the lease.

use crate::support::*;

#[test]
fn finally_runs_after_a_failing_step_and_rollback_runs_in_reverse() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "rb"
[[targets]]
name = "a"
[[phases]]
name = "one"
[[phases.steps]]
name = "one-step"
kind = "exec"
command = "echo one >> trail"
[[phases.rollback]]
name = "undo-one"
kind = "exec"
command = "echo undo-one >> trail"
[[phases]]
name = "two"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "flaky"
kind = "exec"
retries = 2
backoff = "50ms"
command = "echo attempt >> attempts; echo 'disk full' >&2; exit 3"
[[phases.steps.steps]]
name = "never"
kind = "exec"
command = "echo never >> trail"
[[phases.steps.finally]]
name = "maint-off"
kind = "exec"
command = "echo maint-off >> trail"
[[phases.rollback]]
name = "undo-two"
kind = "exec"
command = "echo undo-two >> trail"
[[phases]]
name = "three"
[[phases.steps]]
name = "not-reached"
kind = "exec"
command = "echo three >> trail"
[[phases.rollback]]
name = "undo-three"
kind = "exec"
command = "echo undo-three >> trail"
"#,
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    // The finally step ran after the failure; rollback of the phases that
    // began ran in reverse order; phase three never began, so no undo-three.
    assert_eq!(w.lines("trail"), ["one", "maint-off", "undo-two", "undo-one"]);
    assert_eq!(w.lines("attempts").len(), 3, "1 attempt + 2 retries");
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "a"), "rolled_back");
    let s = w.status(&run);
    let msg = s["targets"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("step `flaky` failed: the command exited with status 3: disk full"), "{msg}");
    let k = kinds(&w.events(&run));
    assert_eq!(k.iter().filter(|x| *x == "step_retrying").count(), 2);
    assert!(k.contains(&"target_rolling_back".to_string()));
}

const SLOW_BLOCK: &str = r#"name = "slow"
[[targets]]
name = "a"
[[targets]]
name = "b"
after = ["a"]
[[phases]]
name = "p"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "long"
kind = "exec"
command = "touch long-{{ name }}.started; sleep 30; touch long-{{ name }}.done"
[[phases.steps.steps]]
name = "after-long"
kind = "exec"
command = "touch after-long-{{ name }}"
[[phases.steps.finally]]
name = "maint-off"
kind = "exec"
command = "echo {{ name }} >> maint-off"
"#;

#[test]
fn abort_stops_the_step_in_flight_and_still_runs_finally() {
    let w = Work::new();
    w.write("p.toml", SLOW_BLOCK);
    let started = std::time::Instant::now();
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the long step to start", || w.file("long-a.started").exists());
    let run = w.run_id();
    let o = w.run(&["abort", &run]);
    assert_eq!(code(&o), 3, "{}", text(&o.stderr));
    assert_eq!(wait_exit(&mut child, 20), 3);
    assert!(started.elapsed().as_secs() < 20, "the 30 s sleep was not stopped");
    assert_eq!(w.lines("maint-off"), ["a"], "finally ran for the aborted target only");
    assert!(!w.file("long-a.done").exists() && !w.file("after-long-a").exists());
    let s = w.status(&run);
    assert_eq!(s["run"]["state"], "aborted");
    assert_eq!(w.target_state(&run, "b"), "pending");
    let k = kinds(&w.events(&run));
    assert!(k.contains(&"operator_abort".to_string()) && k.contains(&"step_aborted".to_string()), "{k:?}");
    // An aborted run has ended.
    assert_eq!(code(&w.run(&["resume", &run])), 2);
}

#[test]
fn pause_lets_the_step_finish_then_resume_completes_and_a_second_driver_is_refused() {
    let w = Work::new();
    w.write("p.toml", &SLOW_BLOCK.replace("sleep 30", "sleep 3"));
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the long step to start", || w.file("long-a.started").exists());
    let run = w.run_id();
    // A second process may not drive a run that a live process holds.
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("is being driven by process"), "{}", text(&o.stderr));
    let o = w.run(&["pause", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(wait_exit(&mut child, 20), 3, "a paused run exits 3");
    // The step in flight finished; the next one did not start; the block is
    // still open, so its finally step has not run.
    assert!(w.file("long-a.done").exists());
    assert!(!w.file("after-long-a").exists());
    assert!(!w.file("maint-off").exists());
    assert_eq!(w.status(&run)["run"]["state"], "paused");
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(w.lines("maint-off"), ["a", "b"]);
    assert!(w.file("after-long-b").exists());
}

#[test]
fn ctrl_c_pauses_cleanly() {
    let w = Work::new();
    w.write("p.toml", &SLOW_BLOCK.replace("sleep 30", "sleep 1"));
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the long step to start", || w.file("long-a.started").exists());
    let pid = child.id().to_string();
    let o = std::process::Command::new("kill").args(["-INT", &pid]).output().expect("kill -INT");
    assert!(o.status.success());
    assert_eq!(wait_exit(&mut child, 20), 3, "Ctrl-C pauses: exit 3");
    let run = w.run_id();
    assert_eq!(w.status(&run)["run"]["state"], "paused");
    assert!(w.file("long-a.done").exists(), "the step in flight finished");
    let k = kinds(&w.events(&run));
    assert!(k.contains(&"operator_pause".to_string()), "{k:?}");
}

#[test]
fn failed_targets_can_be_retried_or_skipped() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "decide"
[[targets]]
name = "a"
[[targets]]
name = "b"
[[targets]]
name = "c"
after = ["b"]
[[phases]]
name = "p"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "check"
kind = "exec"
command = "echo {{ name }} >> checks; test -f ok-{{ name }}"
[[phases.steps.finally]]
name = "off"
kind = "exec"
command = "echo {{ name }} >> off"
"#,
    );
    w.write("ok-c", "");
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1);
    let run = w.run_id();
    assert_eq!(w.target_state(&run, "a"), "failed");
    assert_eq!(w.target_state(&run, "b"), "failed");
    assert_eq!(w.target_state(&run, "c"), "skipped", "c comes after b, which failed");
    // Retrying c is refused: it did not fail.
    let o = w.run(&["retry", &run, "c"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o.stdout).contains("only a failed target or one that needs attention can be retried"),
        "{}",
        text(&o.stdout)
    );
    // Fix a's cause and retry it; give up on b.
    w.write("ok-a", "");
    assert_eq!(code(&w.run(&["retry", &run, "a"])), 0);
    assert_eq!(code(&w.run(&["skip", &run, "b", "--note", "customer asked to wait"])), 0);
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(w.target_state(&run, "a"), "succeeded");
    assert_eq!(w.target_state(&run, "b"), "skipped");
    // The finally step ran after each attempt of the block (a and b ran at
    // the same time, so only the counts are certain).
    let mut off = w.lines("off");
    off.sort();
    assert_eq!(off, ["a", "a", "b"]);
    let events = w.events(&run);
    let skip = events.iter().find(|e| e["kind"] == "target_skip").expect("skip event");
    assert_eq!(skip["data"]["actor"], "tester");
    assert_eq!(skip["data"]["note"], "customer asked to wait");
}

#[test]
fn skipping_a_target_left_inside_a_block_runs_its_finally_steps() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "skip-open"
[[targets]]
name = "a"
[[phases]]
name = "p"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "once"
kind = "exec"
command = "touch once.started; while [ ! -f go ]; do sleep 0.05; done"
[[phases.steps.steps]]
name = "next"
kind = "exec"
command = "touch next"
[[phases.steps.finally]]
name = "off"
kind = "exec"
command = "echo off >> off"
"#,
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the step to start", || w.file("once.started").exists());
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    w.write("go", "");
    let run = w.run_id();
    assert_eq!(code(&w.run(&["resume", &run])), 1);
    assert_eq!(w.target_state(&run, "a"), "needs_attention");
    assert!(!w.file("off").exists());
    assert_eq!(code(&w.run(&["skip", &run, "a"])), 0);
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(w.target_state(&run, "a"), "skipped");
    assert_eq!(w.lines("off"), ["off"], "the open block's finally step ran once");
    assert!(!w.file("next").exists(), "nothing else of the target ran");
}

// Regression: `cutover abort` on a run that no process drove marked it
// aborted without running the finally steps of blocks left open.
#[test]
fn abort_of_an_undriven_run_closes_open_blocks() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "abort-open"
[[targets]]
name = "a"
[[targets]]
name = "b"
after = ["a"]
[[phases]]
name = "p"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "once"
kind = "exec"
command = "touch once.started; sleep 30"
[[phases.steps.finally]]
name = "off"
kind = "exec"
command = "echo {{ name }} >> off"
[[phases.steps.finally]]
name = "off-2"
kind = "exec"
command = "echo {{ name }} >> off-2"
"#,
    );
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(20, "the step to start", || w.file("once.started").exists());
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let run = w.run_id();
    let o = w.run(&["abort", &run]);
    assert_eq!(code(&o), 3, "{}", text(&o.stderr));
    assert_eq!(w.lines("off"), ["a"]);
    assert_eq!(w.lines("off-2"), ["a"]);
    assert_eq!(w.status(&run)["run"]["state"], "aborted");
    assert_eq!(w.target_state(&run, "a"), "failed");
    assert_eq!(w.target_state(&run, "b"), "pending");
}

#[test]
fn every_finally_step_runs_even_when_one_fails() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "finally-all"
[[targets]]
name = "a"
[[phases]]
name = "p"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "work"
kind = "exec"
command = "true"
[[phases.steps.finally]]
name = "off-1"
kind = "exec"
command = "echo 'monitoring API down' >&2; exit 1"
[[phases.steps.finally]]
name = "off-2"
kind = "exec"
command = "touch off-2"
"#,
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1);
    assert!(w.file("off-2").exists(), "the second finally step ran after the first failed");
    let run = w.run_id();
    let s = w.status(&run);
    assert!(s["targets"][0]["message"].as_str().unwrap_or("").contains("monitoring API down"), "{s:#}");
}

#[test]
fn a_step_reports_progress_as_done_over_total() {
    let w = Work::new();
    w.write(
        "p.toml",
        r#"name = "progress"
[[targets]]
name = "a"
[[phases]]
name = "copy"
[[phases.steps]]
name = "copy-rows"
kind = "exec"
command = "for i in 1 2 3 4; do echo \"{\\\"progress\\\": {\\\"done\\\": $((i * 250)), \\\"total\\\": 1000, \\\"unit\\\": \\\"rows\\\"}}\"; sleep 0.6; done; echo '{\"rows\": 1000}'"
"#,
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let events = w.events(&w.run_id());
    let reports: Vec<f64> =
        events.iter().filter(|e| e["kind"] == "step_progress").filter_map(|e| e["data"]["done"].as_f64()).collect();
    // Throttled to one a second, but the first and the final one are there.
    assert!(reports.len() >= 3 && reports.first() == Some(&250.0) && reports.last() == Some(&1000.0), "{reports:?}");
    let out = events.iter().find(|e| e["kind"] == "step_succeeded").expect("success");
    assert_eq!(out["data"]["outputs"]["rows"], 1000, "progress lines are not outputs");
}
