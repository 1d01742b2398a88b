//! Monitor integration tests: real nats-server, real monitor and simulator processes.

mod alerting;
mod bounds;
mod connections;
mod helpers;
mod hostile;
mod limits;
mod pipeline;
mod reads;
mod reliability;
mod restart_scale;
mod restarts;
mod retire;
mod signals;
