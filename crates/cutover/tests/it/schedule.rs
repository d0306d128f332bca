//! Fleet scheduling with the schedule clock set (CUTOVER_CLOCK_START): a
//! target waits for its maintenance window, one whose estimate does not fit
//! waits for the next, a notice period holds a target until someone says
//! "start now", `cutover schedule` prints table, CSV and iCalendar, and a
//! shuffle seed orders the targets the same way every time.

use crate::support::*;
use serde_json::Value;
use std::process::{Child, Stdio};

const ZURICH: &str = "Thu 01:00-05:00 Europe/Zurich";

/// A plan with top-level keys `top`, a `[schedule]` table and these
/// targets, each running one exec step that appends its name to `trail`.
fn plan_with(top: &str, schedule: &str, targets: &str) -> String {
    format!(
        "name = \"maint\"\n{top}\n[schedule]\n{schedule}\n{targets}\n[[phases]]\nname = \"work\"\n[[phases.steps]]\nname = \"migrate\"\nkind = \"exec\"\ncommand = \"echo {{{{ name }}}} >> trail\"\n"
    )
}

fn plan(schedule: &str, targets: &str) -> String {
    plan_with("", schedule, targets)
}

fn target(name: &str, extra: &str) -> String {
    format!("[[targets]]\nname = \"{name}\"\n{extra}\n")
}

