//! Resolving secret references (`env:NAME`, `file:PATH`, `command:CMD`) at run
//! time. Values are kept in memory only and registered with the redactor
//! before anything else sees them.

use crate::redact::Redactor;
use cutover_plan::SecretDef;
use std::collections::BTreeMap;
use std::path::Path;

/// The shortest secret value accepted.
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
#[error("secret `{name}` cannot be read: {reason}")]
pub struct SecretError {
    pub name: String,
    pub reason: String,
}

/// Reads every declared secret; the first that cannot be read stops the run
/// before it touches anything.
pub fn resolve(defs: &[SecretDef], dir: &Path, redactor: &Redactor) -> Result<BTreeMap<String, String>, SecretError> {
    let mut out = BTreeMap::new();
    for d in defs {
        let err = |reason: String| SecretError { name: d.name.clone(), reason };
        let value = if let Some(var) = d.reference.strip_prefix("env:") {
            std::env::var(var.trim()).map_err(|_| err(format!("the environment variable {} is not set", var.trim())))?
        } else if let Some(path) = d.reference.strip_prefix("file:") {
            let p = dir.join(path.trim());
            let v = std::fs::read_to_string(&p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
            v.trim_end_matches(['\n', '\r']).to_string()
        } else if let Some(cmd) = d.reference.strip_prefix("command:") {
            let o = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .current_dir(dir)
                .output()
                .map_err(|e| err(format!("cannot run its command: {e}")))?;
            let stdout = String::from_utf8_lossy(&o.stdout).trim_end_matches(['\n', '\r']).to_string();
            if !o.status.success() {
                // The command's output may hold the value: hide it before quoting stderr.
                redactor.add(&stdout);
                let stderr = redactor.redact(String::from_utf8_lossy(&o.stderr).trim());
                return Err(err(format!("its command failed ({}): {}", o.status, last_line(&stderr))));
            }
            stdout
        } else {
            return Err(err("it must start with env:, file: or command:".into()));
        };
        if value.is_empty() {
            return Err(err("its value is empty".into()));
        }
        // Hiding a one- or two-letter value would mangle every message.
        if value.chars().count() < MIN_SECRET_LEN {
            return Err(err(format!(
                "its value is shorter than {MIN_SECRET_LEN} characters, too short to be hidden reliably in output"
            )));
        }
        redactor.add(&value);
        out.insert(d.name.clone(), value);
    }
    Ok(out)
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}
