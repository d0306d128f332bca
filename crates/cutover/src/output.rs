//! Presentation helpers: tables, JSON, exit codes carried by errors.

use std::fmt;

/// An error that ends the command with a specific exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The command could not start (exit code 2): bad state file, unknown run…
pub fn usage(e: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Exit { code: 2, message: e.to_string() })
}

/// Prints rows as aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Who is acting, for the audit trail: `CUTOVER_ACTOR`, else user@host.
pub fn actor() -> String {
    std::env::var("CUTOVER_ACTOR").ok().filter(|s| !s.is_empty()).unwrap_or_else(cutover_engine::user_at_host)
}
