//! The gateway's WebSocket feed (`/ws`) and history API, as the dashboard sees them.
//!
//! Every server message is one JSON text frame `{"seq":N,"type":...,...}` where `seq`
//! counts from 0 per connection, so a client sees any gap. The first is a `snapshot`.

use serde::{Deserialize, Serialize};

use crate::events::{AlertEvent, MonitorHeartbeat, ServiceState, ServiceSummary, StatusChange};

/// A server-to-client message (without its `seq`, which the connection adds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FeedMessage {
    /// The whole current view. Sent first, after a `resync` request, when the client fell
    /// behind (`resync: true`), and after the gateway regains NATS.
    Snapshot(FeedSnapshot),
    Status {
        data: StatusChange,
    },
    Alert {
        data: AlertEvent,
    },
    Metrics {
        data: ServiceSummary,
    },
    Monitor {
        data: MonitorHeartbeat,
    },
    Gateway {
        data: GatewayState,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct FeedSnapshot {
    /// True when this snapshot replaces messages the client missed or may have missed.
    pub resync: bool,
    pub at_ms: u64,
    pub gateway: GatewayState,
    /// The monitor's last heartbeat seen by the gateway, if any.
    pub monitor: Option<MonitorHeartbeat>,
    /// When the gateway received that heartbeat (its clock, epoch ms).
    pub monitor_seen_ms: Option<u64>,
    pub services: Vec<ServiceState>,
}

/// Whether the gateway has NATS; sent whenever that changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct GatewayState {
    pub nats_connected: bool,
    pub at_ms: u64,
    /// Where the current view came from: `monitor` (snapshot request), `kv` (the monitor did
    /// not answer) or `none` (no data yet).
    pub source: String,
    /// False when the gateway's own feed is broken (its subscription ended, or syncing keeps
    /// failing) even though NATS may be connected: the view is not being kept current.
    #[serde(default = "yes")]
    pub live: bool,
    /// What is wrong while `live` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The origins whose health URLs the dashboard may poll (`--health-origins`):
    /// `scheme://host:port`, `scheme://host:*` (any port) or `*` (any URL that passes the
    /// health URL rule). Absent or empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_origins: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A client-to-server message. Anything else is ignored and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMessage {
    /// Asks for a fresh snapshot (e.g. after seeing a `seq` gap).
    Resync,
}

/// One entry of `GET /api/history`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HistoryEntry {
    Status { stream_seq: u64, data: StatusChange },
    Alert { stream_seq: u64, data: AlertEvent },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(ts_rs::TS, schemars::JsonSchema))]
pub struct History {
    pub events: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let g = FeedMessage::Gateway {
            data: GatewayState {
                nats_connected: false,
                at_ms: 5,
                source: "none".into(),
                live: true,
                problem: None,
                health_origins: Vec::new(),
            },
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["type"], "gateway");
        assert_eq!(v["data"]["nats_connected"], false);
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"type":"resync"}"#).unwrap(),
            ClientMessage::Resync
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","x":1}"#).is_err());
    }
}
