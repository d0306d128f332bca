//! Maintenance windows: weekly time ranges in a time zone, as plans write them
//! (`"Thu 01:00-05:00 Europe/Zurich"`, `"Mon-Fri 22:00-02:00 UTC"`), and the
//! question the scheduler asks of them: may a target that needs this long
//! start now, and if not, when?
//!
//! Pure: no clock is read here; every function takes the instant it reasons
//! about. Local times are turned into instants with the zone's rules of that
//! day, so a window on the night the clocks change is an hour shorter or
//! longer (a start time that does not exist that night moves to the first
//! instant after the gap; an end time that exists twice is the earlier one).
//!
//! ```
//! use cutover_plan::window::{Window, fit, Fit};
//! let w = Window::parse("Thu 01:00-05:00 Europe/Zurich").unwrap();
//! let at: jiff::Timestamp = "2026-12-03T04:30:00+01:00".parse().unwrap();
//! // 42 minutes do not fit in the 30 left: the target waits a week.
//! match fit(&[w], at, jiff::SignedDuration::from_mins(42)) {
//!     Fit::Later { start, .. } => assert_eq!(start.to_string(), "2026-12-10T00:00:00Z"),
//!     other => panic!("{other:?}"),
//! }
//! ```

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use std::fmt;

const DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// One weekly window in a time zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// As written (trimmed), for messages.
    pub text: String,
    /// Which days it starts on, Monday first.
    days: [bool; 7],
    start: (i8, i8),
    /// May be (24, 0); at or before `start` means it ends the next day.
    end: (i8, i8),
    tz: TimeZone,
}

/// Why a window's text is not a window.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowError {
    pub message: String,
    pub help: &'static str,
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

const FORM: &str = "write DAYS HH:MM-HH:MM ZONE, e.g. \"Thu 01:00-05:00 Europe/Zurich\" or \"Mon-Fri 22:00-02:00 UTC\"";

fn err(message: String, help: &'static str) -> WindowError {
    WindowError { message, help }
}

/// One time a window is open: `start <= t < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Occurrence {
    pub fn len(&self) -> SignedDuration {
        self.end.duration_since(self.start)
    }
}

impl Window {
    /// Parses `[DAYS] HH:MM-HH:MM ZONE`. DAYS is a day (`Thu`, `Thursday`),
    /// a range (`Mon-Fri`, `Sat-Mon`), a comma list of those, `daily`,
    /// `weekdays` or `weekends`; without DAYS the window opens every day.
    /// An end at or before the start crosses midnight; `24:00` is the end of
    /// the day. ZONE is an IANA name (`Europe/Zurich`) or `UTC`.
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let Some((zone, rest)) = tokens.split_last() else {
            return Err(err("a window cannot be empty".into(), FORM));
        };
        if zone.contains(':') || zone.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err(
                format!("window {text:?} has no time zone: the zone comes last, e.g. Europe/Zurich or UTC"),
                FORM,
            ));
        }
        let Some(i) = rest.iter().position(|t| t.starts_with(|c: char| c.is_ascii_digit())) else {
            return Err(err(format!("window {text:?} has no time range HH:MM-HH:MM"), FORM));
        };
        let days = parse_days(&rest[..i].concat())?;
        let (start, end) = parse_range(&rest[i..].concat())?;
        let tz = zone_named(zone)?;
        Ok(Window { text: tokens.join(" "), days, start, end, tz })
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The zone's name as written in the window.
    pub fn zone_name(&self) -> &str {
        self.text.rsplit(' ').next().unwrap_or("UTC")
    }

    fn minutes(t: (i8, i8)) -> i32 {
        i32::from(t.0) * 60 + i32::from(t.1)
    }

    /// The occurrence that starts on local date `d`, if the window opens that day.
    fn on(&self, d: Date) -> Option<Occurrence> {
        let weekday = usize::try_from(d.weekday().to_monday_zero_offset()).ok()?;
        if !self.days[weekday] {
            return None;
        }
        let local = |date: Date, (h, m): (i8, i8)| -> Option<Timestamp> {
            let dt: DateTime = if h == 24 { date.tomorrow().ok()?.at(0, 0, 0, 0) } else { date.at(h, m, 0, 0) };
            self.tz.to_ambiguous_timestamp(dt).compatible().ok()
        };
        let start = local(d, self.start)?;
        let end_date = if Self::minutes(self.end) <= Self::minutes(self.start) { d.tomorrow().ok()? } else { d };
        let end = local(end_date, self.end)?;
        (end > start).then_some(Occurrence { start, end })
    }

    /// The occurrence open at `at`, if any.
    pub fn containing(&self, at: Timestamp) -> Option<Occurrence> {
        let today = at.to_zoned(self.tz.clone()).date();
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|d| self.on(d))
            .find(|o| o.start <= at && at < o.end)
    }

    /// Occurrences that end after `from`, in order, over the next `days` days.
    pub fn occurrences(&self, from: Timestamp, days: i64) -> Vec<Occurrence> {
        let mut out = vec![];
        let mut d = from.to_zoned(self.tz.clone()).date();
        // A window crossing midnight may have opened yesterday.
        if let Ok(y) = d.yesterday() {
            d = y;
        }
        for _ in 0..=days {
            if let Some(o) = self.on(d)
                && o.end > from
            {
                out.push(o);
            }
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out
    }

    /// `at` in this window's zone, as messages show it: "Thu 2026-12-03 01:00 CET".
    pub fn local(&self, at: Timestamp) -> String {
        local_text(at, &self.tz)
    }
}

