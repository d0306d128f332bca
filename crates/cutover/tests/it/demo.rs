//! `cutover demo`: the fleet upgrade of 12 databases end to end on real
//! PostgreSQL 13 and 15 servers — two traps kept out by the preflight, one
//! failure in the window that rolls back (its app back on the old database,
//! which the move left unchanged) while the others continue and switch.

use crate::support::*;

#[test]
fn the_demo_upgrades_a_fleet_of_12_and_rolls_back_the_one_that_fails_in_its_window() {
    let w = Work::new();
    let dir = w.file("demo");
    let o = w.run(&["demo", "--dbs", "12", "--dir", dir.to_str().expect("utf-8")]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(code(&o), 0, "{out}\n{err}");
    assert!(err.contains("control tower on http://127.0.0.1:"), "{err}");
    assert!(out.contains("- targets: 12 — 9 succeeded, 3 failed (or rolled back), 0 other"), "{out}");
    assert!(out.contains("| preflight blocker | 2 |") && out.contains("| verify mismatch | 1 |"), "{out}");
    assert!(out.contains("`initech` (failed) at step `preflight`: preflight found 1 blocker(s)"), "{out}");
    assert!(out.contains("blocker md5-passwords: initech_app"), "{out}");
    assert!(out.contains("blocker index-row-size: public.notes.notes_body"), "{out}");
    assert!(out.contains("`vandelay` (rolled_back) at step `verify`: verify found"), "{out}");
    let app = |name: &str| {
        let line = out.lines().find(|l| l.trim_start().starts_with(&format!("{name} ")) && l.contains(" writes; "));
        line.unwrap_or("").to_string()
    };
    let vandelay = app("vandelay");
    assert!(vandelay.contains("on PostgreSQL 13") && vandelay.contains("maintenance off"), "{vandelay}");
    assert!(vandelay.contains("its database as before the move"), "{vandelay}");
    for n in ["acme", "globex", "stark", "wayne", "wonka", "tyrell", "soylent", "cyberdyne", "umbrella"] {
        assert!(app(n).contains("on PostgreSQL 15"), "{n}: {}", app(n));
    }
    for n in ["initech", "hooli"] {
        assert!(app(n).contains("on PostgreSQL 13") && app(n).contains("as before the move"), "{}", app(n));
    }
    // The files of the run: the report and its picture, a backup per
    // database that passed its preflight, the plan and inventory used.
    assert!(std::fs::read_to_string(dir.join("report.md")).is_ok_and(|r| r.contains("## Durations")));
    assert!(std::fs::read_to_string(dir.join("report.svg")).is_ok_and(|s| s.contains("<svg")));
    let backups = std::fs::read_dir(dir.join("backups"))
        .expect("backups")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(backups, 10);
    assert!(dir.join("fleet.csv").exists() && dir.join("plan.toml").exists());
    // A second demo into the same directory is refused in one sentence.
    let o = w.run(&["demo", "--dir", dir.to_str().expect("utf-8")]);
    assert_eq!(code(&o), 2);
    assert!(text(&o.stderr).contains("holds an earlier demo"), "{}", text(&o.stderr));
}
