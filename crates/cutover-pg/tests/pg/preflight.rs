//! Each preflight rule against a database built to trigger it, and a clean
//! database that triggers none. One test, in order: roles, slots and
//! tablespaces belong to the whole server, so cases must not overlap.

use super::{client, rt};
use cutover_pg::preflight::{self, Report, Severity};
use cutover_testkit::{shared, unique_db_name};
use std::os::unix::fs::MetadataExt;

fn rule<'a>(r: &'a Report, name: &str) -> Vec<&'a preflight::Finding> {
    r.findings.iter().filter(|f| f.rule == name).collect()
}

#[test]
fn every_rule_fires_on_its_trap_and_none_on_a_clean_database() {
    let (src, dst) = (shared(13), shared(15));
    let rt = rt();
    let target = rt.block_on(client(&dst.dsn("postgres")));
    let run = |db: &str| -> Report {
        rt.block_on(async {
            let source = client(&src.dsn(db)).await;
            preflight::run(&source, Some(&target), 15, &[]).await.expect("preflight")
        })
    };

    // A clean database: tables, a text index, sequences far from their end.
    let clean = unique_db_name("clean");
    src.create_database(&clean).expect("db");
    src.psql(
        &clean,
        "CREATE TABLE t (id bigserial PRIMARY KEY, name text); CREATE INDEX t_name ON t (name);
         INSERT INTO t (name) SELECT 'n' || g FROM generate_series(1, 100) g;",
    )
    .expect("clean schema");
    let r = run(&clean);
    assert_eq!(r.findings, vec![], "a clean database has no findings");
    assert_eq!(r.source_major, 13);
    assert_eq!(r.rules.len(), preflight::RULES.len());

    // index-row-size and invalid-indexes: an entry over 2704 bytes left an
    // invalid index behind a failed CREATE INDEX CONCURRENTLY.
    let db = unique_db_name("bigidx");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, body text);
         INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 100) g;",
    )
    .expect("schema");
    let cic = src.psql(&db, "CREATE INDEX CONCURRENTLY docs_body ON docs (body);");
    assert!(cic.is_err(), "PostgreSQL refuses the entry: {cic:?}");
    let r = run(&db);
    let big = rule(&r, "index-row-size");
    assert_eq!(big.len(), 1, "{:#?}", r.findings);
    assert_eq!(big[0].severity, Severity::Blocker);
    assert!(big[0].objects[0].starts_with("public.docs.docs_body (1 row(s), largest entry 3208 bytes"), "{:?}", big[0]);
    let invalid = rule(&r, "invalid-indexes");
    assert_eq!(invalid[0].objects, ["public.docs.docs_body"]);
    assert_eq!(invalid[0].severity, Severity::Warning);

    // extensions: one installed on 13 that the 15 server does not have.
    let share = src.psql("postgres", "SELECT setting FROM pg_config WHERE name = 'SHAREDIR'").expect("sharedir");
    let ext = std::path::Path::new(&share).join("extension");
    std::fs::write(ext.join("cutover_fake.control"), "default_version = '1.0'\nrelocatable = true\n").expect("control");
    std::fs::write(
        ext.join("cutover_fake--1.0.sql"),
        "CREATE FUNCTION cutover_fake_one() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
    )
    .expect("script");
    let db = unique_db_name("ext");
    src.create_database(&db).expect("db");
    src.psql(&db, "CREATE EXTENSION cutover_fake;").expect("extension");
    let r = run(&db);
    let e = rule(&r, "extensions");
    assert_eq!(e.len(), 1, "{:#?}", r.findings);
    assert_eq!((e[0].severity, e[0].objects.clone()), (Severity::Blocker, vec!["cutover_fake 1.0".to_string()]));
    // Without a target server, it is only listed.
    let alone =
        rt.block_on(async { preflight::run(&client(&src.dsn(&db)).await, None, 15, &[]).await.expect("preflight") });
    assert_eq!(rule(&alone, "extensions")[0].severity, Severity::Info);

    // The object kinds a copy cannot simply carry, one database.
    let db = unique_db_name("kinds");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE UNLOGGED TABLE cache (k text);
         SELECT lo_create(0);
         CREATE TABLE handlers (id int, fn regproc);
         CREATE SEQUENCE tiny AS smallint; SELECT setval('tiny', 32000);
         BEGIN; CREATE TABLE half (i int); PREPARE TRANSACTION 'cutover-preflight-test';",
    )
    .expect("schema");
    let r = run(&db);
    let sev = |name: &str| rule(&r, name).first().map(|f| (f.severity, f.objects.clone()));
    assert_eq!(sev("unlogged-tables"), Some((Severity::Warning, vec!["public.cache".to_string()])));
    assert_eq!(sev("large-objects").map(|s| s.0), Some(Severity::Warning));
    assert_eq!(sev("reg-types"), Some((Severity::Warning, vec!["public.handlers.fn (regproc)".to_string()])));
    let seq = sev("sequences-near-max").expect("sequence");
    assert_eq!(seq.1, ["public.tiny (32000 of 32767, 97.7 %)"]);
    let prepared = sev("prepared-transactions").expect("prepared");
    assert_eq!(prepared.0, Severity::Blocker);
    assert!(prepared.1[0].starts_with("cutover-preflight-test (prepared "), "{:?}", prepared.1);
    src.psql(&db, "ROLLBACK PREPARED 'cutover-preflight-test';").expect("rollback prepared");
    // An ignored rule is not run.
    let ignored = rt.block_on(async {
        let c = client(&src.dsn(&db)).await;
        preflight::run(&c, Some(&target), 15, &["unlogged-tables".into()]).await.expect("preflight")
    });
    assert!(rule(&ignored, "unlogged-tables").is_empty() && !ignored.rules.contains(&"unlogged-tables"));

    // Server-wide things, created and removed in turn: an md5 role, a
    // replication slot, a tablespace.
    let role = unique_db_name("md5_role");
    let stranger = unique_db_name("md5_stranger");
    src.psql(
        "postgres",
        &format!(
            "SET password_encryption = 'md5'; CREATE ROLE \"{role}\" LOGIN PASSWORD 'pw-123'; CREATE ROLE \"{stranger}\" LOGIN PASSWORD 'pw-456';"
        ),
    )
    .expect("role");
    src.psql("postgres", "SELECT pg_create_physical_replication_slot('cutover_preflight_slot');").expect("slot");
    let dir = src.data_dir().parent().expect("cluster dir").join(unique_db_name("ts"));
    std::fs::create_dir(&dir).expect("ts dir");
    let owner = std::fs::metadata(src.data_dir()).expect("data dir");
    std::os::unix::fs::chown(&dir, Some(owner.uid()), Some(owner.gid())).expect("chown");
    src.psql("postgres", &format!("CREATE TABLESPACE cutover_ts LOCATION '{}';", dir.display())).expect("tablespace");
    let db = unique_db_name("server");
    src.create_database(&db).expect("db");
    src.psql(&db, &format!("CREATE TABLE far (i int) TABLESPACE cutover_ts; CREATE TABLE mine (i int); ALTER TABLE mine OWNER TO \"{role}\";"))
        .expect("table");
    let r = run(&db);
    src.psql(&db, "DROP TABLE far; DROP TABLE mine;").expect("drop");
    src.psql(
        "postgres",
        &format!(
            "DROP ROLE \"{role}\"; DROP ROLE \"{stranger}\"; SELECT pg_drop_replication_slot('cutover_preflight_slot'); DROP TABLESPACE cutover_ts;"
        ),
    )
    .expect("clean up");
    let md5 = rule(&r, "md5-passwords");
    assert_eq!(md5[0].severity, Severity::Blocker, "the 15 server hashes with scram-sha-256");
    assert!(md5[0].objects.contains(&role), "{:?}", md5[0]);
    assert!(!md5[0].objects.contains(&stranger), "a role that owns nothing here is not this database's: {:?}", md5[0]);
    assert!(md5[0].remediation.contains("libpq 10"));
    assert_eq!(sev_of(&r, "replication-slots"), Some(vec!["cutover_preflight_slot (physical)".to_string()]));
    assert_eq!(sev_of(&r, "tablespaces"), Some(vec!["cutover_ts".to_string()]));
}

fn sev_of(r: &Report, name: &str) -> Option<Vec<String>> {
    rule(r, name).first().filter(|f| f.severity == Severity::Warning).map(|f| f.objects.clone())
}
