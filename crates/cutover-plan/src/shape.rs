//! The shape of a plan file, declared once: the validator that checks a parsed
//! tree against it (unknown keys, missing keys, types, durations, enums — every
//! problem at once) and the JSON Schema that `cutover schema` prints are both
//! derived from these tables, so they cannot drift apart.

use crate::diag::{Diagnostic, Diagnostics, Source};
use crate::duration;
use crate::tree::{Node, Value};
use serde_json::json;

pub enum Ty {
    Str,
    /// An integer in `min..=max`.
    Int(i64, i64),
    Bool,
    /// A duration such as `"30s"`, `"5m"`, `"1h30m"`, `"250ms"`.
    Duration,
    /// A CEL expression.
    Expr,
    /// A string rendered with the template engine (`{{ vars.dsn }}`).
    Template,
    /// An integer or a float.
    Number,
    /// Any scalar (string, number, boolean), kept as text.
    Scalar,
    /// Any value at all (vars keep their JSON type).
    Any,
    Enum(&'static [&'static str]),
    Array(&'static Ty),
    /// A table with free keys, each value of the given type.
    Map(&'static Ty),
    Table(&'static Table),
    /// A table whose fields depend on its `kind` (a step, a check).
    Kinded(&'static Kinded),
    /// The first alternative whose JSON type matches the value.
    OneOf(&'static [&'static Ty]),
}

pub struct Table {
    /// How messages name this table: "step", "phase", "target"…
    pub what: &'static str,
    pub fields: &'static [Field],
}

/// Common fields plus the fields of each `kind`.
pub struct Kinded {
    /// How messages name it: "step", "check".
    pub what: &'static str,
    pub common: &'static [Field],
    pub kinds: &'static [(&'static str, &'static [Field])],
}

impl Kinded {
    pub fn fields(&self, kind: &str) -> Option<&'static [Field]> {
        self.kinds.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f)
    }
}

pub struct Field {
    pub name: &'static str,
    pub ty: &'static Ty,
    pub required: bool,
    pub doc: &'static str,
}

const fn f(name: &'static str, ty: &'static Ty, doc: &'static str) -> Field {
    Field { name, ty, required: false, doc }
}

const fn req(name: &'static str, ty: &'static Ty, doc: &'static str) -> Field {
    Field { name, ty, required: true, doc }
}

static STR: Ty = Ty::Str;
static BOOL: Ty = Ty::Bool;
static DURATION: Ty = Ty::Duration;
static EXPR: Ty = Ty::Expr;
static TEMPLATE: Ty = Ty::Template;
static SCALAR: Ty = Ty::Scalar;
static ANY: Ty = Ty::Any;
static STEP: Ty = Ty::Kinded(&STEP_KINDED);
static POSITIVE: Ty = Ty::Int(1, 1_000_000);
static RETRIES: Ty = Ty::Int(0, 1000);
static STATUS: Ty = Ty::Int(100, 599);
static STR_ARRAY: Ty = Ty::Array(&STR);
static TEMPLATE_ARRAY: Ty = Ty::Array(&TEMPLATE);
static TEMPLATE_MAP: Ty = Ty::Map(&TEMPLATE);
static STEPS: Ty = Ty::Array(&STEP);
static STATUS_ARRAY: Ty = Ty::Array(&STATUS);

/// The step kinds, in the order the docs list them.
pub const STEP_KINDS: &[&str] = &[
    "exec",
    "sql",
    "http",
    "wait",
    "approve",
    "block",
    "pg.preflight",
    "pg.copy",
    "pg.verify",
    "pg.backup",
    "pg.restore",
    "pg.bigint",
    "pg.migrate",
];
static STEP_KIND: Ty = Ty::Enum(STEP_KINDS);
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
static HTTP_METHOD: Ty = Ty::Enum(HTTP_METHODS);

pub static STEP_COMMON: &[Field] = &[
    req("name", &STR, "The step's name, unique in the plan; later steps read its outputs as `outputs.<name>`."),
    req(
        "kind",
        &STEP_KIND,
        "What the step does: exec, sql, http, wait, approve, block, or a PostgreSQL operation (pg.preflight, pg.copy, pg.verify, pg.backup, pg.restore, pg.bigint, pg.migrate).",
    ),
    f("description", &STR, "Free text for readers of the plan (shown in `cutover plan --output json`)."),
    f("when", &EXPR, "CEL condition over target, labels, vars and outputs; the step is skipped when false."),
    f("timeout", &DURATION, "Longest time one attempt may take (e.g. \"30s\")."),
    f("retries", &RETRIES, "How many times a failed attempt is retried (default 0)."),
    f("backoff", &DURATION, "Wait before the first retry, doubled each time (default \"1s\")."),
    f(
        "idempotent",
        &BOOL,
        "Whether the step may be re-run after a crash left it in flight (default: true for sql in one transaction, wait, approve and block; false for exec and http).",
    ),
];

static COMMAND: Ty = Ty::OneOf(&[&TEMPLATE, &TEMPLATE_ARRAY]);
pub static EXEC_FIELDS: &[Field] = &[
    req("command", &COMMAND, "A shell command (string, run by `sh -c`) or an argv array (no shell)."),
    f("env", &TEMPLATE_MAP, "Environment variables added for the command."),
    f("cwd", &TEMPLATE, "Working directory (default: the plan's directory)."),
];

