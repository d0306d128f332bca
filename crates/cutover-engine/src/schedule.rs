//! What fleet scheduling needs beyond the plan: the clock its decisions read,
//! and the real durations of finished targets that estimates learn from.
//!
//! Only scheduling decisions (windows, notice, the durations that estimates
//! learn from) read [`Clock`]; leases, heartbeats, checks, timeouts and the
//! times stored with every record keep the system clock, so a set clock
//! cannot expire a lease or make a check stale.

use crate::store::{Store, StoreError};
use cutover_plan::estimate::{Model, Sample};
use jiff::{SignedDuration, Timestamp};
use std::time::Instant;

/// The environment variable that sets where the schedule clock starts
/// (RFC 3339), for tests and demos.
pub const CLOCK_START: &str = "CUTOVER_CLOCK_START";
/// The environment variable that sets how fast the schedule clock runs
/// (a factor: 60 makes a real second a minute), for tests and demos.
pub const CLOCK_SPEED: &str = "CUTOVER_CLOCK_SPEED";

/// The clock of scheduling decisions: the system's, or one that starts at a
/// given time and runs at a given speed from when it was made.
#[derive(Clone, Debug)]
pub struct Clock {
    origin: Option<(Timestamp, Instant)>,
    speed: f64,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { origin: None, speed: 1.0 }
    }

    /// A clock that reads `start` now and runs `speed` times as fast as real time.
    pub fn starting_at(start: Timestamp, speed: f64) -> Clock {
        Clock { origin: Some((start, Instant::now())), speed }
    }

    /// The clock `CUTOVER_CLOCK_START` and `CUTOVER_CLOCK_SPEED` ask for
    /// (the system clock without them); an error says which is wrong.
    pub fn from_env() -> Result<Clock, String> {
        let start = std::env::var(CLOCK_START).ok().filter(|s| !s.trim().is_empty());
        let speed = std::env::var(CLOCK_SPEED).ok().filter(|s| !s.trim().is_empty());
        Clock::from_values(start.as_deref(), speed.as_deref())
    }

    fn from_values(start: Option<&str>, speed: Option<&str>) -> Result<Clock, String> {
        let speed = match speed {
            Some(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f > 0.0 => f,
                _ => return Err(format!("{CLOCK_SPEED}={s:?} is not a positive number (e.g. 1, 60)")),
            },
            None => 1.0,
        };
        let start = match start {
            Some(s) => s.trim().parse::<Timestamp>().map_err(|_| {
                format!("{CLOCK_START}={s:?} is not a time with an offset (e.g. 2026-12-03T00:59:50+01:00)")
            })?,
            None if speed == 1.0 => return Ok(Clock::system()),
            None => Timestamp::now(),
        };
        Ok(Clock::starting_at(start, speed))
    }

    pub fn now(&self) -> Timestamp {
        match self.origin {
            None => Timestamp::now(),
            Some((start, at)) => {
                let elapsed = SignedDuration::from_secs_f64(at.elapsed().as_secs_f64() * self.speed);
                start.checked_add(elapsed).unwrap_or(start)
            }
        }
    }

    /// For the audit trail: what a set clock does, or None for the system clock.
    pub fn describe(&self) -> Option<String> {
        let (start, _) = self.origin?;
        Some(format!(
            "scheduling reads a set clock ({CLOCK_START}, {CLOCK_SPEED}; for tests and demos): it started at {start} and runs at {}× real time",
            self.speed
        ))
    }
}

/// The event that records a finished target's real duration.
pub const MEASURED: &str = "target_measured";

/// Finished targets of every run of the plan named `plan` (oldest first):
/// what they took and what was estimated when they started.
pub fn history(store: &dyn Store, plan: &str) -> Result<Vec<Sample>, StoreError> {
    let mut out = vec![];
    for r in store.runs()?.iter().filter(|r| r.plan_name == plan) {
        out.extend(samples(store, &r.id)?);
    }
    Ok(out)
}

/// The finished targets of one run.
pub fn samples(store: &dyn Store, run: &str) -> Result<Vec<Sample>, StoreError> {
    Ok(store.events_of_kinds(run, &[MEASURED])?.iter().filter_map(|e| sample_of(&e.data)).collect())
}

/// A sample from a `target_measured` event's data.
pub fn sample_of(data: &serde_json::Value) -> Option<Sample> {
    Some(Sample {
        size: data["size"].as_u64(),
        actual: data["actual_secs"].as_f64()?,
        estimated: data["estimate_secs"].as_f64()?,
    })
}

/// The estimate model of a plan given its history.
pub fn model(plan: &cutover_plan::Plan, history: &[Sample]) -> Model {
    Model::learn(&plan.schedule.prior, history, plan.schedule.learn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_starts_where_told_and_runs_at_its_speed() {
        let c = Clock::from_values(Some("2026-12-03T00:59:50+01:00"), Some("3600")).expect("clock");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = c.now();
        let start: Timestamp = "2026-12-02T23:59:50Z".parse().expect("ts");
        // 20 ms at 3600× is at least 72 s.
        assert!(now.duration_since(start) >= SignedDuration::from_secs(72), "{now}");
        assert!(now.duration_since(start) < SignedDuration::from_secs(3600), "{now}");
        assert!(c.describe().is_some_and(|d| d.contains("3600×")));
        assert!(Clock::from_values(None, None).expect("system").describe().is_none());
        assert!(Clock::from_values(Some("tomorrow"), None).is_err());
        assert!(Clock::from_values(None, Some("-1")).is_err());
    }
}
