//! `command` check: run a command; its stdout (JSON, a number or text) is the
//! value and its exit code is `exit_code`. A non-zero exit is a reading; a
//! command that cannot start is a failure of the probe.

use super::{ProbeCtx, Reading, parse_value};
use crate::proc::GroupGuard;
use cutover_plan::{Command, Template};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Stdio;

pub async fn probe(ctx: &ProbeCtx<'_>, command: &Command, env: &BTreeMap<String, Template>) -> Result<Reading, String> {
    let argv: Vec<String> = match command {
        Command::Shell(t) => vec!["sh".into(), "-c".into(), ctx.render(t, "the command")?],
        Command::Argv(v) => v.iter().map(|t| ctx.render(t, "the command")).collect::<Result<_, _>>()?,
    };
    let Some((program, args)) = argv.split_first() else { return Err("the command is empty".into()) };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .current_dir(ctx.dir);
    for (k, v) in env {
        cmd.env(k, ctx.render(v, &format!("env {k}"))?);
    }
    let child = cmd.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
    let guard = GroupGuard::new(child.id());
    let out = child.wait_with_output().await.map_err(|e| format!("waiting for {program}: {e}"))?;
    guard.disarm();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    let mut extras = serde_json::Map::new();
    extras.insert("exit_code".into(), Value::from(code));
    extras.insert("stdout".into(), Value::String(stdout.chars().take(4096).collect()));
    Ok(Reading { value: parse_value(&stdout), extras, default_ok: code == 0 })
}
