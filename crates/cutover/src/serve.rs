//! `serve` and `--listen`: the control tower in this process; `export`.

use crate::output::usage;
use crate::run::open_engine;
use cutover_engine::Engine;
use std::path::Path;

/// Starts the tower in the background; prints where and the control token.
pub async fn start(engine: &Engine, listen: &str, protect_reads: bool) -> anyhow::Result<std::net::SocketAddr> {
    let (token, generated) = cutover_tower::token_from_env_or_random();
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| usage(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    let how =
        if generated { format!("control token: {token}") } else { "control token: the value of CUTOVER_TOKEN".into() };
    let reads = if protect_reads { " (reading needs the token too)" } else { "" };
    eprintln!("control tower on http://{addr}/ — {how}{reads}");
    let tower = cutover_tower::Tower::new(engine.clone(), token, protect_reads);
    tokio::spawn(async move {
        if let Err(e) = cutover_tower::serve(listener, tower, std::future::pending()).await {
            eprintln!("error: the control tower stopped: {e}");
        }
    });
    Ok(addr)
}

pub async fn serve(state: &str, listen: &str, protect_reads: bool) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    start(&engine, listen, protect_reads).await?;
    eprintln!("serving every run in {state}; Ctrl-C stops");
    let _ = tokio::signal::ctrl_c().await;
    Ok(0)
}

/// Writes a run's snapshot: JSON (everything the tower shows, every event) or
/// a self-contained HTML page.
pub fn export(state: &str, run: &str, html: bool, file: Option<&Path>) -> anyhow::Result<i32> {
    let engine = open_engine(state)?;
    engine.store().run(run).map_err(usage)?;
    let text = if html {
        cutover_tower::snapshot_html(&engine, run).map_err(|e| anyhow::anyhow!("{}", e.message))?
    } else {
        serde_json::to_string_pretty(&cutover_tower::view::snapshot(&engine, run)?)?
    };
    match file {
        Some(f) => {
            std::fs::write(f, text).map_err(|e| usage(format!("cannot write {}: {e}", f.display())))?;
            eprintln!("wrote {}", f.display());
        }
        None => println!("{text}"),
    }
    Ok(0)
}
