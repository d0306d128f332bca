//! Targets from outside the plan: a CSV or JSON file, or a command that prints
//! a JSON array (an inventory). Problems point into the file they come from.

use crate::build::Builder;
use crate::diag::{Diagnostic, Diagnostics, Pos, Source};
use crate::model::Target;
use crate::shape;
use crate::tree;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Reads targets from a file, CSV or JSON by extension.
pub fn from_file(path: &Path, at: &Pos, diags: &mut Diagnostics) -> Vec<Target> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::new(at.clone(), "targets", format!("cannot read the targets file {shown}: {e}")));
            return vec![];
        }
    };
    let src = Source::new(shown.as_str(), text);
    if tree::is_json_path(&shown) { from_json(&src, diags) } else { from_csv(&src, diags) }
}

/// Runs an inventory command (`sh -c`) in `dir` and reads the JSON array it prints.
pub fn from_command(command: &str, dir: &Path, at: &Pos, diags: &mut Diagnostics) -> Vec<Target> {
    let out = Command::new("sh").arg("-c").arg(command).current_dir(dir).output();
    match out {
        Err(e) => {
            diags.push(Diagnostic::new(at.clone(), "targets", format!("cannot run the targets command: {e}")));
            vec![]
        }
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            diags.push(Diagnostic::new(
                at.clone(),
                "targets",
                format!("the targets command failed ({}): {}", o.status, last.trim()),
            ));
            vec![]
        }
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let src = Source::new("<targets command output>.json", text);
            from_json(&src, diags)
        }
    }
}

fn from_json(src: &Source, diags: &mut Diagnostics) -> Vec<Target> {
    let node = match tree::parse_json(src) {
        Ok(n) => n,
        Err(d) => {
            diags.0.extend(d.0);
            return vec![];
        }
    };
    let Some(items) = node.as_array() else {
        diags.push(Diagnostic::new(
            src.pos(node.span),
            "type",
            format!("expected a JSON array of targets, found {}", node.type_name()),
        ));
        return vec![];
    };
    let b = Builder { src };
    let before = diags.len();
    for it in items {
        shape::check_target(src, it, diags);
    }
    if diags.len() > before {
        return vec![];
    }
    items.iter().map(|n| b.target(n)).collect()
}

fn from_csv(src: &Source, diags: &mut Diagnostics) -> Vec<Target> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(src.text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            diags.push(Diagnostic::new(Pos::file(src.path.clone()), "csv", format!("invalid CSV header: {e}")));
            return vec![];
        }
    };
    let Some(name_col) = headers.iter().position(|h| h == "name") else {
        diags.push(
            Diagnostic::new(Pos::file(src.path.clone()), "csv", "the CSV header has no `name` column")
                .with_help("the first line names the columns: name, after, vars.X, labels.X or any other label"),
        );
        return vec![];
    };
    let mut targets = vec![];
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(1);
                diags.push(Diagnostic::new(
                    Pos { file: src.path.clone(), line, column: 1 },
                    "csv",
                    format!("invalid CSV record: {e}"),
                ));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(1);
        let pos = Pos { file: src.path.clone(), line, column: 1 };
        let name = rec.get(name_col).unwrap_or("").to_string();
        if name.is_empty() {
            diags.push(Diagnostic::new(pos.clone(), "csv", "this row has an empty `name`"));
            continue;
        }
        let mut t = Target { name, labels: BTreeMap::new(), pos, ..Target::default() };
        for (h, v) in headers.iter().zip(rec.iter()) {
            if h == "name" || v.is_empty() {
                continue;
            }
            if h == "after" {
                t.after = v.split([';', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect();
            } else if h == "window" {
                // Several windows are separated by `;` (a window has spaces).
                t.windows = v.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
            } else if h == "notified_at" {
                t.notified_at = Some(v.to_string());
            } else if h == "size" {
                t.size = Some(v.to_string());
            } else if let Some(var) = h.strip_prefix("vars.") {
                t.vars.insert(var.to_string(), serde_json::Value::String(v.to_string()));
            } else {
                let label = h.strip_prefix("labels.").unwrap_or(h);
                t.labels.insert(label.to_string(), v.to_string());
            }
        }
        targets.push(t);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_become_labels_vars_and_after() {
        let src = Source::new("t.csv", "name,region,vars.dsn,after\na,eu,postgres://x/a,\nb,us,postgres://x/b,a\n");
        let mut d = Diagnostics::default();
        let t = from_csv(&src, &mut d);
        assert!(d.is_empty(), "{d}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].labels["region"], "us");
        assert_eq!(t[1].vars["dsn"], "postgres://x/b");
        assert_eq!(t[1].after, vec!["a".to_string()]);
        assert_eq!(t[1].pos.line, 3);
    }

    #[test]
    fn json_targets_are_shape_checked_with_positions() {
        let src = Source::new("t.json", "[{\"name\": \"a\"},\n {\"nmae\": \"b\"}]");
        let mut d = Diagnostics::default();
        let t = from_json(&src, &mut d);
        assert!(t.is_empty());
        assert_eq!(d.0[0].code, "unknown-key");
        assert_eq!((d.0[0].pos.line, d.0[0].pos.column), (2, 3));
    }
}
