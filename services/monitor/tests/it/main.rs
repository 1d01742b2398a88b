//! Monitor integration tests: real nats-server, real monitor and simulator processes.

mod helpers;
mod hostile;
mod pipeline;
mod reads;
mod reliability;
mod restarts;
mod retire;
mod signals;
