//! Measurement tools for Vitals: the `bench` binary (figures against a raw NATS
//! baseline) and the `soak` binary (chaos under load with an invariant checker). Both start
//! their own nats-server and the real binaries built beside them.

pub mod counters;
pub mod detection;
pub mod feed;
pub mod flood;
pub mod ingest;
pub mod load;
pub mod memory;
pub mod notify;
pub mod pipeline;
pub mod probe;
pub mod probes;
pub mod raw;
pub mod resync;
pub mod sustain;
pub mod svg;
pub mod sys;
pub mod util;
