//! How long a target will take: a prior from the plan (`base + per_gb × size`)
//! until real durations exist, then a model learned from them, and the
//! model's error (mean absolute percentage error) once targets finished.
//!
//! The learned model: with at least two finished targets of different sizes,
//! an ordinary least-squares fit `seconds = base + per_gb × GB` (both kept
//! at or above zero); otherwise the prior's shape scaled by the median of
//! `actual ÷ prior` over the finished targets. Pure: the engine gathers the
//! samples from the store.
//!
//! ```
//! use cutover_plan::estimate::{Model, Prior, Sample};
//! use std::time::Duration;
//! let prior = Prior { base: Duration::from_secs(60), per_gb: Duration::from_secs(120) };
//! assert_eq!(Model::learn(&prior, &[], true).estimate(Some(10_000_000_000)), Duration::from_secs(1260));
//! let done = [Sample { size: Some(1_000_000_000), actual: 100.0, estimated: 180.0 },
//!             Sample { size: Some(3_000_000_000), actual: 300.0, estimated: 420.0 }];
//! // 100 s per GB, no base.
//! assert_eq!(Model::learn(&prior, &done, true).estimate(Some(2_000_000_000)), Duration::from_secs(200));
//! ```

use std::time::Duration;

/// What the plan says before anything ran: `[schedule.estimate]`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Prior {
    #[serde(serialize_with = "secs")]
    pub base: Duration,
    #[serde(serialize_with = "secs")]
    pub per_gb: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format(*d))
}

impl Default for Prior {
    fn default() -> Self {
        Prior { base: Duration::from_secs(300), per_gb: Duration::from_secs(60) }
    }
}

/// A finished target: its size, how long it took and what was estimated
/// when it started (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub size: Option<u64>,
    pub actual: f64,
    pub estimated: f64,
}

const GB: f64 = 1e9;

fn gb(size: Option<u64>) -> f64 {
    size.map(|s| s as f64 / GB).unwrap_or(0.0)
}

#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    /// Nothing has finished yet (or learning is off).
    Prior(Prior),
    /// Least squares over finished targets of different sizes.
    Fit { base: f64, per_gb: f64, samples: usize },
    /// The prior times the median of actual ÷ prior.
    Scaled { prior: Prior, factor: f64, samples: usize },
}

impl Model {
    /// The model for these finished targets (oldest first; only the last
    /// 500 count, so a plan's old history fades).
    pub fn learn(prior: &Prior, samples: &[Sample], learn: bool) -> Model {
        let samples = &samples[samples.len().saturating_sub(500)..];
        if !learn || samples.is_empty() {
            return Model::Prior(*prior);
        }
        let sized: Vec<(f64, f64)> =
            samples.iter().filter_map(|s| s.size.map(|_| (gb(s.size), s.actual.max(0.0)))).collect();
        let distinct = sized.iter().any(|(x, _)| (x - sized[0].0).abs() > 1e-9);
        if sized.len() >= 2 && distinct {
            let n = sized.len() as f64;
            let (mx, my) = (sized.iter().map(|p| p.0).sum::<f64>() / n, sized.iter().map(|p| p.1).sum::<f64>() / n);
            let sxy: f64 = sized.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
            let sxx: f64 = sized.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
            let mut per_gb = sxy / sxx;
            let mut base = my - per_gb * mx;
            // Negative times mean nothing: bigger targets never take less
            // than nothing, and no target takes less than zero.
            if per_gb < 0.0 {
                per_gb = 0.0;
                base = my;
            } else if base < 0.0 {
                base = 0.0;
                per_gb = sized.iter().map(|(x, y)| x * y).sum::<f64>() / sized.iter().map(|(x, _)| x * x).sum::<f64>();
            }
            return Model::Fit { base, per_gb, samples: samples.len() };
        }
        let mut ratios: Vec<f64> = samples
            .iter()
            .filter_map(|s| {
                let p = prior_secs(prior, s.size);
                (p > 0.0).then(|| s.actual.max(0.0) / p)
            })
            .collect();
        if ratios.is_empty() {
            return Model::Prior(*prior);
        }
        ratios.sort_by(f64::total_cmp);
        let mid = ratios.len() / 2;
        let factor = if ratios.len() % 2 == 1 { ratios[mid] } else { (ratios[mid - 1] + ratios[mid]) / 2.0 };
        Model::Scaled { prior: *prior, factor, samples: samples.len() }
    }

    /// The estimate for a target of this size (bytes), rounded up to a second.
    pub fn estimate(&self, size: Option<u64>) -> Duration {
        let secs = match self {
            Model::Prior(p) => prior_secs(p, size),
            Model::Fit { base, per_gb, .. } => base + per_gb * gb(size),
            Model::Scaled { prior, factor, .. } => prior_secs(prior, size) * factor,
        };
        Duration::from_secs(secs.max(0.0).ceil() as u64)
    }

