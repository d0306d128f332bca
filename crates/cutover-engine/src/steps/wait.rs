//! `wait`: re-evaluate a CEL condition (after running the probe, if any) every
//! `interval` until it holds or the step's timeout (default 10 minutes) passes.

use super::{Outputs, StepCtx, StepError, execute};
use cutover_plan::WaitStep;
use serde_json::Value;
use std::time::{Duration, Instant};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(s: &WaitStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let program = cutover_plan::expr::compile(&s.until.source)
        .map_err(|e| ctx.fail(format!("invalid `until`: {}", e.message)))?;
    let deadline = Instant::now() + ctx.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut checks: u64 = 0;
    loop {
        checks += 1;
        let mut vars = ctx.vars.clone();
        let mut last_probe = Value::Null;
        if let Some(p) = &s.probe {
            let probe_ctx = StepCtx {
                step: &p.name,
                timeout: p.timeout,
                last_progress: Default::default(),
                throttle: None,
                ..*ctx
            };
            // A failing probe is a reading, not the end of the wait: the
            // condition sees it as `probe.error`.
            // A hanging probe must not outlive the wait's deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = p.timeout.map_or(left, |t| t.min(left));
            let result = tokio::time::timeout(limit, execute(&p.kind, &probe_ctx)).await.unwrap_or_else(|_| {
                Err(StepError::Failed(format!("the probe timed out after {}", cutover_plan::duration::format(limit))))
            });
            last_probe = match result {
                Ok(o) => Value::Object(o),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            if let Some(obj) = vars.as_object_mut() {
                obj.insert("probe".into(), last_probe.clone());
            }
        }
        match cutover_plan::expr::eval_bool(&program, &vars) {
            Ok(true) => {
                let mut out = Outputs::new();
                out.insert("checks".into(), Value::from(checks));
                if !last_probe.is_null() {
                    out.insert("probe".into(), last_probe);
                }
                return Ok(out);
            }
            Ok(false) => {}
            // `probe.x` may not exist until the probe answers as expected.
            Err(_) if s.probe.is_some() => {}
            Err(e) => return Err(ctx.fail(format!("`until` cannot be evaluated: {e}"))),
        }
        if Instant::now() + s.interval > deadline {
            let seen = if last_probe.is_null() { String::new() } else { format!("; last probe: {last_probe}") };
            return Err(ctx.fail(format!("`{}` did not hold after {checks} checks{seen}", s.until.source)));
        }
        tokio::time::sleep(s.interval).await;
    }
}
