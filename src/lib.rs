//! maillog_exporter turns mail server logs into Prometheus metrics.
//!
//! ```text
//!  source ──▶ line ──▶ parser(format) ──▶ event ──▶ state (per message) ──▶ metrics ──▶ http
//!  tail files   envelope   pure: &[u8] →      typed      correlate by queue id,    prometheus     /metrics
//!  read once    (time,     Events, no I/O,    vocabulary  expire, cap, evict        registry
//!               host,      no metrics)
//!               program)
//! ```
//!
//! Sources (reader threads) send [`source::LineBatch`]es over a bounded
//! channel to one pipeline task ([`pipeline::Pipeline`]) that owns the
//! parsers, the correlator and the metric handles, so per-message state
//! needs no locks; the HTTP server only calls `gather()` on the registry.

pub mod config;
pub mod daemon;
pub mod event;
pub mod http;
pub mod line;
pub mod metrics;
pub mod parser;
pub mod pipeline;
pub mod source;
pub mod state;