static SQL_STATEMENT: Table = Table {
    what: "statement",
    fields: &[
        req("sql", &STR, "One SQL statement; values go in `$1`, `$2`… never spliced into the text."),
        f("params", &TEMPLATE_ARRAY, "Bind parameters for `$1`, `$2`…, as templates."),
    ],
};
static SQL_STATEMENTS: Ty = Ty::Array(&SQL_STATEMENT_TY);
static SQL_STATEMENT_TY: Ty = Ty::Table(&SQL_STATEMENT);
pub static SQL_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "Connection string (default \"{{ vars.dsn }}\")."),
    f("sql", &STR, "One SQL statement (or use `statements`)."),
    f("params", &TEMPLATE_ARRAY, "Bind parameters of `sql`."),
    f("statements", &SQL_STATEMENTS, "Several statements, run in order."),
    f("transaction", &BOOL, "Run all statements in one transaction (default true)."),
];

static EXPECT_STATUS: Ty = Ty::OneOf(&[&STATUS, &STATUS_ARRAY]);
pub static HTTP_FIELDS: &[Field] = &[
    req("url", &TEMPLATE, "The URL to call."),
    f("method", &HTTP_METHOD, "HTTP method (default GET)."),
    f("headers", &TEMPLATE_MAP, "Request headers."),
    f("body", &TEMPLATE, "Request body."),
    f("expect_status", &EXPECT_STATUS, "Accepted status code(s) (default: any 2xx)."),
];

pub static WAIT_FIELDS: &[Field] = &[
    req(
        "until",
        &EXPR,
        "CEL condition; the step succeeds once it is true (over outputs, vars, and `probe` when a probe is set).",
    ),
    f("interval", &DURATION, "Time between evaluations (default \"2s\")."),
    f("probe", &STEP, "A step (exec, sql or http) re-run before each evaluation; its outputs are `probe`."),
];

pub static APPROVE_FIELDS: &[Field] =
    &[f("message", &TEMPLATE, "What the approver should check before approving, shown in the tower and the CLI.")];

/// The rules of `pg.preflight` (cutover-pg runs them; a test keeps the lists equal).
pub const PREFLIGHT_RULES: &[&str] = &[
    "md5-passwords",
    "index-row-size",
    "extensions",
    "unlogged-tables",
    "large-objects",
    "reg-types",
    "invalid-indexes",
    "prepared-transactions",
    "replication-slots",
    "tablespaces",
    "sequences-near-max",
];
static PREFLIGHT_RULE: Ty = Ty::Enum(PREFLIGHT_RULES);
static PREFLIGHT_RULE_ARRAY: Ty = Ty::Array(&PREFLIGHT_RULE);
static SEVERITY: Ty = Ty::Enum(&["blocker", "warning", "info"]);
static PG_MAJOR: Ty = Ty::Int(9, 99);
pub static PG_PREFLIGHT_FIELDS: &[Field] = &[
    f(
        "dsn",
        &TEMPLATE,
        "The database to check (default \"{{ vars.dsn }}\"); connect as a superuser to check password hashes.",
    ),
    f("target_dsn", &TEMPLATE, "A database on the new server, to compare extensions and password hashing with."),
    f("target_version", &PG_MAJOR, "The new major version (default: the target server's, from target_dsn)."),
    f(
        "ignore",
        &PREFLIGHT_RULE_ARRAY,
        "Rules not to run, e.g. [\"md5-passwords\"] once clients are known to do SCRAM.",
    ),
    f("fail_on", &SEVERITY, "The lowest severity that fails the step: blocker (default), warning or info."),
];

pub static PG_VERIFY_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "The original database (default \"{{ vars.dsn }}\")."),
    req("target_dsn", &TEMPLATE, "Its copy, on the new server."),
];

static COPY_METHOD: Ty = Ty::Enum(&["fast", "dump"]);
static JOBS: Ty = Ty::Int(1, 64);

pub static PG_COPY_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "The database to copy (default \"{{ vars.dsn }}\")."),
    req(
        "target_dsn",
        &TEMPLATE,
        "The database to copy it into, on the new server; created (from template0, with the source's encoding and locale) when missing.",
    ),
    f(
        "method",
        &COPY_METHOD,
        "fast (default): parallel streaming COPY, indexes built beside it; dump: pg_dump | pg_restore (copies large objects too).",
    ),
    f("jobs", &JOBS, "Pairs of connections working at once (default 4); pg_dump/pg_restore -j for method = dump."),
    f(
        "split_mb",
        &POSITIVE,
        "Tables larger than this many MiB with an integer primary key are copied in key ranges of about this size (default 1024).",
    ),
    f("no_owner", &BOOL, "Restore without ownership and grants, for a new server without the old one's roles."),
    f(
        "pg_bin",
        &STR,
        "Directory of pg_dump and pg_restore (default: $CUTOVER_PG_BIN, the newest installed, or $PATH).",
    ),
    f("maintenance_work_mem", &STR, "maintenance_work_mem of the sessions that build indexes (default \"256MB\")."),
];

pub static PG_BACKUP_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "The database to back up (default \"{{ vars.dsn }}\")."),
    f(
        "dir",
        &TEMPLATE,
        "The backups directory (default \"backups\", beside the plan); its manifest.json lists every backup.",
    ),
    f("pg_bin", &STR, "Directory of pg_dump (default: $CUTOVER_PG_BIN, the newest installed, or $PATH)."),
];

