//! A check's status over time: `for` (a new status must hold before it shows,
//! "pending" meanwhile), `keep_for` (a bad status stays a while after it
//! clears), and staleness. Pure: time is passed in, so tests control it.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Alarm,
    /// The probe itself failed.
    Error,
    /// No result yet.
    NoData,
    /// The latest result is older than allowed.
    Stale,
    /// A new status is waiting out its `for`.
    Pending,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Alarm => "alarm",
            Status::Error => "error",
            Status::NoData => "no_data",
            Status::Stale => "stale",
            Status::Pending => "pending",
        }
    }

    /// Warn, alarm and error: the statuses `keep_for` keeps.
    pub fn is_bad(self) -> bool {
        matches!(self, Status::Warn | Status::Alarm | Status::Error)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The timing rules of one check.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    pub hold_for: Option<Duration>,
    pub keep_for: Option<Duration>,
    pub stale_after: Option<Duration>,
}

/// The status of one check (for one target), fed with raw statuses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tracker {
    /// The status in force.
    pub effective: Status,
    /// Since when (ms since the epoch).
    pub since: i64,
    /// A different raw status waiting out `for`, and since when.
    pub candidate: Option<(Status, i64)>,
    /// When the last reading arrived.
    pub last_reading: Option<i64>,
    /// When a warn, alarm or error was last seen.
    pub last_bad: Option<i64>,
}

impl Tracker {
    pub fn new(now: i64) -> Tracker {
        Tracker { effective: Status::NoData, since: now, candidate: None, last_reading: None, last_bad: None }
    }

    /// Takes a reading's raw status; returns the change of the shown status, if any.
    pub fn observe(&mut self, now: i64, raw: Status, t: Timing) -> Option<(Status, Status)> {
        let before = self.shown(now, t);
        self.last_reading = Some(now);
        if raw.is_bad() {
            self.last_bad = Some(now);
        }
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as i64).unwrap_or(0);
        // keep_for: a bad status does not clear until it has been clear that long.
        let kept = self.effective.is_bad() && !raw.is_bad() && self.last_bad.is_some_and(|b| now - b < ms(t.keep_for));
        if raw == self.effective || kept {
            self.candidate = None;
        } else {
            let since = match self.candidate {
                Some((c, s)) if c == raw => s,
                _ => now,
            };
            if now - since >= ms(t.hold_for) {
                self.effective = raw;
                self.since = now;
                self.candidate = None;
            } else {
                self.candidate = Some((raw, since));
            }
        }
        let after = self.shown(now, t);
        (before != after).then_some((before, after))
    }

    /// The status to show at `now`: stale beats everything, then pending.
    pub fn shown(&self, now: i64, t: Timing) -> Status {
        if let (Some(last), Some(stale)) = (self.last_reading, t.stale_after)
            && now - last > stale.as_millis() as i64
        {
            return Status::Stale;
        }
        if self.candidate.is_some() {
            return Status::Pending;
        }
        self.effective
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    const S: i64 = 1000;

    fn timing(hold: u64, keep: u64) -> Timing {
        Timing {
            hold_for: (hold > 0).then(|| Duration::from_secs(hold)),
            keep_for: (keep > 0).then(|| Duration::from_secs(keep)),
            stale_after: Some(Duration::from_secs(30)),
        }
    }

    /// Feeds (second, raw) readings; returns the shown status after each.
    fn run(t: Timing, readings: &[(i64, Status)]) -> Vec<Status> {
        let mut tr = Tracker::new(0);
        readings
            .iter()
            .map(|(sec, raw)| {
                tr.observe(sec * S, *raw, t);
                tr.shown(sec * S, t)
            })
            .collect()
    }

    #[test]
    fn without_timing_the_status_follows_the_readings() {
        assert_eq!(run(timing(0, 0), &[(0, Ok), (1, Alarm), (2, Ok)]), [Ok, Alarm, Ok]);
    }

    #[test]
    fn for_keeps_a_new_status_pending_until_it_held_long_enough() {
        let got = run(timing(10, 0), &[(0, Alarm), (5, Alarm), (10, Alarm), (11, Ok), (15, Alarm), (25, Alarm)]);
        // Pending for 10 s, then alarm; a short ok is pending and never shows.
        assert_eq!(got, [Pending, Pending, Alarm, Pending, Alarm, Alarm]);
    }

    #[test]
    fn a_candidate_that_changes_restarts_its_wait() {
        let got = run(timing(10, 0), &[(0, Ok), (10, Ok), (12, Warn), (18, Alarm), (25, Alarm), (28, Alarm)]);
        assert_eq!(got, [Pending, Ok, Pending, Pending, Pending, Alarm]);
    }

    #[test]
    fn keep_for_holds_a_bad_status_after_it_clears() {
        // Measured from the last bad reading (0 s), like Prometheus's keep_firing_for.
        let got = run(timing(0, 20), &[(0, Alarm), (5, Ok), (19, Ok), (20, Ok), (26, Error), (27, Ok)]);
        assert_eq!(got, [Alarm, Alarm, Alarm, Ok, Error, Error]);
    }

    #[test]
    fn an_old_reading_is_stale_and_a_failing_probe_is_never_ok() {
        let t = timing(10, 0);
        let mut tr = Tracker::new(0);
        tr.observe(0, Ok, Timing { hold_for: None, ..t });
        assert_eq!(tr.shown(0, t), Ok);
        assert_eq!(tr.shown(31 * S, t), Stale);
        // An error waiting out `for` shows as pending, not ok.
        tr.observe(32 * S, Error, t);
        assert_eq!(tr.shown(32 * S, t), Pending);
    }

    #[test]
    fn transitions_are_reported_once() {
        let t = timing(0, 0);
        let mut tr = Tracker::new(0);
        assert_eq!(tr.observe(0, Ok, t), Some((NoData, Ok)));
        assert_eq!(tr.observe(S, Ok, t), None);
        assert_eq!(tr.observe(2 * S, Alarm, t), Some((Ok, Alarm)));
    }
}
