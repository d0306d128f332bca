//! A format-independent tree of values with their spans, parsed from TOML or
//! JSON, so that every later check can point at `file:line:column`.

use crate::diag::{Diagnostic, Diagnostics, Source, Span};

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// TOML datetimes are kept as written.
    Datetime(String),
    Null,
    Array(Vec<Node>),
    Table(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    /// The name of this value's type, as the messages say it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Null => "null",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Table(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn key_span(&self, key: &str) -> Option<Span> {
        match &self.value {
            Value::Table(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.span),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn entries(&self) -> &[(Key, Node)] {
        match &self.value {
            Value::Table(e) => e,
            _ => &[],
        }
    }

    /// Converts to JSON (used for vars and outputs, which keep their types).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Str(s) | Value::Datetime(s) => serde_json::Value::String(s.clone()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Value::from(*f),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Null => serde_json::Value::Null,
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Node::to_json).collect()),
            Value::Table(e) => {
                serde_json::Value::Object(e.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            }
        }
    }

    /// A scalar as text (labels are text whatever type they were written as).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) | Value::Datetime(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Which syntax a file is in, from its extension (`.json` is JSON, anything else TOML).
pub fn is_json_path(path: &str) -> bool {
    path.rsplit('.').next().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Parses a whole file, TOML or JSON by its extension.
pub fn parse(src: &Source) -> Result<Node, Diagnostics> {
    if is_json_path(&src.path) { parse_json(src) } else { parse_toml(src) }
}

pub fn parse_toml(src: &Source) -> Result<Node, Diagnostics> {
    let (table, errors) = toml::de::DeTable::parse_recoverable(&src.text);
    if !errors.is_empty() {
        let mut diags = Diagnostics::default();
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                Diagnostic::new(
                    src.pos(Span::new(span.start, span.end)),
                    "syntax",
                    format!("invalid TOML: {}", e.message().trim()),
                )
                .with_help("see https://toml.io for the syntax"),
            );
        }
        diags.sort();
        return Err(diags);
    }
    let span = table.span();
    Ok(Node { value: toml_table(table.get_ref()), span: Span::new(span.start, span.end) })
}

fn toml_table(t: &toml::de::DeTable<'_>) -> Value {
    Value::Table(
        t.iter()
            .map(|(k, v)| {
                let ks = k.span();
                (Key { name: k.get_ref().to_string(), span: Span::new(ks.start, ks.end) }, toml_node(v))
            })
            .collect(),
    )
}

fn toml_node(v: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let span = v.span();
    let value = match v.get_ref() {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
            Ok(n) => Value::Int(n),
            // Out of range integers stay visible as text; the shape check reports them.
            Err(_) => Value::Str(i.as_str().to_string()),
        },
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(n) => Value::Float(n),
            Err(_) => Value::Str(f.as_str().to_string()),
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(a.iter().map(toml_node).collect()),
        DeValue::Table(t) => toml_table(t),
    };
    Node { value, span: Span::new(span.start, span.end) }
}

pub fn parse_json(src: &Source) -> Result<Node, Diagnostics> {
    let opts = jsonc_parser::ParseOptions::default();
    let parsed = jsonc_parser::parse_to_ast(&src.text, &Default::default(), &opts);
    match parsed {
        Ok(result) => match result.value {
            Some(v) => Ok(json_node(&v)),
            None => Err(Diagnostics(vec![Diagnostic::new(
                src.pos(Span::default()),
                "syntax",
                "the file is empty: expected a JSON object",
            )])),
        },
        Err(e) => {
            let r = e.range();
            Err(Diagnostics(vec![Diagnostic::new(
                src.pos(Span::new(r.start, r.end)),
                "syntax",
                format!("invalid JSON: {}", e.kind()),
            )]))
        }
    }
}

fn json_node(v: &jsonc_parser::ast::Value<'_>) -> Node {
    use jsonc_parser::ast::{ObjectPropName, Value as J};
    let (value, range) = match v {
        J::StringLit(s) => (Value::Str(s.value.to_string()), s.range),
        J::NumberLit(n) => {
            let value = if let Ok(i) = n.value.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = n.value.parse::<f64>() {
                Value::Float(f)
            } else {
                Value::Str(n.value.to_string())
            };
            (value, n.range)
        }
        J::BooleanLit(b) => (Value::Bool(b.value), b.range),
        J::NullKeyword(n) => (Value::Null, n.range),
        J::Array(a) => (Value::Array(a.elements.iter().map(json_node).collect()), a.range),
        J::Object(o) => (
            Value::Table(
                o.properties
                    .iter()
                    .map(|p| {
                        let (name, r) = match &p.name {
                            ObjectPropName::String(s) => (s.value.to_string(), s.range),
                            ObjectPropName::Word(w) => (w.value.to_string(), w.range),
                        };
                        (Key { name, span: Span::new(r.start, r.end) }, json_node(&p.value))
                    })
                    .collect(),
            ),
            o.range,
        ),
    };
    Node { value, span: Span::new(range.start, range.end) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_give_the_same_tree_shape_with_positions() {
        let t = Source::new("a.toml", "name = \"x\"\n[[phases]]\nname = \"p\"\n");
        let j = Source::new("a.json", "{\n  \"name\": \"x\",\n  \"phases\": [{\"name\": \"p\"}]\n}");
        let tt = parse(&t).expect("toml parses");
        let jt = parse(&j).expect("json parses");
        assert_eq!(tt.to_json(), jt.to_json());
        let phases = tt.get("phases").and_then(|p| p.as_array()).expect("phases");
        let name = phases[0].key_span("name").expect("key");
        assert_eq!(t.line_col(name.start), (3, 1));
        let jname = jt.key_span("name").expect("key");
        assert_eq!(j.line_col(jname.start), (2, 3));
    }

    #[test]
    fn toml_syntax_errors_have_positions() {
        let t = Source::new("a.toml", "name = \"x\"\nphases = [\n");
        let e = parse(&t).expect_err("must fail");
        assert_eq!(e.0[0].code, "syntax");
        assert!(e.0[0].pos.line >= 2, "{e}");
    }
}