pub static PG_RESTORE_FIELDS: &[Field] = &[
    req("from", &TEMPLATE, "The backup: its id in the manifest or its file, e.g. \"{{ outputs.backup.id }}\"."),
    req("target_dsn", &TEMPLATE, "The database to restore into; created when missing."),
    f("dir", &TEMPLATE, "The backups directory (default \"backups\", beside the plan)."),
    f("jobs", &JOBS, "pg_restore -j (default 2)."),
    f("clean", &BOOL, "Drop the objects the backup holds before restoring them (pg_restore --clean --if-exists)."),
    f("no_owner", &BOOL, "Restore without ownership and grants."),
    f("pg_bin", &STR, "Directory of pg_restore (default: $CUTOVER_PG_BIN, the newest installed, or $PATH)."),
];

/// What a `pg.bigint` step does.
pub const PG_BIGINT_ACTIONS: &[&str] = &["convert", "rollback", "contract", "abort"];
/// The stages of a `pg.bigint` conversion, in the order they run.
pub const PG_BIGINT_STAGES: &[&str] = &["expand", "backfill", "verify", "prepare", "cutover"];
static BIGINT_ACTION: Ty = Ty::Enum(PG_BIGINT_ACTIONS);
static BIGINT_STAGE: Ty = Ty::Enum(PG_BIGINT_STAGES);
static ATTEMPTS: Ty = Ty::Int(1, 1000);
static ACTIVE: Ty = Ty::Int(0, 100_000);

pub static PG_BIGINT_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "The database (default \"{{ vars.dsn }}\")."),
    req("table", &TEMPLATE, "The table whose int key is converted, optionally schema-qualified (\"public.orders\")."),
    f("column", &TEMPLATE, "The int column to convert (default: the table's single-column primary key)."),
    f(
        "action",
        &BIGINT_ACTION,
        "convert (default): run or resume the conversion of the column and every foreign key referencing it; rollback: go back to the int columns after a cut-over; contract: drop the old int columns once the bigint ones are kept; abort: drop what an unfinished conversion added.",
    ),
    f(
        "until",
        &BIGINT_STAGE,
        "The last stage to run (expand, backfill, verify, prepare, cutover; default: all of them), only with action = \"convert\".",
    ),
    f(
        "from",
        &BIGINT_STAGE,
        "The first stage to run (default: where the conversion's state in the database says), only with action = \"convert\".",
    ),
    f("approve_cutover", &BOOL, "Wait for `cutover approve RUN STEP` right before the cut-over (default false)."),
    f(
        "lock_timeout",
        &DURATION,
        "lock_timeout of each statement that takes a lock, above 0 and at most 10s (default \"500ms\"): how long writers may wait behind it.",
    ),
    f(
        "statement_timeout",
        &DURATION,
        "statement_timeout of the short-lock statements and of the cut-over, above 0 and at most 10s (default \"1s\").",
    ),
    f(
        "attempts",
        &ATTEMPTS,
        "Tries of each short-lock statement and of the cut-over before the step fails (default 30).",
    ),
    f(
        "batch_time",
        &DURATION,
        "Target duration of one backfill batch; the batch size adapts to it (default \"200ms\").",
    ),
    f("batch_rows", &POSITIVE, "Rows of the first backfill batch (default 1000)."),
    f(
        "max_replication_lag",
        &DURATION,
        "The backfill pauses while a replica lags behind by more than this (default \"10s\").",
    ),
    f(
        "max_transaction_age",
        &DURATION,
        "The backfill pauses while another transaction has been open longer than this (default \"10m\").",
    ),
    f(
        "max_active",
        &ACTIVE,
        "The backfill pauses while more than this many other backends are active (default: no limit).",
    ),
];

/// A migration version for `to`: 0 (nothing applied) up to the largest a
/// PostgreSQL bigint holds, where cutover-migrate records versions.
static MIGRATION_VERSION: Ty = Ty::Int(0, i64::MAX);

pub static PG_MIGRATE_FIELDS: &[Field] = &[
    req("dsn", &TEMPLATE, "The database to migrate, e.g. \"{{ secrets.pg }}/{{ vars.db }}\"."),
    req(
        "dir",
        &STR,
        "The migrations (golang-migrate's layout): a directory relative to the plan's, or git:PATH_OR_URL#REF:DIR (pin a tag or a commit).",
    ),
    f(
        "to",
        &MIGRATION_VERSION,
        "Go up or down to exactly this version (0: nothing applied); default: up to the newest file.",
    ),
    f(
        "allow_out_of_order",
        &BOOL,
        "Apply a pending file older than the current version instead of refusing (default false).",
    ),
    f(
        "allow_changed",
        &BOOL,
        "Go on when an applied file was edited since it was applied, its checksum differing (default false).",
    ),
    f(
        "golang_migrate_table",
        &STR,
        "golang-migrate's table in the connection's schema, its x-migrations-table (default \"schema_migrations\").",
    ),
    f(
        "lock_wait",
        &DURATION,
        "How long to wait for another runner's migration lock on the database before failing (default \"30s\").",
    ),
    f("lock_timeout", &DURATION, "lock_timeout of the migrations' statements (default: the server's)."),
    f("statement_timeout", &DURATION, "statement_timeout of the migrations' statements (default: the server's)."),
    f(
        "lint",
        &BOOL,
        "Lint the pending files first and apply none of them when one has a lint error, listing the findings (default false).",
    ),
];

pub static BLOCK_FIELDS: &[Field] = &[
    req("steps", &STEPS, "The steps of the block, in order."),
    f("finally", &STEPS, "Steps that always run once the block has started, even after a failure or an abort."),
];

