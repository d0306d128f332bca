//! Durations as plans write them: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`.

use std::time::Duration;

/// A regular expression for the JSON Schema (the parser accepts a little more).
pub const PATTERN: &str =
    r"^\s*(\d+(\.\d+)?\s*(ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours)\s*)+$";

/// Parses a friendly duration with jiff (no sign, no calendar units).
pub fn parse(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration =
        s.trim().parse().map_err(|_| "expected a number followed by a unit (ms, s, m, h)".to_string())?;
    if d.is_negative() {
        return Err("a duration cannot be negative".into());
    }
    Duration::try_from(d).map_err(|e| e.to_string())
}

/// Formats a duration the way plans write it (`1h30m`, `2.5s`, `250ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let frac = d.subsec_millis();
    if s > 0 || frac > 0 {
        if frac > 0 && h == 0 && m == 0 {
            out.push_str(&format!("{}s", (s as f64) + f64::from(frac) / 1000.0));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for s in ["250ms", "30s", "5m", "1h30m", "2.5s"] {
            assert_eq!(format(parse(s).expect(s)), s);
        }
    }
}
