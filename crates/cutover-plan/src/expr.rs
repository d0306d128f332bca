//! CEL expressions (the `cel` crate): compiling with positioned errors, listing
//! what an expression refers to, and evaluating over a JSON context.

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::{Context, Program, Value};

/// A compile error, with a 1-based line and column inside the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

pub fn compile(source: &str) -> Result<Program, CompileError> {
    // The cel parser may panic on some malformed inputs in older versions; a
    // plan must never crash validation, so a panic becomes an error.
    let result = std::panic::catch_unwind(|| Program::compile(source));
    match result {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(errs)) => {
            let first = errs.errors.first();
            let (line, col) = first.map(|e| e.pos).unwrap_or((1, 0));
            Err(CompileError {
                line: usize::try_from(line).unwrap_or(1).max(1),
                column: usize::try_from(col).unwrap_or(1).max(1),
                message: first.map(|e| friendly(&e.msg)).unwrap_or_else(|| "syntax error".into()),
            })
        }
        Err(_) => Err(CompileError { line: 1, column: 1, message: "the expression could not be parsed".into() }),
    }
}

/// The parser's messages list every token it would have accepted; say what
/// it found instead.
fn friendly(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("Syntax error: mismatched input ") else {
        return msg.to_string();
    };
    let found = rest.split(" expecting").next().unwrap_or(rest);
    if found == "'<EOF>'" { "the expression ends too early".into() } else { format!("unexpected {found}") }
}

/// Dotted references an expression makes to variables, as `(root, field)`:
/// `outputs.check.rows > 0` gives `("outputs", Some("check"))`. Variables bound
/// by comprehensions (`all(x, …)`) are not reported.
pub fn references(program: &Program) -> Vec<(String, Option<String>)> {
    let mut out = vec![];
    let mut bound = vec![];
    walk(program.expression(), &mut bound, &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk(e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<(String, Option<String>)>) {
    match &e.expr {
        Ast::Ident(name) if !bound.contains(name) => out.push((name.clone(), None)),
        Ast::Select(sel) => {
            if let Ast::Ident(root) = &sel.operand.expr {
                if !bound.contains(root) {
                    out.push((root.clone(), Some(sel.field.clone())));
                }
            } else {
                walk(&sel.operand, bound, out);
            }
        }
        Ast::Call(call) => {
            if let Some(t) = &call.target {
                walk(t, bound, out);
            }
            for a in &call.args {
                walk(a, bound, out);
            }
        }
        Ast::Comprehension(c) => {
            walk(&c.iter_range, bound, out);
            walk(&c.accu_init, bound, out);
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            walk(&c.loop_cond, bound, out);
            walk(&c.loop_step, bound, out);
            walk(&c.result, bound, out);
            bound.pop();
            if c.iter_var2.is_some() {
                bound.pop();
            }
            bound.pop();
        }
        Ast::List(l) => l.elements.iter().for_each(|x| walk(x, bound, out)),
        Ast::Map(m) => m.entries.iter().for_each(|x| entry(&x.expr, bound, out)),
        Ast::Struct(s) => s.entries.iter().for_each(|x| entry(&x.expr, bound, out)),
        _ => {}
    }
}

fn entry(e: &EntryExpr, bound: &mut Vec<String>, out: &mut Vec<(String, Option<String>)>) {
    match e {
        EntryExpr::StructField(f) => walk(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            walk(&m.key, bound, out);
            walk(&m.value, bound, out);
        }
    }
}

/// Evaluates an expression with each top-level key of `ctx` (a JSON object)
/// bound as a variable, and wants a boolean.
pub fn eval_bool(program: &Program, ctx: &serde_json::Value) -> Result<bool, String> {
    match eval(program, ctx)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("the expression must give true or false, it gave {other:?}")),
    }
}

pub fn eval(program: &Program, ctx: &serde_json::Value) -> Result<Value, String> {
    let mut context = Context::default();
    if let Some(obj) = ctx.as_object() {
        for (k, v) in obj {
            context.add_variable(k.clone(), v.clone()).map_err(|e| format!("cannot bind `{k}`: {e}"))?;
        }
    }
    program.execute(&context).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_are_dotted_and_skip_bound_variables() {
        let p = compile("outputs.check.rows > 0 && labels.all(k, k != name) && size(vars) > 0").expect("compiles");
        assert_eq!(
            references(&p),
            vec![
                ("labels".to_string(), None),
                ("name".to_string(), None),
                ("outputs".to_string(), Some("check".to_string())),
                ("vars".to_string(), None),
            ]
        );
    }

    #[test]
    fn eval_binds_json() {
        let p = compile("labels.region == 'eu' && vars.size > 10").expect("compiles");
        let ctx = json!({"labels": {"region": "eu"}, "vars": {"size": 11}});
        assert_eq!(eval_bool(&p, &ctx), Ok(true));
        let ctx = json!({"labels": {"region": "us"}, "vars": {"size": 11}});
        assert_eq!(eval_bool(&p, &ctx), Ok(false));
    }

    #[test]
    fn compile_errors_have_columns() {
        let e = compile("labels.region == ").expect_err("fails");
        assert_eq!(e.line, 1);
        assert!(e.column > 1, "{e:?}");
    }
}
