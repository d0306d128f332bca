//! `cutover demo`: the fleet upgrade of seed 002 on this machine. It starts
//! a throwaway PostgreSQL 13 server and a 15 server (cutover-testkit's
//! clusters, under a temporary directory), creates a fleet of customer
//! databases with the traps that hurt real fleets, runs a small "platform"
//! of apps that write to their database and have a maintenance switch, then
//! runs `examples/fleet-upgrade/plan.toml` with the control tower open, and
//! ends with the report.

use crate::cli::Output;
use crate::output::usage;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cutover_testkit::PgCluster;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const PLAN: &str = include_str!("../../../examples/fleet-upgrade/plan.toml");

/// The customers, in the inventory's order (waves are cut from it).
const CUSTOMERS: &[&str] = &[
    "acme",
    "globex",
    "stark",
    "initech",
    "wayne",
    "wonka",
    "tyrell",
    "soylent",
    "hooli",
    "cyberdyne",
    "umbrella",
    "vandelay",
    "oscorp",
    "aperture",
    "gringotts",
    "monarch",
    "nakatomi",
    "duff",
    "krusty",
    "ollivander",
];

/// What makes a customer's database special.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Trap {
    None,
    /// Its role's password is an md5 hash; the new server does SCRAM.
    Md5Password,
    /// A btree entry over 2704 bytes, left by a failed CREATE INDEX CONCURRENTLY.
    HugeIndexEntry,
    /// Extensions (citext, pg_trgm), on both servers.
    Extensions,
    /// An unlogged table (a warning, copied anyway).
    Unlogged,
    /// Its app ignores the maintenance switch: writes during the copy make
    /// verification fail, and the target rolls back.
    WritesDuringMaintenance,
}

fn trap(name: &str) -> Trap {
    match name {
        "initech" => Trap::Md5Password,
        "hooli" => Trap::HugeIndexEntry,
        "umbrella" => Trap::Extensions,
        "wonka" => Trap::Unlogged,
        "vandelay" => Trap::WritesDuringMaintenance,
        _ => Trap::None,
    }
}

