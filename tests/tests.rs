//! Integration tests: one binary, one module per area.

// Test code: a panic is a failed test, not a crashed daemon (as clippy.toml
// allows in unit tests).
#![allow(clippy::unwrap_used)]

mod bounded_state;
mod dashboards;
mod exim_live;
mod exim_sendmail;
mod fuzz;
mod golden;
mod hosting;
mod messaging_server;
mod postfix_coverage;
mod postfix_live;
mod process;
mod qmail;
mod rotation;
mod support;
