//! `exec`: run a command (a shell string or an argv array). A JSON object on
//! stdout becomes the step's outputs; other output is kept as `stdout`.

use super::{Outputs, StepCtx, StepError, outputs_from_text};
use crate::proc::GroupGuard;
use cutover_plan::{Command, ExecStep};
use serde_json::Value;
use std::process::Stdio;

pub async fn run(s: &ExecStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let argv: Vec<String> = match &s.command {
        Command::Shell(t) => vec!["sh".into(), "-c".into(), ctx.render(t, "the command")?],
        Command::Argv(v) => v.iter().map(|t| ctx.render(t, "the command")).collect::<Result<_, _>>()?,
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(ctx.fail("the command is empty"));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout or an abort ends the command's
        // children too (a shell's `sleep`, a pipeline…).
        .process_group(0)
        .env("CUTOVER_RUN_ID", ctx.run_id)
        .env("CUTOVER_TARGET", ctx.target)
        .env("CUTOVER_STEP", ctx.step);
    if let Some(t) = &ctx.throttle {
        // Present while the phase's pause_when holds: a script checks it
        // between its batches (gh-ost's throttle-flag-file).
        cmd.env("CUTOVER_THROTTLE_FILE", &t.file);
    }
    for (k, v) in &s.env {
        cmd.env(k, ctx.render(v, &format!("env {k}"))?);
    }
    let cwd = match &s.cwd {
        Some(c) => ctx.plan_dir.join(ctx.render(c, "cwd")?),
        None => ctx.plan_dir.to_path_buf(),
    };
    if !cwd.is_dir() {
        return Err(ctx.fail(format!("the working directory {} does not exist", cwd.display())));
    }
    cmd.current_dir(&cwd);
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ctx.fail(format!("command not found: {program} (is it installed and on PATH?)"))
        } else {
            ctx.fail(format!("cannot start {program}: {e}"))
        }
    })?;
    let mut child = child;
    let guard = GroupGuard::new(child.id());
    // stdout is read line by line: a line that is a JSON object with a
    // "progress" key ({"progress": {"done": 120, "total": 1000, "unit": "rows"}})
    // reports progress; every other line is the step's output.
    let stdout_pipe = child.stdout.take();
    let reader = async {
        let mut text = String::new();
        if let Some(out) = stdout_pipe {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((done, total, unit)) = progress_line(&line) {
                    ctx.progress(done, total, &unit);
                } else {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        }
        text
    };
    let (stdout, out) = tokio::join!(reader, child.wait_with_output());
    let out = out.map_err(|e| ctx.fail(format!("waiting for {program}: {e}")))?;
    guard.disarm();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        let how = match out.status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".into(),
        };
        return Err(ctx.fail(if tail.is_empty() {
            format!("the command {how}")
        } else {
            format!("the command {how}: {tail}")
        }));
    }
    let mut outputs = outputs_from_text(&stdout, "stdout");
    outputs.entry("exit_code").or_insert(Value::from(0));
    Ok(outputs)
}

/// `{"progress": {"done": D, "total": T, "unit": "rows"}}` on a line of its own.
fn progress_line(line: &str) -> Option<(f64, f64, String)> {
    let t = line.trim();
    if !t.starts_with('{') || !t.contains("\"progress\"") {
        return None;
    }
    let v: Value = serde_json::from_str(t).ok()?;
    let p = v.get("progress")?;
    Some((
        p.get("done")?.as_f64()?,
        p.get("total").and_then(Value::as_f64).unwrap_or(0.0),
        p.get("unit").and_then(Value::as_str).unwrap_or("units").to_string(),
    ))
}
