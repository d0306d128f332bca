//! `cutover report RUN`: a run's close-out, in Markdown or JSON — the
//! success rate, failures grouped by cause with examples, duration
//! statistics per phase and per step (count, mean, std, min, p50, p75, p95,
//! max: the table of seed 002), downtime per target, the verification
//! results, a summary of the preflight findings, and a histogram drawn as
//! an SVG picture.
//!
//! Everything comes from what the store recorded (targets, steps, a few
//! kinds of events) and the plan recorded with the run; nothing touches a
//! target. [`build`] is pure, so the numbers can be tested without a run.

use crate::cli::{Output, ReportFormat};
use crate::output::usage;
use crate::run::open_engine;
use cutover_engine::model::{Event, RunRecord, StepRecord, StepState, TargetRecord, TargetState};
use cutover_plan::{Plan, Step, StepKind};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The events the report reads (all others are left in the store).
const EVENT_KINDS: &[&str] = &[
    "target_started",
    "step_started",
    "step_failed",
    "step_aborted",
    "step_interrupted",
    "gate_failed",
    "gate_rollback",
    "gate_inconclusive",
    "gate_error",
    "target_aborted",
    "preflight_report",
    "verify_report",
    "copy_report",
];

/// Examples shown per cause of failure.
const EXAMPLES: usize = 3;

pub fn report(
    state: &str,
    run: &str,
    format: ReportFormat,
    svg: Option<PathBuf>,
    out_file: Option<PathBuf>,
    out: Output,
) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    let store = engine.store();
    let rec = store.run(run).map_err(usage)?;
    let plan = match engine.load_plan(&rec) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!(
                "warning: the plan recorded with run {run} does not load ({e}); phases and step kinds are taken from the events, and no phase counts as downtime"
            );
            None
        }
    };
    let targets = store.targets(run)?;
    let steps = store.all_steps(run)?;
    let events = store.events_of_kinds(run, EVENT_KINDS)?;
    let mut report = build(&rec, plan.as_ref(), &targets, &steps, &events);

    let svg = svg.or_else(|| out_file.as_deref().map(svg_beside));
    if let Some(path) = &svg {
        write(path, &render_svg(&report))?;
        report.histogram.svg = Some(link(path, out_file.as_deref()));
    }
    let json = out == Output::Json || format == ReportFormat::Json;
    let text = if json { format!("{}\n", serde_json::to_string_pretty(&report)?) } else { markdown(&report) };
    match &out_file {
        Some(f) => {
            write(f, &text)?;
            match &svg {
                Some(s) => eprintln!("wrote {} and {}", f.display(), s.display()),
                None => eprintln!("wrote {}", f.display()),
            }
        }
        None => {
            print!("{text}");
            if let Some(s) = &svg {
                eprintln!("wrote {}", s.display());
            }
        }
    }
    Ok(0)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| usage(format!("cannot write {}: {e}", path.display())))
}

/// The picture's default place: beside the report, with the extension `.svg`.
fn svg_beside(out: &Path) -> PathBuf {
    let p = out.with_extension("svg");
    if p == out { out.with_extension("histogram.svg") } else { p }
}

/// How the report refers to the picture: by file name when both are in the
/// same directory (so the Markdown's link works wherever both are moved),
/// else as given.
fn link(svg: &Path, out: Option<&Path>) -> String {
    match (out.map(|o| o.parent()), svg.parent(), svg.file_name()) {
        (Some(a), b, Some(name)) if a.unwrap_or(Path::new("")) == b.unwrap_or(Path::new("")) => {
            name.to_string_lossy().into_owned()
        }
        _ => svg.display().to_string(),
    }
}

// ---------------------------------------------------------------------------
// The report's data (also its JSON form).

#[derive(Debug, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub summary: Summary,
    pub failures: Vec<FailureGroup>,
    pub durations: Durations,
    pub downtime: Downtime,
    pub verification: Vec<Verification>,
    pub preflight: Vec<PreflightCount>,
    pub copies: Vec<CopyReport>,
    pub histogram: Histogram,
}

#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub plan: String,
    pub state: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub targets: usize,
    pub succeeded: usize,
    /// Failed or rolled back.
    pub failed: usize,
    /// Everything else: pending, running, needs attention, skipped.
    pub other: usize,
    /// Succeeded over all targets, in percent; none for a run without targets.
    pub success_rate_percent: Option<f64>,
    /// Targets per state (every state, zeros included).
    pub states: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct FailureGroup {
    pub cause: String,
    pub count: usize,
    pub targets: Vec<String>,
    /// The first few, in target order.
    pub examples: Vec<Example>,
}

