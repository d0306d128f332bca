//! Turns a tree that passed the shape check into the typed model. Shape errors
//! were reported already, so anything missing here falls back to a default.

use crate::diag::{Pos, Source, Span};
use crate::duration;
use crate::model::*;
use crate::tree::{Node, Value};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Builder<'a> {
    pub src: &'a Source,
}

impl Builder<'_> {
    pub fn pos(&self, span: Span) -> Pos {
        self.src.pos(span)
    }

    /// The position of the first character inside a string literal (after its
    /// opening quotes), so errors inside expressions land on the right column.
    pub fn content_pos(&self, node: &Node) -> Pos {
        let text = self.src.text.get(node.span.start..).unwrap_or("");
        let skip = if text.starts_with("\"\"\"") || text.starts_with("'''") {
            let nl = text[3..].starts_with('\n');
            3 + usize::from(nl)
        } else if text.starts_with('"') || text.starts_with('\'') {
            1
        } else {
            0
        };
        self.src.pos(Span::new(node.span.start + skip, node.span.end))
    }

    fn str(&self, node: &Node, key: &str) -> Option<String> {
        node.get(key).and_then(Node::as_str).map(str::to_string)
    }

    fn expr(&self, node: &Node, key: &str) -> Option<Expr> {
        let n = node.get(key)?;
        Some(Expr { source: n.as_str()?.to_string(), pos: self.content_pos(n) })
    }

    fn template_of(&self, n: &Node) -> Template {
        Template { source: n.as_str().unwrap_or_default().to_string(), pos: self.content_pos(n) }
    }

    fn template(&self, node: &Node, key: &str) -> Option<Template> {
        node.get(key).map(|n| self.template_of(n))
    }

    fn templates(&self, node: &Node, key: &str) -> Vec<Template> {
        node.get(key)
            .and_then(Node::as_array)
            .map(|a| a.iter().map(|n| self.template_of(n)).collect())
            .unwrap_or_default()
    }

    fn template_map(&self, node: &Node, key: &str) -> BTreeMap<String, Template> {
        node.get(key)
            .map(|m| m.entries().iter().map(|(k, v)| (k.name.clone(), self.template_of(v))).collect())
            .unwrap_or_default()
    }

    fn duration(&self, node: &Node, key: &str) -> Option<Duration> {
        node.get(key).and_then(Node::as_str).and_then(|s| duration::parse(s).ok())
    }

    fn int(&self, node: &Node, key: &str) -> Option<i64> {
        match node.get(key)?.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    fn bool(&self, node: &Node, key: &str) -> Option<bool> {
        match node.get(key)?.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn vars(&self, node: &Node, key: &str) -> Vars {
        node.get(key)
            .map(|m| m.entries().iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            .unwrap_or_default()
    }

    pub fn target(&self, node: &Node) -> Target {
        Target {
            name: self.str(node, "name").unwrap_or_default(),
            labels: node
                .get("labels")
                .map(|m| m.entries().iter().filter_map(|(k, v)| Some((k.name.clone(), v.scalar_text()?))).collect())
                .unwrap_or_default(),
            vars: self.vars(node, "vars"),
            after: node
                .get("after")
                .and_then(Node::as_array)
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            windows: match node.get("window") {
                Some(n) => match n.as_array() {
                    Some(a) => a.iter().filter_map(|w| w.as_str().map(str::to_string)).collect(),
                    None => n.as_str().map(|w| vec![w.to_string()]).unwrap_or_default(),
                },
                None => vec![],
            },
            notified_at: node.get("notified_at").and_then(Node::scalar_text),
            size: node.get("size").and_then(Node::scalar_text),
            pos: self.pos(node.span),
        }
    }

    pub fn notify(&self, node: Option<&Node>) -> Vec<Notify> {
        node.and_then(Node::as_array)
            .map(|a| {
                a.iter()
                    .map(|n| Notify {
                        name: self.str(n, "name").unwrap_or_default(),
                        url: self
                            .template(n, "url")
                            .unwrap_or(Template { source: String::new(), pos: self.pos(n.span) }),
                        format: self.str(n, "format").unwrap_or_else(|| "json".into()),
                        on: n
                            .get("on")
                            .and_then(Node::as_array)
                            .map(|x| x.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                            .unwrap_or_default(),
                        headers: self.template_map(n, "headers"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn waves(&self, node: Option<&Node>) -> Vec<WaveSize> {
        node.and_then(Node::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|w| match &w.value {
                        Value::Int(i) => u32::try_from(*i).ok().map(WaveSize::Count),
                        Value::Str(s) => {
                            s.trim().strip_suffix('%').and_then(|p| p.trim().parse().ok()).map(WaveSize::Percent)
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn concurrency(&self, node: Option<&Node>) -> Concurrency {
        let mut c = Concurrency::default();
        if let Some(n) = node {
            if let Some(l) = self.int(n, "limit") {
                c.limit = u32::try_from(l).unwrap_or(1).max(1);
            }
            if let Some(m) = n.get("per_label") {
                for (k, v) in m.entries() {
                    if let Value::Int(i) = v.value {
                        c.per_label.insert(k.name.clone(), u32::try_from(i).unwrap_or(1).max(1));
                    }
                }
            }
        }
        c
    }

    pub fn secrets(&self, node: Option<&Node>) -> Vec<SecretDef> {
        node.map(|m| {
            m.entries()
                .iter()
                .map(|(k, v)| SecretDef {
                    name: k.name.clone(),
                    reference: v.as_str().unwrap_or_default().to_string(),
                    pos: self.content_pos(v),
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// A template, or the default text when the key is absent.
    fn template_or(&self, node: &Node, key: &str, default: &str) -> Template {
        self.template(node, key).unwrap_or(Template { source: default.into(), pos: self.pos(node.span) })
    }

    fn u32(&self, node: &Node, key: &str) -> Option<u32> {
        self.int(node, key).and_then(|i| u32::try_from(i).ok())
    }

    pub fn wave_gate(&self, node: Option<&Node>) -> WaveGate {
        match node {
            Some(n) => WaveGate { proceed_when: self.expr(n, "proceed_when"), fail_when: self.expr(n, "fail_when") },
            None => WaveGate::default(),
        }
    }

    pub fn phase(&self, node: &Node) -> Phase {
        Phase {
            name: self.str(node, "name").unwrap_or_default(),
            description: self.str(node, "description"),
            steps: self.steps(node, "steps"),
            checks: node
                .get("checks")
                .and_then(Node::as_array)
                .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            rollback: self.steps(node, "rollback"),
            downtime: self.bool(node, "downtime").unwrap_or(false),
            gates: Gates {
                proceed_when: self.expr(node, "proceed_when"),
                pause_when: self.expr(node, "pause_when"),
                rollback_when: self.expr(node, "rollback_when"),
                abort_when: self.expr(node, "abort_when"),
                fail_when: self.expr(node, "fail_when"),
                interval: self.duration(node, "gate_interval").unwrap_or(Duration::from_secs(2)),
                error_limit: self.u32(node, "gate_error_limit").unwrap_or(4),
                count: self.u32(node, "gate_count"),
                failure_limit: self.u32(node, "gate_failure_limit").unwrap_or(0),
                inconclusive_limit: self.u32(node, "gate_inconclusive_limit").unwrap_or(0),
            },
            pos: self.pos(node.span),
        }
    }

    fn steps(&self, node: &Node, key: &str) -> Vec<Step> {
        node.get(key)
            .and_then(Node::as_array)
            .map(|a| a.iter().filter_map(|n| self.step(n)).collect())
            .unwrap_or_default()
    }

    fn conditions(&self, node: &Node) -> Conditions {
        let num = |n: Option<&Node>| match n.map(|x| &x.value) {
            Some(Value::Int(i)) => Some(*i as f64),
            Some(Value::Float(f)) => Some(*f),
            _ => None,
        };
        Conditions {
            ok: self.expr(node, "ok"),
            warn: self.expr(node, "warn"),
            alarm: self.expr(node, "alarm"),
            range: node.get("range").map(|r| (num(r.get("min")), num(r.get("max")))),
        }
    }

    /// A check, or `None` when its kind is unknown (already reported).
    pub fn check(&self, node: &Node) -> Option<Check> {
        let missing = || Template { source: String::new(), pos: self.pos(node.span) };
        let kind = match node.get("kind").and_then(Node::as_str)? {
            "http" => CheckKind::Http {
                url: self.template(node, "url").unwrap_or_else(missing),
                method: self.str(node, "method").unwrap_or_else(|| "GET".into()),
                headers: self.template_map(node, "headers"),
                json_path: self.str(node, "json_path"),
                body_regex: self.str(node, "body_regex"),
            },
            "sql" => CheckKind::Sql {
                dsn: self
                    .template(node, "dsn")
                    .unwrap_or(Template { source: "{{ vars.dsn }}".into(), pos: self.pos(node.span) }),
                query: self.str(node, "query"),
                params: self.templates(node, "params"),
                preset: self.str(node, "preset"),
            },
            "tcp" => CheckKind::Tcp { address: self.template(node, "address").unwrap_or_else(missing) },
            "command" => CheckKind::Command {
                command: match node.get("command").map(|c| &c.value) {
                    Some(Value::Array(_)) => Command::Argv(self.templates(node, "command")),
                    _ => Command::Shell(self.template(node, "command").unwrap_or_else(missing)),
                },
                env: self.template_map(node, "env"),
            },
            "prometheus" => CheckKind::Prometheus {
                url: self.template(node, "url").unwrap_or_else(missing),
                query: self.str(node, "query").unwrap_or_default(),
            },
            "log" => CheckKind::Log {
                file: self.template(node, "file"),
                command: self.str(node, "command"),
                steps: node
                    .get("steps")
                    .map(|m| {
                        m.entries()
                            .iter()
                            .filter_map(|(k, v)| Some((k.name.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
                heartbeat: self.str(node, "heartbeat"),
                liveness: self.duration(node, "liveness").unwrap_or(Duration::from_secs(300)),
            },
            "manual" => CheckKind::Manual,
            _ => return None,
        };
        let interval = self.duration(node, "interval").unwrap_or(Duration::from_secs(5));
        Some(Check {
            name: self.str(node, "name").unwrap_or_default(),
            description: self.str(node, "description"),
            scope: match node.get("scope").and_then(Node::as_str) {
                Some("target") => CheckScope::Target,
                _ => CheckScope::Run,
            },
            interval,
            timeout: self.duration(node, "timeout").unwrap_or(Duration::from_secs(5)),
            // Three intervals, but never under 5 s: readings that change no
            // status are written once a second.
            stale_after: self.duration(node, "stale_after").unwrap_or((interval * 3).max(Duration::from_secs(5))),
            href: self.template(node, "href"),
            conditions: self.conditions(node),
            expect: node
                .get("expect")
                .map(|m| m.entries().iter().map(|(k, v)| (k.name.clone(), self.conditions(v))).collect())
                .unwrap_or_default(),
            hold_for: self.duration(node, "for"),
            keep_for: self.duration(node, "keep_for"),
            kind,
            pos: self.pos(node.span),
        })
    }

    /// A step, or `None` when its kind is unknown (already reported).
    pub fn step(&self, node: &Node) -> Option<Step> {
        let kind = match node.get("kind").and_then(Node::as_str)? {
            "exec" => StepKind::Exec(ExecStep {
                command: match node.get("command").map(|c| &c.value) {
                    Some(Value::Array(_)) => Command::Argv(self.templates(node, "command")),
                    _ => Command::Shell(
                        self.template(node, "command")
                            .unwrap_or(Template { source: String::new(), pos: self.pos(node.span) }),
                    ),
                },
                env: self.template_map(node, "env"),
                cwd: self.template(node, "cwd"),
            }),
            "sql" => {
                let mut statements = vec![];
                if let Some(sql) = node.get("sql") {
                    statements.push(SqlStatement {
                        sql: sql.as_str().unwrap_or_default().to_string(),
                        params: self.templates(node, "params"),
                        pos: self.content_pos(sql),
                    });
                }
                for s in node.get("statements").and_then(Node::as_array).unwrap_or_default() {
                    statements.push(SqlStatement {
                        sql: self.str(s, "sql").unwrap_or_default(),
                        params: self.templates(s, "params"),
                        pos: s.get("sql").map(|n| self.content_pos(n)).unwrap_or_else(|| self.pos(s.span)),
                    });
                }
                StepKind::Sql(SqlStep {
                    dsn: self
                        .template(node, "dsn")
                        .unwrap_or(Template { source: "{{ vars.dsn }}".into(), pos: self.pos(node.span) }),
                    statements,
                    transaction: self.bool(node, "transaction").unwrap_or(true),
                })
            }
            "http" => StepKind::Http(HttpStep {
                method: self.str(node, "method").unwrap_or_else(|| "GET".into()),
                url: self.template(node, "url").unwrap_or(Template { source: String::new(), pos: self.pos(node.span) }),
                headers: self.template_map(node, "headers"),
                body: self.template(node, "body"),
                expect_status: match node.get("expect_status").map(|n| &n.value) {
                    Some(Value::Int(i)) => vec![u16::try_from(*i).unwrap_or(0)],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(|n| match n.value {
                            Value::Int(i) => u16::try_from(i).ok(),
                            _ => None,
                        })
                        .collect(),
                    _ => vec![],
                },
            }),
            "wait" => StepKind::Wait(WaitStep {
                until: self.expr(node, "until").unwrap_or(Expr { source: "true".into(), pos: self.pos(node.span) }),
                interval: self.duration(node, "interval").unwrap_or(Duration::from_secs(2)),
                probe: node.get("probe").and_then(|p| self.step(p)).map(Box::new),
            }),
            "approve" => StepKind::Approve(ApproveStep { message: self.template(node, "message") }),
            "pg.preflight" => StepKind::PgPreflight(PgPreflightStep {
                dsn: self
                    .template(node, "dsn")
                    .unwrap_or(Template { source: "{{ vars.dsn }}".into(), pos: self.pos(node.span) }),
                target_dsn: self.template(node, "target_dsn"),
                target_version: self.u32(node, "target_version"),
                ignore: node
                    .get("ignore")
                    .and_then(Node::as_array)
                    .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                fail_on: self.str(node, "fail_on").unwrap_or_else(|| "blocker".into()),
            }),
            "pg.verify" => StepKind::PgVerify(PgVerifyStep {
                dsn: self
                    .template(node, "dsn")
                    .unwrap_or(Template { source: "{{ vars.dsn }}".into(), pos: self.pos(node.span) }),
                target_dsn: self
                    .template(node, "target_dsn")
                    .unwrap_or(Template { source: String::new(), pos: self.pos(node.span) }),
            }),
            "pg.copy" => StepKind::PgCopy(PgCopyStep {
                dsn: self.template_or(node, "dsn", "{{ vars.dsn }}"),
                target_dsn: self.template_or(node, "target_dsn", ""),
                method: self.str(node, "method").unwrap_or_else(|| "fast".into()),
                jobs: self.u32(node, "jobs").unwrap_or(4),
                split_mb: self.u32(node, "split_mb").unwrap_or(1024),
                no_owner: self.bool(node, "no_owner").unwrap_or(false),
                pg_bin: self.str(node, "pg_bin"),
                maintenance_work_mem: self.str(node, "maintenance_work_mem").unwrap_or_else(|| "256MB".into()),
            }),
            "pg.backup" => StepKind::PgBackup(PgBackupStep {
                dsn: self.template_or(node, "dsn", "{{ vars.dsn }}"),
                dir: self.template_or(node, "dir", "backups"),
                pg_bin: self.str(node, "pg_bin"),
            }),
            "pg.restore" => StepKind::PgRestore(PgRestoreStep {
                from: self.template_or(node, "from", ""),
                target_dsn: self.template_or(node, "target_dsn", ""),
                dir: self.template_or(node, "dir", "backups"),
                jobs: self.u32(node, "jobs").unwrap_or(2),
                clean: self.bool(node, "clean").unwrap_or(false),
                no_owner: self.bool(node, "no_owner").unwrap_or(false),
                pg_bin: self.str(node, "pg_bin"),
            }),
            "pg.bigint" => StepKind::PgBigint(PgBigintStep {
                dsn: self.template_or(node, "dsn", "{{ vars.dsn }}"),
                table: self.template_or(node, "table", ""),
                column: self.template(node, "column"),
                action: self.str(node, "action").unwrap_or_else(|| "convert".into()),
                until: self.str(node, "until"),
                from: self.str(node, "from"),
                approve_cutover: self.bool(node, "approve_cutover").unwrap_or(false),
                lock_timeout: self.duration(node, "lock_timeout").unwrap_or(Duration::from_millis(500)),
                statement_timeout: self.duration(node, "statement_timeout").unwrap_or(Duration::from_secs(1)),
                attempts: self.u32(node, "attempts").unwrap_or(30),
                batch_time: self.duration(node, "batch_time").unwrap_or(Duration::from_millis(200)),
                batch_rows: self.u32(node, "batch_rows").unwrap_or(1000),
                max_replication_lag: self.duration(node, "max_replication_lag").unwrap_or(Duration::from_secs(10)),
                max_transaction_age: self.duration(node, "max_transaction_age").unwrap_or(Duration::from_secs(600)),
                max_active: self.u32(node, "max_active"),
            }),
            "pg.migrate" => StepKind::PgMigrate(PgMigrateStep {
                dsn: self.template_or(node, "dsn", ""),
                dir: self.str(node, "dir").unwrap_or_default(),
                dir_pos: node.get("dir").map(|n| self.content_pos(n)).unwrap_or_else(|| self.pos(node.span)),
                to: self.int(node, "to").and_then(|v| u64::try_from(v).ok()),
                allow_out_of_order: self.bool(node, "allow_out_of_order").unwrap_or(false),
                allow_changed: self.bool(node, "allow_changed").unwrap_or(false),
                golang_migrate_table: self.str(node, "golang_migrate_table"),
                lock_wait: self.duration(node, "lock_wait").unwrap_or(Duration::from_secs(30)),
                lock_timeout: self.duration(node, "lock_timeout"),
                statement_timeout: self.duration(node, "statement_timeout"),
                lint: self.bool(node, "lint").unwrap_or(false),
            }),
            "block" => {
                StepKind::Block(BlockStep { steps: self.steps(node, "steps"), finally: self.steps(node, "finally") })
            }
            _ => return None,
        };
        // A SQL step in one transaction either committed or did not: re-running
        // it after a crash is safe. Anything else is assumed to have effects.
        let default_idempotent = match &kind {
            StepKind::Sql(s) => s.transaction,
            // A preflight only reads.
            StepKind::Wait(_)
            | StepKind::Block(_)
            | StepKind::Approve(_)
            | StepKind::PgPreflight(_)
            | StepKind::PgVerify(_)
            // A copy resumes piece by piece, each piece idempotent; a backup
            // writes a new file; a restore is only safe again with `clean`.
            | StepKind::PgCopy(_)
            | StepKind::PgBackup(_)
            // A bigint conversion keeps its state in the database and each
            // of its stages is idempotent.
            | StepKind::PgBigint(_)
            // Migrations keep their state in the database: one that was in
            // flight either committed with its record or rolled back, and a
            // no-transaction file cut short is marked partial, which the next
            // attempt refuses to go past. Nothing is ever applied twice.
            | StepKind::PgMigrate(_) => true,
            StepKind::PgRestore(r) => r.clean,
            _ => false,
        };
        Some(Step {
            name: self.str(node, "name").unwrap_or_default(),
            description: self.str(node, "description"),
            when: self.expr(node, "when"),
            timeout: self.duration(node, "timeout"),
            retries: self.int(node, "retries").and_then(|r| u32::try_from(r).ok()).unwrap_or(0),
            backoff: self.duration(node, "backoff").unwrap_or(Duration::from_secs(1)),
            idempotent: self.bool(node, "idempotent").unwrap_or(default_idempotent),
            kind,
            pos: self.pos(node.span),
        })
    }
}
