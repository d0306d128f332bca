//! The scheduler's side of maintenance windows: whether a target that is
//! otherwise ready (its wave open, its `after` targets done, a concurrency
//! slot free) may start now — its notice has passed, it is inside one of its
//! windows and its estimate fits in what is left — or waits, and until when.
//!
//! A target that began already (paused, interrupted, retried) goes on
//! whatever the time: windows decide when work begins, not when it stops.
//! A waiting target takes no slot and holds nobody else up. It is told once
//! (`window_waiting`, and its status message) each time the reason changes.
//! A target starts with its estimate recorded (`target_estimated`); when it
//! succeeds, its real duration and the estimate's error are recorded
//! (`target_measured`) and later estimates learn from it. A "start now"
//! (`cutover start-now`, `--start-now`) lets targets ignore windows and notice.
//!
//! Nothing here runs for a plan without `[schedule]`, windows, notification
//! times or sizes.

use super::Shared;
use crate::EngineError;
use crate::model::*;
use crate::schedule::{self, Clock};
use cutover_plan::estimate::{self, Model, Sample};
use cutover_plan::schedule::TargetSchedule;
use cutover_plan::window::{self, Fit, Window, duration_text, local_text};
use cutover_plan::{Plan, Target};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

pub(super) struct Scheduler {
    clock: Clock,
    inner: Mutex<Inner>,
}

struct Hold {
    /// When to look again (schedule time); None: not by itself.
    until: Option<Timestamp>,
    /// The reason and the time waited for: a target is told again only when
    /// they change (not when the minutes left in its window tick down).
    key: String,
}

#[derive(Default)]
struct Inner {
    targets: HashMap<String, TargetSchedule>,
    /// Finished targets of earlier runs of the plan and of this run.
    samples: Vec<Sample>,
    /// This run's.
    run_samples: Vec<Sample>,
    model: Option<Model>,
    /// "Start now" for every target (who asked), and per target.
    all_now: Option<String>,
    now_for: HashMap<String, String>,
    holds: HashMap<String, Hold>,
    /// Targets that wait for a time that will come (the run goes on for them).
    held: HashSet<String>,
    /// Started in this process: when (schedule time) and the estimate.
    started: HashMap<String, (Timestamp, Duration)>,
}

