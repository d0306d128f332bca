//! The pg.* operations against real PostgreSQL servers (13 as the source,
//! 15 as the target), one module per operation.

mod backup;
mod bigint;
mod copy;
mod preflight;
mod verify;

use std::time::Duration;

/// A current-thread runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

pub async fn client(dsn: &str) -> tokio_postgres::Client {
    cutover_pg::connect(dsn, Duration::from_secs(10)).await.expect("connect")
}
