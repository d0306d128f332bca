//! Fleet scheduling in the plan: the `[schedule]` table (notice period,
//! estimate prior, shuffle seed), each target's `window`, `notified_at` and
//! `size`, their validation, and the seeded shuffle of the targets.
//!
//! The shuffle orders targets by a keyed hash of their names (FNV-1a, then
//! the splitmix64 finaliser), so the order depends only on the seed and the
//! set of names: the same seed gives the same order on every machine and in
//! every version, and shuffling an already shuffled list changes nothing
//! (a resumed run re-reads its recorded targets in the same order).
//!
//! ```
//! let text = r#"
//! name = "demo"
//! [schedule]
//! notice = "7d"
//! estimate = { base = "1m", per_gb = "2m" }
//! [[targets]]
//! name = "db1"
//! window = "Thu 01:00-05:00 Europe/Zurich"
//! size = "12GB"
//! [[phases]]
//! name = "one"
//! "#;
//! let plan = cutover_plan::load_str("demo.toml", text, std::path::Path::new("."), None).unwrap();
//! let t = cutover_plan::schedule::target_schedule(&plan.targets[0]).unwrap();
//! assert_eq!(t.size, Some(12_000_000_000));
//! assert_eq!(plan.schedule.notice, Some(std::time::Duration::from_secs(7 * 86400)));
//! ```

use crate::diag::{Diagnostic, Diagnostics};
use crate::estimate::Prior;
use crate::model::Target;
use crate::tree::{Node, Value};
use crate::window::Window;
use jiff::Timestamp;
use std::time::Duration;

/// The plan's `[schedule]` table.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Schedule {
    /// Whether the plan has a `[schedule]` table at all.
    pub configured: bool,
    /// How long after `notified_at` a target may be touched.
    #[serde(serialize_with = "opt_secs")]
    pub notice: Option<Duration>,
    pub prior: Prior,
    /// Whether estimates learn from real durations (default true).
    pub learn: bool,
    /// Targets are shuffled with this seed before waves are cut.
    pub shuffle_seed: Option<u64>,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::duration::format(*d)),
        None => s.serialize_none(),
    }
}

/// A target's scheduling facts, parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetSchedule {
    pub windows: Vec<Window>,
    pub notified_at: Option<Timestamp>,
    /// Bytes.
    pub size: Option<u64>,
}

impl Schedule {
    /// Whether anything in the plan asks for scheduling: a `[schedule]`
    /// table, or a target with a window, a notification time or a size.
    /// Without it a run records no estimates and no waiting.
    pub fn active(&self, targets: &[Target]) -> bool {
        self.configured || targets.iter().any(|t| !t.windows.is_empty() || t.notified_at.is_some() || t.size.is_some())
    }
}

/// One problem with a target's scheduling fields: (key, message, help).
type Problem = (&'static str, String, String);

/// Parses a target's `window`, `notified_at` and `size`.
pub fn target_schedule(t: &Target) -> Result<TargetSchedule, Vec<Problem>> {
    let mut problems = vec![];
    let mut out = TargetSchedule::default();
    for w in &t.windows {
        match Window::parse(w) {
            Ok(w) => out.windows.push(w),
            Err(e) => problems.push(("window", format!("window {w:?}: {}", e.message), e.help.to_string())),
        }
    }
    if let Some(n) = &t.notified_at {
        match n.trim().parse::<Timestamp>() {
            Ok(ts) => out.notified_at = Some(ts),
            Err(_) => problems.push((
                "notified_at",
                format!("`notified_at` {n:?} is not a time with an offset"),
                "write an RFC 3339 time such as 2026-11-20T09:00:00Z or 2026-11-20T10:00:00+01:00".into(),
            )),
        }
    }
    if let Some(s) = &t.size {
        match parse_size(s) {
            Ok(b) => out.size = Some(b),
            Err(e) => problems.push((
                "size",
                format!("`size` {s:?}: {e}"),
                "write bytes (12000000000) or a number with a unit: 500MB, 12GB, 1.5TB, 12GiB".into(),
            )),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(problems) }
}

/// Every target's scheduling fields, checked; problems point at the target.
pub fn check_targets(all: &[Target], diags: &mut Diagnostics) {
    for t in all {
        if let Err(problems) = target_schedule(t) {
            for (key, message, help) in problems {
                let code = match key {
                    "window" => "window",
                    "notified_at" => "notified-at",
                    _ => "size",
                };
                diags.push(
                    Diagnostic::new(t.pos.clone(), code, format!("target `{}`: {message}", t.name)).with_help(help),
                );
            }
        }
    }
}

/// A size in bytes: `12000000000`, `500MB`, `12GB`, `1.5TB` (powers of
/// 1000) or `12GiB` (powers of 1024); units in any case, a space allowed.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let n: f64 = num.parse().map_err(|_| "expected a number of bytes, or a number and a unit".to_string())?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown unit `{other}` (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bytes = (n * mult).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(bytes as u64)
}

/// A notice period: a duration that may count days and weeks (`"7d"`,
/// `"2w"`, `"36h"`, `"1d12h"`); a day is 24 hours here.
pub fn parse_notice(text: &str) -> Result<Duration, String> {
    if let Ok(d) = crate::duration::parse(text) {
        return Ok(d);
    }
    let bad = || "expected a duration such as \"7d\", \"2w\", \"36h\" or \"1d12h\"".to_string();
    let span: jiff::Span = text.trim().parse().map_err(|_| bad())?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err("months and years have no fixed length: write days or weeks".into());
    }
    if span.is_negative() {
        return Err("a notice cannot be negative".into());
    }
    let secs = span.total((jiff::Unit::Second, jiff::SpanRelativeTo::days_are_24_hours())).map_err(|_| bad())?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// A notice as people write it: whole days as "7d", else "36h".
pub fn notice_text(d: Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) && d.subsec_nanos() == 0 {
        format!("{}d", secs / 86_400)
    } else {
        crate::duration::format(d)
    }
}