/// An instant in a zone, as messages show it: "Thu 2026-12-03 01:00 CET".
pub fn local_text(at: Timestamp, tz: &TimeZone) -> String {
    at.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// A duration as messages show it: "42m", "1h30m", "4s".
pub fn duration_text(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    crate::duration::format(std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

fn zone_named(zone: &str) -> Result<TimeZone, WindowError> {
    if zone.eq_ignore_ascii_case("UTC") || zone == "Z" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(zone).map_err(|_| {
        err(
            format!("unknown time zone `{zone}`"),
            "use an IANA time zone name such as Europe/Zurich, America/New_York or UTC",
        )
    })
}

fn day_index(word: &str) -> Result<usize, WindowError> {
    let w = word.to_ascii_lowercase();
    DAY_NAMES.iter().position(|d| w.len() >= 3 && d.starts_with(&w)).ok_or_else(|| {
        err(
            format!("unknown day `{word}`"),
            "days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (or daily, weekdays, weekends)",
        )
    })
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let mut days = [false; 7];
    match text.to_ascii_lowercase().as_str() {
        "" | "daily" | "everyday" => return Ok([true; 7]),
        "weekdays" => return Ok([true, true, true, true, true, false, false]),
        "weekends" => return Ok([false, false, false, false, false, true, true]),
        _ => {}
    }
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                // A range may wrap past Sunday: Sat-Mon.
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day_index(part)?] = true,
        }
    }
    Ok(days)
}

fn parse_time(text: &str, is_end: bool) -> Result<(i8, i8), WindowError> {
    let bad = || err(format!("`{text}` is not a time of day HH:MM"), FORM);
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    let ok = (0..=23).contains(&h) && (0..=59).contains(&m) || is_end && h == 24 && m == 0;
    if !ok {
        return Err(err(
            format!("`{text}` is not a time of day: hours go from 00 to 23, minutes from 00 to 59"),
            "24:00 may end a window",
        ));
    }
    Ok((h, m))
}

/// A time of day: (hour, minute).
type Hm = (i8, i8);

fn parse_range(text: &str) -> Result<(Hm, Hm), WindowError> {
    let Some((a, b)) = text.split_once('-') else {
        return Err(err(format!("`{text}` is not a time range HH:MM-HH:MM"), FORM));
    };
    let (start, end) = (parse_time(a, false)?, parse_time(b, true)?);
    if Window::minutes(start) == Window::minutes(end) % (24 * 60) && !(start == (0, 0) && end == (24, 0)) {
        return Err(err(
            format!("the window `{text}` is empty: it ends when it starts"),
            "write 00:00-24:00 for a whole day",
        ));
    }
    Ok((start, end))
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether (and when) something that takes `estimate` can run inside `windows`.
#[derive(Clone, Debug, PartialEq)]
pub enum Fit {
    /// `at` is inside window `window`, and the estimate fits before `end`.
    Now { window: usize, end: Timestamp },
    /// The first time it fits: from `start` (an occurrence's start, or `at`
    /// itself in the middle of one) to `end`. `skipped` is the first
    /// occurrence (the one open at `at`, or the next) that was too short.
    Later { window: usize, start: Timestamp, end: Timestamp, skipped: Option<Skipped> },
    /// No occurrence over the next year is long enough.
    Never { longest: SignedDuration },
}

/// An occurrence too short for the estimate: `left` was what remained of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Skipped {
    pub window: usize,
    pub occurrence: Occurrence,
    pub left: SignedDuration,
    /// Whether `at` was inside it.
    pub current: bool,
}

