//! pg.backup / pg.restore: a backup of a 13 database is listed with its
//! manifest, restores into 15 and verifies; a damaged archive is refused.

use super::{client, rt};
use cutover_pg::backup;
use cutover_pg::tools::Tools;
use cutover_pg::verify;
use cutover_testkit::{shared, unique_db_name};

#[test]
fn a_backup_is_listed_restored_and_refused_once_damaged() {
    let (src, dst) = (shared(13), shared(15));
    let db = unique_db_name("backup");
    src.create_database(&db).expect("db");
    src.psql(
        &db,
        "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT 'v' || g FROM generate_series(1, 2000) g;",
    )
    .expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = Tools::new(Some(dst.bin_dir().to_path_buf()));
    let rt = rt();
    let b = rt.block_on(backup::backup(&src.dsn(&db), dir.path(), &tools, "run r1 target t1")).expect("backup");
    assert_eq!(b.database, db);
    assert!(b.server_version.starts_with("13."), "{b:?}");
    assert_eq!(b.sha256.len(), 64);
    assert_eq!(std::fs::metadata(dir.path().join(&b.file)).expect("archive").len(), b.size);
    assert!(!b.server.contains("password"));
    let listed = backup::list(dir.path()).expect("list");
    assert_eq!(listed, vec![b.clone()]);
    // A second backup of the same database in the same second gets its own id.
    let b2 = rt.block_on(backup::backup(&src.dsn(&db), dir.path(), &tools, "")).expect("backup 2");
    assert_ne!(b2.id, b.id);
    assert_eq!(backup::list(dir.path()).expect("list").len(), 2);

    let target = format!("{db}_restored");
    let r =
        rt.block_on(backup::restore(dir.path(), &b.id, &dst.dsn(&target), 2, false, false, &tools)).expect("restore");
    assert!(r.created_database);
    let diffs = rt.block_on(async {
        let (s, t) = (client(&src.dsn(&db)).await, client(&dst.dsn(&target)).await);
        verify::run(&s, &t).await.expect("verify").differences
    });
    assert_eq!(diffs, vec![]);
    // By the archive's path as well as by id; clean makes it repeatable.
    let by_path = dir.path().join(&b.file).display().to_string();
    rt.block_on(backup::restore(dir.path(), &by_path, &dst.dsn(&target), 1, true, false, &tools))
        .expect("restore again with clean");

    // One byte changed: refused before anything is touched.
    let path = dir.path().join(&b.file);
    let mut bytes = std::fs::read(&path).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    let err = rt
        .block_on(backup::restore(dir.path(), &b.id, &dst.dsn(&format!("{db}_x")), 1, false, false, &tools))
        .expect_err("damaged");
    assert!(err.to_string().contains("is damaged"), "{err}");
    let err = rt
        .block_on(backup::restore(dir.path(), "nope", &dst.dsn(&target), 1, false, false, &tools))
        .expect_err("unknown id");
    assert!(err.to_string().contains("no backup `nope`") && err.to_string().contains("2 backup(s)"), "{err}");
}