#[derive(Debug, Serialize)]
pub struct Example {
    pub target: String,
    pub state: String,
    pub step: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Durations {
    /// Succeeded targets, from their first start to their end (pauses included).
    pub targets: Option<Stats>,
    pub phases: Vec<PhaseStats>,
    pub steps: Vec<StepStats>,
}

#[derive(Debug, Serialize)]
pub struct PhaseStats {
    pub phase: String,
    pub downtime: bool,
    pub stats: Stats,
}

#[derive(Debug, Serialize)]
pub struct StepStats {
    pub phase: String,
    pub step: String,
    pub kind: String,
    pub role: Role,
    pub stats: Stats,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Main,
    Finally,
    Rollback,
}

/// Summary statistics of durations in seconds, as pandas' `describe` prints
/// them (seed 002's table of backup times).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    /// The sample standard deviation (n − 1); none for a single value.
    pub std: Option<f64>,
    pub min: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Downtime {
    /// The phases marked `downtime = true`, in plan order.
    pub phases: Vec<String>,
    /// Every target that began a downtime phase.
    pub targets: Vec<TargetDowntime>,
    /// Over complete windows only.
    pub stats: Option<Stats>,
}

#[derive(Debug, Serialize)]
pub struct TargetDowntime {
    pub target: String,
    pub state: String,
    pub from: String,
    /// The end of the last recorded step of the downtime phases; none while one runs.
    pub to: Option<String>,
    pub seconds: Option<f64>,
    /// Every step of every downtime phase succeeded (or was skipped by its `when`).
    pub complete: bool,
}

#[derive(Debug, Serialize)]
pub struct Verification {
    pub target: String,
    pub step: String,
    pub tables: u64,
    pub rows: i64,
    pub sequences: u64,
    /// As `pg.verify` recorded them: `{kind, object, source, target}`.
    pub differences: Vec<Value>,
}

/// The latest `copy_report` of a `pg.copy` step: its one-line summary, and
/// its data as the step recorded it (the report does not depend on its shape).
#[derive(Debug, Serialize)]
pub struct CopyReport {
    pub target: String,
    pub step: String,
    pub summary: String,
    pub data: Value,
}

#[derive(Debug, Serialize)]
pub struct PreflightCount {
    pub rule: String,
    pub severity: String,
    /// Targets whose latest report has this finding.
    pub targets: usize,
    /// Objects concerned, over those targets.
    pub objects: usize,
    pub remediation: String,
}

#[derive(Debug, Serialize)]
pub struct Histogram {
    /// `downtime` (complete windows) when the plan has downtime phases and
    /// a window completed, else `target duration` (succeeded targets).
    pub of: String,
    pub buckets: Vec<Bucket>,
    /// Where the SVG picture was written (relative to the report file when
    /// both are in one directory); none when none was asked for.
    pub svg: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    pub from: f64,
    pub to: f64,
    pub count: usize,
}

// ---------------------------------------------------------------------------
// Statistics: small pure functions.

/// The `p`-quantile (0 ≤ p ≤ 1) of values sorted ascending, by linear
/// interpolation between the two closest ranks: rank h = (n − 1)·p, then
/// x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋]) — the method numpy and pandas use
/// by default (Hyndman & Fan's type 7). None for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * p.clamp(0.0, 1.0);
    let lo = (h.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

impl Stats {
    /// None for no values; values that are not finite are left out.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Stats {
            count: n,
            mean,
            std,
            min: *v.first()?,
            p50: percentile(&v, 0.50)?,
            p75: percentile(&v, 0.75)?,
            p95: percentile(&v, 0.95)?,
            max: *v.last()?,
        })
    }
}

/// Equal-width buckets from the smallest to the largest value; their number
/// follows Sturges' rule (⌈log2 n⌉ + 1, at most 20). All values equal: one
/// bucket. The largest value falls in the last bucket.
pub fn histogram(values: &[f64]) -> Vec<Bucket> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let (Some(min), Some(max)) = (v.iter().copied().reduce(f64::min), v.iter().copied().reduce(f64::max)) else {
        return vec![];
    };
    if max <= min {
        return vec![Bucket { from: min, to: max, count: v.len() }];
    }
    let k = ((v.len() as f64).log2().ceil() as usize + 1).clamp(1, 20);
    let width = (max - min) / k as f64;
    let mut buckets: Vec<Bucket> = (0..k)
        .map(|i| Bucket {
            from: min + width * i as f64,
            to: if i + 1 == k { max } else { min + width * (i + 1) as f64 },
            count: 0,
        })
        .collect();
    for x in v {
        let i = (((x - min) / width) as usize).min(k - 1);
        buckets[i].count += 1;
    }
    buckets
}

/// Microseconds since the Unix epoch of a time as the store writes it
/// (`2026-11-21T10:15:00.123456Z`, the fraction optional).
pub fn parse_ts(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let (y, m, day): (i64, i64, i64) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let mut t = time.splitn(3, ':');
    let (h, mi): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let secs = t.next()?;
    let (sec, frac) = secs.split_once('.').unwrap_or((secs, ""));
    let sec: i64 = sec.parse().ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        digits.parse().ok()?
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000) + micros)
}

fn seconds(from: Option<&str>, to: Option<&str>) -> Option<f64> {
    let (a, b) = (parse_ts(from?)?, parse_ts(to?)?);
    Some((b - a) as f64 / 1e6)
}

fn step_seconds(r: &StepRecord) -> Option<f64> {
    seconds(r.started_at.as_deref(), r.finished_at.as_deref())
}

// ---------------------------------------------------------------------------
// Where each step belongs: from the plan, or from the events when the
// recorded plan no longer loads.

struct StepInfo {
    phase: usize,
    kind: String,
    role: Role,
}

struct PhaseInfo {
    name: String,
    downtime: bool,
    /// The phase's top-level main steps (a block's record spans its inner steps).
    top: Vec<String>,
}

#[derive(Default)]
struct Layout {
    phases: Vec<PhaseInfo>,
    /// Every step, in plan order.
    order: Vec<String>,
    steps: HashMap<String, StepInfo>,
}

impl Layout {
    fn of_plan(plan: &Plan) -> Layout {
        let mut l = Layout::default();
        for (i, p) in plan.phases.iter().enumerate() {
            l.phases.push(PhaseInfo {
                name: p.name.clone(),
                downtime: p.downtime,
                top: p.steps.iter().map(|s| s.name.clone()).collect(),
            });
            l.walk(&p.steps, i, Role::Main);
            l.walk(&p.rollback, i, Role::Rollback);
        }
        l
    }

    fn walk(&mut self, steps: &[Step], phase: usize, role: Role) {
        for s in steps {
            self.order.push(s.name.clone());
            self.steps.insert(s.name.clone(), StepInfo { phase, kind: s.kind.name().to_string(), role });
            if let StepKind::Block(b) = &s.kind {
                self.walk(&b.steps, phase, role);
                self.walk(&b.finally, phase, if role == Role::Rollback { role } else { Role::Finally });
            }
        }
    }

