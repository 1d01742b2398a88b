//! Agent integration tests: a real nats-server per test, the real `agent` binary and, where
//! the pipeline is checked end to end, the real `monitor` (build it first:
//! `cargo build -p monitor -p agent`). Every wait is bounded; nothing asserts a duration.

mod figures;
mod lifecycle;
mod pipeline;
mod support;