pub static STEP_KINDED: Kinded = Kinded {
    what: "step",
    common: STEP_COMMON,
    kinds: &[
        ("exec", EXEC_FIELDS),
        ("sql", SQL_FIELDS),
        ("http", HTTP_FIELDS),
        ("wait", WAIT_FIELDS),
        ("approve", APPROVE_FIELDS),
        ("block", BLOCK_FIELDS),
        ("pg.preflight", PG_PREFLIGHT_FIELDS),
        ("pg.copy", PG_COPY_FIELDS),
        ("pg.verify", PG_VERIFY_FIELDS),
        ("pg.backup", PG_BACKUP_FIELDS),
        ("pg.restore", PG_RESTORE_FIELDS),
        ("pg.bigint", PG_BIGINT_FIELDS),
        ("pg.migrate", PG_MIGRATE_FIELDS),
    ],
};

/// The kind-specific fields of a step kind.
pub fn kind_fields(kind: &str) -> Option<&'static [Field]> {
    STEP_KINDED.fields(kind)
}

/// The check kinds, in the order the docs list them.
pub const CHECK_KINDS: &[&str] = &["http", "sql", "tcp", "command", "prometheus", "log", "manual"];
static CHECK_KIND: Ty = Ty::Enum(CHECK_KINDS);
pub const CHECK_SCOPES: &[&str] = &["run", "target"];
static CHECK_SCOPE: Ty = Ty::Enum(CHECK_SCOPES);
pub const SQL_PRESETS: &[&str] = &[
    "connections",
    "blocking_locks",
    "long_transactions",
    "replication_lag",
    "progress_copy",
    "progress_create_index",
    "progress_cluster",
    "progress_vacuum",
];
static SQL_PRESET: Ty = Ty::Enum(SQL_PRESETS);
static NUMBER: Ty = Ty::Number;
static RANGE: Table = Table {
    what: "range",
    fields: &[
        f("min", &NUMBER, "The value must be at least this."),
        f("max", &NUMBER, "The value must be at most this."),
    ],
};
static RANGE_TY: Ty = Ty::Table(&RANGE);
static CONDITIONS: Table = Table {
    what: "expectation",
    fields: &[
        f("ok", &EXPR, "CEL over `value`: the check is ok when it holds."),
        f("warn", &EXPR, "CEL over `value`: the check warns when it holds (and alarm does not)."),
        f("alarm", &EXPR, "CEL over `value`: the check is in alarm when it holds."),
        f("range", &RANGE_TY, "Shorthand for ok: min <= value <= max."),
    ],
};
static CONDITIONS_TY: Ty = Ty::Table(&CONDITIONS);
static EXPECT: Ty = Ty::Map(&CONDITIONS_TY);

pub static CHECK_COMMON: &[Field] = &[
    req("name", &STR, "The check's name, unique in the plan; gates read it as `checks.<name>`."),
    req("kind", &CHECK_KIND, "What the check measures: http, sql, tcp, command, prometheus, log or manual."),
    f("description", &STR, "What the check is for, shown in the tower."),
    f("scope", &CHECK_SCOPE, "\"run\" (one result for the run, default) or \"target\" (one result per target)."),
    f("interval", &DURATION, "Time between probes (default \"5s\")."),
    f("timeout", &DURATION, "Longest time one probe may take (default \"5s\")."),
    f(
        "stale_after",
        &DURATION,
        "A result older than this is stale, never ok (default: 3 intervals, at least 5s); manual checks are never stale.",
    ),
    f("href", &TEMPLATE, "A link to the check's source (a dashboard, a log), shown in the tower."),
    f("ok", &EXPR, "CEL over `value`: the check is ok when it holds."),
    f("warn", &EXPR, "CEL over `value`: the check warns when it holds (and alarm does not)."),
    f("alarm", &EXPR, "CEL over `value`: the check is in alarm when it holds."),
    f("range", &RANGE_TY, "Shorthand for ok: min <= value <= max."),
    f("for", &DURATION, "A new status must hold this long before it shows (\"pending\" meanwhile)."),
    f("keep_for", &DURATION, "A warn, alarm or error status stays at least this long after it clears (anti-flap)."),
    f(
        "expect",
        &EXPECT,
        "Expectations per phase, replacing ok/warn/alarm/range while that phase is current: { reopen = { ok = \"value == 200\" } }.",
    ),
];

static HTTP_CHECK_FIELDS: &[Field] = &[
    req("url", &TEMPLATE, "The URL to probe."),
    f("method", &HTTP_METHOD, "HTTP method (default GET)."),
    f("headers", &TEMPLATE_MAP, "Request headers."),
    f("json_path", &STR, "The value is this field of a JSON body: `$.status`, `$.items[0].state`."),
    f("body_regex", &STR, "The value is whether the body matches (or its first capture group)."),
];
static SQL_CHECK_FIELDS: &[Field] = &[
    f("dsn", &TEMPLATE, "Connection string (default \"{{ vars.dsn }}\")."),
    f("query", &STR, "A query: one column gives a scalar value, several give a row."),
    f("params", &TEMPLATE_ARRAY, "Bind parameters of `query`."),
    f("preset", &SQL_PRESET, "A built-in query instead of `query`."),
];
static TCP_CHECK_FIELDS: &[Field] =
    &[req("address", &TEMPLATE, "host:port to connect to; the value is whether it is open.")];
