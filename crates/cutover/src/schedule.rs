//! `cutover schedule` (each target's next window and estimate, as a table,
//! CSV, JSON or iCalendar) and `cutover start-now`.

use crate::cli::{Output, ScheduleFormat};
use crate::output::{actor, json, table, usage};
use cutover_engine::Engine;
use cutover_engine::model::Action;
use cutover_plan::estimate::{self, Model, Sample};
use cutover_plan::window::{self, Fit, local_text};
use cutover_plan::{Plan, Target};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Records "start now" requests for a run about to be driven (the driver
/// reads them before it starts any target): `Some(&[])` means every target.
pub fn request_start_now(engine: &Engine, run: &str, start_now: Option<&[String]>) -> anyhow::Result<()> {
    let Some(names) = start_now else { return Ok(()) };
    let who = actor();
    if names.is_empty() {
        engine.store().add_request(run, Action::StartNow, None, &who, None)?;
    }
    for n in names {
        engine.store().add_request(run, Action::StartNow, Some(n), &who, None)?;
    }
    Ok(())
}

/// `cutover start-now RUN [TARGET…]`: the worst exit code of its requests.
pub async fn start_now(
    state: &str,
    run: &str,
    targets: &[String],
    note: Option<String>,
    out: Output,
) -> anyhow::Result<i32> {
    if targets.is_empty() {
        return crate::control::act(state, run, Action::StartNow, None, note, out).await;
    }
    let mut code = 0;
    for t in targets {
        code = code.max(crate::control::act(state, run, Action::StartNow, Some(t), note.clone(), out).await?);
    }
    Ok(code)
}

/// One target's plan.
struct Row {
    target: String,
    wave: usize,
    estimate: Duration,
    size: Option<u64>,
    /// The window it is planned in (as written), if it has windows.
    window: Option<String>,
    tz: TimeZone,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
    /// Whether the estimate fits in the first window it could use.
    fits: bool,
    note: String,
}

fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn plan_row(plan: &Plan, t: &Target, wave: usize, from: Timestamp, model: &Model) -> Row {
    let ts = cutover_plan::schedule::target_schedule(t).unwrap_or_default();
    let estimate = model.estimate(ts.size);
    let mut notes = vec![];
    let mut earliest = from;
    if let Some(n) = plan.schedule.notice {
        let notice = SignedDuration::try_from(n).unwrap_or(SignedDuration::MAX);
        let n_text = cutover_plan::schedule::notice_text(n);
        match ts.notified_at {
            Some(at) => {
                let until = at.checked_add(notice).unwrap_or(at);
                if until > from {
                    earliest = until;
                    notes.push(format!("{n_text} of notice run until {}", utc(until)));
                }
            }
            None => {
                earliest = from.checked_add(notice).unwrap_or(from);
                notes.push(format!(
                    "not notified yet: planned as if notified at {}, with {n_text} of notice",
                    utc(from)
                ));
            }
        }
    }
    let est = SignedDuration::try_from(estimate).unwrap_or(SignedDuration::MAX);
    let mut row = Row {
        target: t.name.clone(),
        wave,
        estimate,
        size: ts.size,
        window: None,
        tz: TimeZone::UTC,
        start: Some(earliest),
        end: None,
        fits: true,
        note: String::new(),
    };
    if !ts.windows.is_empty() {
        match window::fit(&ts.windows, earliest, est) {
            Fit::Now { window, end } => {
                row.window = Some(ts.windows[window].text.clone());
                row.tz = ts.windows[window].time_zone().clone();
                row.end = Some(end);
            }
            Fit::Later { window, start, end, skipped } => {
                let w = &ts.windows[window];
                row.window = Some(w.text.clone());
                row.tz = w.time_zone().clone();
                (row.start, row.end) = (Some(start), Some(end));
                if let Some(s) = skipped {
                    row.fits = false;
                    let sw = &ts.windows[s.window];
                    notes.push(format!(
                        "does not fit in {} from {} ({} left)",
                        sw,
                        sw.local(s.occurrence.start.max(earliest)),
                        window::duration_text(s.left)
                    ));
                }
            }
            Fit::Never { longest } => {
                row.window = ts.windows.first().map(|w| w.text.clone());
                (row.start, row.fits) = (None, false);
                notes.push(format!(
                    "longer than any of its windows (the longest lasts {}): it will not start by itself",
                    window::duration_text(longest)
                ));
            }
        }
    } else {
        notes.push("no window: it may start at any time".into());
    }
    row.note = notes.join("; ");
    row
}

fn history(state: &str, plan: &str) -> anyhow::Result<Vec<Sample>> {
    // Reading must not create a state file where there was none.
    let path = state.strip_prefix("sqlite://").or_else(|| state.strip_prefix("sqlite:")).unwrap_or(state);
    if !Path::new(path).exists() {
        return Ok(vec![]);
    }
    let store = cutover_engine::store::open(state).map_err(usage)?;
    Ok(cutover_engine::schedule::history(store.as_ref(), plan)?)
}

pub fn schedule(
    state: &str,
    path: &Path,
    format: ScheduleFormat,
    from: Option<&str>,
    out: Output,
) -> anyhow::Result<i32> {
    let plan = match cutover_plan::load_file(path) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{d}");
            eprintln!("error: the plan has {} problem(s)", d.len());
            return Ok(2);
        }
    };
    let from = match from {
        Some(f) => f
            .trim()
            .parse::<Timestamp>()
            .map_err(|_| usage(format!("--from {f:?} is not a time with an offset (e.g. 2026-12-01T00:00:00Z)")))?,
        None => cutover_engine::schedule::Clock::from_env().map_err(usage)?.now(),
    };
    let samples = history(state, &plan.name)?;
    let model = cutover_engine::schedule::model(&plan, &samples);
    let error = estimate::mape(&samples);
    let waves = plan.wave_of();
    let rows: Vec<Row> = plan
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| plan_row(&plan, t, waves.get(i).copied().unwrap_or(0) + 1, from, &model))
        .collect();
    let model_text = match error {
        Some(e) => format!(
            "{}; error so far {e:.0}% (mean absolute percentage error over {} finished target(s))",
            model.describe(),
            samples.len()
        ),
        None => format!("{} (no finished target to learn from yet)", model.describe()),
    };
    if out == Output::Json {
        let targets: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "target": r.target,
                    "wave": r.wave,
                    "estimate": cutover_plan::duration::format(r.estimate),
                    "estimate_secs": r.estimate.as_secs(),
                    "size": r.size,
                    "window": r.window,
                    "start": r.start.map(utc),
                    "end": r.end.map(utc),
                    "start_local": r.start.map(|s| local_text(s, &r.tz)),
                    "end_local": r.end.map(|s| local_text(s, &r.tz)),
                    "fits": r.fits,
                    "note": r.note,
                })
            })
            .collect();
        json(&json!({
            "plan": plan.name,
            "from": utc(from),
            "estimates": model.describe(),
            "samples": samples.len(),
            "mape": error,
            "targets": targets,
        }))?;
        return Ok(0);
    }
    match format {
        ScheduleFormat::Table => {
            println!(
                "plan `{}`: {} target(s), planned from {}",
                plan.name,
                rows.len(),
                local_text(from, &TimeZone::UTC)
            );
            if let Some(n) = plan.schedule.notice {
                println!("notice: {}", cutover_plan::schedule::notice_text(n));
            }
            println!("estimates: {model_text}");
            println!();
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.target.clone(),
                        r.wave.to_string(),
                        cutover_plan::duration::format(r.estimate),
                        r.window.clone().unwrap_or_else(|| "-".into()),
                        r.start.map(|s| local_text(s, &r.tz)).unwrap_or_else(|| "-".into()),
                        r.end.map(|s| local_text(s, &r.tz)).unwrap_or_else(|| "-".into()),
                        r.start.map(utc).unwrap_or_else(|| "-".into()),
                        r.end.map(utc).unwrap_or_else(|| "-".into()),
                        if r.fits { "yes" } else { "no" }.into(),
                        r.note.clone(),
                    ]
                })
                .collect();
            table(
                &["TARGET", "WAVE", "ESTIMATE", "WINDOW", "START", "END", "START (UTC)", "END (UTC)", "FITS", "NOTE"],
                &cells,
            );
        }
        ScheduleFormat::Csv => {
            let mut s = String::from(
                "target,wave,estimate_secs,estimate,window,start_local,end_local,start_utc,end_utc,fits,note\n",
            );
            for r in &rows {
                let cells = [
                    r.target.clone(),
                    r.wave.to_string(),
                    r.estimate.as_secs().to_string(),
                    cutover_plan::duration::format(r.estimate),
                    r.window.clone().unwrap_or_default(),
                    r.start.map(|x| local_text(x, &r.tz)).unwrap_or_default(),
                    r.end.map(|x| local_text(x, &r.tz)).unwrap_or_default(),
                    r.start.map(utc).unwrap_or_default(),
                    r.end.map(utc).unwrap_or_default(),
                    r.fits.to_string(),
                    r.note.clone(),
                ];
                s.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
                s.push('\n');
            }
            print!("{s}");
        }
        ScheduleFormat::Ics => {
            let (text, left_out) = ics(&plan, &rows, from);
            for t in left_out {
                eprintln!("warning: no event for `{t}`: its estimate fits in none of its windows");
            }
            print!("{text}");
        }
    }
    Ok(0)
}

