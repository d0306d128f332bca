//! The linter against a corpus of realistic migration files: every file in
//! `tests/lint-corpus/` has its expected findings (`code@line`) here, and
//! every file listed here exists, so a file added without expectations fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cutover_migrate::lint::{self, Finding, RULES, Severity};

/// Each corpus file and the findings it must give, in the linter's order.
const EXPECTED: &[(&str, &[&str])] = &[
    ("0001_create_users.up.sql", &[]),
    ("0001_create_users.down.sql", &["M011@1", "M013@1", "M011@2"]),
    ("0002_create_orders.up.sql", &[]),
    ("0003_orders_user_idx.up.sql", &["M001@2", "M013@2"]),
    ("0004_orders_status_idx.up.sql", &[]),
    ("0005_users_name_idx.up.sql", &["M002@2"]),
    ("0006_orders_id_bigint.up.sql", &["M003@6"]),
    ("0007_users_email_not_null.up.sql", &["M004@2", "M013@2"]),
    ("0008_users_name_not_null_check.up.sql", &[]),
    ("0009_users_name_not_null.up.sql", &[]),
    ("0010_orders_add_columns.up.sql", &["M005@4", "M009@5"]),
    ("0011_order_items.up.sql", &["M013@3", "M006@4", "M007@7"]),
    ("0012_order_items_fk_not_valid.up.sql", &[]),
    ("0013_order_items_fk_validate.up.sql", &[]),
    ("0014_users_handle_unique.up.sql", &["M008@4"]),
    ("0015_users_handle_unique_index.up.sql", &[]),
    ("0016_users_handle_unique_constraint.up.sql", &[]),
    ("0017_contract_users.up.sql", &[]),
    ("0018_broken.up.sql", &["M000@5"]),
    ("0019_maintenance.up.sql", &["M012@3", "M013@3", "M014@4", "M012@5"]),
    ("0020_drop_legacy.up.sql", &["M015@2", "M011@3", "M010@4"]),
    ("0021_audit_trigger.up.sql", &[]),
    // One BEGIN … COMMIT around everything: the runner replaces it with its own.
    ("0022_explicit_transaction.up.sql", &[]),
    ("0023_widen_note.up.sql", &["M003@5"]),
    ("0024_orders_updated_at_idx.down.sql", &["M013@1", "M015@1"]),
    ("0025_commit_midway.up.sql", &["M016@4"]),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("lint-corpus")
}

/// Whether the runner would wrap the file in a transaction: not when its
/// first non-empty line is the no-transaction header.
fn transactional(sql: &str) -> bool {
    sql.lines().map(str::trim).find(|l| !l.is_empty()) != Some("-- cutover:no-transaction")
}

/// Every corpus file's name and findings, in name order.
fn lint_corpus() -> Vec<(String, Vec<Finding>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("read the corpus directory")
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name").to_owned();
            let sql = std::fs::read_to_string(path).expect("read a corpus file");
            let findings = lint::lint_sql(&name, &sql, transactional(&sql));
            (name, findings)
        })
        .collect()
}

fn codes_at(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(|f| format!("{}@{}", f.code, f.line)).collect()
}

