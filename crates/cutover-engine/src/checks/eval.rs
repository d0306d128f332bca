//! From a probe's reading to a raw status: the conditions in force (by
//! phase), or the kind's default when the plan sets none.

use super::status::Status;
use cutover_plan::{Conditions, expr};
use serde_json::Value;

/// A probe's result: the value and what else the conditions may read
/// (`http_status`, `exit_code`, `step`…).
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub value: Value,
    pub extras: serde_json::Map<String, Value>,
    /// Whether the kind's own notion of success holds (2xx, exit 0, port
    /// open…), used when the plan sets no condition.
    pub default_ok: bool,
}

/// The raw status of a reading under `cond`, with the reason for a non-ok one.
pub fn classify(cond: &Conditions, reading: &Reading, ctx: &Value) -> (Status, Option<String>) {
    let mut ctx = ctx.clone();
    if let Some(o) = ctx.as_object_mut() {
        o.insert("value".into(), reading.value.clone());
        for (k, v) in &reading.extras {
            o.insert(k.clone(), v.clone());
        }
    }
    let holds = |e: &Option<cutover_plan::Expr>| -> Result<Option<bool>, String> {
        match e {
            None => Ok(None),
            Some(e) => {
                let p = expr::compile(&e.source).map_err(|x| x.message)?;
                expr::eval_bool(&p, &ctx).map(Some).map_err(|x| format!("`{}` cannot be evaluated: {x}", e.source))
            }
        }
    };
    let result = (|| -> Result<(Status, Option<String>), String> {
        if holds(&cond.alarm)? == Some(true) {
            return Ok((Status::Alarm, cond.alarm.as_ref().map(|e| format!("alarm: {}", e.source))));
        }
        if holds(&cond.warn)? == Some(true) {
            return Ok((Status::Warn, cond.warn.as_ref().map(|e| format!("warn: {}", e.source))));
        }
        let ok = holds(&cond.ok)?;
        let in_range = cond.range.map(|(min, max)| {
            let v = reading.value.as_f64();
            v.is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m))
        });
        if ok.is_some() || in_range.is_some() {
            if ok != Some(false) && in_range != Some(false) {
                return Ok((Status::Ok, None));
            }
            let why = match (ok, cond.range) {
                (Some(false), _) => format!("not ok: {}", cond.ok.as_ref().map(|e| e.source.as_str()).unwrap_or("")),
                (_, Some((min, max))) => format!("out of range [{}, {}]", fmt_bound(min), fmt_bound(max)),
                _ => "not ok".into(),
            };
            return Ok((Status::Alarm, Some(why)));
        }
        if cond.warn.is_some() || cond.alarm.is_some() || reading.default_ok {
            return Ok((Status::Ok, None));
        }
        Ok((Status::Alarm, Some("the probe's own test failed".into())))
    })();
    result.unwrap_or_else(|e| (Status::Error, Some(e)))
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_plan::Expr;
    use serde_json::json;

    fn e(s: &str) -> Option<Expr> {
        Some(Expr { source: s.into(), pos: Default::default() })
    }

    fn reading(v: Value) -> Reading {
        Reading { value: v, extras: Default::default(), default_ok: true }
    }

    #[test]
    fn alarm_beats_warn_beats_ok() {
        let c = Conditions { ok: e("value < 5"), warn: e("value >= 5"), alarm: e("value >= 10"), range: None };
        let ctx = json!({});
        assert_eq!(classify(&c, &reading(json!(1)), &ctx).0, Status::Ok);
        assert_eq!(classify(&c, &reading(json!(7)), &ctx).0, Status::Warn);
        assert_eq!(classify(&c, &reading(json!(12)), &ctx).0, Status::Alarm);
    }

    #[test]
    fn range_is_a_shorthand_for_ok() {
        let c = Conditions { range: Some((Some(0.0), Some(0.0))), ..Default::default() };
        assert_eq!(classify(&c, &reading(json!(0)), &json!({})).0, Status::Ok);
        let (s, why) = classify(&c, &reading(json!(3)), &json!({}));
        assert_eq!((s, why.as_deref()), (Status::Alarm, Some("out of range [0, 0]")));
        // A value that is not a number is not in any range.
        assert_eq!(classify(&c, &reading(Value::Null), &json!({})).0, Status::Alarm);
    }

    #[test]
    fn a_condition_that_cannot_be_evaluated_is_an_error_not_ok() {
        let c = Conditions { ok: e("value.status == 'up'"), ..Default::default() };
        assert_eq!(classify(&c, &reading(json!(3)), &json!({})).0, Status::Error);
    }

    #[test]
    fn without_conditions_the_kind_decides() {
        let c = Conditions::default();
        let mut r = reading(json!(503));
        assert_eq!(classify(&c, &r, &json!({})).0, Status::Ok);
        r.default_ok = false;
        assert_eq!(classify(&c, &r, &json!({})).0, Status::Alarm);
    }

    #[test]
    fn extras_and_context_are_readable() {
        let c = Conditions { ok: e("http_status == 503 && phase == 'maintenance'"), ..Default::default() };
        let mut r = reading(json!(null));
        r.extras.insert("http_status".into(), json!(503));
        assert_eq!(classify(&c, &r, &json!({"phase": "maintenance"})).0, Status::Ok);
        assert_eq!(classify(&c, &r, &json!({"phase": "reopen"})).0, Status::Alarm);
    }
}