    /// Without the plan: `step_started` events carry each step's phase and kind.
    fn of_events(events: &[Event]) -> Layout {
        let mut l = Layout::default();
        for e in events.iter().filter(|e| e.kind == "step_started") {
            let (Some(step), Some(phase), Some(kind)) = (&e.step, e.data["phase"].as_str(), e.data["kind"].as_str())
            else {
                continue;
            };
            if l.steps.contains_key(step) {
                continue;
            }
            let i = match l.phases.iter().position(|p| p.name == phase) {
                Some(i) => i,
                None => {
                    l.phases.push(PhaseInfo { name: phase.to_string(), downtime: false, top: vec![] });
                    l.phases.len() - 1
                }
            };
            l.phases[i].top.push(step.clone());
            l.order.push(step.clone());
            l.steps.insert(step.clone(), StepInfo { phase: i, kind: kind.to_string(), role: Role::Main });
        }
        l
    }
}

// ---------------------------------------------------------------------------
// Building the report.

/// The report of a run from its records. `events` needs the kinds in
/// `EVENT_KINDS` (others are ignored).
pub fn build(
    rec: &RunRecord,
    plan: Option<&Plan>,
    targets: &[TargetRecord],
    steps: &[StepRecord],
    events: &[Event],
) -> Report {
    let layout = plan.map(Layout::of_plan).unwrap_or_else(|| Layout::of_events(events));
    let mut by_target: HashMap<&str, HashMap<&str, &StepRecord>> = HashMap::new();
    for s in steps {
        by_target.entry(s.target.as_str()).or_default().insert(s.step.as_str(), s);
    }
    let durations = durations(&layout, targets, steps, &by_target);
    let downtime = downtime(&layout, targets, &by_target);
    let histogram = match downtime.targets.iter().filter(|t| t.complete).filter_map(|t| t.seconds).collect::<Vec<_>>() {
        v if !v.is_empty() => Histogram { of: "downtime".into(), buckets: histogram(&v), svg: None },
        _ => Histogram { of: "target duration".into(), buckets: histogram(&target_seconds(targets)), svg: None },
    };
    Report {
        run: RunInfo {
            id: rec.id.clone(),
            plan: rec.plan_name.clone(),
            state: rec.state.to_string(),
            created_at: rec.created_at.clone(),
            updated_at: rec.updated_at.clone(),
        },
        summary: summary(targets),
        failures: failures(&layout, targets, events),
        durations,
        downtime,
        verification: verification(targets, events),
        preflight: preflight(events),
        copies: latest(targets, events, "copy_report")
            .into_iter()
            .map(|e| CopyReport {
                target: e.target.clone().unwrap_or_default(),
                step: e.step.clone().unwrap_or_default(),
                summary: e.message.clone(),
                data: e.data.clone(),
            })
            .collect(),
        histogram,
    }
}

fn summary(targets: &[TargetRecord]) -> Summary {
    let count = |f: &dyn Fn(TargetState) -> bool| targets.iter().filter(|t| f(t.state)).count();
    let succeeded = count(&|s| s == TargetState::Succeeded);
    let failed = count(&|s| matches!(s, TargetState::Failed | TargetState::RolledBack));
    let states = TargetState::ALL.iter().map(|s| (s.to_string(), count(&|x| x == *s))).collect();
    Summary {
        targets: targets.len(),
        succeeded,
        failed,
        other: targets.len() - succeeded - failed,
        success_rate_percent: (!targets.is_empty()).then(|| succeeded as f64 * 100.0 / targets.len() as f64),
        states,
    }
}

fn target_seconds(targets: &[TargetRecord]) -> Vec<f64> {
    targets
        .iter()
        .filter(|t| t.state == TargetState::Succeeded)
        .filter_map(|t| seconds(t.started_at.as_deref(), t.finished_at.as_deref()))
        .collect()
}

/// The cause of a failure, from the kind of the step that failed first and
/// its message. A timeout is a timeout whatever the step's kind.
pub fn classify(kind: &str, message: &str) -> String {
    let m = message.to_lowercase();
    if m.starts_with("aborted by the operator") {
        return "aborted".into();
    }
    // A conversion's own failures name their cause (its lock_timeout is not the step's timeout).
    if kind == "pg.bigint" && !m.contains("timed out after") {
        return if m.contains("could not take") {
            "cut-over lock not obtained".into()
        } else if m.contains("verify:") || m.contains("cannot roll back") {
            "verify mismatch".into()
        } else {
            "conversion error".into()
        };
    }
    // A migration's lock_timeout or statement_timeout is the migration failing, not the step timing out.
    if kind == "pg.migrate" && !m.contains("timed out after") {
        return if m.contains("another migration holds the lock") {
            "migration lock held".into()
        } else if m.contains("lint found") {
            "lint refused".into()
        } else {
            "migration failed".into()
        };
    }
    if m.contains("timed out") || m.contains("timeout") {
        return "timeout".into();
    }
    match kind {
        "pg.preflight" => "preflight blocker".into(),
        "pg.copy" => "copy error".into(),
        "pg.verify" => "verify mismatch".into(),
        k => format!("step failed: {k}"),
    }
}