/// The first place from `at` on where `estimate` fits in one window (windows
/// are not merged: back-to-back windows are two windows).
pub fn fit(windows: &[Window], at: Timestamp, estimate: SignedDuration) -> Fit {
    // A week and a day covers every weekly window; looking a year ahead
    // only matters when the estimate fits nowhere (or only on the night the
    // clocks go back), so it is done only then.
    for days in [8, 370] {
        let mut all: Vec<(Occurrence, usize)> = windows
            .iter()
            .enumerate()
            .flat_map(|(i, w)| w.occurrences(at, days).into_iter().map(move |o| (o, i)))
            .collect();
        all.sort();
        let mut skipped = None;
        let mut longest = SignedDuration::ZERO;
        for (o, i) in all {
            let from = o.start.max(at);
            let left = o.end.duration_since(from);
            longest = longest.max(o.len());
            if left >= estimate {
                return if o.start <= at {
                    Fit::Now { window: i, end: o.end }
                } else {
                    Fit::Later { window: i, start: from, end: o.end, skipped }
                };
            }
            if skipped.is_none() {
                skipped = Some(Skipped { window: i, occurrence: o, left, current: o.start <= at });
            }
        }
        if days == 370 {
            return Fit::Never { longest };
        }
    }
    Fit::Never { longest: SignedDuration::ZERO }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect(s)
    }

    fn w(s: &str) -> Window {
        Window::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn mins(m: i64) -> SignedDuration {
        SignedDuration::from_mins(m)
    }

    #[test]
    fn parses_days_times_and_zones() {
        let ok = |s: &str, days: [bool; 7]| assert_eq!(w(s).days, days, "{s}");
        let (t, f) = (true, false);
        ok("Thu 01:00-05:00 Europe/Zurich", [f, f, f, t, f, f, f]);
        ok("thursday 1:00-5:00 UTC", [f, f, f, t, f, f, f]);
        ok("Mon-Fri 22:00-02:00 UTC", [t, t, t, t, t, f, f]);
        ok("Sat-Mon 00:00-24:00 UTC", [t, f, f, f, f, t, t]);
        ok("Mon,Wed-Thu 10:00-11:00 UTC", [t, f, t, t, f, f, f]);
        ok("Mon, Wed 10:00 - 11:00 UTC", [t, f, t, f, f, f, f]);
        ok("02:00-03:00 America/New_York", [t; 7]);
        ok("weekends 02:00-03:00 UTC", [f, f, f, f, f, t, t]);
    }

    #[test]
    fn rejects_bad_windows_with_a_reason() {
        let bad = |s: &str, msg: &str| {
            let e = Window::parse(s).expect_err(s);
            assert_eq!(e.message, msg, "{s}");
        };
        bad("Thr 01:00-05:00 UTC", "unknown day `Thr`");
        bad("Thu 01:00-05:00 Europe/Zurch", "unknown time zone `Europe/Zurch`");
        bad("Thu 01:00-01:00 UTC", "the window `01:00-01:00` is empty: it ends when it starts");
        bad("Thu 01:00-25:00 UTC", "`25:00` is not a time of day: hours go from 00 to 23, minutes from 00 to 59");
        bad(
            "Thu 01:00-05:00",
            "window \"Thu 01:00-05:00\" has no time zone: the zone comes last, e.g. Europe/Zurich or UTC",
        );
        bad("Thu UTC", "window \"Thu UTC\" has no time range HH:MM-HH:MM");
        bad("Thu 0100-0500 UTC", "`0100` is not a time of day HH:MM");
        bad("", "a window cannot be empty");
        // A whole day is not empty.
        assert!(Window::parse("Sun 00:00-24:00 UTC").is_ok());
    }

    #[test]
    fn a_window_crossing_midnight_ends_the_next_day() {
        let win = w("Fri 22:00-02:00 UTC");
        // Saturday 01:00 is inside Friday's window.
        let o = win.containing(ts("2026-12-05T01:00:00Z")).expect("open");
        assert_eq!((o.start, o.end), (ts("2026-12-04T22:00:00Z"), ts("2026-12-05T02:00:00Z")));
        assert_eq!(win.containing(ts("2026-12-05T02:00:00Z")), None);
        assert_eq!(win.containing(ts("2026-12-04T21:59:59Z")), None);
        assert_eq!(
            fit(&[win], ts("2026-12-05T01:00:00Z"), mins(59)),
            Fit::Now { window: 0, end: ts("2026-12-05T02:00:00Z") }
        );
    }

    #[test]
    fn windows_follow_the_zone_across_dst_changes() {
        // Europe/Zurich: clocks go forward on 2026-03-29 at 02:00, back on 2026-10-25 at 03:00.
        let win = w("Sun 01:00-05:00 Europe/Zurich");
        let spring = win.containing(ts("2026-03-29T01:30:00+01:00")).expect("open");
        assert_eq!(spring.start, ts("2026-03-29T00:00:00Z"));
        assert_eq!(spring.end, ts("2026-03-29T03:00:00Z"));
        assert_eq!(spring.len(), SignedDuration::from_hours(3));
        let autumn = win.containing(ts("2026-10-25T01:30:00+02:00")).expect("open");
        assert_eq!(autumn.len(), SignedDuration::from_hours(5));
        // 4h30m fits only on the night the clocks go back.
        match fit(std::slice::from_ref(&win), ts("2026-10-01T00:00:00Z"), mins(270)) {
            Fit::Later { start, .. } => assert_eq!(start, ts("2026-10-24T23:00:00Z")),
            other => panic!("{other:?}"),
        }
        // A start inside the spring gap moves to the end of the gap.
        let gap = w("Sun 02:30-04:00 Europe/Zurich");
        let o = gap.occurrences(ts("2026-03-28T00:00:00Z"), 2)[0];
        assert_eq!(o.start, ts("2026-03-29T03:30:00+02:00"));
        assert_eq!(win.local(ts("2026-03-29T03:00:00Z")), "Sun 2026-03-29 05:00 CEST");
    }

    #[test]
    fn an_estimate_that_does_not_fit_waits_for_the_next_window() {
        let win = w("Thu 01:00-05:00 Europe/Zurich");
        let at = ts("2026-12-03T04:30:00+01:00");
        match fit(std::slice::from_ref(&win), at, mins(42)) {
            Fit::Later { window: 0, start, end, skipped: Some(s) } => {
                assert_eq!(start, ts("2026-12-10T01:00:00+01:00"));
                assert_eq!(end, ts("2026-12-10T05:00:00+01:00"));
                assert!(s.current);
                assert_eq!(s.left, mins(30));
            }
            other => panic!("{other:?}"),
        }
        // 30 minutes do fit.
        assert!(matches!(fit(std::slice::from_ref(&win), at, mins(30)), Fit::Now { .. }));
        // Before the window opens: later, with nothing skipped.
        match fit(std::slice::from_ref(&win), ts("2026-12-03T00:59:50+01:00"), mins(42)) {
            Fit::Later { start, skipped: None, .. } => assert_eq!(start, ts("2026-12-03T00:00:00Z")),
            other => panic!("{other:?}"),
        }
        // Longer than any window.
        assert_eq!(fit(&[win], at, mins(300)), Fit::Never { longest: SignedDuration::from_hours(4) });
    }

    #[test]
    fn the_first_window_that_fits_wins_among_several() {
        let wins = [w("Thu 01:00-01:30 UTC"), w("Sat 01:00-05:00 UTC")];
        match fit(&wins, ts("2026-12-03T00:00:00Z"), mins(60)) {
            Fit::Later { window: 1, start, skipped: Some(s), .. } => {
                assert_eq!(start, ts("2026-12-05T01:00:00Z"));
                assert_eq!((s.window, s.current), (0, false));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            fit(&wins, ts("2026-12-03T01:10:00Z"), mins(20)),
            Fit::Now { window: 0, end: ts("2026-12-03T01:30:00Z") }
        );
    }
}
