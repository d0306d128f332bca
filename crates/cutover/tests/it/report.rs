//! `cutover report`: real runs (exec steps that sleep, fail, time out, a
//! rollback_when gate; pg.preflight and pg.verify against PostgreSQL 13 →
//! 15), then the report's numbers, causes, downtime and picture.

use crate::support::*;
use cutover_testkit::{shared, unique_db_name};
use serde_json::Value;
use std::collections::BTreeMap;

/// Seven targets: four go through, `e`'s copy exits 3, `f`'s copy times out,
/// `g` is stopped by a rollback_when gate after its downtime phase.
const FLEET: &str = r#"name = "report-demo"
concurrency = { limit = 7 }
[[targets]]
name = "a"
vars = { mode = "ok" }
[[targets]]
name = "b"
vars = { mode = "ok" }
[[targets]]
name = "c"
vars = { mode = "ok" }
[[targets]]
name = "d"
vars = { mode = "ok" }
[[targets]]
name = "e"
vars = { mode = "fail" }
[[targets]]
name = "f"
vars = { mode = "slow" }
[[targets]]
name = "g"
vars = { mode = "gate" }

[[phases]]
name = "prepare"
[[phases.steps]]
name = "check"
kind = "exec"
command = "sleep 0.1"

[[phases]]
name = "switch"
downtime = true
[[phases.steps]]
name = "maint-on"
kind = "exec"
command = "sleep 0.1"
[[phases.steps]]
name = "copy"
kind = "exec"
timeout = "500ms"
command = "case {{ vars.mode }} in fail) echo 'disk full' >&2; exit 3;; slow) sleep 5;; *) sleep 0.2;; esac"
[[phases.steps]]
name = "maint-off"
kind = "exec"
command = "sleep 0.1"

[[phases]]
name = "reopen"
rollback_when = "vars.mode == 'gate'"
[[phases.steps]]
name = "notify"
kind = "exec"
command = "true"
"#;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A row of a list of objects, by one field.
fn row<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no {key} = {value} in {list:#}"))
}

/// min ≤ p50 ≤ p75 ≤ p95 ≤ max, and the mean within [min, max].
fn assert_ordered(s: &Value) {
    let q: Vec<f64> = ["min", "p50", "p75", "p95", "max"].iter().map(|k| f(&s[*k])).collect();
    assert!(q.windows(2).all(|w| w[0] <= w[1]), "{s}");
    assert!(q[0] <= f(&s["mean"]) && f(&s["mean"]) <= q[4], "{s}");
}

