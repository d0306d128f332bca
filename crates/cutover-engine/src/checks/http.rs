//! `http` check: the status code, a JSON field of the body, or whether the
//! body matches a regex. A 503 is a reading, not a failure of the probe.

use super::{ProbeCtx, Reading, parse_value};
use cutover_plan::Template;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

pub async fn probe(
    ctx: &ProbeCtx<'_>,
    url: &Template,
    method: &str,
    headers: &BTreeMap<String, Template>,
    json_path: Option<&str>,
    body_regex: Option<&str>,
    timeout: Duration,
) -> Result<Reading, String> {
    let url = ctx.render(url, "the url")?;
    ctx.redactor.add_url_password(&url);
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method}"))?;
    let mut req = ctx.http.request(method, &url).timeout(timeout);
    for (k, v) in headers {
        req = req.header(k.as_str(), ctx.render(v, &format!("header {k}"))?);
    }
    let resp = req.send().await.map_err(|e| {
        let mut m = format!("{url}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(x) = src {
            m = format!("{m}: {x}");
            src = x.source();
        }
        m
    })?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let value = if let Some(path) = json_path {
        let doc = parse_value(&body);
        json_at(&doc, path).cloned().unwrap_or(Value::Null)
    } else if let Some(r) = body_regex {
        let re = regex::Regex::new(r).map_err(|e| format!("invalid body_regex: {e}"))?;
        match re.captures(&body) {
            Some(c) => c.get(1).map(|m| Value::String(m.as_str().to_string())).unwrap_or(Value::Bool(true)),
            None => Value::Bool(false),
        }
    } else {
        json!(status)
    };
    let snippet: String = body.chars().take(4096).collect();
    let mut extras = serde_json::Map::new();
    extras.insert("http_status".into(), json!(status));
    extras.insert("body".into(), Value::String(snippet));
    Ok(Reading { value, extras, default_ok: (200..300).contains(&status) })
}

/// A small JSONPath subset: `$`, `.field`, `[index]`, `["field"]`.
pub fn json_at<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.trim().strip_prefix('$').unwrap_or(path.trim());
    let mut cur = doc;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            cur = cur.get(&r[..end])?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let key = r[..end].trim();
            cur = match key.parse::<usize>() {
                Ok(i) => cur.get(i)?,
                Err(_) => cur.get(key.trim_matches(['"', '\'']))?,
            };
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let d = json!({"status": "up", "items": [{"state": "a"}, {"state": "b"}], "x y": 1});
        assert_eq!(json_at(&d, "$.status"), Some(&json!("up")));
        assert_eq!(json_at(&d, "$.items[1].state"), Some(&json!("b")));
        assert_eq!(json_at(&d, "$[\"x y\"]"), Some(&json!(1)));
        assert_eq!(json_at(&d, "$.missing"), None);
        assert_eq!(json_at(&d, "$"), Some(&d));
    }
}
