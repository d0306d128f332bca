//! `tcp` check: whether a port accepts connections. A refused or timed-out
//! connection is a reading (closed), not a failure of the probe.

use super::{ProbeCtx, Reading};
use cutover_plan::Template;
use serde_json::Value;
use std::time::Duration;

pub async fn probe(ctx: &ProbeCtx<'_>, address: &Template, timeout: Duration) -> Result<Reading, String> {
    let addr = ctx.render(address, "the address")?;
    // Leave a little of the timeout for the answer to be recorded.
    let wait = timeout.mul_f64(0.8);
    let open = match tokio::time::timeout(wait, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => false,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput || e.to_string().contains("lookup") => {
            return Err(format!("cannot resolve {addr}: {e}"));
        }
        Ok(Err(_)) | Err(_) => false,
    };
    Ok(Reading { value: Value::Bool(open), extras: Default::default(), default_ok: open })
}