#[test]
fn every_corpus_file_gives_its_expected_findings() {
    let linted = lint_corpus();
    let on_disk: BTreeSet<&str> = linted.iter().map(|(name, _)| name.as_str()).collect();
    let listed: BTreeSet<&str> = EXPECTED.iter().map(|(name, _)| *name).collect();
    assert_eq!(EXPECTED.len(), listed.len(), "a file is listed twice in EXPECTED");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(unlisted.is_empty(), "corpus files without expectations in EXPECTED: {unlisted:?}");
    assert!(missing.is_empty(), "EXPECTED lists files that are not in the corpus: {missing:?}");
    assert!(linted.len() >= 18, "the corpus has {} files", linted.len());

    let mut wrong = Vec::new();
    for (name, findings) in &linted {
        let expected = EXPECTED.iter().find(|(n, _)| n == name).map(|(_, e)| *e).unwrap_or_default();
        let got = codes_at(findings);
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}\n{findings:#?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn the_corpus_exercises_every_rule() {
    let used: BTreeSet<&str> =
        EXPECTED.iter().flat_map(|(_, codes)| codes.iter()).filter_map(|c| c.split('@').next()).collect();
    for rule in RULES {
        assert!(used.contains(rule.code), "no corpus file shows {} ({})", rule.code, rule.name);
    }
}

#[test]
fn corpus_findings_are_complete_and_sorted() {
    for (name, findings) in lint_corpus() {
        for f in &findings {
            let rule = lint::rule(f.code).expect("a finding's code is a rule");
            assert_eq!(f.rule, rule.name, "{name}: {f:?}");
            assert_eq!(f.file, name);
            assert!(f.severity <= rule.severity, "{name}: a finding is never worse than its rule: {f:?}");
            assert!(!f.message.is_empty() && !f.alternative.is_empty(), "{name}: {f:?}");
            assert!(!f.statement.is_empty() && f.statement.chars().count() <= 121, "{name}: {f:?}");
            assert!(!f.statement.contains('\n') && !f.statement.contains("  "), "{name}: {f:?}");
            assert!(f.line >= 1 && f.column >= 1, "{name}: {f:?}");
        }
        let keys: Vec<_> = findings.iter().map(|f| (f.line, f.column, f.code)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{name}: findings are sorted by line, column, code");
    }
}

#[test]
fn corpus_messages_name_the_objects_and_the_safe_alternative() {
    let linted = lint_corpus();
    let find = |file: &str, code: &str| -> Finding {
        let (_, findings) = linted.iter().find(|(n, _)| n == file).expect("a corpus file");
        findings.iter().find(|f| f.code == code).cloned().expect("the finding")
    };
    let f = find("0003_orders_user_idx.up.sql", "M001");
    assert_eq!(
        f.message,
        "CREATE INDEX \"orders_user_id_idx\" on app.orders without CONCURRENTLY holds a SHARE lock on app.orders \
         (blocks INSERT/UPDATE/DELETE) for the whole build"
    );
    assert_eq!(f.statement, "CREATE INDEX orders_user_id_idx ON app.orders (user_id)");
    assert!(f.alternative.starts_with("CREATE INDEX CONCURRENTLY orders_user_id_idx ON app.orders"), "{f:?}");

    let f = find("0006_orders_id_bigint.up.sql", "M003");
    assert_eq!(f.severity, Severity::Error);
    assert!(f.alternative.contains("cutover pg bigint --table app.orders --column id"), "{f:?}");
    let f = find("0023_widen_note.up.sql", "M003");
    assert_eq!(f.severity, Severity::Warning, "varchar → text is usually catalog-only");

    let f = find("0005_users_name_idx.up.sql", "M002");
    assert!(f.alternative.contains("-- cutover:no-transaction as the first line"), "{f:?}");

    let f = find("0018_broken.up.sql", "M000");
    assert_eq!(f.message, "the file does not parse: syntax error at or near \"ALTER\"");
    assert_eq!((f.line, f.column), (5, 1));

    let f = find("0011_order_items.up.sql", "M013");
    assert!(f.message.contains("SHARE ROW EXCLUSIVE lock on app.order_items and app.orders"), "{f:?}");
}

#[test]
fn rules_are_complete_and_their_codes_unique() {
    let mut codes = BTreeSet::new();
    for (i, rule) in RULES.iter().enumerate() {
        assert_eq!(rule.code, format!("M{i:03}"), "RULES is in code order, without gaps");
        assert!(codes.insert(rule.code), "{} appears twice", rule.code);
        assert!(!rule.name.is_empty() && rule.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{rule:?}");
        assert!(rule.explanation.ends_with('.') && rule.explanation.len() > 40, "{rule:?}");
        assert!(rule.alternative.ends_with('.') && rule.alternative.len() > 20, "{rule:?}");
        assert!(!rule.explanation.contains("  ") && !rule.alternative.contains("  "), "{rule:?}");
    }
    let names: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len(), "rule names are unique");
    assert!(lint::rule("m004").is_some_and(|r| r.name == "set-not-null"));
}

#[test]
fn a_finding_serializes_with_its_fields() {
    let findings = lint::lint_sql("0003.up.sql", "CREATE INDEX i ON t (c);", true);
    let json = serde_json::to_value(&findings[0]).expect("serialize a finding");
    let object = json.as_object().expect("an object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, ["file", "line", "column", "code", "rule", "severity", "statement", "message", "alternative"]);
    assert_eq!(json["file"], "0003.up.sql");
    assert_eq!(json["line"], 1);
    assert_eq!(json["column"], 1);
    assert_eq!(json["code"], "M001");
    assert_eq!(json["rule"], "index-not-concurrent");
    assert_eq!(json["severity"], "error");
    assert_eq!(json["statement"], "CREATE INDEX i ON t (c)");
    let warning = lint::lint_sql("x.sql", "SET lock_timeout = '1s'; DROP INDEX i;", true);
    assert_eq!(serde_json::to_value(&warning[0]).expect("serialize")["severity"], "warning");
}

#[test]
fn lint_ignore_turns_codes_off_for_the_whole_file() {
    let sql = "SET lock_timeout = '2s';\nALTER TABLE t DROP COLUMN a;\n-- cutover:lint-ignore M011\nDROP TABLE u;";
    assert!(lint::lint_sql("x.sql", sql, true).is_empty());
    let sql = "-- cutover:lint-ignore M013\nDROP TABLE u;";
    assert_eq!(codes_at(&lint::lint_sql("x.sql", sql, true)), ["M011@2"]);
}
