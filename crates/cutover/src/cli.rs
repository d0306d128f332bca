//! Flags and help. Every command that prints data takes `--output json`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0  every target succeeded (or the command did what it was asked)
  1  a target failed or needs attention
  2  invalid plan or usage, or the command could not start (state file, unknown run…)
  3  the run was paused or aborted

Examples:
  cutover validate examples/hello.toml
  cutover plan examples/hello.toml
  cutover run examples/hello.toml
  cutover status
  cutover events 20261121-101500-3f2a
  cutover retry 20261121-101500-3f2a db-eu-3
  cutover completions bash > /etc/bash_completion.d/cutover";

#[derive(Parser, Debug)]
#[command(
    name = "cutover",
    version,
    about = "A migration control tower: plan, run and watch production migrations.",
    long_about = "cutover runs declarative migration plans (targets, phases, steps) on a durable engine: \
every transition is recorded before it takes effect, so a killed run resumes where it stopped, \
and the event log is the audit trail.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Where runs are recorded: a SQLite file path or sqlite:PATH.
    #[arg(long, global = true, env = "CUTOVER_STATE", default_value = ".cutover/state.db")]
    pub state: String,

    /// How to print data.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleFormat {
    Table,
    Csv,
    Ics,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a plan without touching any target; every error is shown with file:line:column.
    #[command(after_help = "Example:\n  cutover validate plan.toml\n  cutover validate plan.json --output json")]
    Validate { plan: PathBuf },

    /// Print the plan's JSON Schema, for editors that complete and check plan files.
    #[command(
        after_help = "Example (VS Code with Even Better TOML / taplo):\n  cutover schema > cutover.schema.json\n  # then, first line of the plan:  #:schema ./cutover.schema.json"
    )]
    Schema,

    /// Dry run: the resolved steps per target, in order. Nothing is executed.
    #[command(after_help = "Example:\n  cutover plan plan.toml")]
    Plan { plan: PathBuf },

    /// Start a run of a plan in the foreground. Ctrl-C pauses cleanly (steps in
    /// flight finish); a second Ctrl-C aborts (finally steps still run).
    #[command(
        after_help = "Example:\n  cutover run plan.toml\n  CUTOVER_STATE=/var/lib/cutover/state.db cutover run plan.toml --output json"
    )]
    Run {
        plan: PathBuf,
        /// Serve the control tower while the run goes, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// These targets (every target when none is named) start whatever
        /// their maintenance windows and notice say; put it last.
        #[arg(long, num_args = 0.., value_delimiter = ',', value_name = "TARGET")]
        start_now: Option<Vec<String>>,
    },

    /// Continue a paused, interrupted or failed run from its recorded state.
    #[command(after_help = "Example:\n  cutover resume 20261121-101500-3f2a")]
    Resume {
        run: String,
        /// Serve the control tower while the run goes, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
        /// These targets (every target when none is named) start whatever
        /// their maintenance windows and notice say; put it last.
        #[arg(long, num_args = 0.., value_delimiter = ',', value_name = "TARGET")]
        start_now: Option<Vec<String>>,
    },

    /// Show a run (the latest by default): its state and each target's.
    Status { run: Option<String> },

    /// List the recorded runs.
    Runs,

    /// Print a run's event log (the audit trail).
    Events {
        run: String,
        /// Keep printing new events until the run ends.
        #[arg(long, short)]
        follow: bool,
    },

    /// Pause a run: no new step starts; steps in flight finish.
    Pause { run: String },

    /// Abort a run: steps in flight are stopped, finally steps run, nothing new starts.
    Abort { run: String },

    /// Run a failed target, or one that needs attention, again from its first unfinished step.
    Retry {
        run: String,
        target: String,
        /// Why, for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },

    /// Skip a target: it will not be run further (its open blocks' finally steps still run).
    Skip {
        run: String,
        target: String,
        /// Why, for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },

    /// Let targets start now, whatever their maintenance windows and notice
    /// period say (every pending target when none is named). Who asked is recorded.
    #[command(
        after_help = "Example:\n  cutover start-now 20261121-101500-3f2a db-eu-3 --note \"customer agreed on the phone\""
    )]
    StartNow {
        run: String,
        targets: Vec<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },

    /// Print, per target, its next maintenance window (in its zone and UTC),
    /// its estimated duration and whether the estimate fits: as a table,
    /// CSV, or an iCalendar file (one event per target) for customer notices.
    /// Estimates learn from earlier runs of the plan in the state file.
    #[command(
        after_help = "Examples:\n  cutover schedule plan.toml\n  cutover schedule plan.toml --format ics > maintenance.ics\n  cutover schedule plan.toml --format csv --from 2026-12-01T00:00:00Z"
    )]
    Schedule {
        plan: PathBuf,
        /// table, csv or ics (--output json prints JSON).
        #[arg(long, value_enum, default_value_t = ScheduleFormat::Table)]
        format: ScheduleFormat,
        /// Plan from this time (RFC 3339; default: now, or CUTOVER_CLOCK_START).
        #[arg(long)]
        from: Option<String>,
    },

    /// Watch a migration someone else runs: probe the plan's checks and pass
    /// its phases in order, each complete once all its checks are ok.
    #[command(
        after_help = "Example:\n  cutover watch examples/pix-watch/plan.toml\n\nA phase's checks are listed in its `checks = [...]`; expectations may differ by phase\n(`expect = { reopen = { ok = \"value == 200\" } }`). Ctrl-C stops watching."
    )]
    Watch {
        plan: PathBuf,
        /// Serve the control tower while watching, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
    },

    /// Serve the control tower for every run in the state file: live run
    /// pages, the JSON API, /metrics. Control actions need the token
    /// (CUTOVER_TOKEN, or one generated and printed at start).
    #[command(
        after_help = "Examples:\n  cutover serve                        # http://127.0.0.1:8080/\n  CUTOVER_TOKEN=… cutover serve --listen 0.0.0.0:8080 --protect-reads"
    )]
    Serve {
        /// Address to listen on (loopback by default).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Reading needs the token too (as a bearer header or ?token=).
        #[arg(long)]
        protect_reads: bool,
    },

    /// Write a run's snapshot for the post-mortem: JSON (default) or a
    /// self-contained HTML page.
    #[command(
        after_help = "Examples:\n  cutover export 20261121-101500-3f2a > run.json\n  cutover export 20261121-101500-3f2a --html --file run.html"
    )]
    Export {
        run: String,
        /// A static HTML page instead of JSON.
        #[arg(long)]
        html: bool,
        /// Write to this file instead of stdout.
        #[arg(long)]
        file: Option<PathBuf>,
    },

    /// Write a run's close-out report: success rate, failures grouped by cause
    /// (preflight blocker, copy error, verify mismatch, timeout, gate…) with
    /// examples, duration statistics per phase and step (count, mean, std,
    /// min, p50, p75, p95, max), downtime per target, verification results,
    /// preflight findings, and a histogram as an SVG picture.
    #[command(
        after_help = "Examples:\n  cutover report 20261121-101500-3f2a\n  cutover report 20261121-101500-3f2a --out report.md        # and report.svg beside it\n  cutover report 20261121-101500-3f2a --format json --svg downtime.svg\n\nA phase with `downtime = true` is part of the maintenance window; see docs/report.md."
    )]
    Report {
        run: String,
        /// markdown (default) or json; `--output json` also gives JSON.
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// Write the histogram here (SVG); default: beside --out, with the extension .svg.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Write the report here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },

    /// Tick a manual check of a run, ok or not ok, with a note for the audit trail.
    #[command(
        after_help = "Example:\n  cutover check 20261121-101500-3f2a backups-off --ok --note \"disabled in the console\""
    )]
    Check {
        run: String,
        check: String,
        /// The item is done.
        #[arg(long, conflicts_with = "not_ok", required_unless_present = "not_ok")]
        ok: bool,
        /// The item is not done (or no longer).
        #[arg(long)]
        not_ok: bool,
        /// For a target-scoped check: which target.
        #[arg(long)]
        target: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },

    /// Approve an approve step (for one target, or every target waiting at it),
    /// like gh-ost's postponed cut-over. Who and why are recorded.
    #[command(
        after_help = "Example:\n  cutover approve 20261121-101500-3f2a cutover-go --note \"lag is 0, checked with the app team\""
    )]
    Approve {
        run: String,
        /// The approve step's name.
        step: String,
        /// Only this target (default: every target waiting at the step).
        #[arg(long)]
        target: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        note: Option<String>,
    },

    /// Write the migration's runbook, dashboard spec and alerts spec (Markdown)
    /// from the plan: phases, steps, gates with their thresholds, rollback,
    /// checks and who is notified.
    #[command(after_help = "Example:\n  cutover docs plan.toml --out docs/runbooks/migrations")]
    Docs {
        plan: PathBuf,
        /// Directory for NAME.md, NAME-dashboard.md and NAME-alerts.md.
        #[arg(long, default_value = "docs/runbooks/migrations")]
        out: PathBuf,
    },

    /// The fleet upgrade of seed 002 on this machine: starts a throwaway
    /// PostgreSQL 13 and 15 server, creates customer databases with the
    /// traps that hurt real fleets (an md5 password, an index entry too large
    /// for the new version, extensions, an unlogged table, an app that
    /// ignores its maintenance switch), a platform of small apps that write
    /// to them, then runs examples/fleet-upgrade/plan.toml with the control
    /// tower open, and ends with the report.
    #[command(
        after_help = "Examples:\n  cutover demo\n  cutover demo --dbs 16 --dir /tmp/demo --listen 127.0.0.1:8080 --keep\n\n\
        Needs PostgreSQL 13 and 15 server binaries: scripts/install-test-deps installs them."
    )]
    Demo {
        /// How many customer databases (5 to 20).
        #[arg(long, default_value_t = 12)]
        dbs: usize,
        /// Where the plan, inventory, backups, state and report go (default: a new temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where the control tower listens (default: a free port on 127.0.0.1).
        #[arg(long)]
        listen: Option<String>,
        /// Keep the servers, apps and tower up at the end, until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },

    /// PostgreSQL operations run on their own, outside a plan (the same code
    /// as the plan's pg.* steps).
    #[command(subcommand)]
    Pg(PgCommand),

    /// Versioned schema migrations: golang-migrate directories
    /// ({version}_{title}.up.sql / .down.sql) applied one transaction each,
    /// under an advisory lock, with a history row per attempt; and a linter
    /// for statements that take heavy locks or rewrite tables.
    #[command(after_help = MIGRATE_HELP)]
    Migrate(MigrateArgs),

    /// Print shell completions.
    #[command(after_help = "Example:\n  cutover completions bash > ~/.local/share/bash-completion/completions/cutover")]
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum PgCommand {
    /// Convert a table's integer primary key — and every foreign-key column
    /// referencing it, in any schema — to bigint online: bigint copies kept
    /// in sync by triggers, a throttled keyset backfill that resumes where it
    /// stopped, a check that every copy equals its column, indexes and
    /// constraints built without blocking writes, then a cut-over in one
    /// short transaction (lock_timeout and statement_timeout ≤ 1 s, retried
    /// with jitter, failing closed). The int columns stay in sync afterwards,
    /// so --rollback can switch back until --contract drops them.
    ///
    /// The conversion's state lives in the database (schema `cutover`): run
    /// the same command again to go on after a stop, a kill or a failure.
    #[command(after_help = "Stages: expand → backfill → verify → prepare → cutover; then rollback, or contract.

Examples:
  export CUTOVER_DSN=postgres://app@db/shop
  cutover pg bigint --table public.orders --dry-run          # what it finds, what it will run, the locks
  cutover pg bigint --table public.orders --until prepare    # everything but the cut-over…
  cutover pg bigint --table public.orders                    # …then the cut-over (goes on from the saved state)
  cutover pg bigint --status                                 # every conversion in this database
  cutover pg bigint --table public.orders --pause            # from another terminal: the backfill waits
  cutover pg bigint --table public.orders --resume
  cutover pg bigint --table public.orders --rollback         # back to int (after the cut-over)
  cutover pg bigint --table public.orders --contract         # drop the int columns, triggers, old indexes
  cutover pg bigint --table public.orders --abort            # before the cut-over: drop what was added

The backfill waits (and says why) while a replica lags more than --max-replication-lag,
a transaction is older than --max-transaction-age, more than --max-active backends are active,
or someone ran --pause. In a plan, the step `pg.bigint` does the same, and the phase's
pause_when throttles it too.")]
    Bigint(BigintArgs),

    /// Copy one database to a server of another major version: schema
    /// (pre-data), then every table by parallel streaming COPY from the old
    /// server into the new one (no intermediate file; large tables in key
    /// ranges), indexes built as each table lands (primary keys and unique
    /// constraints as unique indexes, then attached), the rest of the
    /// post-data section, foreign keys validated in parallel, sequences and
    /// materialized views. The target database is created when missing and
    /// must otherwise be empty. In a plan, pg.copy resumes piece by piece.
    #[command(after_help = "Examples:
          CUTOVER_SOURCE_DSN=postgres://postgres@old-db/shop CUTOVER_TARGET_DSN=postgres://postgres@new-db/shop cutover pg copy --jobs 4
          cutover pg copy --source … --target … --method dump --jobs 2     # pg_dump -Fd -j2 | pg_restore -j2

        Roles are server-wide and not copied: create them on the new server first, or use --no-owner.")]
    Copy {
        /// The database to copy.
        #[arg(long, env = "CUTOVER_SOURCE_DSN", hide_env_values = true)]
        source: String,
        /// The database to copy it into, on the new server.
        #[arg(long, env = "CUTOVER_TARGET_DSN", hide_env_values = true)]
        target: String,
        /// fast (parallel COPY) or dump (pg_dump | pg_restore).
        #[arg(long, default_value = "fast", value_parser = ["fast", "dump"])]
        method: String,
        /// Connections (pairs) working at once; pg_dump/pg_restore -j for --method dump.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// Split tables larger than this many MiB (with an integer primary key) into key ranges.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
        split_mb: u32,
        /// Restore without ownership and grants (for a server without the old roles).
        #[arg(long)]
        no_owner: bool,
        /// Directory of pg_dump and pg_restore (default: $CUTOVER_PG_BIN, the newest installed, or $PATH).
        #[arg(long)]
        pg_bin: Option<PathBuf>,
    },

    /// Take a backup (pg_dump archive) of a database into a backups
    /// directory, with its manifest entry: database, server version, size,
    /// SHA-256, time. Prints the backup's id.
    #[command(after_help = "Example:
  CUTOVER_SOURCE_DSN=postgres://postgres@old-db/shop cutover pg backup --dir /srv/backups")]
    Backup {
        #[arg(long, env = "CUTOVER_SOURCE_DSN", hide_env_values = true)]
        source: String,
        /// The backups directory.
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
        #[arg(long)]
        pg_bin: Option<PathBuf>,
    },

    /// List the backups of a backups directory, oldest first.
    #[command(after_help = "Example:
  cutover pg backups --dir /srv/backups --output json")]
    Backups {
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
    },

    /// Restore a backup (by id, or the path of its archive) into a database,
    /// created when missing. Its size and checksum are checked first.
    #[command(after_help = "Example:
          CUTOVER_TARGET_DSN=postgres://postgres@old-db/shop_restored cutover pg restore shop-20261121T101500Z --dir /srv/backups")]
    Restore {
        /// The backup's id (see `cutover pg backups`) or its .dump file.
        from: String,
        #[arg(long, env = "CUTOVER_TARGET_DSN", hide_env_values = true)]
        target: String,
        #[arg(long, default_value = "backups")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// Drop the objects the backup holds before restoring them.
        #[arg(long)]
        clean: bool,
        #[arg(long)]
        no_owner: bool,
        #[arg(long)]
        pg_bin: Option<PathBuf>,
    },

    /// Compare a database with its copy on another server: every table's row
    /// count and an order-independent checksum computed in the database,
    /// sequences' values, and object counts (tables, views, indexes,
    /// constraints, functions, triggers, extensions). Read-only. Exit status
    /// 1 when anything differs; each difference is named.
    #[command(after_help = "Example:\n  \
        CUTOVER_SOURCE_DSN=postgres://postgres@old-db/shop CUTOVER_TARGET_DSN=postgres://postgres@new-db/shop cutover pg verify")]
    Verify {
        /// The original database.
        #[arg(long, env = "CUTOVER_SOURCE_DSN", hide_env_values = true)]
        source: String,
        /// Its copy.
        #[arg(long, env = "CUTOVER_TARGET_DSN", hide_env_values = true)]
        target: String,
    },

    /// Find what would fail or hurt when a database moves to another major
    /// version, before any downtime: md5 passwords against a SCRAM server,
    /// btree entries over 2704 bytes, extensions missing on the new server,
    /// unlogged tables, large objects, reg* columns, invalid indexes,
    /// prepared transactions, replication slots, tablespaces, sequences near
    /// their end. Read-only. Exit status 1 when a finding reaches --fail-on.
    #[command(after_help = "Examples:\n  \
        CUTOVER_SOURCE_DSN=postgres://postgres@old-db/shop cutover pg preflight --target-version 15\n  \
        cutover pg preflight --source postgres://postgres@old-db/shop --target postgres://postgres@new-db/postgres\n  \
        cutover pg preflight --source … --target-version 15 --ignore md5-passwords --output json\n\n\
        Rules: md5-passwords, index-row-size, extensions, unlogged-tables, large-objects, reg-types,\n\
        invalid-indexes, prepared-transactions, replication-slots, tablespaces, sequences-near-max.\n\
        Connect as a superuser: password hashes live in pg_authid.")]
    Preflight {
        /// The database to move (a DSN; prefer the environment variable, which `ps` does not show).
        #[arg(long, env = "CUTOVER_SOURCE_DSN", hide_env_values = true)]
        source: String,
        /// A database on the new server, to compare extensions and settings with.
        #[arg(long, env = "CUTOVER_TARGET_DSN", hide_env_values = true)]
        target: Option<String>,
        /// The new major version (default: the target server's).
        #[arg(long, required_unless_present = "target")]
        target_version: Option<u32>,
        /// Do not run this rule (repeat for several).
        #[arg(long, value_name = "RULE")]
        ignore: Vec<String>,
        /// The lowest severity that fails: blocker (default), warning or info.
        #[arg(long, default_value = "blocker", value_parser = ["blocker", "warning", "info"])]
        fail_on: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct BigintArgs {
    /// The database (prefer the environment variable, which `ps` does not show).
    #[arg(long, env = "CUTOVER_DSN", hide_env_values = true)]
    pub dsn: String,
    /// The table whose key is converted: schema.table, or a name as it is (e.g. "Order Items").
    #[arg(long, required_unless_present = "status")]
    pub table: Option<String>,
    /// The key column (default: the primary key's column).
    #[arg(long)]
    pub column: Option<String>,
    /// Show what it finds and every statement it would run, in order, with its locks; change nothing.
    #[arg(long, group = "what")]
    pub dry_run: bool,
    /// Show the conversions recorded in the database (all, or --table's).
    #[arg(long, group = "what")]
    pub status: bool,
    /// Pause the running backfill (from any process); it waits until --resume.
    #[arg(long, group = "what")]
    pub pause: bool,
    /// Let a paused backfill go on.
    #[arg(long, group = "what")]
    pub resume: bool,
    /// After the cut-over: switch back to the int columns (kept in sync until contract).
    #[arg(long, group = "what")]
    pub rollback: bool,
    /// After the cut-over: drop the int columns, the sync triggers and the old indexes.
    #[arg(long, group = "what")]
    pub contract: bool,
    /// Before the cut-over (or after a rollback): drop everything the conversion added.
    #[arg(long, group = "what")]
    pub abort: bool,
    /// Stop after this stage.
    #[arg(long, value_parser = ["expand", "backfill", "verify", "prepare", "cutover"])]
    pub until: Option<String>,
    /// Start at this stage (the ones before it must be done); --from backfill walks the table again.
    #[arg(long, value_parser = ["expand", "backfill", "verify", "prepare", "cutover"])]
    pub from: Option<String>,
    /// lock_timeout of each short-lock statement and of the cut-over.
    #[arg(long, default_value = "500ms", value_parser = cutover_plan::duration::parse)]
    pub lock_timeout: std::time::Duration,
    /// statement_timeout of the same statements.
    #[arg(long, default_value = "1s", value_parser = cutover_plan::duration::parse)]
    pub statement_timeout: std::time::Duration,
    /// Tries of each short-lock statement and of the cut-over before failing (changing nothing).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub attempts: u32,
    /// The duration a backfill batch aims at (its size adapts).
    #[arg(long, default_value = "200ms", value_parser = cutover_plan::duration::parse)]
    pub batch_time: std::time::Duration,
    /// Rows of the first batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_rows: u32,
    /// Wait while a replica lags more than this.
    #[arg(long, default_value = "10s", value_parser = cutover_plan::duration::parse)]
    pub max_replication_lag: std::time::Duration,
    /// Wait while another transaction has been open longer than this.
    #[arg(long, default_value = "10m", value_parser = cutover_plan::duration::parse)]
    pub max_transaction_age: std::time::Duration,
    /// Wait while more than this many other backends are active.
    #[arg(long)]
    pub max_active: Option<u32>,
}

pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "cutover", &mut std::io::stdout());
}

const MIGRATE_HELP: &str = "Examples:
  cutover migrate --dsn env:DATABASE_URL --dir db/migrations up
  cutover migrate --dsn 'command:vault kv get -field=dsn secret/app/db' --dir db/migrations status
  cutover migrate --dir 'git:https://git.example.com/app.git#v1.4.0:db/migrations' up
  cutover migrate --dir db/migrations lint --output json          # in CI: exit 1 on errors
  cutover migrate --dir db/migrations create add users email

--dsn takes a connection string, or a secret reference resolved at run time and never
printed or stored: env:NAME, file:PATH or command:CMD (the command's output is the DSN).

State lives in the database: cutover.schema_migrations (what is applied) and
cutover.migration_history (one row per attempt: version, checksum, direction, start, duration,
success, error, who ran it and from where). A database golang-migrate migrated
(schema_migrations(version, dirty), or --golang-migrate-table) is adopted on the first change,
nothing re-run, and its table is kept in step. golang-migrate's advisory lock is held too, so
it cannot run at the same time.

Each migration runs in its own transaction (a file's own BEGIN/COMMIT is replaced by it). A
file whose first lines hold the comment `-- cutover:no-transaction` runs statement by
statement instead (CREATE INDEX CONCURRENTLY); if it fails part-way it is marked partial, with
what ran, and nothing else runs until `force`.

Exit codes: 0 done; 1 a migration failed, was refused (changed file, out-of-order file,
partial state, lock held), or lint/validate found errors; 2 bad flags, directory or DSN.";

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The database: a connection string, or env:NAME, file:PATH, command:CMD.
    #[arg(long, global = true, env = "CUTOVER_DSN", hide_env_values = true)]
    pub dsn: Option<String>,
    /// The migrations: a directory, or git:PATH_OR_URL#REF:DIR (checked out with git).
    #[arg(long, global = true, env = "CUTOVER_MIGRATIONS", default_value = "migrations")]
    pub dir: String,
    /// How long to wait for another runner's migration lock before failing.
    #[arg(long, global = true, default_value = "30s", value_parser = cutover_plan::duration::parse)]
    pub lock_wait: std::time::Duration,
    /// lock_timeout for the migrations' statements (default: the server's).
    #[arg(long, global = true, value_parser = cutover_plan::duration::parse)]
    pub lock_timeout: Option<std::time::Duration>,
    /// statement_timeout for the migrations' statements (default: the server's).
    #[arg(long, global = true, value_parser = cutover_plan::duration::parse)]
    pub statement_timeout: Option<std::time::Duration>,
    /// Apply files older than the current version that were never applied.
    #[arg(long, global = true)]
    pub allow_out_of_order: bool,
    /// Go on when an applied file was edited since (its checksum changed).
    #[arg(long, global = true)]
    pub allow_changed: bool,
    /// golang-migrate's table in the connection's schema (its x-migrations-table).
    #[arg(long, global = true, value_name = "TABLE", default_value = "schema_migrations")]
    pub golang_migrate_table: String,
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Subcommand, Debug)]
pub enum MigrateCommand {
    /// Apply the pending migrations in version order (the next N with a count).
    #[command(after_help = "Examples:\n  cutover migrate --dsn env:DATABASE_URL --dir db/migrations up\n  \
        cutover migrate --dsn env:DATABASE_URL --dir db/migrations up 1     # only the next one")]
    Up {
        /// How many pending migrations to apply (default: all of them).
        n: Option<usize>,
    },
    /// Roll back the last N applied migrations with their .down.sql (or all with --all).
    #[command(after_help = "Examples:\n  cutover migrate --dsn env:DATABASE_URL --dir db/migrations down 1\n  \
        cutover migrate --dsn env:DATABASE_URL --dir db/migrations down --all")]
    Down {
        /// How many applied migrations to roll back, newest first (required unless --all).
        #[arg(required_unless_present = "all")]
        n: Option<usize>,
        /// Roll back every applied migration.
        #[arg(long, conflicts_with = "n")]
        all: bool,
    },
    /// Migrate up or down to exactly VERSION (0: roll everything back).
    Goto {
        /// The version to end at: an existing file's version, or 0 for none.
        version: u64,
    },
    /// Print the current version (the highest applied), or `none`.
    Version,
    /// Every file and applied version: applied, pending, out-of-order, missing, changed, partial.
    Status,
    /// The last attempts recorded in cutover.migration_history.
    History {
        /// How many attempts to show, newest last.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Check the directory (names, duplicates, every file parses) and, with --dsn,
    /// the database against it (changed, missing, out-of-order, partial).
    Validate,
    /// Write an empty up and down file for a new migration.
    Create {
        /// The title, e.g. "add users email" (becomes add_users_email).
        #[arg(required = true, num_args = 1..)]
        title: Vec<String>,
        /// Number it after the highest version (zero-padded like the others).
        #[arg(long, conflicts_with = "timestamp")]
        seq: bool,
        /// Number it with the UTC time, YYYYMMDDHHMMSS.
        #[arg(long)]
        timestamp: bool,
    },
    /// Record VERSION as the current version without running anything (after a
    /// partial failure was repaired by hand). Recorded in the history as a force.
    Force {
        /// The version to record as current (0: none applied).
        version: u64,
    },
    /// Adopt a database whose schema is already at VERSION: files up to it are
    /// recorded as applied, none is run.
    Baseline {
        /// The version the database's schema is already at.
        version: u64,
    },
    /// Flag statements that take heavy locks or rewrite tables, parsed with
    /// PostgreSQL's own grammar: pending files with --dsn, every up file without.
    #[command(after_help = "Rules are listed by `cutover migrate lint --rules`; docs/lint.md explains each.
        A file turns rules off with a comment line: -- cutover:lint-ignore M010,M011
        Exit code 1 when any error is found (warnings alone exit 0, or 1 with --strict).")]
    Lint {
        /// Lint every up file, applied or not (with --dsn).
        #[arg(long)]
        all: bool,
        /// Warnings fail too.
        #[arg(long)]
        strict: bool,
        /// List the rules and exit.
        #[arg(long)]
        rules: bool,
    },
}