pub async fn demo(
    dbs: usize,
    dir: Option<PathBuf>,
    listen: Option<String>,
    keep: bool,
    out: Output,
) -> anyhow::Result<i32> {
    if !(5..=CUSTOMERS.len()).contains(&dbs) {
        return Err(usage(format!("--dbs must be from 5 to {} (the traps need five customers)", CUSTOMERS.len())));
    }
    let work = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("cutover-demo-{}", std::process::id())),
    };
    if work.join("state.db").exists() {
        return Err(usage(format!("{} holds an earlier demo: give another --dir", work.display())));
    }
    std::fs::create_dir_all(&work).map_err(|e| usage(format!("cannot create {}: {e}", work.display())))?;
    eprintln!("cutover demo: {dbs} customer databases move from PostgreSQL 13 to 15; files in {}", work.display());

    let start = |major: u32| {
        PgCluster::start(major).map_err(|e| {
            usage(format!(
                "cannot start a PostgreSQL {major} server: {e} (scripts/install-test-deps installs 13 and 15; or set CUTOVER_PG_ROOT)"
            ))
        })
    };
    let old = tokio::task::spawn_blocking(move || start(13)).await??;
    let new = tokio::task::spawn_blocking(move || start(15)).await??;
    eprintln!("PostgreSQL 13 on 127.0.0.1:{}, PostgreSQL 15 on 127.0.0.1:{}", old.port(), new.port());
    let (old, new) = (Arc::new(old), Arc::new(new));
    let names: Vec<&'static str> = CUSTOMERS[..dbs].to_vec();
    {
        let (old, new) = (old.clone(), new.clone());
        let names = names.clone();
        tokio::task::spawn_blocking(move || provision(&old, &new, &names)).await??;
    }

    // The platform: one app per customer, writing to its database.
    let apps = Platform::new(&names, &old, &new);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let platform = format!("http://{}", listener.local_addr()?);
    let router = apps.router();
    tokio::spawn(async move {
        // The platform lives as long as the demo.
        let _ = axum::serve(listener, router).await;
    });
    let writers = apps.start_writers();
    eprintln!("platform with {} apps on {platform}/apps", names.len());

    // The example plan, with an inventory of what was just started.
    let plan_path = work.join("plan.toml");
    std::fs::write(&plan_path, PLAN)?;
    let mut csv = String::from("name,labels.region,size,vars.old_dsn,vars.new_dsn,vars.new_server,vars.app\n");
    for (i, n) in names.iter().enumerate() {
        let size = old.psql(n, "SELECT pg_database_size(current_database())").map_err(usage)?;
        csv.push_str(&format!(
            "{n},{},{size},{},{},{},{platform}/apps/{n}\n",
            if i % 2 == 0 { "eu" } else { "us" },
            old.dsn(n),
            new.dsn(n),
            new.dsn("postgres")
        ));
    }
    std::fs::write(work.join("fleet.csv"), csv)?;

    let state = work.join("state.db").display().to_string();
    let listen = match listen {
        Some(l) => l,
        None => {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.to_string()
        }
    };
    let code = crate::run::run(&state, &plan_path, Some(&listen), None, out).await?;
    let engine = crate::run::open_engine(&state)?;
    let run_id = engine.store().runs()?.last().map(|r| r.id.clone()).unwrap_or_default();
    writers.abort();

    // The end: the report, and where each app is now.
    let report = work.join("report.md");
    crate::report::report(
        &state,
        &run_id,
        crate::cli::ReportFormat::Markdown,
        Some(work.join("report.svg")),
        Some(report.clone()),
        Output::Text,
    )?;
    println!();
    println!("apps after the move:");
    for (name, a) in apps.snapshot().await {
        // An app left on the old server: its database is as it was (the
        // move only read it), apart from what the app itself wrote.
        let unchanged = if a.on_new {
            String::new()
        } else {
            let i = names.iter().position(|n| *n == name).unwrap_or(0);
            let rows = rows_of(i);
            let now =
                old.psql(&name, "SELECT (SELECT count(*) FROM orders) || '|' || (SELECT count(*) FROM customers)");
            match now {
                Ok(n) if n == format!("{rows}|{}", rows / 10) => {
                    format!("; its database as before the move: {rows} orders, {} customers", rows / 10)
                }
                Ok(n) => format!("; its database CHANGED: orders|customers = {n}, expected {rows}|{}", rows / 10),
                Err(e) => format!("; cannot read its database: {e}"),
            }
        };
        println!(
            "  {name:<11} on PostgreSQL {} ({} writes; maintenance {}){unchanged}",
            if a.on_new { "15" } else { "13" },
            a.writes,
            if a.maintenance { "on" } else { "off" }
        );
    }
    let md = std::fs::read_to_string(&report).unwrap_or_default();
    println!();
    for line in md.lines().skip_while(|l| !l.starts_with("- targets:")).take(2) {
        println!("{line}");
    }
    print_section(&md, "## Failures by cause");
    println!("\nreport: {}  (picture: {})", report.display(), work.join("report.svg").display());
    println!("run page: http://{listen}/runs/{run_id}");
    if keep {
        eprintln!("the servers, the platform and the tower stay up: Ctrl-C ends the demo");
        let _ = tokio::signal::ctrl_c().await;
    }
    drop(old);
    drop(new);
    // The run's own exit code says how the run went; the demo worked if it ran.
    Ok(if code <= 1 { 0 } else { code })
}

fn print_section(md: &str, title: &str) {
    let mut inside = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            inside = line == title;
        }
        if inside && (line.starts_with("- ") || line.starts_with('|') || line.starts_with("##")) {
            println!("{line}");
        }
    }
}

