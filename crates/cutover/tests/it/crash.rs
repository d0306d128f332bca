//! `kill -9` at several points of a run; `cutover resume` finishes it.
//! Idempotent steps in flight run again (once); a non-idempotent step in
//! flight puts its target in needs_attention until an operator retries it;
//! finished steps never run twice; the event log tells the whole story.
//!
//! The slow steps wait for a "go" file, so the test decides where each
//! process dies.

use crate::support::*;

const STEPS: &str = r#"
[[phases]]
name = "p"
[[phases.steps]]
name = "prep"
kind = "exec"
command = "echo {{ name }} >> prep.log"
[[phases.steps]]
name = "maint"
kind = "block"
[[phases.steps.steps]]
name = "slow-idem"
kind = "exec"
idempotent = true
command = "echo {{ name }} >> slow-idem.log; [ {{ name }} = u ] || while [ ! -f go-idem ]; do sleep 0.05; done"
[[phases.steps.steps]]
name = "slow-once"
kind = "exec"
command = "echo {{ name }} >> slow-once.log; [ {{ name }} = u ] || while [ ! -f go-once ]; do sleep 0.05; done"
[[phases.steps.finally]]
name = "maint-off"
kind = "exec"
idempotent = true
command = "echo {{ name }} >> maint-off.log; [ {{ name }} = u ] || while [ ! -f go-off ]; do sleep 0.05; done"
[[phases]]
name = "q"
[[phases.steps]]
name = "last"
kind = "sql"
# Re-run after a crash if it was in flight: written to be idempotent.
sql = "insert into done (target) values ($1) on conflict do nothing"
params = ["{{ name }}"]
"#;

fn count(w: &Work, file: &str, who: &str) -> usize {
    w.lines(file).iter().filter(|l| l.as_str() == who).count()
}

fn kill(child: &mut std::process::Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

#[test]
fn sigkill_at_several_points_then_resume_finishes_the_run() {
    let pg = cutover_testkit::shared(15);
    let db = cutover_testkit::unique_db_name("crash");
    let dsn = pg.create_database(&db).expect("db");
    pg.psql(&db, "create table done (target text primary key)").expect("table");
    let w = Work::new();
    w.write(
        "p.toml",
        &format!("name = \"crash\"\n[vars]\ndsn = \"{dsn}\"\n[[targets]]\nname = \"t\"\n[[targets]]\nname = \"u\"\nafter = [\"t\"]\n{STEPS}"),
    );

    // 1. Killed while the idempotent step is in flight.
    let mut child = w.spawn(&["run", "p.toml"]);
    wait_until(30, "slow-idem to start", || count(&w, "slow-idem.log", "t") == 1);
    kill(&mut child);
    let run = w.run_id();

    // 2. The resume runs slow-idem again; then killed while the
    //    non-idempotent slow-once is in flight.
    let mut child = w.spawn(&["resume", &run]);
    wait_until(30, "slow-idem to run again", || count(&w, "slow-idem.log", "t") == 2);
    w.write("go-idem", "");
    wait_until(30, "slow-once to start", || count(&w, "slow-once.log", "t") == 1);
    kill(&mut child);

    // 3. slow-once is not idempotent: the resume stops at it.
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    assert_eq!(w.target_state(&run, "t"), "needs_attention");
    let s = w.status(&run);
    let msg = s["targets"][0]["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("step `slow-once` was in flight when the process stopped and is not idempotent"), "{msg}");
    assert_eq!(count(&w, "slow-once.log", "t"), 1, "a non-idempotent step is not re-run by itself");
    assert_eq!(count(&w, "maint-off.log", "t"), 0, "the block is still open");

    // 4. The operator retries; killed while the (idempotent) finally step runs.
    let o = w.run(&["retry", &run, "t", "--note", "checked: the copy did not start"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    w.write("go-once", "");
    let mut child = w.spawn(&["resume", &run]);
    wait_until(30, "maint-off to start", || count(&w, "maint-off.log", "t") == 1);
    kill(&mut child);

    // 5. The last resume finishes.
    w.write("go-off", "");
    let o = w.run(&["resume", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));

    // Each step's effects: done once, except the steps that were in flight.
    assert_eq!((count(&w, "prep.log", "t"), count(&w, "prep.log", "u")), (1, 1));
    assert_eq!(count(&w, "slow-idem.log", "t"), 2, "idempotent: re-run once after the kill");
    assert_eq!(count(&w, "slow-once.log", "t"), 2, "once interrupted, once on the operator's retry");
    assert_eq!(count(&w, "maint-off.log", "t"), 2, "idempotent finally: re-run once after the kill");
    assert_eq!(count(&w, "maint-off.log", "u"), 1);
    assert_eq!(pg.psql(&db, "select string_agg(target, ',' order by target) from done").expect("rows"), "t,u");

    // The event log is complete: every kill and decision is there, and every
    // step of every target ends with its success.
    let events = w.events(&run);
    let k = kinds(&events);
    assert_eq!(k.first().map(String::as_str), Some("run_created"));
    assert_eq!(k.last().map(String::as_str), Some("run_finished"));
    assert_eq!(k.iter().filter(|x| *x == "run_resumed").count(), 4);
    for expected in ["step_rerun", "step_interrupted", "target_needs_attention", "target_retry", "target_interrupted"] {
        assert!(k.iter().any(|x| x == expected), "no {expected} event in {k:?}");
    }
    let starts = |t: &str, s: &str| {
        events.iter().filter(|e| e["kind"] == "step_started" && e["target"] == t && e["step"] == s).count()
    };
    assert_eq!(starts("t", "slow-idem"), 2);
    assert_eq!(starts("t", "slow-once"), 2);
    assert_eq!(starts("t", "prep"), 1);
    assert_eq!(starts("t", "last"), 1);
    for t in ["t", "u"] {
        for s in ["prep", "slow-idem", "slow-once", "maint-off", "last"] {
            let last = events.iter().rev().find(|e| {
                e["target"] == t && e["step"] == s && e["kind"].as_str().is_some_and(|k| k.starts_with("step_"))
            });
            assert_eq!(last.map(|e| e["kind"].clone()), Some("step_succeeded".into()), "{t}/{s}");
        }
    }
    assert_eq!(w.status(&run)["run"]["state"], "succeeded");
}