/// A CSV cell, quoted when it holds a comma, a quote or a line break.
fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) { format!("\"{}\"", c.replace('"', "\"\"")) } else { c.to_string() }
}

/// iCalendar (RFC 5545), written by hand: it is a few lines of text per
/// event, and no small, well-kept crate for it is available here. One
/// VEVENT per target with a planned start: DTSTART/DTEND in UTC (the window,
/// or start + estimate without one), a UID stable per plan and target so a
/// calendar updates the event when the notice is sent again. Lines end in
/// CRLF and are folded at 75 octets. Returns the text and the targets left out.
fn ics(plan: &Plan, rows: &[Row], stamp: Timestamp) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut left_out = vec![];
    let stamp = stamp.strftime("%Y%m%dT%H%M%SZ").to_string();
    for l in
        ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//cutover//schedule//EN", "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    {
        line(&mut out, l);
    }
    line(&mut out, &format!("X-WR-CALNAME:{}", text(&format!("Maintenance: {}", plan.name))));
    for r in rows {
        let Some(start) = r.start else {
            left_out.push(r.target.clone());
            continue;
        };
        let end = r.end.unwrap_or_else(|| {
            start.checked_add(SignedDuration::try_from(r.estimate).unwrap_or(SignedDuration::ZERO)).unwrap_or(start)
        });
        let at = |t: Timestamp| t.strftime("%Y%m%dT%H%M%SZ").to_string();
        let mut desc = format!(
            "Maintenance of {} (plan {}): estimated duration {}.",
            r.target,
            plan.name,
            cutover_plan::duration::format(r.estimate)
        );
        if let Some(w) = &r.window {
            desc.push_str(&format!(" Maintenance window: {w}; from {}.", local_text(start, &r.tz)));
        }
        line(&mut out, "BEGIN:VEVENT");
        line(&mut out, &format!("UID:{}", uid(&plan.name, &r.target)));
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(&mut out, &format!("DTSTART:{}", at(start)));
        line(&mut out, &format!("DTEND:{}", at(end)));
        line(&mut out, &format!("SUMMARY:{}", text(&format!("{}: maintenance of {}", plan.name, r.target))));
        line(&mut out, &format!("DESCRIPTION:{}", text(&desc)));
        line(&mut out, "TRANSP:OPAQUE");
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    (out, left_out)
}