    /// How many finished targets it learned from.
    pub fn samples(&self) -> usize {
        match self {
            Model::Prior(_) => 0,
            Model::Fit { samples, .. } | Model::Scaled { samples, .. } => *samples,
        }
    }

    /// One line for people: "prior: 5m + 1m per GB", "learned from 7 targets: 2m10s + 55s per GB".
    pub fn describe(&self) -> String {
        let d = |s: f64| crate::duration::format(Duration::from_secs(s.max(0.0).round() as u64));
        match self {
            Model::Prior(p) => {
                format!("prior: {} + {} per GB", crate::duration::format(p.base), crate::duration::format(p.per_gb))
            }
            Model::Fit { base, per_gb, samples } => {
                format!(
                    "learned from {samples} finished target(s): {} + {} per GB (least squares)",
                    d(*base),
                    d(*per_gb)
                )
            }
            Model::Scaled { factor, samples, .. } => {
                format!("learned from {samples} finished target(s): the prior × {factor:.2} (median of actual ÷ prior)")
            }
        }
    }
}

fn prior_secs(p: &Prior, size: Option<u64>) -> f64 {
    p.base.as_secs_f64() + p.per_gb.as_secs_f64() * gb(size)
}

/// One target's error, in percent of what it really took: positive when it
/// took longer than estimated. An actual time under a second counts as one
/// second, so that instant targets do not divide by zero.
pub fn error_percent(actual: f64, estimated: f64) -> f64 {
    (actual - estimated) / actual.max(1.0) * 100.0
}

/// The mean absolute percentage error of the estimates made when these
/// targets started, or None without samples.
pub fn mape(samples: &[Sample]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    Some(samples.iter().map(|s| error_percent(s.actual, s.estimated).abs()).sum::<f64>() / samples.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIOR: Prior = Prior { base: Duration::from_secs(60), per_gb: Duration::from_secs(120) };

    fn s(size_gb: Option<f64>, actual: f64) -> Sample {
        Sample { size: size_gb.map(|g| (g * GB) as u64), actual, estimated: 100.0 }
    }

    fn est(m: &Model, size_gb: Option<f64>) -> u64 {
        m.estimate(size_gb.map(|g| (g * GB) as u64)).as_secs()
    }

    #[test]
    fn the_prior_holds_until_something_finished() {
        let m = Model::learn(&PRIOR, &[], true);
        assert_eq!(est(&m, None), 60);
        assert_eq!(est(&m, Some(12.0)), 60 + 12 * 120);
        assert_eq!(m.describe(), "prior: 1m + 2m per GB");
        // Learning off keeps it whatever happened.
        assert_eq!(Model::learn(&PRIOR, &[s(Some(1.0), 5.0)], false), Model::Prior(PRIOR));
    }

    #[test]
    fn different_sizes_give_a_least_squares_line() {
        let m = Model::learn(&PRIOR, &[s(Some(1.0), 130.0), s(Some(2.0), 230.0), s(Some(4.0), 430.0)], true);
        assert_eq!(est(&m, Some(10.0)), 1030);
        assert_eq!(est(&m, None), 30);
        assert_eq!(m.describe(), "learned from 3 finished target(s): 30s + 1m40s per GB (least squares)");
        // Bigger ones faster: no negative slope, the mean instead.
        let m = Model::learn(&PRIOR, &[s(Some(1.0), 300.0), s(Some(2.0), 100.0)], true);
        assert_eq!((est(&m, Some(1.0)), est(&m, Some(50.0))), (200, 200));
        // A negative base: a line through zero.
        let m = Model::learn(&PRIOR, &[s(Some(1.0), 10.0), s(Some(2.0), 100.0)], true);
        assert_eq!(est(&m, None), 0);
        assert_eq!(est(&m, Some(1.0)), 42);
    }

    #[test]
    fn same_sizes_scale_the_prior_by_the_median_ratio() {
        // Prior for 1 GB: 180 s. Ratios 0.5, 1, 10: median 1.
        let m = Model::learn(&PRIOR, &[s(Some(1.0), 90.0), s(Some(1.0), 180.0), s(Some(1.0), 1800.0)], true);
        assert_eq!(est(&m, Some(1.0)), 180);
        // No sizes at all: the base scales.
        let m = Model::learn(&PRIOR, &[s(None, 30.0)], true);
        assert_eq!(est(&m, None), 30);
        assert_eq!(est(&m, Some(1.0)), 90);
        assert_eq!(m.describe(), "learned from 1 finished target(s): the prior × 0.50 (median of actual ÷ prior)");
    }

    #[test]
    fn the_error_is_a_mean_absolute_percentage() {
        assert_eq!(mape(&[]), None);
        let done = [
            Sample { size: None, actual: 100.0, estimated: 80.0 },
            Sample { size: None, actual: 200.0, estimated: 260.0 },
        ];
        assert_eq!(mape(&done), Some(25.0));
        assert_eq!(error_percent(100.0, 80.0), 20.0);
        assert_eq!(error_percent(0.2, 60.0), -5980.0);
    }
}
