//! The Vitals contract in types: what travels on NATS and over HTTP/WebSocket.
//!
//! Serde types, validation and subject builders only; no I/O, no clock reads.
//! Every subject string in the project is built in [`subjects`].

pub mod chaos;
pub mod events;
pub mod feed;
pub mod name;
pub mod requests;
pub mod sample;
pub mod status;
pub mod subjects;

pub use chaos::{ChaosReply, ChaosRequest, FaultMode};
pub use events::{
    ActiveAlert, AlertEvent, Figures, MonitorHeartbeat, ServiceState, ServiceSummary, Snapshot,
    StatusChange,
};
pub use feed::{ClientMessage, FeedMessage, FeedSnapshot, GatewayState, History, HistoryEntry};
pub use name::{NameError, ServiceName};
pub use requests::{RetireReply, RetireRequest, SnapshotRequest};
pub use sample::{MAX_SAMPLE_BYTES, MetricSample, Refusal, RefusalReason, parse_sample};
pub use status::{AlertName, AlertState, Status};