/// Reads `[schedule]`; problems with positions go to `diags` (its keys'
/// types were checked by the shape already).
pub fn build(b: &crate::build::Builder<'_>, node: Option<&Node>, diags: &mut Diagnostics) -> Schedule {
    let mut s = Schedule { learn: true, ..Schedule::default() };
    let Some(node) = node else { return s };
    s.configured = true;
    if let Some(n) = node.get("notice")
        && let Some(text) = n.as_str()
    {
        match parse_notice(text) {
            Ok(d) => s.notice = Some(d),
            Err(e) => diags.push(
                Diagnostic::new(b.content_pos(n), "duration", format!("invalid notice {text:?}: {e}"))
                    .with_help("write a duration such as \"7d\", \"48h\" or \"2w\""),
            ),
        }
    }
    if let Some(e) = node.get("estimate") {
        let d = |k: &str| e.get(k).and_then(Node::as_str).and_then(|x| crate::duration::parse(x).ok());
        s.prior = Prior { base: d("base").unwrap_or(s.prior.base), per_gb: d("per_gb").unwrap_or(s.prior.per_gb) };
        if let Some(Value::Bool(l)) = e.get("learn").map(|n| &n.value) {
            s.learn = *l;
        }
    }
    if let Some(Value::Int(i)) = node.get("shuffle_seed").map(|n| &n.value) {
        s.shuffle_seed = u64::try_from(*i).ok();
    }
    s
}

