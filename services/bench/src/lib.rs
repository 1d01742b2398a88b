//! Measurement tools for Vitals: the `bench` binary (figures against a raw NATS
//! baseline) and the `soak` binary (chaos under load with an invariant checker). Both start
//! their own nats-server and the real binaries built beside them.

pub mod detection;
pub mod feed;
pub mod flood;
pub mod ingest;
pub mod notify;
pub mod probe;
pub mod raw;
pub mod resync;
pub mod util;
