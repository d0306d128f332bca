//! `prometheus` check: an instant PromQL query; the value is the first
//! sample (a number), or null when the query returns nothing.

use super::{ProbeCtx, Reading};
use cutover_plan::Template;
use serde_json::Value;

pub async fn probe(ctx: &ProbeCtx<'_>, url: &Template, query: &str) -> Result<Reading, String> {
    let base = ctx.render(url, "the url")?;
    let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
    let url = reqwest::Url::parse_with_params(&endpoint, &[("query", query)])
        .map_err(|e| format!("invalid url {endpoint}: {e}"))?;
    let resp = ctx.http.get(url).send().await.map_err(|e| format!("{endpoint}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{endpoint}: {e}"))?;
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("{endpoint} answered {status} with no JSON: {e}"))?;
    if body["status"] != "success" {
        return Err(format!("Prometheus refused the query: {}", body["error"].as_str().unwrap_or("unknown error")));
    }
    let data = &body["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => data["result"].get(0).map(|r| &r["value"]),
        Some("scalar") => Some(&data["result"]),
        other => return Err(format!("unsupported result type {other:?}: use a query that gives a vector or a scalar")),
    };
    let value = sample
        .and_then(|s| s.get(1))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<f64>().ok())
        .map(Value::from)
        .unwrap_or(Value::Null);
    let mut extras = serde_json::Map::new();
    extras.insert("series".into(), Value::from(data["result"].as_array().map(Vec::len).unwrap_or(1)));
    Ok(Reading { default_ok: !value.is_null(), value, extras })
}