fn spawn_at(w: &Work, clock: &str, args: &[&str]) -> Child {
    w.cmd(args)
        .env("CUTOVER_CLOCK_START", clock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cutover")
}

/// The events of `kind` for `target`.
fn of(events: &[Value], kind: &str, target: &str) -> Vec<Value> {
    events.iter().filter(|e| e["kind"] == kind && e["target"] == target).cloned().collect()
}

fn first_run(w: &Work) -> String {
    wait_until(20, "the run to be recorded", || w.json(&["runs"]).as_array().is_some_and(|a| !a.is_empty()));
    w.run_id()
}

/// The id (order in the log) of the first event of `kind` for `target`.
fn id_of(events: &[Value], kind: &str, target: &str) -> i64 {
    of(events, kind, target).first().and_then(|e| e["id"].as_i64()).unwrap_or_else(|| panic!("no {kind} for {target}"))
}

#[test]
fn a_target_waits_for_its_window_then_starts_inside_it_without_holding_others() {
    let w = Work::new();
    w.write(
        "p.toml",
        &plan("estimate = { base = \"10m\" }", &(target("a", &format!("window = \"{ZURICH}\"")) + &target("b", ""))),
    );
    // Three seconds before the window opens.
    let mut child = spawn_at(&w, "2026-12-03T00:59:57+01:00", &["run", "p.toml"]);
    assert_eq!(wait_exit(&mut child, 30), 0);
    let run = w.run_id();
    let ev = w.events(&run);
    let waiting = of(&ev, "window_waiting", "a");
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    assert_eq!(
        waiting[0]["message"],
        "outside its windows (Thu 01:00-05:00 Europe/Zurich); next window Thu 2026-12-03 01:00 CET"
    );
    assert_eq!(waiting[0]["data"]["until"], "2026-12-03T00:00:00Z");
    // It started inside the window, by the schedule clock.
    let est = &of(&ev, "target_estimated", "a")[0];
    let started_at = est["data"]["now"].as_str().expect("now");
    assert!(("2026-12-03T00:00:00".."2026-12-03T00:01").contains(&started_at), "{started_at}");
    assert_eq!(est["data"]["window_end"], "2026-12-03T04:00:00Z");
    // `b` finished first, in well under a second: the estimate of `a`
    // learned from it instead of keeping the prior's 10 minutes.
    assert!(est["data"]["model"].as_str().is_some_and(|m| m.starts_with("learned from 1 finished target(s)")), "{est}");
    assert!(est["data"]["estimate_secs"].as_u64().is_some_and(|s| s <= 5), "{est}");
    let b_est = &of(&ev, "target_estimated", "b")[0];
    assert_eq!(b_est["data"]["estimate_secs"], 600);
    assert_eq!(b_est["data"]["model"], "prior: 10m + 1m per GB");
    assert!(id_of(&ev, "window_waiting", "a") < id_of(&ev, "target_started", "a"));
    // `b` has no window: it ran at once, while `a` waited.
    assert!(id_of(&ev, "target_succeeded", "b") < id_of(&ev, "target_started", "a"));
    assert!(of(&ev, "window_waiting", "b").is_empty());
    // Real durations were measured, with the estimate's error.
    let measured = &of(&ev, "target_measured", "a")[0];
    assert_eq!(measured["data"]["estimate_secs"].as_f64(), est["data"]["estimate_secs"].as_f64());
    assert!(measured["message"].as_str().is_some_and(|m| m.contains("mean absolute percentage error")), "{measured}");
    assert!(kinds(&ev).contains(&"schedule_clock".to_string()));
    assert_eq!(w.lines("trail"), ["b", "a"]);

    // `cutover status` shows how wrong the estimates were.
    assert_eq!(w.status(&run)["estimates"]["targets"], 2);
    let status = text(&w.run(&["status", &run]).stdout);
    assert!(status.contains("% off on average (mean absolute percentage error over 2 finished target(s))"), "{status}");

    // With history in the state file, `cutover schedule` learns and shows the error.
    let o = w.run(&["schedule", "p.toml", "--from", "2026-12-03T00:30:00+01:00"]);
    let out = text(&o.stdout);
    assert!(out.contains("estimates: learned from 2 finished target(s)"), "{out}");
    assert!(out.contains("error so far"), "{out}");
}

#[test]
fn an_estimate_that_does_not_fit_waits_for_the_next_window() {
    let w = Work::new();
    w.write(
        "p.toml",
        &plan(
            "estimate = { base = \"42m\", learn = false }",
            &(target("a", &format!("window = \"{ZURICH}\"")) + &target("b", "")),
        ),
    );
    // 04:30: 30 minutes are left of the window, the estimate is 42.
    let mut child = spawn_at(&w, "2026-12-03T04:30:00+01:00", &["run", "p.toml"]);
    let run = first_run(&w);
    wait_until(20, "a to wait and b to finish", || {
        let ev = w.events(&run);
        !of(&ev, "window_waiting", "a").is_empty() && !of(&ev, "target_succeeded", "b").is_empty()
    });
    // Give the scheduler a few more turns: it must neither start `a` nor repeat itself.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(code(&w.run(&["pause", &run])), 0);
    assert_eq!(wait_exit(&mut child, 20), 3);
    let ev = w.events(&run);
    let waiting = of(&ev, "window_waiting", "a");
    assert_eq!(waiting.len(), 1, "{waiting:#?}");
    assert_eq!(
        waiting[0]["message"],
        "estimate 42m does not fit in the 30m left of Thu 01:00-05:00 Europe/Zurich; next window Thu 2026-12-10 01:00 CET"
    );
    assert_eq!(waiting[0]["data"]["reason"], "estimate_does_not_fit");
    assert_eq!(waiting[0]["data"]["until"], "2026-12-10T00:00:00Z");
    assert!(of(&ev, "target_started", "a").is_empty(), "a must not start");
    assert_eq!(w.target_state(&run, "a"), "pending");
    let status = w.status(&run);
    let msg =
        status["targets"].as_array().and_then(|t| t.iter().find(|t| t["name"] == "a")).expect("a")["message"].clone();
    assert!(msg.as_str().is_some_and(|m| m.starts_with("waiting: estimate 42m does not fit")), "{msg}");
    assert_eq!(w.lines("trail"), ["b"]);

    // A week later, inside the next window, it starts.
    let mut child = spawn_at(&w, "2026-12-10T01:00:05+01:00", &["resume", &run]);
    assert_eq!(wait_exit(&mut child, 30), 0);
    let ev = w.events(&run);
    let est = &of(&ev, "target_estimated", "a")[0];
    assert_eq!(est["data"]["window_end"], "2026-12-10T04:00:00Z");
    assert!(est["data"]["now"].as_str().is_some_and(|n| n.starts_with("2026-12-10T00:00")), "{est}");
    assert_eq!(w.lines("trail"), ["b", "a"]);
}

// Regression guard: a target paused (or interrupted) in the middle of its
// work must not wait for its next window when resumed after this one closed;
// its maintenance began and is half done.
#[test]
fn a_target_that_began_goes_on_after_its_window_closed() {
    let w = Work::new();
    let text = plan("estimate = { base = \"1s\" }", &target("a", &format!("window = \"{ZURICH}\"")))
        .replace("command = \"echo {{ name }} >> trail\"", "command = \"echo one >> trail; sleep 2\"")
        + "[[phases.steps]]\nname = \"finish\"\nkind = \"exec\"\ncommand = \"echo two >> trail\"\n";
    w.write("p.toml", &text);
    // Five seconds before the window closes: the 1-second estimate fits.
    let mut child = spawn_at(&w, "2026-12-03T04:59:55+01:00", &["run", "p.toml"]);
    let run = first_run(&w);
    wait_until(20, "the first step to start", || {
        w.events(&run).iter().any(|e| e["kind"] == "step_started" && e["step"] == "migrate")
    });
    assert_eq!(code(&w.run(&["pause", &run])), 0);
    assert_eq!(wait_exit(&mut child, 20), 3);
    assert_eq!(w.lines("trail"), ["one"]);
    // Resumed ten minutes after the window closed: it finishes at once.
    let mut child = spawn_at(&w, "2026-12-03T05:10:00+01:00", &["resume", &run]);
    assert_eq!(wait_exit(&mut child, 30), 0);
    assert_eq!(w.lines("trail"), ["one", "two"]);
    assert!(of(&w.events(&run), "window_waiting", "a").is_empty());
}

#[test]
fn a_notice_period_holds_a_target_until_someone_says_start_now() {
    let w = Work::new();
    // Inside the window, but notified two days ago of a 7-day notice.
    let a = target("a", &format!("window = \"{ZURICH}\"\nnotified_at = 2026-12-01T09:00:00Z\nsize = \"2GB\""));
    w.write("p.toml", &plan("notice = \"7d\"\nestimate = { base = \"1m\", per_gb = \"2m\" }", &a));
    let mut child = spawn_at(&w, "2026-12-03T01:00:00+01:00", &["run", "p.toml"]);
    let run = first_run(&w);
    wait_until(20, "a to wait for its notice", || !of(&w.events(&run), "window_waiting", "a").is_empty());
    let ev = w.events(&run);
    let waiting = &of(&ev, "window_waiting", "a")[0];
    assert_eq!(
        waiting["message"],
        "notice period: notified Tue 2026-12-01 09:00 UTC, 7d of notice run until Tue 2026-12-08 09:00 UTC"
    );
    assert_eq!(waiting["data"]["reason"], "notice");
    assert!(of(&ev, "target_started", "a").is_empty());

    // An operator overrides it while the run is driven.
    let o = w.run(&["start-now", &run, "a", "--note", "the customer agreed on the phone"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("handed to process"), "{}", text(&o.stdout));
    assert_eq!(wait_exit(&mut child, 30), 0);
    let ev = w.events(&run);
    let asked = ev.iter().find(|e| e["kind"] == "start_now").expect("start_now event");
    assert_eq!(
        asked["message"],
        "tester asked `a` to start now, whatever the maintenance windows and notice period say: the customer agreed on the phone"
    );
    let est = &of(&ev, "target_estimated", "a")[0];
    assert_eq!(est["data"]["start_now"], "tester");
    // 1m + 2m per GB × 2 GB.
    assert_eq!(est["data"]["estimate_secs"], 300);
    assert_eq!(w.target_state(&run, "a"), "succeeded");

    // `--start-now` on run: no waiting at all, even without a notification.
    let w2 = Work::new();
    w2.write("p.toml", &plan("notice = \"7d\"", &target("c", &format!("window = \"{ZURICH}\""))));
    let mut child = spawn_at(&w2, "2026-12-05T12:00:00Z", &["run", "p.toml", "--start-now", "c"]);
    assert_eq!(wait_exit(&mut child, 30), 0);
    let ev = w2.events(&w2.run_id());
    assert!(of(&ev, "window_waiting", "c").is_empty(), "{ev:#?}");
    assert_eq!(of(&ev, "target_estimated", "c")[0]["data"]["start_now"], "tester");
    // A target the plan does not have is refused before anything is recorded.
    let w3 = Work::new();
    w3.write("p.toml", &plan("", &target("c", "")));
    let o = w3.run(&["run", "p.toml", "--start-now", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("has no (selected) target `nope`"), "{}", text(&o.stderr));
}

#[test]
fn a_target_that_was_never_notified_does_not_start_by_itself() {
    let w = Work::new();
    w.write("p.toml", &plan("notice = \"2d\"", &target("a", "")));
    let mut child = spawn_at(&w, "2026-12-03T01:00:00+01:00", &["run", "p.toml"]);
    // Nothing will ever let it start: the run ends, waiting for a human.
    assert_eq!(wait_exit(&mut child, 30), 1);
    let run = w.run_id();
    let ev = w.events(&run);
    let waiting = &of(&ev, "window_waiting", "a")[0];
    assert_eq!(waiting["data"]["reason"], "not_notified");
    assert!(waiting["message"].as_str().is_some_and(|m| m.contains("start-now")), "{waiting}");
    assert_eq!(w.target_state(&run, "a"), "pending");
    // start-now without a driver is recorded, and the resume honours it.
    let o = w.run(&["start-now", &run]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("every target may start now"), "{}", text(&o.stdout));
    let mut child = spawn_at(&w, "2026-12-03T01:00:00+01:00", &["resume", &run]);
    assert_eq!(wait_exit(&mut child, 30), 0);
    assert_eq!(w.target_state(&run, "a"), "succeeded");
}

const SCHEDULE_PLAN: &str = r#"name = "shops"
[schedule]
notice = "7d"
estimate = { base = "10m", per_gb = "2m" }

[[targets]]
name = "shop-eu"
window = "Thu 01:00-05:00 Europe/Zurich"
notified_at = 2026-11-20T09:00:00Z
size = "12GB"

[[targets]]
name = "shop-us"
window = ["Mon-Fri 22:00-02:00 America/New_York", "Sat 00:00-24:00 America/New_York"]
notified_at = "2026-11-30T12:00:00Z"
size = "120GB"

[[targets]]
name = "shop, \"ap\""
window = "Thu 01:00-05:00 Asia/Tokyo"
notified_at = 2026-11-01T00:00:00Z

[[phases]]
name = "work"
"#;

#[test]
fn schedule_prints_each_targets_window_and_estimate_as_table_csv_and_ics() {
    let w = Work::new();
    w.write("p.toml", SCHEDULE_PLAN);
    let from = "2026-12-03T00:30:00+01:00";
    let o = w.run(&["schedule", "p.toml", "--from", from]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let table = text(&o.stdout);
    assert!(
        table.starts_with("plan `shops`: 3 target(s), planned from Wed 2026-12-02 23:30 UTC\nnotice: 7d\n"),
        "{table}"
    );
    assert!(table.contains("estimates: prior: 10m + 2m per GB (no finished target to learn from yet)"), "{table}");
    let row = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}: {table}"));
    let eu: Vec<&str> = row("shop-eu").split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        eu,
        [
            "shop-eu",
            "1",
            "34m",
            "Thu 01:00-05:00 Europe/Zurich",
            "Thu 2026-12-03 01:00 CET",
            "Thu 2026-12-03 05:00 CET",
            "2026-12-03T00:00:00Z",
            "2026-12-03T04:00:00Z",
            "yes"
        ]
    );
    // 4h10m does not fit in a 4-hour weeknight window: Saturday's whole day.
    let us = row("shop-us");
    assert!(us.contains("Sat 2026-12-12 00:00 EST") && us.contains("  no  "), "{us}");
    assert!(
        us.contains("does not fit in Mon-Fri 22:00-02:00 America/New_York from Mon 2026-12-07 22:00 EST (4h left)"),
        "{us}"
    );
    assert!(us.contains("7d of notice run until 2026-12-07T12:00:00Z"), "{us}");

    let o = w.run(&["schedule", "p.toml", "--from", from, "--format", "csv"]);
    let csv = text(&o.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "target,wave,estimate_secs,estimate,window,start_local,end_local,start_utc,end_utc,fits,note");
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(
        lines[1],
        "shop-eu,1,2040,34m,Thu 01:00-05:00 Europe/Zurich,Thu 2026-12-03 01:00 CET,Thu 2026-12-03 05:00 CET,2026-12-03T00:00:00Z,2026-12-03T04:00:00Z,true,"
    );
    // A name with a comma and quotes is quoted.
    assert!(
        lines[3].starts_with("\"shop, \"\"ap\"\"\",1,600,10m,Thu 01:00-05:00 Asia/Tokyo,Thu 2026-12-10 01:00 JST,"),
        "{csv}"
    );

    let json = w.json(&["schedule", "p.toml", "--from", from]);
    assert_eq!(json["targets"][1]["fits"], false);
    assert_eq!(json["targets"][1]["start"], "2026-12-12T05:00:00Z");
    assert_eq!(json["targets"][0]["estimate_secs"], 2040);

    let ics_at = |from: &str| text(&w.run(&["schedule", "p.toml", "--from", from, "--format", "ics"]).stdout);
    let ics = ics_at(from);
    assert!(ics.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"), "{ics}");
    assert!(ics.ends_with("END:VCALENDAR\r\n"));
    assert!(!ics.replace("\r\n", "").contains('\n'), "a bare LF in {ics:?}");
    for l in ics.split("\r\n") {
        assert!(l.len() <= 75, "a line longer than 75 octets: {l:?}");
    }
    // Unfolded, one event per target, in UTC.
    let unfolded = ics.replace("\r\n ", "");
    assert_eq!(unfolded.matches("BEGIN:VEVENT\r\n").count(), 3);
    assert_eq!(unfolded.matches("END:VEVENT\r\n").count(), 3);
    assert!(
        unfolded.contains(
            "DTSTART:20261203T000000Z\r\nDTEND:20261203T040000Z\r\nSUMMARY:shops: maintenance of shop-eu\r\n"
        )
    );
    assert!(unfolded.contains("DTSTART:20261212T050000Z\r\nDTEND:20261213T050000Z\r\n"));
    assert!(unfolded.contains("SUMMARY:shops: maintenance of shop\\, \"ap\"\r\n"), "{unfolded}");
    // UIDs are stable per plan and target: a later notice updates the same events.
    let uids = |s: &str| -> Vec<String> {
        s.replace("\r\n ", "").lines().filter(|l| l.starts_with("UID:")).map(str::to_string).collect()
    };
    let later = ics_at("2026-12-20T00:00:00Z");
    assert_eq!(uids(&ics), uids(&later));
    assert_eq!(uids(&ics).len(), 3);
    assert_ne!(ics, later);
}

#[test]
fn a_shuffle_seed_gives_the_same_order_every_time_and_waves_follow_it() {
    let w = Work::new();
    let targets: String = (0..8).map(|i| target(&format!("db-{i}"), "")).collect();
    let order = |seed: &str| -> Vec<String> {
        w.write("p.toml", &plan_with("waves = [1, \"100%\"]", seed, &targets));
        let j = w.json(&["schedule", "p.toml", "--from", "2026-12-03T00:00:00Z"]);
        j["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t["target"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let plain = order("");
    assert_eq!(plain, (0..8).map(|i| format!("db-{i}")).collect::<Vec<_>>());
    let one = order("shuffle_seed = 1");
    assert_eq!(one, order("shuffle_seed = 1"));
    assert_ne!(one, plain);
    assert_ne!(one, order("shuffle_seed = 2"));
    // The canary wave is the first target of the shuffled order, in a real run.
    w.write("p.toml", &plan_with("waves = [1, \"100%\"]\n[concurrency]\nlimit = 1", "shuffle_seed = 1", &targets));
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert_eq!(w.lines("trail"), one);
}
