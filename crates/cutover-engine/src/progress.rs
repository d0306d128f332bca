//! Progress with rate and ETA, the way gh-ost reports it: the rate comes from
//! a recent window (not the whole run), there is no ETA under 0.1 %, "due"
//! at 100 %, and a done count past the estimated total is tolerated.

use serde::Serialize;

/// The recent window the rate is measured over.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Progress {
    pub done: f64,
    pub total: f64,
    pub unit: String,
    /// 0–100, capped at 100 even when `done` overshoots `total`.
    pub percent: f64,
    /// Units per second over the recent window.
    pub rate: f64,
    pub eta_seconds: Option<f64>,
    /// "N/A", "due", or a duration such as "3m20s".
    pub eta: String,
    /// What the step says beside its numbers (its stage, why it is throttled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `samples`: (time in ms, units done by then), oldest first, ending at `now`.
pub fn compute(done: f64, total: f64, unit: &str, samples: &[(i64, f64)], now: i64) -> Progress {
    let percent = if total > 0.0 { (done / total * 100.0).min(100.0) } else { 0.0 };
    let since = now - WINDOW_MS;
    // The first sample inside the window (or the last before it) is the base.
    let base = samples.iter().rev().find(|(t, _)| *t <= since).or_else(|| samples.first()).copied();
    let rate = match base {
        Some((t, d)) if now > t => ((done - d).max(0.0)) / ((now - t) as f64 / 1000.0),
        _ => 0.0,
    };
    let (eta_seconds, eta) = if total > 0.0 && done >= total {
        (Some(0.0), "due".to_string())
    } else if percent < 0.1 || rate <= 0.0 {
        (None, "N/A".to_string())
    } else {
        let s = (total - done) / rate;
        (Some(s), format_secs(s))
    };
    Progress { done, total, unit: unit.to_string(), percent, rate, eta_seconds, eta, note: None }
}

fn format_secs(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_eta_under_a_tenth_of_a_percent() {
        let p = compute(0.5, 1000.0, "rows", &[(0, 0.0)], 10_000);
        assert_eq!(p.eta, "N/A");
    }

    #[test]
    fn eta_from_the_recent_rate() {
        // 10 rows/s over the last 10 s; 900 rows left: 90 s.
        let p = compute(100.0, 1000.0, "rows", &[(0, 0.0)], 10_000);
        assert_eq!((p.rate, p.eta.as_str()), (10.0, "1m30s"));
    }

    #[test]
    fn the_rate_uses_the_recent_window_not_the_whole_run() {
        // Slow for an hour, then fast: the window only sees the fast part.
        let samples = [(0, 0.0), (3_600_000, 100.0)];
        let now = 3_600_000 + WINDOW_MS;
        let p = compute(400.0, 1000.0, "rows", &samples, now);
        assert_eq!(p.rate, 1.0);
    }

    #[test]
    fn due_at_100_percent_and_overshoot_is_tolerated() {
        let p = compute(1100.0, 1000.0, "rows", &[(0, 0.0)], 1000);
        assert_eq!((p.percent, p.eta.as_str()), (100.0, "due"));
    }
}