/// Targets that failed, rolled back or need attention, grouped by the cause
/// of the first failure since the target last started.
fn failures(layout: &Layout, targets: &[TargetRecord], events: &[Event]) -> Vec<FailureGroup> {
    let kinds_seen: HashMap<&str, &str> = events
        .iter()
        .filter(|e| e.kind == "step_started")
        .filter_map(|e| Some((e.step.as_deref()?, e.data["kind"].as_str()?)))
        .collect();
    let kind_of = |step: &str| -> String {
        layout
            .steps
            .get(step)
            .map(|s| s.kind.clone())
            .or_else(|| kinds_seen.get(step).map(|k| k.to_string()))
            .unwrap_or_else(|| "unknown".into())
    };
    let mut groups: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    for t in targets {
        if !matches!(t.state, TargetState::Failed | TargetState::RolledBack | TargetState::NeedsAttention) {
            continue;
        }
        let mine: Vec<&Event> = events.iter().filter(|e| e.target.as_deref() == Some(t.name.as_str())).collect();
        let since = mine.iter().rposition(|e| e.kind == "target_started").map_or(0, |i| i + 1);
        let recent = &mine[since..];
        let first = recent.iter().find(|e| {
            matches!(
                e.kind.as_str(),
                "step_failed"
                    | "step_aborted"
                    | "step_interrupted"
                    | "gate_failed"
                    | "gate_rollback"
                    | "gate_inconclusive"
                    | "target_aborted"
            )
        });
        // A gate_error is often passing (one bad evaluation); it is the cause
        // only when nothing else went wrong.
        let first = first.or_else(|| recent.iter().find(|e| e.kind == "gate_error"));
        let (cause, step, message) = match first {
            Some(e) if e.kind == "step_failed" => {
                let step = e.step.clone().unwrap_or_default();
                let msg = e.data["error"].as_str().map(str::to_string).unwrap_or_else(|| e.message.clone());
                (classify(&kind_of(&step), &msg), Some(step), msg)
            }
            Some(e) => {
                let cause = match e.kind.as_str() {
                    "step_aborted" | "target_aborted" => "aborted",
                    "step_interrupted" => "interrupted",
                    _ => "gate",
                };
                (cause.to_string(), e.step.clone(), e.message.clone())
            }
            None => (format!("other: {}", t.state), t.step.clone(), t.message.clone().unwrap_or_default()),
        };
        groups.entry(cause).or_default().push(Example {
            target: t.name.clone(),
            state: t.state.to_string(),
            step,
            message,
        });
    }
    let mut out: Vec<FailureGroup> = groups
        .into_iter()
        .map(|(cause, all)| FailureGroup {
            cause,
            count: all.len(),
            targets: all.iter().map(|e| e.target.clone()).collect(),
            examples: all.into_iter().take(EXAMPLES).collect(),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.cause.cmp(&b.cause)));
    out
}

/// A phase's span for one target: from its first step's start to its last
/// step's end, when every top-level step succeeded or was skipped.
fn phase_span(p: &PhaseInfo, recs: Option<&HashMap<&str, &StepRecord>>) -> Option<f64> {
    let recs = recs?;
    let mut ran: Vec<&StepRecord> = vec![];
    for name in &p.top {
        let r = recs.get(name.as_str())?;
        match r.state {
            StepState::Succeeded => ran.push(r),
            StepState::Skipped => {}
            _ => return None,
        }
    }
    let from = ran.iter().filter_map(|r| r.started_at.as_deref().and_then(parse_ts)).min()?;
    let to = ran.iter().filter_map(|r| r.finished_at.as_deref().and_then(parse_ts)).max()?;
    Some((to - from) as f64 / 1e6)
}

fn durations(
    layout: &Layout,
    targets: &[TargetRecord],
    steps: &[StepRecord],
    by_target: &HashMap<&str, HashMap<&str, &StepRecord>>,
) -> Durations {
    let phases = layout
        .phases
        .iter()
        .filter_map(|p| {
            let v: Vec<f64> = targets.iter().filter_map(|t| phase_span(p, by_target.get(t.name.as_str()))).collect();
            Some(PhaseStats { phase: p.name.clone(), downtime: p.downtime, stats: Stats::of(&v)? })
        })
        .collect();
    let mut per_step: HashMap<&str, Vec<f64>> = HashMap::new();
    for s in steps.iter().filter(|s| s.state == StepState::Succeeded) {
        if let Some(d) = step_seconds(s) {
            per_step.entry(s.step.as_str()).or_default().push(d);
        }
    }
    // Plan order; a recorded step the plan does not know comes last.
    let mut names: Vec<&str> = layout.order.iter().map(String::as_str).collect();
    let mut unknown: Vec<&str> = per_step.keys().copied().filter(|s| !layout.steps.contains_key(*s)).collect();
    unknown.sort_unstable();
    names.extend(unknown);
    let steps = names
        .into_iter()
        .filter_map(|name| {
            let stats = Stats::of(per_step.get(name)?)?;
            let info = layout.steps.get(name);
            Some(StepStats {
                phase: info.and_then(|i| layout.phases.get(i.phase)).map(|p| p.name.clone()).unwrap_or_default(),
                step: name.to_string(),
                kind: info.map(|i| i.kind.clone()).unwrap_or_else(|| "unknown".into()),
                role: info.map_or(Role::Main, |i| i.role),
                stats,
            })
        })
        .collect();
    Durations { targets: Stats::of(&target_seconds(targets)), phases, steps }
}

/// Maintenance on → off per target: from the first start to the last end of
/// the steps (main, finally and rollback) of the downtime phases.
fn downtime(
    layout: &Layout,
    targets: &[TargetRecord],
    by_target: &HashMap<&str, HashMap<&str, &StepRecord>>,
) -> Downtime {
    let down: BTreeSet<usize> = layout.phases.iter().enumerate().filter(|(_, p)| p.downtime).map(|(i, _)| i).collect();
    let mut rows = vec![];
    for t in targets {
        let Some(recs) = by_target.get(t.name.as_str()) else { continue };
        let mine: Vec<&StepRecord> = recs
            .values()
            .copied()
            .filter(|r| layout.steps.get(r.step.as_str()).is_some_and(|i| down.contains(&i.phase)))
            .collect();
        let Some(from) = mine.iter().filter_map(|r| r.started_at.as_deref()).min_by_key(|s| parse_ts(s)) else {
            continue;
        };
        let open = mine.iter().any(|r| r.state == StepState::Running || r.finished_at.is_none());
        let to =
            if open { None } else { mine.iter().filter_map(|r| r.finished_at.as_deref()).max_by_key(|s| parse_ts(s)) };
        let complete = down.iter().all(|i| {
            layout.phases[*i].top.iter().all(|s| {
                recs.get(s.as_str()).is_some_and(|r| matches!(r.state, StepState::Succeeded | StepState::Skipped))
            })
        });
        rows.push(TargetDowntime {
            target: t.name.clone(),
            state: t.state.to_string(),
            from: from.to_string(),
            to: to.map(str::to_string),
            seconds: seconds(Some(from), to),
            complete,
        });
    }
    let complete: Vec<f64> = rows.iter().filter(|r| r.complete).filter_map(|r| r.seconds).collect();
    Downtime {
        phases: down.iter().map(|i| layout.phases[*i].name.clone()).collect(),
        targets: rows,
        stats: Stats::of(&complete),
    }
}

