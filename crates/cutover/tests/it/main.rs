//! Integration tests of the `cutover` binary against real PostgreSQL servers,
//! a real HTTP server on loopback and real child processes. One test binary
//! (fewer links on 2 cores), one module per area.

mod support;

mod bigint;
mod cli;
mod crash;
mod demo;
mod fleet;
mod fleet_migrate;
mod gates;
mod lifecycle;
mod migrate;
mod notify;
mod pg;
mod report;
mod schedule;
mod secrets;
mod tower;
mod watch;
