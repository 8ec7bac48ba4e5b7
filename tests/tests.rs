//! Integration tests: one test binary, one module per area.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod rotation;