/// What the scheduler decided for a ready target.
enum Decision {
    Start { window: Option<(String, Timestamp)> },
    Wait { until: Option<Timestamp>, reason: &'static str, message: String },
}

impl Scheduler {
    /// The scheduler of a run, or None when the plan schedules nothing.
    pub(super) fn new(engine: &crate::Engine, run_id: &str, plan: &Plan) -> Result<Option<Scheduler>, EngineError> {
        if !plan.schedule.active(&plan.targets) {
            return Ok(None);
        }
        let clock = Clock::from_env().map_err(EngineError::Other)?;
        let store = engine.store().as_ref();
        let mut inner = Inner::default();
        for t in &plan.targets {
            // The plan was validated when it was loaded.
            inner.targets.insert(t.name.clone(), cutover_plan::schedule::target_schedule(t).unwrap_or_default());
        }
        inner.samples = schedule::history(store, &plan.name)?;
        inner.run_samples = schedule::samples(store, run_id)?;
        inner.model = Some(schedule::model(plan, &inner.samples));
        // A "start now" given before this process (recorded as an event) holds.
        for e in store.events_of_kinds(run_id, &["start_now"])? {
            let actor = e.data["actor"].as_str().unwrap_or("someone").to_string();
            match e.data["target"].as_str() {
                Some(t) => inner.now_for.insert(t.to_string(), actor),
                None => inner.all_now.replace(actor),
            };
        }
        Ok(Some(Scheduler { clock, inner: Mutex::new(inner) }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the run's log which clock and which estimates scheduling uses.
    pub(super) fn announce(&self, shared: &Shared) -> Result<(), EngineError> {
        if let Some(c) = self.clock.describe() {
            shared
                .emit(NewEvent::run("schedule_clock", c).with_data(json!({ "now": self.clock.now().to_string() })))?;
        }
        let (text, data) = {
            let g = self.lock();
            let model = g.model.clone().unwrap_or(Model::Prior(shared.plan.schedule.prior));
            let error = estimate::mape(&g.samples);
            let text = match error {
                Some(e) => format!(
                    "estimates: {}; their error so far: {e:.0}% (mean absolute percentage error over {} finished target(s))",
                    model.describe(),
                    g.samples.len()
                ),
                None => format!("estimates: {} (no finished target to learn from yet)", model.describe()),
            };
            (text, json!({ "model": model.describe(), "samples": g.samples.len(), "mape": error }))
        };
        shared.emit(NewEvent::run("schedule_model", text).with_data(data))
    }

    /// A new pass over the pending targets starts.
    pub(super) fn begin_pass(&self) {
        self.lock().held.clear();
    }

    /// Whether some target waits for a time that will come.
    pub(super) fn holding(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// Whether `t`, ready otherwise, may start now; records why not (once
    /// per reason) or its estimate when it starts.
    pub(super) fn may_start(&self, shared: &Shared, t: &Target) -> Result<bool, EngineError> {
        let now = self.clock.now();
        let mut g = self.lock();
        if let Some(h) = g.holds.get(&t.name) {
            match h.until {
                Some(u) if now < u => {
                    g.held.insert(t.name.clone());
                    return Ok(false);
                }
                None => return Ok(false),
                Some(_) => {}
            }
        }
        let ts = g.targets.get(&t.name).cloned().unwrap_or_default();
        let model = g.model.clone().unwrap_or(Model::Prior(shared.plan.schedule.prior));
        let est = model.estimate(ts.size);
        let by = g.now_for.get(&t.name).or(g.all_now.as_ref()).cloned();
        // The window decides when a target begins: one that began already
        // (paused, interrupted, retried) goes on, so that a maintenance it
        // left half done is not held for a week.
        if by.is_none() && shared.store().target(&shared.run_id, &t.name)?.started_at.is_some() {
            g.holds.remove(&t.name);
            return Ok(true);
        }
        let decision = match &by {
            Some(_) => Decision::Start { window: None },
            None => decide(&shared.plan, &t.name, &ts, now, est),
        };
        match decision {
            Decision::Wait { until, reason, message } => {
                let key = format!("{reason} {until:?}");
                let changed = g.holds.get(&t.name).is_none_or(|h| h.key != key);
                if until.is_some() {
                    g.held.insert(t.name.clone());
                }
                g.holds.insert(t.name.clone(), Hold { until, key });
                drop(g);
                if changed {
                    let data = json!({
                        "reason": reason,
                        "until": until.map(|u| u.to_string()),
                        "estimate_secs": est.as_secs(),
                        "now": now.to_string(),
                        "windows": t.windows,
                    });
                    shared.engine.set_target_state(
                        &shared.run_id,
                        &t.name,
                        TargetState::Pending,
                        Some(&format!("waiting: {message}")),
                        NewEvent::target(&t.name, "window_waiting", message).with_data(data),
                    )?;
                }
                Ok(false)
            }
            Decision::Start { window } => {
                g.holds.remove(&t.name);
                g.started.insert(t.name.clone(), (now, est));
                drop(g);
                let est_text = cutover_plan::duration::format(est);
                let size = ts.size.map(|s| format!(", size {}", size_text(s))).unwrap_or_default();
                let how = match (&by, &window) {
                    (Some(who), _) => format!("; started now as {who} asked, whatever its windows and notice"),
                    (None, Some((w, end))) => format!("; inside {w} until {}", local_text(*end, &zone_of(&ts, w))),
                    (None, None) => String::new(),
                };
                shared.emit(
                    NewEvent::target(
                        &t.name,
                        "target_estimated",
                        format!("estimated {est_text}{size} ({}){how}", model.describe()),
                    )
                    .with_data(json!({
                        "estimate_secs": est.as_secs(),
                        "size": ts.size,
                        "model": model.describe(),
                        "now": now.to_string(),
                        "window": window.as_ref().map(|w| w.0.clone()),
                        "window_end": window.as_ref().map(|w| w.1.to_string()),
                        "start_now": by,
                    })),
                )?;
                Ok(true)
            }
        }
    }

    /// A target ended: a success records its real duration and teaches the model.
    pub(super) fn finished(&self, shared: &Shared, name: &str, state: TargetState) -> Result<(), EngineError> {
        let now = self.clock.now();
        let mut g = self.lock();
        let Some((start, est)) = g.started.remove(name) else { return Ok(()) };
        if state != TargetState::Succeeded {
            return Ok(());
        }
        let size = g.targets.get(name).and_then(|t| t.size);
        let actual = now.duration_since(start).as_secs_f64().max(0.0);
        let sample = Sample { size, actual, estimated: est.as_secs_f64() };
        g.samples.push(sample);
        g.run_samples.push(sample);
        let model = schedule::model(&shared.plan, &g.samples);
        g.model = Some(model.clone());
        // Waiting targets are looked at again with the new estimates (their
        // keys are kept, so an unchanged reason is not told twice).
        for h in g.holds.values_mut() {
            h.until = Some(now);
        }
        let error = estimate::error_percent(actual, sample.estimated);
        let mape = estimate::mape(&g.run_samples).unwrap_or(0.0);
        let n = g.run_samples.len();
        drop(g);
        let took = duration_text(SignedDuration::from_secs_f64(actual.round()));
        let msg = format!(
            "took {took}, estimated {} ({error:+.0}%); estimates' error in this run so far: {mape:.0}% (mean absolute percentage error over {n} target(s)); estimates now: {}",
            cutover_plan::duration::format(est),
            model.describe()
        );
        shared.emit(NewEvent::target(name, schedule::MEASURED, msg).with_data(json!({
            "actual_secs": actual,
            "estimate_secs": sample.estimated,
            "size": size,
            "error_percent": error,
            "mape": mape,
            "mape_targets": n,
            "model": model.describe(),
        })))
    }

    /// Lets `target` (or every target) start whatever its windows and notice.
    pub(super) fn start_now(&self, target: Option<&str>, actor: &str) {
        let mut g = self.lock();
        match target {
            Some(t) => {
                g.now_for.insert(t.to_string(), actor.to_string());
                g.holds.remove(t);
            }
            None => {
                g.all_now = Some(actor.to_string());
                g.holds.clear();
            }
        }
    }
}

/// Bytes as people read them: "12 GB", "512 MB".
fn size_text(bytes: u64) -> String {
    let b = bytes as f64;
    let (v, u) = if b >= 1e12 {
        (b / 1e12, "TB")
    } else if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else {
        return format!("{bytes} B");
    };
    let s = format!("{v:.1}");
    format!("{} {u}", s.strip_suffix(".0").unwrap_or(&s))
}

fn zone_of(ts: &TargetSchedule, text: &str) -> jiff::tz::TimeZone {
    ts.windows.iter().find(|w| w.text == text).map(|w| w.time_zone().clone()).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// The notice, then the windows: may a target of this schedule start at `now`?
fn decide(plan: &Plan, name: &str, ts: &TargetSchedule, now: Timestamp, est: Duration) -> Decision {
    if let Some(notice) = plan.schedule.notice {
        let n = cutover_plan::schedule::notice_text(notice);
        match ts.notified_at {
            None => {
                return Decision::Wait {
                    until: None,
                    reason: "not_notified",
                    message: format!(
                        "not notified: the plan asks for {n} of notice and `{name}` has no notified_at; set it in the inventory, or start it with `cutover start-now RUN {name}`"
                    ),
                };
            }
            Some(at) => {
                let until =
                    at.checked_add(SignedDuration::try_from(notice).unwrap_or(SignedDuration::MAX)).unwrap_or(at);
                if now < until {
                    return Decision::Wait {
                        until: Some(until),
                        reason: "notice",
                        message: format!(
                            "notice period: notified {}, {n} of notice run until {}",
                            local_text(at, &jiff::tz::TimeZone::UTC),
                            local_text(until, &jiff::tz::TimeZone::UTC)
                        ),
                    };
                }
            }
        }
    }
    if ts.windows.is_empty() {
        return Decision::Start { window: None };
    }
    let est_s = SignedDuration::try_from(est).unwrap_or(SignedDuration::MAX);
    let e = duration_text(est_s);
    match window::fit(&ts.windows, now, est_s) {
        Fit::Now { window, end } => Decision::Start { window: Some((ts.windows[window].text.clone(), end)) },
        Fit::Later { window, start, skipped, .. } => {
            let w = &ts.windows[window];
            let next = next_text(&ts.windows, w, start);
            let message = match skipped {
                Some(s) if s.current => format!(
                    "estimate {e} does not fit in the {} left of {}; next window {next}",
                    left_text(s.left),
                    ts.windows[s.window]
                ),
                Some(s) => format!(
                    "outside its windows; the next one ({} from {}) is too short for the estimate {e}; next window {next}",
                    ts.windows[s.window],
                    ts.windows[s.window].local(s.occurrence.start)
                ),
                None => format!("outside its windows ({}); next window {next}", list(&ts.windows)),
            };
            let reason = if skipped.is_some() { "estimate_does_not_fit" } else { "outside_window" };
            Decision::Wait { until: Some(start), reason, message }
        }
        Fit::Never { longest } => Decision::Wait {
            until: None,
            reason: "never_fits",
            message: format!(
                "estimate {e} is longer than any of its windows ({}; the longest lasts {}): it will not start by itself; start it with `cutover start-now RUN {name}`",
                list(&ts.windows),
                duration_text(longest)
            ),
        },
    }
}

/// What is left of a window, to the nearest minute (windows are written in
/// minutes), or in seconds under a minute.
fn left_text(d: SignedDuration) -> String {
    let secs = d.as_secs_f64().max(0.0);
    if secs < 60.0 {
        return duration_text(d);
    }
    duration_text(SignedDuration::from_mins(((secs / 60.0).round()) as i64))
}

/// "Thu 2026-12-10 01:00 CET", naming the window when the target has several.
fn next_text(all: &[Window], w: &Window, start: Timestamp) -> String {
    if all.len() > 1 { format!("{} ({w})", w.local(start)) } else { w.local(start) }
}

fn list(windows: &[Window]) -> String {
    windows.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(schedule: &str, target: &str) -> Plan {
        let text =
            format!("name = \"p\"\n{schedule}\n[[targets]]\nname = \"a\"\n{target}\n[[phases]]\nname = \"one\"\n");
        cutover_plan::load_str("p.toml", &text, std::path::Path::new("."), None).expect("valid")
    }

    fn run(p: &Plan, now: &str, est_mins: u64) -> (Option<String>, String) {
        let ts = cutover_plan::schedule::target_schedule(&p.targets[0]).expect("schedule");
        match decide(p, "a", &ts, now.parse().expect("now"), Duration::from_secs(est_mins * 60)) {
            Decision::Start { window } => {
                (None, format!("start {}", window.map(|w| w.1.to_string()).unwrap_or_default()))
            }
            Decision::Wait { until, message, .. } => (until.map(|u| u.to_string()), message),
        }
    }

    #[test]
    fn decisions_say_until_when_and_why() {
        let zurich = plan("", "window = \"Thu 01:00-05:00 Europe/Zurich\"");
        assert_eq!(run(&zurich, "2026-12-03T01:00:00+01:00", 42), (None, "start 2026-12-03T04:00:00Z".into()));
        assert_eq!(
            run(&zurich, "2026-12-03T04:30:00+01:00", 42),
            (
                Some("2026-12-10T00:00:00Z".into()),
                "estimate 42m does not fit in the 30m left of Thu 01:00-05:00 Europe/Zurich; next window Thu 2026-12-10 01:00 CET"
                    .into()
            )
        );
        assert_eq!(
            run(&zurich, "2026-12-03T00:59:50+01:00", 42),
            (
                Some("2026-12-03T00:00:00Z".into()),
                "outside its windows (Thu 01:00-05:00 Europe/Zurich); next window Thu 2026-12-03 01:00 CET".into()
            )
        );
        assert_eq!(run(&zurich, "2026-12-03T01:00:00+01:00", 300).0, None);
        let notice = plan(
            "[schedule]\nnotice = \"7d\"",
            "notified_at = \"2026-11-30T09:00:00Z\"\nwindow = \"Thu 01:00-05:00 Europe/Zurich\"",
        );
        assert_eq!(
            run(&notice, "2026-12-03T01:00:00+01:00", 42),
            (
                Some("2026-12-07T09:00:00Z".into()),
                "notice period: notified Mon 2026-11-30 09:00 UTC, 7d of notice run until Mon 2026-12-07 09:00 UTC"
                    .into()
            )
        );
        assert_eq!(run(&notice, "2026-12-10T01:00:00+01:00", 42).0, None);
        let unnotified = plan("[schedule]\nnotice = \"2d\"", "");
        assert!(
            run(&unnotified, "2026-12-03T01:00:00Z", 1).1.starts_with("not notified: the plan asks for 2d of notice")
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(12_000_000_000), "12 GB");
        assert_eq!(size_text(1_500_000_000_000), "1.5 TB");
        assert_eq!(size_text(999), "999 B");
        assert_eq!(left_text(SignedDuration::from_secs(1799)), "30m");
        assert_eq!(left_text(SignedDuration::from_secs(1769)), "29m");
        assert_eq!(left_text(SignedDuration::from_secs(42)), "42s");
    }
}
