//! The `cutover` binary: parses flags and dispatches to the commands, which
//! are thin presentation over the `cutover-plan` and `cutover-engine` libraries.

mod cli;
mod control;
mod demo;
mod migrate;
mod output;
mod pg;
mod report;
mod run;
mod schedule;
mod serve;
mod show;
mod watch;

use clap::Parser;
use cutover_engine::model::Action;

fn main() {
    restore_sigpipe();
    let args = cli::Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt.block_on(dispatch(args)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// Rust ignores SIGPIPE, so `cutover plan … | head` would panic on a closed
/// pipe; a command-line tool should just stop, like `cat` does.
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; it only
    // resets one signal's disposition to the default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn dispatch(args: cli::Cli) -> i32 {
    let out = args.output;
    let result = match args.command {
        cli::Command::Validate { plan } => show::validate(&plan, out),
        cli::Command::Schema => show::schema(),
        cli::Command::Plan { plan } => show::plan(&plan, out),
        cli::Command::Run { plan, listen, start_now } => {
            run::run(&args.state, &plan, listen.as_deref(), start_now.as_deref(), out).await
        }
        cli::Command::Resume { run, listen, start_now } => {
            run::resume_listening(&args.state, &run, listen.as_deref(), start_now.as_deref(), out).await
        }
        cli::Command::StartNow { run, targets, note } => {
            schedule::start_now(&args.state, &run, &targets, note, out).await
        }
        cli::Command::Schedule { plan, format, from } => {
            schedule::schedule(&args.state, &plan, format, from.as_deref(), out)
        }
        cli::Command::Serve { listen, protect_reads } => serve::serve(&args.state, &listen, protect_reads).await,
        cli::Command::Export { run, html, file } => serve::export(&args.state, &run, html, file.as_deref()),
        cli::Command::Report { run, format, svg, out: file } => {
            report::report(&args.state, &run, format, svg, file, out)
        }
        cli::Command::Status { run } => show::status(&args.state, run.as_deref(), out),
        cli::Command::Runs => show::runs(&args.state, out),
        cli::Command::Events { run, follow } => show::events(&args.state, &run, follow, out).await,
        cli::Command::Pause { run } => control::act(&args.state, &run, Action::Pause, None, None, out).await,
        cli::Command::Abort { run } => control::act(&args.state, &run, Action::Abort, None, None, out).await,
        cli::Command::Retry { run, target, note } => {
            control::act(&args.state, &run, Action::Retry, Some(&target), note, out).await
        }
        cli::Command::Skip { run, target, note } => {
            control::act(&args.state, &run, Action::Skip, Some(&target), note, out).await
        }
        cli::Command::Watch { plan, listen } => watch::watch(&args.state, &plan, listen.as_deref(), out).await,
        cli::Command::Check { run, check, ok, not_ok: _, target, note } => {
            watch::tick(&args.state, &run, &check, ok, target, note, out)
        }
        cli::Command::Approve { run, step, target, note } => {
            watch::approve(&args.state, &run, &step, target, note, out)
        }
        cli::Command::Docs { plan, out: dir } => show::docs(&plan, &dir, out),
        cli::Command::Pg(cli::PgCommand::Preflight { source, target, target_version, ignore, fail_on }) => {
            pg::preflight(&source, target.as_deref(), target_version, &ignore, &fail_on, out).await
        }
        cli::Command::Demo { dbs, dir, listen, keep } => demo::demo(dbs, dir, listen, keep, out).await,
        cli::Command::Pg(cli::PgCommand::Verify { source, target }) => pg::verify(&source, &target, out).await,
        cli::Command::Pg(cli::PgCommand::Copy { source, target, method, jobs, split_mb, no_owner, pg_bin }) => {
            pg::copy(&source, &target, &method, jobs, split_mb, no_owner, pg_bin, out).await
        }
        cli::Command::Pg(cli::PgCommand::Backup { source, dir, pg_bin }) => {
            pg::backup(&source, &dir, pg_bin, out).await
        }
        cli::Command::Pg(cli::PgCommand::Backups { dir }) => pg::backups(&dir, out),
        cli::Command::Pg(cli::PgCommand::Bigint(a)) => pg::bigint(a, out).await,
        cli::Command::Migrate(a) => migrate::migrate(a, out).await,
        cli::Command::Pg(cli::PgCommand::Restore { from, target, dir, jobs, clean, no_owner, pg_bin }) => {
            pg::restore(&from, &target, &dir, jobs, clean, no_owner, pg_bin, out).await
        }
        cli::Command::Completions { shell } => {
            cli::completions(shell);
            Ok(0)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            e.downcast_ref::<output::Exit>().map(|x| x.code).unwrap_or(2)
        }
    }
}
