//! `http`: one request; the status must be expected (default: any 2xx). A JSON
//! object body becomes the outputs (plus `status`); other bodies are `body`.

use super::{Outputs, StepCtx, StepError, outputs_from_text};
use cutover_plan::HttpStep;
use serde_json::Value;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn run(s: &HttpStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let url = ctx.render(&s.url, "the url")?;
    ctx.redactor.add_url_password(&url);
    let method = reqwest::Method::from_bytes(s.method.as_bytes())
        .map_err(|_| ctx.fail(format!("invalid method {}", s.method)))?;
    // Without a step timeout a request still ends: 5 minutes at most.
    let mut req = ctx.http.request(method, &url).timeout(ctx.timeout.unwrap_or(DEFAULT_TIMEOUT));
    for (k, v) in &s.headers {
        req = req.header(k.as_str(), ctx.render(v, &format!("header {k}"))?);
    }
    if let Some(b) = &s.body {
        req = req.body(ctx.render(b, "the body")?);
    }
    let resp = req.send().await.map_err(|e| {
        let mut m = format!("{} {url} failed: {e}", s.method);
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            m = format!("{m}: {x}");
            src = x.source();
        }
        ctx.fail(m)
    })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let ok = if s.expect_status.is_empty() { (200..300).contains(&status) } else { s.expect_status.contains(&status) };
    if !ok {
        let expected = if s.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            s.expect_status.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
        };
        let snippet: String = body.chars().take(200).collect();
        return Err(ctx.fail(format!("{} {url} answered {status}, expected {expected}: {snippet}", s.method)));
    }
    // The HTTP status is always `http_status`; it is also `status` unless
    // the body has a field of that name (the body's own fields win, as an
    // exec step's JSON wins over `exit_code`).
    let mut out = outputs_from_text(&body, "body");
    out.insert("http_status".into(), Value::from(status));
    out.entry("status").or_insert(Value::from(status));
    Ok(out)
}