/// Roles, databases and their contents on the old server; roles on the new
/// one (roles are server-wide: a platform creates them before the move).
fn provision(old: &PgCluster, new: &PgCluster, names: &[&str]) -> anyhow::Result<()> {
    let fail = |what: &str, e: cutover_testkit::TestkitError| usage(format!("cannot {what}: {e}"));
    for (i, n) in names.iter().enumerate() {
        let role = format!("{n}_app");
        let hash = if trap(n) == Trap::Md5Password { "md5" } else { "scram-sha-256" };
        old.psql(
            "postgres",
            &format!(
                "SET password_encryption = '{hash}'; CREATE ROLE {role} LOGIN PASSWORD 'demo-{n}'; CREATE DATABASE {n} OWNER {role};"
            ),
        )
        .map_err(|e| fail("create a customer", e))?;
        new.psql("postgres", &format!("CREATE ROLE {role} LOGIN PASSWORD 'demo-{n}';"))
            .map_err(|e| fail("create a role on the new server", e))?;
        let rows = rows_of(i);
        let mut sql = format!(
            "SET ROLE {role};
             CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL UNIQUE, name text, created timestamptz NOT NULL DEFAULT now());
             CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer int NOT NULL REFERENCES customers,
                                  total numeric(10, 2), placed timestamptz NOT NULL);
             CREATE INDEX orders_customer ON orders (customer);
             CREATE TABLE visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), path text);
             CREATE VIEW big_spenders AS SELECT customer, sum(total) AS spent FROM orders GROUP BY customer HAVING sum(total) > 1000;
             INSERT INTO customers (email, name) SELECT 'c' || g || '@{n}.example', 'customer ' || g FROM generate_series(1, {c}) g;
             INSERT INTO orders (customer, total, placed) SELECT 1 + g % {c}, (g % 500) / 3.0, '2025-01-01'::timestamptz + g * interval '1 minute'
               FROM generate_series(1, {rows}) g;
             INSERT INTO visits (path) SELECT '/page/' || (g % 50) FROM generate_series(1, {v}) g;",
            c = rows / 10,
            v = rows / 2,
        );
        match trap(n) {
            Trap::Extensions => sql.push_str(
                "RESET ROLE; CREATE EXTENSION citext; CREATE EXTENSION pg_trgm; SET ROLE {role};
                 CREATE TABLE tags (name citext PRIMARY KEY); INSERT INTO tags VALUES ('Red'), ('green');
                 CREATE INDEX customers_name_trgm ON customers USING gin (name gin_trgm_ops);"
                    .replace("{role}", &role)
                    .as_str(),
            ),
            Trap::Unlogged => sql.push_str(
                "CREATE UNLOGGED TABLE sessions (id text PRIMARY KEY, data text);
                 INSERT INTO sessions SELECT md5(g::text), 'x' FROM generate_series(1, 100) g;",
            ),
            Trap::HugeIndexEntry => sql.push_str(
                "CREATE TABLE notes (id int PRIMARY KEY, body text);
                 INSERT INTO notes SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 100) g;",
            ),
            _ => {}
        }
        old.psql(n, &sql).map_err(|e| fail(&format!("fill database {n}"), e))?;
        if trap(n) == Trap::HugeIndexEntry {
            // Fails (the entry is 3,200 bytes) and leaves an invalid index:
            // what a 13 → 15 restore trips over.
            let _ = old.psql(n, "CREATE INDEX CONCURRENTLY notes_body ON notes (body);");
        }
    }
    Ok(())
}

/// Orders in the i-th customer's database (a tenth as many customers).
fn rows_of(i: usize) -> usize {
    2_000 + (i * i) * 1_500
}

#[derive(Clone, Serialize)]
struct AppState {
    on_new: bool,
    maintenance: bool,
    ignores_maintenance: bool,
    writes: u64,
    /// Whether the last write (on the database it points at now) worked.
    healthy: bool,
    last_error: Option<String>,
}

struct App {
    old_dsn: String,
    new_dsn: String,
    /// Held across a write, so a maintenance switch answers only once no
    /// write is in flight.
    state: tokio::sync::Mutex<AppState>,
}

#[derive(Clone)]
struct Platform {
    apps: Arc<BTreeMap<String, App>>,
}

impl Platform {
    fn new(names: &[&str], old: &PgCluster, new: &PgCluster) -> Platform {
        let apps = names
            .iter()
            .map(|n| {
                let dsn = |c: &PgCluster| format!("postgres://{n}_app:demo-{n}@127.0.0.1:{}/{n}", c.port());
                let state = AppState {
                    on_new: false,
                    maintenance: false,
                    ignores_maintenance: trap(n) == Trap::WritesDuringMaintenance,
                    writes: 0,
                    healthy: false,
                    last_error: None,
                };
                (n.to_string(), App { old_dsn: dsn(old), new_dsn: dsn(new), state: tokio::sync::Mutex::new(state) })
            })
            .collect();
        Platform { apps: Arc::new(apps) }
    }

