//! Gateway integration tests: real nats-server, monitor and gateway processes, real
//! WebSocket clients.

mod abuse;
mod alerting;
mod bounds;
mod feed;
mod hardening;
mod helpers;
mod limits;
mod outages;
mod targets;