/// The latest report of each (target, step), in target order.
fn latest<'a>(targets: &[TargetRecord], events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    let mut last: BTreeMap<(usize, String), &Event> = BTreeMap::new();
    let pos: HashMap<&str, usize> = targets.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
    for e in events.iter().filter(|e| e.kind == kind) {
        let t = e.target.as_deref().and_then(|t| pos.get(t)).copied().unwrap_or(usize::MAX);
        last.insert((t, e.step.clone().unwrap_or_default()), e);
    }
    last.into_values().collect()
}

fn verification(targets: &[TargetRecord], events: &[Event]) -> Vec<Verification> {
    latest(targets, events, "verify_report")
        .into_iter()
        .map(|e| Verification {
            target: e.target.clone().unwrap_or_default(),
            step: e.step.clone().unwrap_or_default(),
            tables: e.data["tables"].as_u64().unwrap_or(0),
            rows: e.data["rows"].as_i64().unwrap_or(0),
            sequences: e.data["sequences"].as_u64().unwrap_or(0),
            differences: e.data["differences"].as_array().cloned().unwrap_or_default(),
        })
        .collect()
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "blocker" => 0,
        "warning" => 1,
        "info" => 2,
        _ => 3,
    }
}

fn preflight(events: &[Event]) -> Vec<PreflightCount> {
    // The latest report per (target, step), whatever the target order.
    let mut last: BTreeMap<(String, String), &Event> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "preflight_report") {
        last.insert((e.target.clone().unwrap_or_default(), e.step.clone().unwrap_or_default()), e);
    }
    // (severity rank, rule, severity) → (targets, objects, remediation)
    type Tally = (BTreeSet<String>, usize, String);
    let mut counts: BTreeMap<(u8, String, String), Tally> = BTreeMap::new();
    for ((target, _), e) in last {
        for f in e.data["findings"].as_array().into_iter().flatten() {
            let (rule, sev) = (f["rule"].as_str().unwrap_or("?"), f["severity"].as_str().unwrap_or("?"));
            let c = counts.entry((severity_rank(sev), rule.to_string(), sev.to_string())).or_default();
            c.0.insert(target.clone());
            c.1 += f["objects"].as_array().map_or(0, Vec::len);
            if c.2.is_empty() {
                c.2 = f["remediation"].as_str().unwrap_or("").to_string();
            }
        }
    }
    counts
        .into_iter()
        .map(|((_, rule, severity), (targets, objects, remediation))| PreflightCount {
            rule,
            severity,
            targets: targets.len(),
            objects,
            remediation,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Markdown.

fn num(x: f64) -> String {
    format!("{x:.3}")
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "–".into())
}

/// One line, safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(160).collect();
    if line.chars().count() > 160 {
        out.push('…');
    }
    out.replace('|', "\\|")
}

fn stats_cells(s: &Stats) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {} | {}",
        s.count,
        num(s.mean),
        opt(s.std),
        num(s.min),
        num(s.p50),
        num(s.p75),
        num(s.p95),
        num(s.max)
    )
}

const STATS_HEAD: &str = "count | mean | std | min | p50 | p75 | p95 | max |\n";
const STATS_RULE: &str = "---:|---:|---:|---:|---:|---:|---:|---:|\n";

pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let s = &r.summary;
    let _ = writeln!(m, "# Run {} — plan `{}`\n", r.run.id, r.run.plan);
    let _ = writeln!(m, "- state: **{}**", r.run.state);
    let _ = writeln!(m, "- created: {}; last change: {}", r.run.created_at, r.run.updated_at);
    let _ = writeln!(
        m,
        "- targets: {} — {} succeeded, {} failed (or rolled back), {} other",
        s.targets, s.succeeded, s.failed, s.other
    );
    let others: Vec<String> = s
        .states
        .iter()
        .filter(|(k, v)| **v > 0 && !matches!(k.as_str(), "succeeded" | "failed" | "rolled_back"))
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(m, "- other: {}", others.join(", "));
    }
    let rate = s.success_rate_percent.map(|p| format!("{p:.1} %")).unwrap_or_else(|| "n/a (no targets)".into());
    let _ = writeln!(m, "- success rate: **{rate}**\n");

    let _ = writeln!(m, "## Failures by cause\n");
    if r.failures.is_empty() {
        let _ = writeln!(m, "No target failed, rolled back or needs attention.\n");
    } else {
        let _ = writeln!(m, "| cause | targets |\n|---|---:|");
        for g in &r.failures {
            let _ = writeln!(m, "| {} | {} |", cell(&g.cause), g.count);
        }
        m.push('\n');
        for g in &r.failures {
            let _ = writeln!(m, "### {} ({})\n", g.cause, g.count);
            for e in &g.examples {
                let at = e.step.as_ref().map(|s| format!(" at step `{s}`")).unwrap_or_default();
                let _ = writeln!(m, "- `{}` ({}){at}: {}", e.target, e.state, cell(&e.message));
            }
            if g.count > g.examples.len() {
                let _ = writeln!(m, "- … and {} more", g.count - g.examples.len());
            }
            m.push('\n');
        }
    }

    let _ = writeln!(m, "## Durations (seconds)\n");
    let _ = writeln!(
        m,
        "Succeeded work only. A target's duration runs from its first start to its end; a phase's, from the start of its first step to the end of its last, for each target that completed it.\n"
    );
    let _ = write!(m, "| | {STATS_HEAD}|---|{STATS_RULE}");
    match &r.durations.targets {
        Some(t) => {
            let _ = writeln!(m, "| targets | {} |", stats_cells(t));
        }
        None => {
            let _ = writeln!(m, "| targets | 0 | – | – | – | – | – | – | – |");
        }
    }
    for p in &r.durations.phases {
        let down = if p.downtime { " (downtime)" } else { "" };
        let _ = writeln!(m, "| phase `{}`{down} | {} |", p.phase, stats_cells(&p.stats));
    }
    m.push('\n');
    if !r.durations.steps.is_empty() {
        let _ = writeln!(m, "### Steps\n");
        let _ = write!(m, "| phase | step | kind | {STATS_HEAD}|---|---|---|{STATS_RULE}");
        for s in &r.durations.steps {
            let role = match s.role {
                Role::Main => "",
                Role::Finally => " (finally)",
                Role::Rollback => " (rollback)",
            };
            let _ = writeln!(m, "| {} | `{}`{role} | {} | {} |", s.phase, s.step, s.kind, stats_cells(&s.stats));
        }
        m.push('\n');
    }

    let _ = writeln!(m, "## Downtime\n");
    let d = &r.downtime;
    if d.phases.is_empty() {
        let _ = writeln!(m, "No phase of the plan says `downtime = true`.\n");
    } else {
        let names: Vec<String> = d.phases.iter().map(|p| format!("`{p}`")).collect();
        let _ = writeln!(
            m,
            "Downtime phases: {}. A target is down from the start of the first step of its first downtime phase to the end of the last step of its last one (maintenance on → off). Statistics count complete windows only.\n",
            names.join(", ")
        );
        if d.targets.is_empty() {
            let _ = writeln!(m, "No target reached a downtime phase.\n");
        } else {
            let _ = writeln!(m, "| target | state | from | to | seconds | window |\n|---|---|---|---|---:|---|");
            for t in &d.targets {
                let window = match (t.complete, &t.to) {
                    (true, _) => "complete",
                    (false, Some(_)) => "partial: ended at a failure",
                    (false, None) => "open",
                };
                let _ = writeln!(
                    m,
                    "| `{}` | {} | {} | {} | {} | {window} |",
                    t.target,
                    t.state,
                    t.from,
                    t.to.as_deref().unwrap_or("–"),
                    opt(t.seconds)
                );
            }
            m.push('\n');
            if let Some(st) = &d.stats {
                let _ = write!(m, "| | {STATS_HEAD}|---|{STATS_RULE}");
                let _ = writeln!(m, "| downtime | {} |\n", stats_cells(st));
            }
        }
    }

    let _ = writeln!(m, "## Histogram: {} (seconds)\n", r.histogram.of);
    if let Some(svg) = &r.histogram.svg {
        let _ = writeln!(m, "![{} per target]({svg})\n", r.histogram.of);
    }
    if r.histogram.buckets.is_empty() {
        let _ = writeln!(m, "Nothing to draw: no complete downtime window and no succeeded target.\n");
    } else {
        let _ = writeln!(m, "| seconds | targets |\n|---|---:|");
        let step = r.histogram.buckets.first().map_or(0.0, |b| b.to - b.from);
        for b in &r.histogram.buckets {
            let _ = writeln!(m, "| {} – {} | {} |", label(b.from, step), label(b.to, step), b.count);
        }
        m.push('\n');
    }

    let _ = writeln!(m, "## Verification\n");
    if r.verification.is_empty() {
        let _ = writeln!(m, "No `pg.verify` step recorded a comparison.\n");
    } else {
        let _ =
            writeln!(m, "| target | step | tables | rows | sequences | differences |\n|---|---|---:|---:|---:|---:|");
        for v in &r.verification {
            let _ = writeln!(
                m,
                "| `{}` | `{}` | {} | {} | {} | {} |",
                v.target,
                v.step,
                v.tables,
                v.rows,
                v.sequences,
                v.differences.len()
            );
        }
        m.push('\n');
        for v in r.verification.iter().filter(|v| !v.differences.is_empty()) {
            let _ = writeln!(m, "Differences of `{}`:\n", v.target);
            for d in v.differences.iter().take(10) {
                let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
                let _ = writeln!(
                    m,
                    "- {} `{}`: {} on the source, {} on the copy",
                    s("kind"),
                    s("object"),
                    cell(&s("source")),
                    cell(&s("target"))
                );
            }
            if v.differences.len() > 10 {
                let _ = writeln!(m, "- … and {} more", v.differences.len() - 10);
            }
            m.push('\n');
        }
    }

    let _ = writeln!(m, "## Copies\n");
    if r.copies.is_empty() {
        let _ = writeln!(m, "No `pg.copy` step recorded a copy.\n");
    } else {
        let _ = writeln!(m, "| target | step | copy |\n|---|---|---|");
        for c in &r.copies {
            let _ = writeln!(m, "| `{}` | `{}` | {} |", c.target, c.step, cell(&c.summary));
        }
        m.push('\n');
    }

    let _ = writeln!(m, "## Preflight findings\n");
    if r.preflight.is_empty() {
        let _ = writeln!(m, "No `pg.preflight` step recorded a finding.");
    } else {
        let _ = writeln!(m, "| rule | severity | targets | objects | remediation |\n|---|---|---:|---:|---|");
        for p in &r.preflight {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} |",
                p.rule,
                p.severity,
                p.targets,
                p.objects,
                cell(&p.remediation)
            );
        }
    }
    m
}