static COMMAND_CHECK_FIELDS: &[Field] = &[
    req("command", &COMMAND, "A shell command or argv; the value is its stdout as JSON or a number, else text."),
    f("env", &TEMPLATE_MAP, "Environment variables added for the command."),
];
static PROMETHEUS_CHECK_FIELDS: &[Field] = &[
    req("url", &TEMPLATE, "The Prometheus server (e.g. http://127.0.0.1:9090)."),
    req("query", &STR, "An instant PromQL query; the value is the first sample."),
];
static LOG_STEPS: Ty = Ty::Map(&STR);
static LOG_CHECK_FIELDS: &[Field] = &[
    f("file", &TEMPLATE, "A log file to follow."),
    f("command", &STR, "A command whose stdout is followed (instead of `file`)."),
    req("steps", &LOG_STEPS, "Step name → regex: the latest matching line says the current step."),
    f("heartbeat", &STR, "A regex for liveness lines (they do not change the step)."),
    f("liveness", &DURATION, "Without a heartbeat for this long the process is not alive (default \"5m\")."),
];

pub static CHECK_KINDED: Kinded = Kinded {
    what: "check",
    common: CHECK_COMMON,
    kinds: &[
        ("http", HTTP_CHECK_FIELDS),
        ("sql", SQL_CHECK_FIELDS),
        ("tcp", TCP_CHECK_FIELDS),
        ("command", COMMAND_CHECK_FIELDS),
        ("prometheus", PROMETHEUS_CHECK_FIELDS),
        ("log", LOG_CHECK_FIELDS),
        ("manual", &[]),
    ],
};
static CHECK_TY: Ty = Ty::Kinded(&CHECK_KINDED);
static CHECKS: Ty = Ty::Array(&CHECK_TY);

pub const NOTIFY_ON: &[&str] =
    &["gate", "target_failed", "approval_needed", "phase_completed", "check", "run_finished"];
static NOTIFY_EVENT: Ty = Ty::Enum(NOTIFY_ON);
static NOTIFY_EVENTS: Ty = Ty::Array(&NOTIFY_EVENT);
static NOTIFY_FORMAT: Ty = Ty::Enum(&["json", "slack"]);
static NOTIFY: Table = Table {
    what: "notification",
    fields: &[
        req("name", &STR, "The notification's name (for messages)."),
        req("url", &TEMPLATE, "Where to POST (may read secrets: {{ secrets.slack_hook }})."),
        f("format", &NOTIFY_FORMAT, "\"json\" (the event as JSON, default) or \"slack\" ({\"text\": …})."),
        f(
            "on",
            &NOTIFY_EVENTS,
            "Which events: gate, target_failed, approval_needed, phase_completed, check (every status change), run_finished (default: all but check).",
        ),
        f("headers", &TEMPLATE_MAP, "Request headers."),
    ],
};
static NOTIFY_TY: Ty = Ty::Table(&NOTIFY);
static NOTIFIES: Ty = Ty::Array(&NOTIFY_TY);

static WAVE: Ty = Ty::OneOf(&[&POSITIVE, &STR]);
static WAVES: Ty = Ty::Array(&WAVE);
static PERCENT: Ty = Ty::Int(0, 100);

static LABELS: Ty = Ty::Map(&SCALAR);
static VARS: Ty = Ty::Map(&ANY);

pub static TARGET: Table = Table {
    what: "target",
    fields: &[
        req("name", &STR, "Unique name of the target."),
        f("labels", &LABELS, "Labels used by `select`, concurrency limits and the tower (region, tier, version…)."),
        f("vars", &VARS, "Variables for templates (DSNs, URLs…)."),
        f("after", &STR_ARRAY, "Targets that must succeed before this one starts."),
        f(
            "window",
            &WINDOWS,
            "Maintenance windows, one or a list: \"Thu 01:00-05:00 Europe/Zurich\", \"Mon-Fri 22:00-02:00 UTC\"; the target starts only inside one, when its estimate fits in what is left.",
        ),
        f(
            "notified_at",
            &SCALAR,
            "When the target's owners were told (RFC 3339, e.g. 2026-11-20T09:00:00Z); it is not touched before [schedule] notice has passed since.",
        ),
        f("size", &SIZE, "The target's size for estimates: bytes, or \"12GB\", \"500MB\", \"1.5TB\", \"12GiB\"."),
    ],
};
static WINDOWS: Ty = Ty::OneOf(&[&STR, &STR_ARRAY]);
static SIZE_BYTES: Ty = Ty::Int(0, i64::MAX);
static SIZE: Ty = Ty::OneOf(&[&SIZE_BYTES, &STR]);
static ESTIMATE: Table = Table {
    what: "estimate",
    fields: &[
        f("base", &DURATION, "Time every target takes, whatever its size (default \"5m\")."),
        f("per_gb", &DURATION, "Time per GB (10^9 bytes) of a target's size (default \"1m\")."),
        f(
            "learn",
            &BOOL,
            "Learn from the real durations of finished targets of this run and earlier runs of the plan (default true).",
        ),
    ],
};
static ESTIMATE_TY: Ty = Ty::Table(&ESTIMATE);
static SEED: Ty = Ty::Int(0, i64::MAX);
static SCHEDULE: Table = Table {
    what: "schedule",
    fields: &[
        f(
            "notice",
            &STR,
            "How long after a target's notified_at it may be touched, e.g. \"7d\" (days and weeks allowed); a target without notified_at then waits.",
        ),
        f("estimate", &ESTIMATE_TY, "The estimate before real durations exist: { base = \"1m\", per_gb = \"2m\" }."),
        f(
            "shuffle_seed",
            &SEED,
            "Order the targets by a deterministic shuffle with this seed before waves are cut (same seed, same order).",
        ),
    ],
};
static SCHEDULE_TY: Ty = Ty::Table(&SCHEDULE);
static TARGET_TY: Ty = Ty::Table(&TARGET);
static TARGET_ARRAY: Ty = Ty::Array(&TARGET_TY);
static TARGET_SOURCE: Table = Table {
    what: "targets",
    fields: &[
        f(
            "file",
            &STR,
            "A CSV (columns: name, after, vars.X, any other column is a label) or JSON file of targets, relative to the plan.",
        ),
        f("command", &STR, "A shell command printing a JSON array of targets (an inventory)."),
    ],
};
static TARGET_SOURCE_TY: Ty = Ty::Table(&TARGET_SOURCE);
static TARGETS: Ty = Ty::OneOf(&[&TARGET_ARRAY, &TARGET_SOURCE_TY]);

