//! Templates (minijinja) with strict undefined: a missing variable is an error,
//! never an empty string.

use minijinja::{Environment, UndefinedBehavior};
use std::collections::BTreeSet;
use std::sync::OnceLock;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

/// A template error, with a 1-based line and column inside the template when known.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn error(source: &str, e: &minijinja::Error) -> TemplateError {
    let (line, column) = match e.range() {
        Some(r) => {
            let before = source.get(..r.start).unwrap_or("");
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
            (line, col)
        }
        None => (e.line().unwrap_or(1), 1),
    };
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message = format!("{message}: {d}");
    }
    TemplateError { line, column, message }
}

/// Parses a template; returns the dotted variables it reads (`vars.dsn`,
/// `outputs.check.rows`…), as the root and first field.
pub fn references(source: &str) -> Result<BTreeSet<(String, Option<String>)>, TemplateError> {
    let t = env().template_from_str(source).map_err(|e| error(source, &e))?;
    Ok(t.undeclared_variables(true)
        .into_iter()
        .map(|v| {
            let mut parts = v.splitn(3, '.');
            let root = parts.next().unwrap_or_default().to_string();
            (root, parts.next().map(str::to_string))
        })
        .collect())
}

/// The full dotted paths a template reads (`outputs.inspect.rows`).
pub fn paths(source: &str) -> Result<BTreeSet<String>, TemplateError> {
    let t = env().template_from_str(source).map_err(|e| error(source, &e))?;
    Ok(t.undeclared_variables(true).into_iter().collect())
}

/// Renders a template over a JSON context.
pub fn render(source: &str, ctx: &serde_json::Value) -> Result<String, TemplateError> {
    // Most strings in a plan hold no template syntax at all.
    if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
        return Ok(source.to_string());
    }
    env().render_str(source, minijinja::value::Value::from(minijinja::value::Serde(ctx))).map_err(|e| error(source, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undefined_is_an_error() {
        let e = render("x {{ vars.nope }}", &json!({"vars": {}})).expect_err("strict");
        assert!(e.message.contains("undefined"), "{e:?}");
        assert_eq!(render("{{ vars.a }}-{{ name }}", &json!({"vars": {"a": 1}, "name": "t"})), Ok("1-t".into()));
    }

    #[test]
    fn references_are_dotted() {
        let r = references("{{ vars.dsn }} {{ outputs.s1.x }} {{ secrets.pw | upper }}").expect("parses");
        assert!(r.contains(&("vars".into(), Some("dsn".into()))));
        assert!(r.contains(&("outputs".into(), Some("s1".into()))));
        assert!(r.contains(&("secrets".into(), Some("pw".into()))));
    }

    #[test]
    fn syntax_errors_have_a_column() {
        let e = references("a {{ vars.x ").expect_err("unterminated");
        assert_eq!(e.line, 1);
    }
}
