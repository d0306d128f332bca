//! A canary secret used in commands, headers and a failing step's error must
//! not appear in stdout, stderr, the state files or the event log.

use crate::support::*;

const CANARY: &str = "canary-Zq81-s3cr3t";
const CMD_CANARY: &str = "cmd-canary-77Xa";

#[test]
fn a_canary_secret_never_leaves_the_process() {
    let w = Work::new();
    w.write("pw.txt", &format!("{CMD_CANARY}\n"));
    w.write(
        "p.toml",
        r#"name = "secrets"
[secrets]
token = "env:CUTOVER_TEST_CANARY"
other = "command:cat pw.txt"
[[targets]]
name = "a"
vars = { dsn = "postgres://app:inline-pa55word@127.0.0.1:1/x" }
[[phases]]
name = "p"
[[phases.steps]]
name = "uses-it"
kind = "exec"
command = "echo '{\"token\": \"{{ secrets.token }}\", \"other\": \"{{ secrets.other }}\"}'"
[[phases.steps]]
name = "env-use"
kind = "exec"
command = ["sh", "-c", "test \"$TOKEN\" = \"{{ secrets.token }}\" && echo ok"]
env = { TOKEN = "{{ secrets.token }}" }
[[phases.steps]]
name = "leaks-on-failure"
kind = "exec"
command = "echo 'login failed for {{ secrets.token }} and {{ secrets.other }} on {{ vars.dsn }}' >&2; exit 1"
"#,
    );
    let o = w.cmd(&["run", "p.toml"]).env("CUTOVER_TEST_CANARY", CANARY).output().expect("run");
    assert_eq!(code(&o), 1, "the last step fails");
    assert!(
        text(&o.stderr)
            .contains("warning[inline-password]: `vars.dsn` of target `a` holds a password written in the plan"),
        "{}",
        text(&o.stderr)
    );
    let run = w.run_id();
    let events = w.run(&["events", &run, "--output", "json"]);
    let status = w.run(&["status", &run, "--output", "json"]);
    let mut haystacks = vec![
        ("stdout", o.stdout.clone()),
        ("stderr", o.stderr.clone()),
        ("events", events.stdout.clone()),
        ("status", status.stdout.clone()),
    ];
    for entry in std::fs::read_dir(w.path()).expect("dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("state.db") {
            haystacks.push((Box::leak(name.into_boxed_str()), std::fs::read(entry.path()).expect("read")));
        }
    }
    assert!(haystacks.iter().any(|(n, _)| *n == "state.db-wal" || *n == "state.db"));
    for (name, bytes) in &haystacks {
        let hay = String::from_utf8_lossy(bytes);
        for secret in [CANARY, CMD_CANARY] {
            assert!(!hay.contains(secret), "{secret} leaked into {name}");
        }
        // A password written inline in a plan's DSN is not a declared secret:
        // the recorded plan keeps it (`validate` and `run` warn about it), but
        // no output, message or event shows it.
        if !name.starts_with("state.db") {
            assert!(!hay.contains("inline-pa55word"), "an inline DSN password leaked into {name}");
        }
    }
    // The steps did get the real value (env-use compared it), and the
    // failure is reported, redacted.
    let ev = String::from_utf8_lossy(&events.stdout);
    assert!(ev.contains("\"step\":\"env-use\"") && ev.contains("step `env-use` succeeded"), "{ev}");
    assert!(
        ev.contains("login failed for [redacted] and [redacted] on postgres://app:[redacted]@127.0.0.1:1/x"),
        "{ev}"
    );
}