static PER_LABEL: Ty = Ty::Map(&POSITIVE);
static CONCURRENCY: Table = Table {
    what: "concurrency",
    fields: &[
        f("limit", &POSITIVE, "Most targets running at once (default 4)."),
        f("per_label", &PER_LABEL, "Most targets running at once per value of a label, e.g. { region = 2 }."),
    ],
};
static CONCURRENCY_TY: Ty = Ty::Table(&CONCURRENCY);

pub static PHASE: Table = Table {
    what: "phase",
    fields: &[
        req("name", &STR, "Unique name of the phase."),
        f("description", &STR, "Free text."),
        f("steps", &STEPS, "The phase's steps, in order (none in a watched plan)."),
        f(
            "checks",
            &STR_ARRAY,
            "Checks that must all be ok for the phase to be complete (watch mode) and that gates read.",
        ),
        f("rollback", &STEPS, "Steps run (in reverse order of phases) when a target fails after this phase began."),
        f(
            "downtime",
            &BOOL,
            "The phase is (part of) the maintenance window: `cutover report` measures each target's downtime from the first step of its first downtime phase to the end of the last step of its last one (default false).",
        ),
        f(
            "proceed_when",
            &EXPR,
            "Gate (CEL): a target does not start this phase until it holds, e.g. \"checks.connections.value == 0\".",
        ),
        f(
            "pause_when",
            &EXPR,
            "Gate (CEL): while it holds, no new step of this phase starts (throttle); work resumes when it clears.",
        ),
        f(
            "fail_when",
            &EXPR,
            "Gate (CEL): a measurement of the proceed gate fails when it holds; past gate_failure_limit the target fails (and its rollback runs).",
        ),
        f("rollback_when", &EXPR, "Gate (CEL): when it holds between steps, the target rolls back."),
        f("abort_when", &EXPR, "Gate (CEL): when it holds while targets are in this phase, the run is aborted."),
        f("gate_interval", &DURATION, "How often gates are evaluated while waiting (default \"2s\")."),
        f(
            "gate_error_limit",
            &RETRIES,
            "Consecutive gate evaluation errors before the target needs attention (default 4).",
        ),
        f(
            "gate_count",
            &POSITIVE,
            "Measurements the proceed gate takes, one per gate_interval, before it passes (Argo's count); a measurement where neither proceed_when nor fail_when holds is inconclusive. Without it the gate passes at the first success.",
        ),
        f("gate_failure_limit", &RETRIES, "Failed measurements tolerated (default 0); one more fails the target."),
        f(
            "gate_inconclusive_limit",
            &RETRIES,
            "Inconclusive measurements tolerated (default 0); one more holds the target for a human (needs attention).",
        ),
    ],
};
static PHASE_TY: Ty = Ty::Table(&PHASE);

static WAVE_GATE: Table = Table {
    what: "wave_gate",
    fields: &[
        f(
            "proceed_when",
            &EXPR,
            "CEL over checks (run-scoped), run, progress and wave {number, size, succeeded, failed, failed_percent}: the next wave starts only once it holds.",
        ),
        f(
            "fail_when",
            &EXPR,
            "CEL, as proceed_when: when it holds once a wave settled, the wave failed and no further wave starts.",
        ),
    ],
};
static WAVE_GATE_TY: Ty = Ty::Table(&WAVE_GATE);
static PHASES: Ty = Ty::Array(&PHASE_TY);
static SECRETS: Ty = Ty::Map(&STR);

pub static PLAN: Table = Table {
    what: "plan",
    fields: &[
        f("$schema", &STR, "The JSON Schema of the file, for editors (ignored by cutover)."),
        req("name", &STR, "The plan's name."),
        f("description", &STR, "What the plan does."),
        f("targets", &TARGETS, "Inline [[targets]], or { file = \"…\" } or { command = \"…\" }."),
        f(
            "select",
            &EXPR,
            "CEL condition over name, labels and vars: only targets where it holds are part of the run.",
        ),
        f("vars", &VARS, "Default vars for every target (a target's own vars win)."),
        f(
            "secrets",
            &SECRETS,
            "Named secrets: \"env:NAME\", \"file:PATH\" or \"command:CMD\"; read as {{ secrets.NAME }}, never stored or printed.",
        ),
        f("concurrency", &CONCURRENCY_TY, "Concurrency limits."),
        f("checks", &CHECKS, "Checks (probes): measurements with a status, shown in the tower and read by gates."),
        f(
            "waves",
            &WAVES,
            "Canary then ramp: cumulative wave sizes, e.g. [1, \"10%\", \"100%\"]; a wave starts once the previous one passed.",
        ),
        f(
            "max_fail_percent",
            &PERCENT,
            "Most targets of a wave that may fail (percent, default 0) before the run stops starting waves.",
        ),
        f("wave_gate", &WAVE_GATE_TY, "The gate between waves (after max_fail_percent): { proceed_when, fail_when }."),
        f("notify", &NOTIFIES, "Webhooks on gate transitions, target failures, approvals needed and the run's end."),
        f("schedule", &SCHEDULE_TY, "Maintenance scheduling: notice period, estimate prior, shuffle seed."),
        req("phases", &PHASES, "The phases, in order."),
    ],
};

