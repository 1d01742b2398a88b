//! Simulator integration tests: a real nats-server and the real `simulator` binary.
//! Every wait is bounded; nothing asserts how fast something happened.

mod faults;
mod lifecycle;
mod outage;
mod samples;
mod security;
mod support;