/// A UID from the plan and target names: their safe characters, and a hash
/// of both so that names differing only in other characters stay apart.
fn uid(plan: &str, target: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in plan.bytes().chain([0]).chain(target.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}.{}.{h:016x}@cutover", safe(target), safe(plan))
}

/// TEXT escaping (RFC 5545 3.3.11).
fn text(s: &str) -> String {
    s.replace('\\', "\\\\").replace(';', "\\;").replace(',', "\\,").replace("\r\n", "\\n").replace('\n', "\\n")
}

/// Appends a content line, folded at 75 octets (never inside a character), with CRLF.
fn line(out: &mut String, content: &str) {
    let mut width = 0;
    for c in content.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            // The space that starts a continuation line counts.
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_fold_at_75_octets_without_splitting_characters() {
        let mut out = String::new();
        let long = format!("DESCRIPTION:{}", "é".repeat(60));
        line(&mut out, &long);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(lines.last(), Some(&""));
        for l in &lines {
            assert!(l.len() <= 75, "{} octets: {l}", l.len());
        }
        assert!(lines[1].starts_with(' '));
        assert_eq!(out.replace("\r\n ", "").trim_end(), long);
        assert_eq!(text("a,b;c\\d\ne"), "a\\,b\\;c\\\\d\\ne");
        assert_eq!(uid("p", "db 1"), uid("p", "db 1"));
        assert_ne!(uid("p", "db 1"), uid("p", "db_1"));
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