// ---------------------------------------------------------------------------
// The picture: a small hand-written SVG.

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bucket edge with enough decimals to tell neighbouring edges apart
/// (`step` is the bucket width), and no more.
fn label(x: f64, step: f64) -> String {
    let decimals = if step > 0.0 { (-step.log10()).ceil().max(0.0) as usize + 1 } else { 2 };
    let decimals = if step >= 10.0 { 0 } else { decimals.min(6) };
    format!("{x:.decimals$}")
}

/// Bars of the histogram, one per bucket (an empty bucket is a bar of
/// height 0), with the bucket edges in seconds under the x axis and target
/// counts on the y axis.
pub fn render_svg(r: &Report) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 32.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 56.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let b = &r.histogram.buckets;
    let most = b.iter().map(|x| x.count).max().unwrap_or(0).max(1);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let of = &r.histogram.of;
    let of = of.get(..1).map(|c| c.to_uppercase() + of.get(1..).unwrap_or("")).unwrap_or_default();
    let title = format!("{of} per target — run {} (plan {})", r.run.id, r.run.plan);
    let _ = writeln!(s, r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#, W / 2.0, xml(&title));
    let (x0, y0) = (LEFT, TOP + ph);
    let _ = writeln!(s, r#"<line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{y0}" stroke="black"/>"#);
    let _ = writeln!(s, r#"<line x1="{x0}" y1="{y0}" x2="{}" y2="{y0}" stroke="black"/>"#, LEFT + pw);
    // The y axis: 0, the middle and the largest count.
    let mut ticks = vec![0, most];
    if most >= 4 {
        ticks.insert(1, most / 2);
    }
    for t in ticks {
        let y = y0 - ph * t as f64 / most as f64;
        let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{t}</text>"#, LEFT - 6.0, y + 4.0);
        let _ = writeln!(s, r#"<line x1="{}" y1="{y:.1}" x2="{x0}" y2="{y:.1}" stroke="black"/>"#, LEFT - 3.0);
    }
    if b.is_empty() {
        let _ =
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">no data</text>"#, LEFT + pw / 2.0, TOP + ph / 2.0);
    }
    let bw = pw / b.len().max(1) as f64;
    let step = b.first().map_or(0.0, |k| k.to - k.from);
    // Label every edge when there are few, else every other one.
    let every = if b.len() <= 10 { 1 } else { 2 };
    for (i, k) in b.iter().enumerate() {
        let h = ph * k.count as f64 / most as f64;
        let x = LEFT + bw * i as f64;
        let _ = writeln!(
            s,
            r##"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#4a78c2"><title>{} – {} s: {} target(s)</title></rect>"##,
            x + 1.0,
            y0 - h,
            (bw - 2.0).max(1.0),
            label(k.from, step),
            label(k.to, step),
            k.count
        );
        if i % every == 0 {
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
                y0 + 16.0,
                label(k.from, step)
            );
        }
    }
    if let Some(last) = b.last() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + pw,
            y0 + 16.0,
            label(last.to, step)
        );
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#, LEFT + pw / 2.0, H - 14.0);
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">targets</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentiles_interpolate_between_the_closest_ranks() {
        let v = [1.0, 2.0, 3.0, 4.0];
        let cases = [(0.0, 1.0), (0.5, 2.5), (0.75, 3.25), (0.95, 3.85), (1.0, 4.0)];
        for (p, want) in cases {
            let got = percentile(&v, p).expect("values");
            assert!((got - want).abs() < 1e-9, "p{p}: {got} != {want}");
        }
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
        // Out-of-range p is clamped, not an index out of bounds.
        assert_eq!(percentile(&v, 1.5), Some(4.0));
    }

    #[test]
    fn stats_are_those_of_pandas_describe() {
        // pandas.Series([4, 1, 3, 2, 10]).describe(): mean 4, std 3.535534,
        // 50% 3, 75% 4, max 10; p95 by numpy's default method is 8.8.
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0, 10.0]).expect("values");
        assert_eq!((s.count, s.min, s.p50, s.p75, s.max), (5, 1.0, 3.0, 4.0, 10.0));
        assert!((s.mean - 4.0).abs() < 1e-9);
        assert!((s.std.expect("n > 1") - 3.535_533_9).abs() < 1e-6);
        assert!((s.p95 - 8.8).abs() < 1e-9);
        assert_eq!(Stats::of(&[2.0]).map(|s| s.std), Some(None), "no sample std of one value");
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN]), None);
    }

    #[test]
    fn histogram_buckets_cover_every_value_once() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let b = histogram(&v);
        // Sturges: ceil(log2 9) + 1 = 5 buckets of width 1.6.
        assert_eq!(b.len(), 5);
        assert_eq!(b.iter().map(|x| x.count).collect::<Vec<_>>(), [2, 2, 1, 2, 2]);
        assert_eq!((b[0].from, b[4].to), (0.0, 8.0));
        assert_eq!(histogram(&[3.0, 3.0]), [Bucket { from: 3.0, to: 3.0, count: 2 }]);
        assert!(histogram(&[]).is_empty());
    }

    #[test]
    fn store_times_parse_to_microseconds() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ts("2000-03-01T00:00:00.5Z"), Some(951_868_800_500_000));
        assert_eq!(parse_ts("2026-11-21T10:15:00.000123Z"), Some(1_795_256_100_000_123));
        // Across a month and a leap day.
        let a = parse_ts("2024-02-28T23:59:59.000000Z").expect("a");
        let b = parse_ts("2024-03-01T00:00:01.000000Z").expect("b");
        assert_eq!(b - a, (86_400 + 2) * 1_000_000);
        assert_eq!(parse_ts("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_ts("yesterday"), None);
    }

    #[test]
    fn causes_come_from_the_step_kind_and_the_message() {
        let cases = [
            ("pg.preflight", "preflight found 1 blocker(s)", "preflight blocker"),
            ("pg.copy", "COPY failed: relation does not exist", "copy error"),
            (
                "pg.bigint",
                "pg.bigint: the cut-over could not take its locks in 3 attempt(s) (lock_timeout 200 ms each)",
                "cut-over lock not obtained",
            ),
            ("pg.bigint", "pg.bigint: verify: 3 row(s) of public.t differ", "verify mismatch"),
            ("pg.bigint", "pg.bigint: there is no table `x`", "conversion error"),
            (
                "pg.migrate",
                "pg.migrate: up 4_orders failed: ERROR: canceling statement due to lock timeout; nothing of it was applied",
                "migration failed",
            ),
            (
                "pg.migrate",
                "pg.migrate: another migration holds the lock on database t3: pid 42 (…); waited 30s. Try again",
                "migration lock held",
            ),
            (
                "pg.migrate",
                "pg.migrate: lint found 1 error(s) in the pending migrations, so none was applied",
                "lint refused",
            ),
            ("pg.migrate", "timed out after 10m", "timeout"),
            ("pg.verify", "verify found 2 difference(s)", "verify mismatch"),
            ("exec", "timed out after 500ms", "timeout"),
            ("pg.copy", "timed out after 1h", "timeout"),
            ("exec", "the command exited with status 3: disk full", "step failed: exec"),
            ("sql", "aborted by the operator", "aborted"),
        ];
        for (kind, msg, want) in cases {
            assert_eq!(classify(kind, msg), want, "{kind}: {msg}");
        }
    }

    fn ev(id: i64, target: &str, step: &str, kind: &str, message: &str, data: Value) -> Event {
        Event {
            id,
            run_id: "r".into(),
            ts: String::new(),
            target: Some(target.into()),
            step: Some(step.into()),
            kind: kind.into(),
            message: message.into(),
            data,
        }
    }

    fn target(name: &str, state: TargetState) -> TargetRecord {
        TargetRecord {
            name: name.into(),
            position: 0,
            state,
            phase: None,
            step: None,
            message: None,
            started_at: Some("2026-01-01T00:00:00Z".into()),
            finished_at: Some("2026-01-01T00:00:10Z".into()),
            skip_requested: false,
        }
    }

    fn step(target: &str, step: &str, state: StepState, from: &str, to: &str) -> StepRecord {
        StepRecord {
            target: target.into(),
            step: step.into(),
            state,
            attempt: 1,
            started_at: Some(format!("2026-01-01T00:00:{from}Z")),
            finished_at: Some(format!("2026-01-01T00:00:{to}Z")),
            outputs: Value::Null,
            error: None,
        }
    }

    // Without the recorded plan (a newer cutover refused it), phases and
    // kinds come from the step_started events; a pg.copy failure is a copy
    // error and the latest copy_report of each target is reported.
    #[test]
    fn without_the_plan_the_events_give_phases_kinds_and_copies() {
        let rec = RunRecord {
            id: "r".into(),
            plan_name: "p".into(),
            plan_path: String::new(),
            plan_dir: String::new(),
            plan_text: String::new(),
            targets_json: String::new(),
            state: cutover_engine::model::RunState::Failed,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let started = |phase: &str, kind: &str| serde_json::json!({ "phase": phase, "kind": kind, "attempt": 1 });
        let events = [
            ev(1, "a", "copy", "step_started", "", started("switch", "pg.copy")),
            ev(2, "b", "copy", "step_started", "", started("switch", "pg.copy")),
            ev(3, "a", "copy", "copy_report", "copied 1 table(s) (old)", Value::Null),
            ev(4, "a", "copy", "copy_report", "copied 3 table(s)", serde_json::json!({ "tables": 3 })),
            ev(5, "b", "copy", "step_failed", "", serde_json::json!({ "error": "pg.copy: relation t is gone" })),
        ];
        let targets = [target("a", TargetState::Succeeded), target("b", TargetState::Failed)];
        let steps =
            [step("a", "copy", StepState::Succeeded, "01", "03.5"), step("b", "copy", StepState::Failed, "01", "02")];
        let r = build(&rec, None, &targets, &steps, &events);
        assert_eq!(r.failures.len(), 1);
        assert_eq!((r.failures[0].cause.as_str(), r.failures[0].targets.clone()), ("copy error", vec!["b".into()]));
        assert_eq!(r.failures[0].examples[0].message, "pg.copy: relation t is gone");
        let s = &r.durations.steps[0];
        assert_eq!((s.phase.as_str(), s.kind.as_str(), s.stats.count, s.stats.max), ("switch", "pg.copy", 1, 2.5));
        assert_eq!(r.durations.phases[0].stats.count, 1, "only a completed the phase");
        assert!(r.downtime.phases.is_empty() && r.downtime.targets.is_empty());
        assert_eq!(r.copies.len(), 1);
        assert_eq!((r.copies[0].summary.as_str(), &r.copies[0].data["tables"]), ("copied 3 table(s)", &json!(3)));
        assert_eq!(r.histogram.of, "target duration");
        assert_eq!(r.summary.success_rate_percent, Some(50.0));
    }

    #[test]
    fn the_picture_has_one_bar_per_bucket_and_escapes_names() {
        let r = Report {
            run: RunInfo {
                id: "r1".into(),
                plan: "a<b&c".into(),
                state: "succeeded".into(),
                created_at: String::new(),
                updated_at: String::new(),
            },
            summary: summary(&[]),
            failures: vec![],
            durations: Durations { targets: None, phases: vec![], steps: vec![] },
            downtime: Downtime { phases: vec![], targets: vec![], stats: None },
            verification: vec![],
            preflight: vec![],
            copies: vec![],
            histogram: Histogram { of: "downtime".into(), buckets: histogram(&[1.0, 2.0, 2.5, 9.0]), svg: None },
        };
        let svg = render_svg(&r);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 3);
        assert!(svg.contains("a&lt;b&amp;c") && !svg.contains("a<b"));
        assert!(svg.contains(">seconds</text>") && svg.contains(">targets</text>"));
    }
}
