//! Names as the messages and the suggested SQL write them: identifiers
//! quoted only when PostgreSQL needs it, types in their SQL spelling, tables
//! compared the way the linter can without a catalog.

use pg_query::NodeEnum;
use pg_query::protobuf::{KeywordKind, Node, RangeVar, Token, TypeName};

/// An identifier as SQL text: bare when PostgreSQL would read it back
/// unchanged (lower case, not a reserved word), double-quoted otherwise.
pub(crate) fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    // The scanner knows which words are reserved: `order` and `user` need
    // quotes as a table name, `status` and `name` do not.
    let keyword_ok = || {
        pg_query::scan(name).is_ok_and(|scan| match scan.tokens.as_slice() {
            [t] => {
                t.token() == Token::Ident
                    || matches!(t.keyword_kind(), KeywordKind::UnreservedKeyword | KeywordKind::ColNameKeyword)
            }
            _ => false,
        })
    };
    if plain && keyword_ok() { name.to_owned() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// A name for a message: always in double quotes, so it stands out from
/// the words around it (`index "orders_user_idx"`).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A command-line argument, quoted for a POSIX shell when it needs it.
pub(crate) fn shell_arg(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A table (or index, or other schema object) as a statement names it:
/// the schema is empty when the statement does not give one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl Table {
    pub(crate) fn of(rv: &RangeVar) -> Table {
        Table { schema: rv.schemaname.clone(), name: rv.relname.clone() }
    }

    /// From a list of name parts, as `DROP` and `ALTER … RENAME` give them.
    pub(crate) fn from_parts(parts: &[String]) -> Table {
        match parts {
            [.., schema, name] => Table { schema: schema.clone(), name: name.clone() },
            [name] => Table { schema: String::new(), name: name.clone() },
            [] => Table { schema: String::new(), name: String::new() },
        }
    }

    /// Whether two statements may name the same table. Without a catalog,
    /// `orders` and `app.orders` may be the same table (search_path), so an
    /// unqualified name matches any schema.
    pub(crate) fn same(&self, other: &Table) -> bool {
        self.name == other.name && (self.schema.is_empty() || other.schema.is_empty() || self.schema == other.schema)
    }

    /// The name as `cutover pg bigint --table` takes it: `schema.table`, or
    /// the name as it is.
    pub(crate) fn plain(&self) -> String {
        if self.schema.is_empty() { self.name.clone() } else { format!("{}.{}", self.schema, self.name) }
    }

    /// A name for a constraint or index made from the table's name.
    pub(crate) fn derived(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.name)
    }

    /// A sibling object (an index) in the table's schema, as SQL.
    pub(crate) fn sibling(&self, name: &str) -> String {
        if self.schema.is_empty() { ident(name) } else { format!("{}.{}", ident(&self.schema), ident(name)) }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.schema.is_empty() {
            write!(f, "{}.", ident(&self.schema))?;
        }
        f.write_str(&ident(&self.name))
    }
}

/// The `String` values of a list of nodes (name parts, column lists).
pub(crate) fn strings(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| match n.node.as_ref() {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        })
        .collect()
}

/// The name parts of one object in a `DROP` statement's list.
pub(crate) fn object_parts(node: &Node) -> Vec<String> {
    match node.node.as_ref() {
        Some(NodeEnum::List(list)) => strings(&list.items),
        Some(NodeEnum::String(s)) => vec![s.sval.clone()],
        Some(NodeEnum::TypeName(t)) => strings(&t.names),
        Some(NodeEnum::ObjectWithArgs(o)) => strings(&o.objname),
        _ => Vec::new(),
    }
}

/// A type's last name part, lower-cased, without `pg_catalog.`: `int8` for
/// `bigint`, `varchar` for `character varying(20)`.
pub(crate) fn base_type(t: &TypeName) -> String {
    strings(&t.names).last().map(|s| s.to_ascii_lowercase()).unwrap_or_default()
}

/// A type as SQL: `bigint`, `varchar(20)`, `numeric(12,2)`, `text[]`,
/// `app.mood`.
pub(crate) fn type_sql(t: &TypeName) -> String {
    let names = strings(&t.names);
    let base = match names.as_slice() {
        [catalog, name] if catalog == "pg_catalog" => match name.as_str() {
            "int8" => "bigint".to_owned(),
            "int4" => "integer".to_owned(),
            "int2" => "smallint".to_owned(),
            "float8" => "double precision".to_owned(),
            "float4" => "real".to_owned(),
            "bool" => "boolean".to_owned(),
            "bpchar" => "char".to_owned(),
            "timestamptz" => "timestamptz".to_owned(),
            other => other.to_owned(),
        },
        parts => parts.iter().map(|p| ident(p)).collect::<Vec<_>>().join("."),
    };
    let mods: Vec<String> = t
        .typmods
        .iter()
        .filter_map(|m| match m.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(pg_query::protobuf::a_const::Val::Ival(i)) => Some(i.ival.to_string()),
                Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let mut out = base;
    if !mods.is_empty() {
        out.push_str(&format!("({})", mods.join(",")));
    }
    for _ in &t.array_bounds {
        out.push_str("[]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(ident("orders"), "orders");
        assert_eq!(ident("status"), "status");
        assert_eq!(ident("order"), "\"order\"");
        assert_eq!(ident("user"), "\"user\"");
        assert_eq!(ident("Order Items"), "\"Order Items\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn shell_arguments_are_quoted_only_when_needed() {
        assert_eq!(shell_arg("public.orders"), "public.orders");
        assert_eq!(shell_arg("Order Items"), "'Order Items'");
        assert_eq!(shell_arg("it's"), r"'it'\''s'");
    }

    #[test]
    fn unqualified_names_match_any_schema() {
        let t = |schema: &str, name: &str| Table { schema: schema.into(), name: name.into() };
        assert!(t("", "orders").same(&t("app", "orders")));
        assert!(t("app", "orders").same(&t("app", "orders")));
        assert!(!t("app", "orders").same(&t("billing", "orders")));
        assert!(!t("", "orders").same(&t("", "order_items")));
        assert_eq!(t("app", "order").to_string(), "app.\"order\"");
    }
}