    fn router(&self) -> Router {
        Router::new()
            .route("/apps", get(list))
            .route("/apps/{name}", get(one))
            .route("/apps/{name}/healthz", get(healthz))
            .route("/apps/{name}/maintenance", post(maintenance))
            .route("/apps/{name}/point", post(point))
            .with_state(self.clone())
    }

    /// Each app writes a visit every 100 ms to the database it points at,
    /// unless in maintenance (or it ignores maintenance).
    fn start_writers(&self) -> tokio::task::JoinHandle<()> {
        let p = self.clone();
        tokio::spawn(async move {
            let mut clients: HashMap<String, (String, cutover_pg::Client)> = HashMap::new();
            loop {
                for (name, app) in p.apps.iter() {
                    let mut s = app.state.lock().await;
                    if s.maintenance && !s.ignores_maintenance {
                        continue;
                    }
                    let dsn = if s.on_new { &app.new_dsn } else { &app.old_dsn };
                    if clients.get(name).is_none_or(|(d, _)| d != dsn) {
                        match cutover_pg::connect(dsn, Duration::from_secs(2)).await {
                            Ok(c) => {
                                clients.insert(name.clone(), (dsn.clone(), c));
                            }
                            Err(e) => {
                                s.healthy = false;
                                s.last_error = Some(e.to_string());
                                continue;
                            }
                        }
                    }
                    let Some((_, c)) = clients.get(name) else { continue };
                    match c.execute("INSERT INTO visits (path) VALUES ($1)", &[&"/checkout"]).await {
                        Ok(_) => {
                            s.writes += 1;
                            s.healthy = true;
                            s.last_error = None;
                        }
                        Err(e) => {
                            s.healthy = false;
                            s.last_error = Some(e.to_string());
                            clients.remove(name);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    async fn snapshot(&self) -> Vec<(String, AppState)> {
        let mut out = vec![];
        for (n, a) in self.apps.iter() {
            out.push((n.clone(), a.state.lock().await.clone()));
        }
        out
    }
}

type Reply = Result<Json<AppState>, (StatusCode, String)>;

fn app<'a>(p: &'a Platform, name: &str) -> Result<&'a App, (StatusCode, String)> {
    p.apps.get(name).ok_or((StatusCode::NOT_FOUND, format!("no app `{name}`\n")))
}

async fn list(State(p): State<Platform>) -> Json<BTreeMap<String, AppState>> {
    Json(p.snapshot().await.into_iter().collect())
}

async fn one(State(p): State<Platform>, UrlPath(name): UrlPath<String>) -> Reply {
    Ok(Json(app(&p, &name)?.state.lock().await.clone()))
}

/// 200 once the app's last write, on the database it points at, worked.
async fn healthz(State(p): State<Platform>, UrlPath(name): UrlPath<String>) -> Reply {
    let a = app(&p, &name)?;
    // Wait for the writer's next round after a switch.
    for _ in 0..20 {
        {
            let s = a.state.lock().await;
            if s.healthy && !s.maintenance {
                return Ok(Json(s.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = a.state.lock().await;
    Err((
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{name}: not healthy: {}\n", s.last_error.clone().unwrap_or_default()),
    ))
}

async fn maintenance(
    State(p): State<Platform>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let a = app(&p, &name)?;
    let on = match q.get("on").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => return Err((StatusCode::BAD_REQUEST, "say ?on=true or ?on=false\n".into())),
    };
    let mut s = a.state.lock().await;
    s.maintenance = on;
    Ok(Json(s.clone()))
}

async fn point(
    State(p): State<Platform>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let a = app(&p, &name)?;
    let on_new = match q.get("to").map(String::as_str) {
        Some("new") => true,
        Some("old") => false,
        _ => return Err((StatusCode::BAD_REQUEST, "say ?to=new or ?to=old\n".into())),
    };
    let mut s = a.state.lock().await;
    s.on_new = on_new;
    s.healthy = false;
    Ok(Json(s.clone()))
}
