//! The Vitals contract in types: what travels on NATS and over HTTP/WebSocket.
//!
//! Serde types, validation and subject builders only; no I/O, no clock reads.
//! Every subject string in the project is built in [`subjects`].

pub mod chaos;
pub mod conn;
pub mod events;
pub mod feed;
pub mod inbox;
pub mod name;
pub mod notify;
pub mod requests;
pub mod sample;
pub mod silence;
pub mod source;
pub mod status;
pub mod subjects;
pub mod target;
pub mod url;

pub use chaos::{ChaosReply, ChaosRequest, FaultMode};
pub use conn::{AdvisoryClient, AdvisoryServer, ConnAdvisory, ConnName, ConnServices};
pub use events::{
    ActiveAlert, AlertEvent, AlertMark, AlertMarks, AlertUpdate, Figures, MonitorHeartbeat,
    ServiceState, ServiceSummary, Snapshot, StatusChange,
};
pub use feed::{ClientMessage, FeedMessage, FeedSnapshot, GatewayState, History, HistoryEntry};
pub use inbox::{InboxAlert, InboxList, InboxNotification};
pub use name::{NameError, ServiceName};
pub use notify::DeadLetter;
pub use requests::{RetireReply, RetireRequest, SnapshotRequest};
pub use sample::{
    MAX_JSON_INT, MAX_LATENCY_MS, MAX_SAMPLE_BYTES, MetricSample, Refusal, RefusalReason,
    check_instance, parse_sample,
};
pub use silence::{
    Ack, AckRequest, AlertId, Silence, SilenceError, SilenceExpire, SilenceList, SilenceMatchers,
    SilenceReply, SilenceRequest, glob_match,
};
pub use source::{HostFigures, ProbeResult, Source, TopProcess};
pub use status::{AlertName, AlertState, Status};
pub use target::{Target, TargetError, TargetKind};
pub use url::{OriginPattern, check_health_url, health_url_allowed, is_acceptable_health_url};