/// Checks `node` against the plan's shape; every problem is pushed to `diags`.
pub fn check_plan(src: &Source, node: &Node, diags: &mut Diagnostics) {
    check_table(src, node, &PLAN, diags);
}

/// Checks one node of a targets file (JSON) against the target shape.
pub fn check_target(src: &Source, node: &Node, diags: &mut Diagnostics) {
    check_table(src, node, &TARGET, diags);
}

fn check_table(src: &Source, node: &Node, table: &Table, diags: &mut Diagnostics) {
    check_fields(src, node, table.what, &[table.fields], diags);
}

fn what_named(what: &str, node: &Node) -> String {
    match node.get("name").and_then(Node::as_str) {
        Some(n) => format!("{what} `{n}`"),
        None => what.to_string(),
    }
}

fn check_fields(src: &Source, node: &Node, what: &str, groups: &[&[Field]], diags: &mut Diagnostics) {
    let Value::Table(entries) = &node.value else {
        diags.push(Diagnostic::new(
            src.pos(node.span),
            "type",
            format!("expected a table for the {what}, found {}", node.type_name()),
        ));
        return;
    };
    let named = what_named(what, node);
    let known = || groups.iter().flat_map(|g| g.iter());
    for (key, value) in entries {
        match known().find(|fl| fl.name == key.name) {
            Some(field) => check_value(src, value, field.ty, &key.name, diags),
            None => {
                let names: Vec<&str> = known().map(|fl| fl.name).collect();
                let mut d = Diagnostic::new(
                    src.pos(key.span),
                    "unknown-key",
                    format!("unknown key `{}` in {named} (expected one of: {})", key.name, names.join(", ")),
                );
                if let Some(s) = closest(&key.name, &names) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                diags.push(d);
            }
        }
    }
    for field in known().filter(|fl| fl.required) {
        if node.get(field.name).is_none() {
            diags.push(
                Diagnostic::new(src.pos(node.span), "missing-key", format!("missing key `{}` in {named}", field.name))
                    .with_help(field.doc),
            );
        }
    }
}

fn expected(ty: &Ty) -> String {
    match ty {
        Ty::Str => "a string".into(),
        Ty::Int(min, max) => format!("an integer from {min} to {max}"),
        Ty::Bool => "a boolean (true or false)".into(),
        Ty::Duration => "a duration such as \"30s\", \"5m\" or \"1h30m\"".into(),
        Ty::Expr => "a CEL expression (a string)".into(),
        Ty::Template => "a string (a template)".into(),
        Ty::Number => "a number".into(),
        Ty::Scalar => "a string, number or boolean".into(),
        Ty::Any => "any value".into(),
        Ty::Enum(names) => format!("one of {}", quoted_list(names)),
        Ty::Array(item) => format!("an array of {}", plural(item)),
        Ty::Map(_) | Ty::Table(_) | Ty::Kinded(_) => "a table".into(),
        Ty::OneOf(alts) => alts.iter().map(|a| expected(a)).collect::<Vec<_>>().join(" or "),
    }
}

fn plural(ty: &Ty) -> String {
    match ty {
        Ty::Table(t) => format!("{}s", t.what),
        Ty::Kinded(k) => format!("{}s", k.what),
        Ty::Template | Ty::Str => "strings".into(),
        Ty::Int(..) => "integers".into(),
        other => expected(other),
    }
}

