//! Secret values never leave the process: every string bound for the store,
//! the event log, an error or the terminal passes through a [`Redactor`].

use cutover_plan::url_password;
use std::sync::{Arc, RwLock};

pub const MASK: &str = "[redacted]";

#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Adds a value to hide. Empty values are ignored; longer values are
    /// replaced first so a secret containing another is hidden whole.
    pub fn add(&self, value: &str) {
        let v = value.trim_end_matches(['\n', '\r']);
        if v.is_empty() {
            return;
        }
        let mut s = self.secrets.write().unwrap_or_else(|p| p.into_inner());
        if !s.iter().any(|x| x == v) {
            s.push(v.to_string());
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }

    /// Hides the password of a URL-like value (`postgres://user:pw@host/db`),
    /// so connection strings in vars are safe to log.
    pub fn add_url_password(&self, value: &str) {
        // Very short passwords (e.g. "pw" in a test DSN) would mangle every
        // message if hidden everywhere; they are hidden only in place.
        if let Some(pw) = url_password(value).filter(|p| p.chars().count() >= 3) {
            self.add(&pw);
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let s = self.secrets.read().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_string();
        for v in s.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.redact(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (self.redact(k), self.redact_json(x))).collect()),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_values_and_url_passwords() {
        let r = Redactor::default();
        r.add("s3cr3t-value");
        r.add_url_password("postgres://app:pa55word@db:5432/app?sslmode=disable");
        assert_eq!(r.redact("x s3cr3t-value y pa55word"), format!("x {MASK} y {MASK}"));
        assert_eq!(url_password("postgres://app@db/app"), None);
        assert_eq!(url_password("http://h/x:y@z"), None);
    }
}