fn key(seed: u64, name: &str) -> u64 {
    // FNV-1a over the seed and the name…
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(name.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // …then splitmix64's finaliser, so that close names land far apart.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Orders targets by the seeded shuffle (see the module's documentation).
pub fn shuffle(targets: &mut [Target], seed: u64) {
    targets.sort_by_cached_key(|t| (key(seed, &t.name), t.name.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Target> {
        (0..n).map(|i| Target { name: format!("db-{i:02}"), ..Target::default() }).collect()
    }

    fn order(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_order_and_shuffling_twice_changes_nothing() {
        let (mut a, mut b) = (names(12), names(12));
        b.reverse();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        assert_eq!(order(&a), order(&b));
        assert_ne!(order(&a), order(&names(12)));
        let once = order(&a).join(",");
        shuffle(&mut a, 7);
        assert_eq!(order(&a).join(","), once);
        let mut c = names(12);
        shuffle(&mut c, 8);
        assert_ne!(order(&c).join(","), once);
        // Pinned, so that a change of the hash (which would reorder every
        // seeded plan's waves) does not go unnoticed.
        let mut d = names(5);
        shuffle(&mut d, 42);
        assert_eq!(order(&d), ["db-01", "db-02", "db-00", "db-04", "db-03"]);
    }

    /// "line:col code: message" of each problem of a plan with these targets and this `[schedule]`.
    fn problems(targets: &str, schedule: &str) -> Vec<String> {
        let text = format!("name = \"p\"\n{schedule}\n{targets}\n[[phases]]\nname = \"one\"\n");
        match crate::load_str("p.toml", &text, std::path::Path::new("."), None) {
            Ok(_) => vec![],
            Err(d) => d.iter().map(|d| format!("{}:{} {}: {}", d.pos.line, d.pos.column, d.code, d.message)).collect(),
        }
    }

    #[test]
    fn scheduling_problems_are_diagnostics() {
        let t = |extra: &str| format!("[[targets]]\nname = \"a\"\n{extra}");
        let cases: &[(&str, &str, &[&str])] = &[
            ("window = \"Thu 01:00-05:00 Europe/Zurich\"\nsize = 12\nnotified_at = 2026-11-20T09:00:00Z", "", &[]),
            ("window = [\"Mon-Fri 22:00-02:00 UTC\", \"Sat 00:00-24:00 UTC\"]\nsize = \"1.5 TB\"", "", &[]),
            (
                "window = \"Thu 01:00-05:00 Europe/Zurch\"",
                "",
                &["3:1 window: target `a`: window \"Thu 01:00-05:00 Europe/Zurch\": unknown time zone `Europe/Zurch`"],
            ),
            (
                "window = [\"Thr 01:00-05:00 UTC\"]",
                "",
                &["3:1 window: target `a`: window \"Thr 01:00-05:00 UTC\": unknown day `Thr`"],
            ),
            (
                "window = \"Thu 05:00-05:00 UTC\"",
                "",
                &[
                    "3:1 window: target `a`: window \"Thu 05:00-05:00 UTC\": the window `05:00-05:00` is empty: it ends when it starts",
                ],
            ),
            ("window = 5", "", &["5:10 type: `window` must be a string or an array of strings, found an integer"]),
            (
                "size = \"12 parsecs\"",
                "",
                &[
                    "3:1 size: target `a`: `size` \"12 parsecs\": unknown unit `parsecs` (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)",
                ],
            ),
            (
                "notified_at = \"yesterday\"",
                "",
                &["3:1 notified-at: target `a`: `notified_at` \"yesterday\" is not a time with an offset"],
            ),
            (
                "",
                "[schedule]\nnotice = \"a week\"",
                &[
                    "3:11 duration: invalid notice \"a week\": expected a duration such as \"7d\", \"2w\", \"36h\" or \"1d12h\"",
                ],
            ),
            (
                "",
                "[schedule]\nestimate = { base = \"1 fortnight\" }",
                &[
                    "3:21 duration: invalid duration \"1 fortnight\" for `base`: expected a number followed by a unit (ms, s, m, h)",
                ],
            ),
            (
                "",
                "[schedule]\nshuffle_seed = -1",
                &["3:16 range: `shuffle_seed` must be from 0 to 9223372036854775807, found -1"],
            ),
        ];
        for (i, (target, schedule, expect)) in cases.iter().enumerate() {
            assert_eq!(problems(&t(target), schedule), *expect, "case {}", i + 1);
        }
    }

    #[test]
    fn a_seed_orders_the_selected_targets_and_waves_follow() {
        let targets: String = (0..6).map(|i| format!("[[targets]]\nname = \"db-{i}\"\n")).collect();
        let load = |seed: &str| {
            let text = format!("name = \"p\"\nwaves = [1, \"100%\"]\n{seed}\n{targets}[[phases]]\nname = \"one\"\n");
            crate::load_str("p.toml", &text, std::path::Path::new("."), None).expect("valid")
        };
        let plain = load("");
        assert_eq!(order(&plain.targets), ["db-0", "db-1", "db-2", "db-3", "db-4", "db-5"]);
        let (a, b) = (load("[schedule]\nshuffle_seed = 1"), load("[schedule]\nshuffle_seed = 1"));
        assert_eq!(order(&a.targets), order(&b.targets));
        assert_ne!(order(&a.targets), order(&plain.targets));
        assert_ne!(order(&a.targets), order(&load("[schedule]\nshuffle_seed = 2").targets));
        // The inventory keeps its order; the canary is the first shuffled target.
        assert_eq!(order(&a.all_targets), order(&plain.targets));
        assert_eq!(a.wave_of(), [0, 1, 1, 1, 1, 1]);
        // A resumed run re-reads its recorded (shuffled) targets: same order.
        let text = "name = \"p\"\n[schedule]\nshuffle_seed = 1\n[[phases]]\nname = \"one\"\n";
        let again = crate::load_str("p.toml", text, std::path::Path::new("."), Some(a.targets.clone())).expect("valid");
        assert_eq!(order(&again.targets), order(&a.targets));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("12GB"), Ok(12_000_000_000));
        assert_eq!(parse_size("12 gb"), Ok(12_000_000_000));
        assert_eq!(parse_size("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size("500"), Ok(500));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("GB").is_err());
    }

    #[test]
    fn notices_count_days_and_weeks() {
        assert_eq!(parse_notice("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_notice("2w"), Ok(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_notice("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_notice("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert!(parse_notice("1 month").is_err());
        assert!(parse_notice("soon").is_err());
        assert_eq!(notice_text(Duration::from_secs(7 * 86400)), "7d");
        assert_eq!(notice_text(Duration::from_secs(36 * 3600)), "36h");
    }
}
