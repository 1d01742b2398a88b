//! Connections as the monitor sees them: the name a source gives its NATS connection,
//! and the server's connect/disconnect advisories (imported from the system account on
//! [`crate::subjects::CONN_EVENTS`]).
//!
//! A name `vitals:<source>:<service>:<instance>` says "this connection carries the samples
//! of `<instance>` of `<service>`"; `<service>` `*` says "of every service whose latest
//! sample carries `<instance>`" (one process publishing for many services). Anything else
//! is not mapped, and such a publisher's crash is found by the heartbeat timeout.

use serde::Deserialize;

use crate::name::ServiceName;

const PREFIX: &str = "vitals:";
/// The `<service>` of a connection that publishes for many services.
pub const ANY_SERVICE: &str = "*";
/// The disconnect reason the server gives when the client's side closed the socket: the
/// process exited (a crash included: the kernel closes its sockets) or closed its client.
pub const REASON_CLIENT_CLOSED: &str = "Client Closed";
/// The server's read failed (a reset, e.g. a process killed with unread data).
pub const REASON_READ_ERROR: &str = "Read Error";

/// Which services a connection speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnServices {
    One(ServiceName),
    /// Every service whose latest sample carries the connection's instance.
    ByInstance,
}

/// A parsed `vitals:<source>:<service>:<instance>` connection name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnName {
    pub source: String,
    pub services: ConnServices,
    pub instance: String,
}

impl ConnName {
    /// The name for `instance` of one service.
    pub fn format(source: &str, service: &ServiceName, instance: &str) -> String {
        format!("{PREFIX}{source}:{service}:{instance}")
    }

    /// The name for a process publishing many services' samples, each carrying `instance`.
    pub fn format_many(source: &str, instance: &str) -> String {
        format!("{PREFIX}{source}:{ANY_SERVICE}:{instance}")
    }

    /// None for a name that does not follow the convention (or names an invalid service
    /// or instance): such a connection is simply not mapped.
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(PREFIX)?;
        let mut parts = rest.splitn(3, ':');
        let source = parts.next()?;
        let service = parts.next()?;
        let instance = parts.next()?;
        if source.is_empty()
            || !source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        crate::sample::check_instance(instance).ok()?;
        let services = match service {
            ANY_SERVICE => ConnServices::ByInstance,
            s => ConnServices::One(ServiceName::parse(s).ok()?),
        };
        Some(Self {
            source: source.to_owned(),
            services,
            instance: instance.to_owned(),
        })
    }
}

/// The parts of a server's `io.nats.server.advisory.v1.client_connect` /
/// `client_disconnect` advisory the monitor uses (the server sends more).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ConnAdvisory {
    #[serde(rename = "type")]
    pub kind: String,
    pub server: AdvisoryServer,
    pub client: AdvisoryClient,
    /// Disconnects only: why the server closed it, e.g. "Client Closed".
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AdvisoryServer {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Set when the server is part of a cluster: the client may reconnect elsewhere.
    #[serde(default)]
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AdvisoryClient {
    /// The connection id, unique per server.
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub acc: Option<String>,
}

pub const ADVISORY_CONNECT: &str = "io.nats.server.advisory.v1.client_connect";
pub const ADVISORY_DISCONNECT: &str = "io.nats.server.advisory.v1.client_disconnect";

impl ConnAdvisory {
    pub fn is_connect(&self) -> bool {
        self.kind == ADVISORY_CONNECT
    }

    pub fn is_disconnect(&self) -> bool {
        self.kind == ADVISORY_DISCONNECT
    }

    /// Whether the server is in a cluster (a client it lost may be on another server).
    pub fn clustered(&self) -> bool {
        self.server
            .cluster
            .as_deref()
            .is_some_and(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let svc = ServiceName::parse("billing").unwrap();
        let name = ConnName::format("simulator", &svc, "billing-1a2b3c");
        assert_eq!(name, "vitals:simulator:billing:billing-1a2b3c");
        let parsed = ConnName::parse(&name).unwrap();
        assert_eq!(parsed.source, "simulator");
        assert_eq!(parsed.services, ConnServices::One(svc));
        assert_eq!(parsed.instance, "billing-1a2b3c");

        let many = ConnName::parse(&ConnName::format_many("app", "host:7")).unwrap();
        assert_eq!(many.services, ConnServices::ByInstance);
        assert_eq!(many.instance, "host:7", "an instance may contain ':'");
    }

    #[test]
    fn other_names_are_not_mapped() {
        for name in [
            "",
            "simulator billing",
            "vitals:",
            "vitals:simulator:billing",
            "vitals:simulator:billing:",
            "vitals::billing:x",
            "vitals:sim ulator:billing:x",
            "vitals:simulator:Not A Name:x",
            "VITALS:simulator:billing:x",
        ] {
            assert_eq!(ConnName::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn reads_a_real_disconnect_advisory() {
        // As nats-server 2.15.1 sent it (trimmed of fields the monitor ignores).
        let raw = r#"{"type":"io.nats.server.advisory.v1.client_disconnect","id":"gYIN",
            "timestamp":"2026-12-02T17:55:18.656104315Z",
            "server":{"name":"NAX3","host":"0.0.0.0","id":"NAX3","ver":"2.15.1","seq":17},
            "client":{"start":"2026-12-02T17:55:18.152734447Z","host":"127.0.0.1","id":7,
              "acc":"VITALS","user":"viewer","name":"vitals:simulator:billing:billing-abc",
              "lang":"python3","rtt":417000,"kind":"Client","client_type":"nats"},
            "sent":{"msgs":0,"bytes":0},"received":{"msgs":0,"bytes":0},
            "reason":"Client Closed"}"#;
        let a: ConnAdvisory = serde_json::from_str(raw).unwrap();
        assert!(a.is_disconnect() && !a.is_connect() && !a.clustered());
        assert_eq!(a.client.id, 7);
        assert_eq!(a.reason.as_deref(), Some(REASON_CLIENT_CLOSED));
        assert_eq!(
            a.client.name.as_deref(),
            Some("vitals:simulator:billing:billing-abc")
        );
    }
}