#[test]
fn the_report_counts_targets_groups_failures_by_cause_and_measures_downtime() {
    let w = Work::new();
    w.write("p.toml", FLEET);
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();

    let o = w.run(&["report", &run, "--format", "json", "--svg", "pic.svg"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).expect("report JSON");

    let s = &r["summary"];
    assert_eq!((s["targets"].as_u64(), s["succeeded"].as_u64(), s["failed"].as_u64()), (Some(7), Some(4), Some(3)));
    assert_eq!(s["other"], 0);
    assert!((f(&s["success_rate_percent"]) - 400.0 / 7.0).abs() < 1e-9, "{s}");

    // Each failed target under its cause, with its message.
    let causes: BTreeMap<&str, Vec<&str>> = r["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|g| {
            let targets = g["targets"].as_array().expect("targets").iter().filter_map(Value::as_str).collect();
            (g["cause"].as_str().unwrap_or(""), targets)
        })
        .collect();
    let want: BTreeMap<&str, Vec<&str>> =
        [("gate", vec!["g"]), ("step failed: exec", vec!["e"]), ("timeout", vec!["f"])].into();
    assert_eq!(causes, want);
    let example = |cause: &str| row(&r["failures"], "cause", cause)["examples"][0].clone();
    assert_eq!(example("timeout")["step"], "copy");
    assert_eq!(example("timeout")["message"], "timed out after 500ms");
    assert_eq!(example("step failed: exec")["message"], "the command exited with status 3: disk full");
    assert!(example("gate")["message"].as_str().unwrap_or("").contains("rollback_when of phase `reopen` held"));

    // Step statistics count succeeded steps only: all seven checked, five
    // copied (not e nor f), four notified (g was stopped before).
    let steps = &r["durations"]["steps"];
    let count = |step: &str| row(steps, "step", step)["stats"]["count"].as_u64();
    assert_eq!(
        [count("check"), count("maint-on"), count("copy"), count("maint-off"), count("notify")],
        [Some(7), Some(7), Some(5), Some(5), Some(4)]
    );
    let copy = &row(steps, "step", "copy")["stats"];
    assert!(f(&copy["min"]) >= 0.2 && f(&copy["max"]) < 0.5, "a copy sleeps 0.2 s: {copy}");
    assert_eq!(row(steps, "step", "copy")["phase"], "switch");
    for s in steps.as_array().expect("steps") {
        assert_ordered(&s["stats"]);
    }
    let phases = &r["durations"]["phases"];
    let switch = row(phases, "phase", "switch");
    assert_eq!((switch["downtime"].as_bool(), switch["stats"]["count"].as_u64()), (Some(true), Some(5)));
    assert_eq!(row(phases, "phase", "prepare")["stats"]["count"], 7);
    assert_eq!(row(phases, "phase", "reopen")["downtime"], false);
    let targets = &r["durations"]["targets"];
    assert_eq!(targets["count"], 4);
    assert!(f(&targets["min"]) >= 0.5, "four sleeps of 0.5 s in all: {targets}");

    // Downtime: maintenance on → off, 0.1 + 0.2 + 0.1 s at least.
    let d = &r["downtime"];
    assert_eq!(d["phases"], serde_json::json!(["switch"]));
    assert_eq!(d["targets"].as_array().map(Vec::len), Some(7), "every target began the switch");
    for t in ["a", "b", "c", "d", "g"] {
        let x = row(&d["targets"], "target", t);
        assert_eq!(x["complete"], true, "{x}");
        assert!(f(&x["seconds"]) >= 0.4, "{x}");
    }
    let slow = row(&d["targets"], "target", "f");
    assert_eq!(slow["complete"], false);
    assert!(f(&slow["seconds"]) >= 0.6, "maintenance on, then a copy cut at 500 ms: {slow}");
    assert_eq!(row(&d["targets"], "target", "e")["complete"], false);
    assert_eq!(d["stats"]["count"], 5, "complete windows only");
    assert!(f(&d["stats"]["min"]) >= 0.4);
    assert_ordered(&d["stats"]);

    // The histogram is of downtime: five windows, Sturges' 4 buckets.
    let h = &r["histogram"];
    assert_eq!(h["of"], "downtime");
    let buckets = h["buckets"].as_array().expect("buckets");
    let windows: u64 = buckets.iter().filter_map(|b| b["count"].as_u64()).sum();
    assert_eq!((buckets.len(), windows), (4, 5), "{h}");
    assert_eq!(h["svg"], "pic.svg");
    let svg = w.read("pic.svg");
    assert!(svg.starts_with("<svg") && svg.contains("Downtime per target"), "{svg}");
    assert_eq!(svg.matches(r#"class="bar""#).count(), buckets.len(), "one bar per bucket: {svg}");

    // The Markdown says the same, and its picture lands beside it.
    let o = w.run(&["report", &run, "--out", "out/report.md"]);
    assert_eq!(code(&o), 2, "there is no directory out/");
    assert!(text(&o.stderr).contains("error: cannot write out/report."), "{}", text(&o.stderr));
    std::fs::create_dir(w.file("out")).expect("mkdir");
    let o = w.run(&["report", &run, "--out", "out/report.md"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    assert!(text(&o.stdout).is_empty(), "the report went to the file");
    let md = w.read("out/report.md");
    for want in [
        "# Run ",
        "- targets: 7 — 4 succeeded, 3 failed (or rolled back), 0 other",
        "- success rate: **57.1 %**",
        "| timeout | 1 |",
        "### step failed: exec (1)",
        "- `e` (failed) at step `copy`: the command exited with status 3: disk full",
        "| phase `switch` (downtime) | 5 |",
        "| switch | `copy` | exec | 5 |",
        "Downtime phases: `switch`.",
        "| downtime | 5 |",
        "![downtime per target](report.svg)",
    ] {
        assert!(md.contains(want), "missing {want:?} in:\n{md}");
    }
    assert!(w.read("out/report.svg").starts_with("<svg"));
}

#[test]
fn without_downtime_phases_the_histogram_is_of_target_durations() {
    let w = Work::new();
    w.write(
        "p.toml",
        "name = \"plain\"\n[[targets]]\nname = \"a\"\n[[targets]]\nname = \"b\"\n[[targets]]\nname = \"c\"\n[[phases]]\nname = \"only\"\n[[phases.steps]]\nname = \"nap\"\nkind = \"exec\"\ncommand = \"sleep 0.1\"\n",
    );
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 0, "{}", text(&o.stderr));
    let run = w.run_id();
    // `--output json` is the same as `--format json`.
    let r = w.json(&["report", &run]);
    assert_eq!(r["summary"]["success_rate_percent"], 100.0);
    assert_eq!(r["failures"], serde_json::json!([]));
    assert_eq!(r["downtime"]["phases"], serde_json::json!([]));
    assert_eq!(r["downtime"]["stats"], Value::Null);
    assert_eq!(r["histogram"]["of"], "target duration");
    let total: u64 =
        r["histogram"]["buckets"].as_array().expect("buckets").iter().filter_map(|b| b["count"].as_u64()).sum();
    assert_eq!(total, 3);
    assert_eq!(r["histogram"]["svg"], Value::Null, "no picture unless asked for");
    assert!(f(&r["durations"]["targets"]["min"]) >= 0.1);

    let o = w.run(&["report", &run]);
    assert_eq!(code(&o), 0);
    let md = text(&o.stdout);
    assert!(md.contains("No phase of the plan says `downtime = true`."), "{md}");
    assert!(md.contains("No target failed") && md.contains("## Histogram: target duration (seconds)"), "{md}");
    assert!(!md.contains("!["), "no picture to link: {md}");

    let o = w.run(&["report", "no-such-run"]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("no run \"no-such-run\""), "{}", text(&o.stderr));
}

#[test]
fn preflight_blockers_and_verify_mismatches_are_causes_and_the_comparisons_are_reported() {
    let w = Work::new();
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("rep");
    src.create_database(&db).expect("db");
    src.psql(&db, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 50) g;")
        .expect("schema");
    let dump = std::process::Command::new(dst.bin_dir().join("pg_dump"))
        .args(["-h", "127.0.0.1", "-p", &src.port().to_string(), "-U", "postgres", "-d", &db])
        .output()
        .expect("pg_dump");
    let (good, bad) = (format!("{db}_good"), format!("{db}_bad"));
    for copy in [&good, &bad] {
        dst.create_database(copy).expect("copy db");
        dst.psql(copy, &String::from_utf8_lossy(&dump.stdout)).expect("restore");
    }
    dst.psql(&bad, "UPDATE t SET v = 'changed' WHERE id = 7;").expect("corrupt");
    // A database with a blocker: a btree entry over 2704 bytes (an invalid index).
    let trap = unique_db_name("reptrap");
    src.create_database(&trap).expect("trap db");
    src.psql(
        &trap,
        "CREATE TABLE docs (id int PRIMARY KEY, body text);
         INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 100) g;",
    )
    .expect("trap schema");
    assert!(src.psql(&trap, "CREATE INDEX CONCURRENTLY docs_body ON docs (body);").is_err());

    let target = |name: &str, dsn: String, copy: &str| {
        format!("[[targets]]\nname = \"{name}\"\nvars = {{ dsn = \"{dsn}\", copy = \"{}\" }}\n", dst.dsn(copy))
    };
    let plan = format!(
        "name = \"pg-report\"\n{}{}{}\
         [[phases]]\nname = \"check\"\n[[phases.steps]]\nname = \"preflight\"\nkind = \"pg.preflight\"\ntarget_version = 15\n\
         [[phases]]\nname = \"switch\"\ndowntime = true\n[[phases.steps]]\nname = \"verify\"\nkind = \"pg.verify\"\ntarget_dsn = \"{{{{ vars.copy }}}}\"\n",
        target("good", src.dsn(&db), &good),
        target("bad", src.dsn(&db), &bad),
        target("trapped", src.dsn(&trap), &good),
    );
    w.write("p.toml", &plan);
    let o = w.run(&["run", "p.toml"]);
    assert_eq!(code(&o), 1, "{}", text(&o.stderr));
    let run = w.run_id();
    let r = w.json(&["report", &run]);

    let failures = &r["failures"];
    assert_eq!(row(failures, "cause", "verify mismatch")["targets"], serde_json::json!(["bad"]));
    assert_eq!(row(failures, "cause", "preflight blocker")["targets"], serde_json::json!(["trapped"]));
    assert_eq!(failures.as_array().map(Vec::len), Some(2), "{failures:#}");
    let msg = row(failures, "cause", "preflight blocker")["examples"][0]["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("blocker index-row-size"), "{msg}");

    // The trapped database never reached verify.
    let v = &r["verification"];
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v:#}");
    let ok = row(v, "target", "good");
    assert_eq!((ok["tables"].as_u64(), ok["rows"].as_i64()), (Some(1), Some(50)));
    assert_eq!(ok["differences"], serde_json::json!([]));
    let diffs = row(v, "target", "bad")["differences"].as_array().cloned().unwrap_or_default();
    assert!(diffs.iter().any(|d| d["kind"] == "table" && d["object"] == "public.t"), "{diffs:?}");

    let blocker = row(&r["preflight"], "rule", "index-row-size");
    assert_eq!((blocker["severity"].as_str(), blocker["targets"].as_u64()), (Some("blocker"), Some(1)));
    assert!(blocker["objects"].as_u64() >= Some(1));

    let md = text(&w.run(&["report", &run]).stdout);
    for want in ["| `good` | `verify` | 1 | 50 |", "Differences of `bad`:", "| index-row-size | blocker | 1 |"] {
        assert!(md.contains(want), "missing {want:?} in:\n{md}");
    }
}