fn quoted_list(names: &[&str]) -> String {
    names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

/// Whether the node's JSON type is the one `ty` wants (without looking inside).
fn type_matches(node: &Node, ty: &Ty) -> bool {
    match (ty, &node.value) {
        (Ty::Str | Ty::Duration | Ty::Expr | Ty::Template | Ty::Enum(_), Value::Str(_)) => true,
        (Ty::Int(..), Value::Int(_)) => true,
        (Ty::Bool, Value::Bool(_)) => true,
        (Ty::Number, Value::Int(_) | Value::Float(_)) => true,
        (Ty::Scalar, Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Datetime(_)) => true,
        (Ty::Any, _) => true,
        (Ty::Array(_), Value::Array(_)) => true,
        (Ty::Map(_) | Ty::Table(_) | Ty::Kinded(_), Value::Table(_)) => true,
        (Ty::OneOf(alts), _) => alts.iter().any(|a| type_matches(node, a)),
        _ => false,
    }
}

fn check_value(src: &Source, node: &Node, ty: &Ty, key: &str, diags: &mut Diagnostics) {
    if !type_matches(node, ty) {
        diags.push(Diagnostic::new(
            src.pos(node.span),
            "type",
            format!("`{key}` must be {}, found {}", expected(ty), node.type_name()),
        ));
        return;
    }
    match (ty, &node.value) {
        (Ty::Int(min, max), Value::Int(n)) if n < min || n > max => diags.push(Diagnostic::new(
            src.pos(node.span),
            "range",
            format!("`{key}` must be from {min} to {max}, found {n}"),
        )),
        (Ty::Duration, Value::Str(s)) => {
            if let Err(e) = duration::parse(s) {
                diags.push(
                    Diagnostic::new(src.pos(node.span), "duration", format!("invalid duration {s:?} for `{key}`: {e}"))
                        .with_help("write a duration such as \"500ms\", \"30s\", \"5m\" or \"1h30m\""),
                );
            }
        }
        (Ty::Enum(names), Value::Str(s)) if !names.contains(&s.as_str()) => {
            let (code, what) = match key {
                "kind" if *names == CHECK_KINDS => ("unknown-kind", "check kind"),
                "kind" => ("unknown-kind", "step kind"),
                _ => ("enum", "value"),
            };
            let mut d = Diagnostic::new(
                src.pos(node.span),
                code,
                format!("unknown {what} {s:?} for `{key}` (expected one of: {})", names.join(", ")),
            );
            if let Some(c) = closest(s, names) {
                d = d.with_help(format!("did you mean \"{c}\"?"));
            }
            diags.push(d);
        }
        (Ty::Array(item), Value::Array(items)) => {
            for it in items {
                check_value(src, it, item, key, diags);
            }
        }
        (Ty::Map(item), Value::Table(entries)) => {
            for (k, v) in entries {
                check_value(src, v, item, &format!("{key}.{}", k.name), diags);
            }
        }
        (Ty::Table(t), _) => check_table(src, node, t, diags),
        (Ty::Kinded(k), _) => check_kinded(src, node, k, diags),
        (Ty::OneOf(alts), _) => {
            if let Some(alt) = alts.iter().find(|a| type_matches(node, a)) {
                check_value(src, node, alt, key, diags);
            }
        }
        _ => {}
    }
}

fn check_kinded(src: &Source, node: &Node, k: &Kinded, diags: &mut Diagnostics) {
    let kind = node.get("kind").and_then(Node::as_str);
    match kind.and_then(|x| k.fields(x)) {
        Some(fields) => check_fields(src, node, k.what, &[k.common, fields], diags),
        // Without a known kind only the common fields can be checked; the
        // kind itself is reported by the check of `kind` (or as missing).
        None => {
            let entries: Vec<_> = node
                .entries()
                .iter()
                .filter(|(key, _)| k.common.iter().any(|fl| fl.name == key.name))
                .cloned()
                .collect();
            let only_common = Node { value: Value::Table(entries), span: node.span };
            check_fields(src, &only_common, k.what, &[k.common], diags);
        }
    }
}

/// The known name nearest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (levenshtein(word, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The plan's JSON Schema (draft 2020-12), derived from the same tables.
pub fn json_schema() -> serde_json::Value {
    let mut schema = table_schema(&PLAN);
    let obj = schema.as_object_mut();
    if let Some(obj) = obj {
        obj.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
        obj.insert("$id".into(), json!("https://cutover.dev/schema/plan.json"));
        obj.insert("title".into(), json!("cutover plan"));
        obj.insert(
            "$defs".into(),
            json!({ "step": kinded_schema(&STEP_KINDED), "check": kinded_schema(&CHECK_KINDED) }),
        );
    }
    schema
}

fn table_schema(t: &Table) -> serde_json::Value {
    fields_schema(&[t.fields])
}

fn fields_schema(groups: &[&[Field]]) -> serde_json::Value {
    let mut props = serde_json::Map::new();
    let mut required = vec![];
    for fl in groups.iter().flat_map(|g| g.iter()) {
        let mut s = ty_schema(fl.ty);
        if let Some(o) = s.as_object_mut() {
            o.insert("description".into(), json!(fl.doc));
        }
        props.insert(fl.name.into(), s);
        if fl.required {
            required.push(fl.name);
        }
    }
    json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false })
}

fn kinded_schema(k: &Kinded) -> serde_json::Value {
    let variants: Vec<_> = k
        .kinds
        .iter()
        .map(|(name, fields)| {
            let mut s = fields_schema(&[k.common, fields]);
            s["properties"]["kind"] = json!({ "const": name });
            s
        })
        .collect();
    json!({ "oneOf": variants })
}

fn ty_schema(ty: &Ty) -> serde_json::Value {
    match ty {
        Ty::Str | Ty::Template => json!({ "type": "string" }),
        Ty::Expr => json!({ "type": "string", "format": "cel" }),
        Ty::Duration => json!({ "type": "string", "pattern": duration::PATTERN }),
        Ty::Int(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Number => json!({ "type": "number" }),
        Ty::Scalar => json!({ "type": ["string", "number", "boolean"] }),
        Ty::Any => json!({}),
        Ty::Enum(names) => json!({ "enum": names }),
        Ty::Array(item) => json!({ "type": "array", "items": ty_schema(item) }),
        Ty::Map(item) => json!({ "type": "object", "additionalProperties": ty_schema(item) }),
        Ty::Table(t) => table_schema(t),
        Ty::Kinded(k) => json!({ "$ref": format!("#/$defs/{}", k.what) }),
        Ty::OneOf(alts) => json!({ "oneOf": alts.iter().map(|a| ty_schema(a)).collect::<Vec<_>>() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_only() {
        assert_eq!(closest("timout", &["timeout", "when"]), Some("timeout"));
        assert_eq!(closest("zzzzzz", &["timeout", "when"]), None);
    }

    #[test]
    fn schema_lists_every_step_kind_with_closed_properties() {
        let s = json_schema();
        let variants = s["$defs"]["step"]["oneOf"].as_array().expect("oneOf");
        assert_eq!(variants.len(), STEP_KINDS.len());
        for v in variants {
            assert_eq!(v["additionalProperties"], json!(false));
            assert!(v["properties"]["name"].is_object());
        }
        assert_eq!(s["required"], json!(["name", "phases"]));
    }
}
