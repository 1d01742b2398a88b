//! Connection advisories: when the connection of a service's instance closes because the
//! process went away, the service is DOWN at once instead of after the heartbeat timeout.
//!
//! When a disconnect means DOWN (docs/PROTOCOL.md says the same):
//! - the connection's name maps it to an instance (`vitals:<source>:<service>:<instance>`,
//!   see [`ConnName`]), its source is not a prober (a prober's loss is not its targets'),
//!   and its user is not one of `conn_ignore_users` (the anonymous viewer);
//! - the server's reason is `Client Closed` (the client's side closed the socket: the
//!   process exited or was killed) or `Read Error` (reset); any other reason (server
//!   shutdown, stale connection, slow consumer, ...) is left to the heartbeat timeout;
//! - the monitor itself is judging: connected, its feed not stalled, and not within the
//!   grace period after its own reconnect or a stall (a server freeze closes everyone's
//!   connections at once, and they come back);
//! - it is that instance's newest connection (a reconnect supersedes the old one), and no
//!   newer connection of the instance appeared within `reconnect_grace_ms` when there was
//!   somewhere else to reconnect to: a clustered server, or a reset;
//! - the instance is the service's, the service was up (not UNKNOWN, not already DOWN),
//!   and no other instance of it (a replica) sent a sample within the heartbeat timeout.

use std::collections::HashMap;

use vitals_protocol::conn::{REASON_CLIENT_CLOSED, REASON_READ_ERROR};
use vitals_protocol::{ConnAdvisory, ConnName, ConnServices, ServiceName, Status};

use super::{Engine, Event};

/// Connections of this source never stand for their samples' services.
const PROBER_SOURCE: &str = "prober";
/// Connections remembered at most (one per live VITALS client; beyond it new ones are
/// not tracked and their loss is judged as if unseen).
const MAX_TRACKED: usize = 200_000;

/// What one advisory did, for the `conn_events_total{outcome}` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConnOutcome {
    /// Not valid JSON, or not a connect/disconnect advisory.
    Unreadable,
    /// A name outside the convention: that publisher falls back to the timeout.
    Unmapped,
    Prober,
    IgnoredUser,
    Connected,
    /// A connection came back within the grace period: its loss was not judged.
    Reconnected,
    /// An older connection of an instance that has reconnected since.
    Superseded,
    /// A reason that is not the process going away (left to the timeout).
    OtherReason,
    /// The monitor was not judging (its own NATS trouble, or just after it).
    NotJudging,
    /// Waiting `reconnect_grace_ms` for the connection to come back.
    Pending,
    /// No tracked service has that instance (or the service never sent a sample).
    Unknown,
    AlreadyDown,
    /// Another instance of the service is alive.
    Replica,
    Down,
}

impl ConnOutcome {
    pub const ALL: [ConnOutcome; 14] = [
        Self::Unreadable,
        Self::Unmapped,
        Self::Prober,
        Self::IgnoredUser,
        Self::Connected,
        Self::Reconnected,
        Self::Superseded,
        Self::OtherReason,
        Self::NotJudging,
        Self::Pending,
        Self::Unknown,
        Self::AlreadyDown,
        Self::Replica,
        Self::Down,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Unmapped => "unmapped",
            Self::Prober => "prober",
            Self::IgnoredUser => "ignored_user",
            Self::Connected => "connected",
            Self::Reconnected => "reconnected",
            Self::Superseded => "superseded",
            Self::OtherReason => "other_reason",
            Self::NotJudging => "not_judging",
            Self::Pending => "pending",
            Self::Unknown => "unknown",
            Self::AlreadyDown => "already_down",
            Self::Replica => "replica",
            Self::Down => "down",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnKey {
    services: ConnServices,
    instance: String,
}

/// The connections the monitor has seen open, and the losses waiting for their grace.
#[derive(Debug, Default)]
pub(super) struct Connections {
    /// (server id, client id) -> its instance; `true` once a newer connection of the same
    /// instance opened (its loss is then not the instance's).
    open: HashMap<(String, u64), (ConnKey, bool)>,
    pending: Vec<PendingLoss>,
}

#[derive(Debug)]
struct PendingLoss {
    due_ms: u64,
    key: ConnKey,
    reason: String,
}

impl Connections {
    /// Records a new connection; returns whether it cancelled a pending loss.
    fn opened(&mut self, id: (String, u64), key: ConnKey) -> bool {
        for (k, superseded) in self.open.values_mut() {
            if *k == key {
                *superseded = true;
            }
        }
        if self.open.len() >= MAX_TRACKED {
            // Superseded connections whose close never came (their server died) pile up
            // across reconnects: they go first.
            self.open.retain(|_, (_, superseded)| !*superseded);
        }
        if self.open.len() < MAX_TRACKED {
            self.open.insert(id, (key.clone(), false));
        }
        let before = self.pending.len();
        self.pending.retain(|p| p.key != key);
        before != self.pending.len()
    }
}

impl Engine {
    /// Applies one connect or disconnect advisory received at `now_ms`.
    pub fn on_conn_advisory(
        &mut self,
        advisory: &ConnAdvisory,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) -> ConnOutcome {
        if !advisory.is_connect() && !advisory.is_disconnect() {
            return ConnOutcome::Unreadable;
        }
        let Some(name) = advisory.client.name.as_deref().and_then(ConnName::parse) else {
            return ConnOutcome::Unmapped;
        };
        if name.source == PROBER_SOURCE {
            return ConnOutcome::Prober;
        }
        let user = advisory.client.user.as_deref().unwrap_or("");
        if self.cfg.conn_ignore_users.iter().any(|u| u == user) {
            return ConnOutcome::IgnoredUser;
        }
        let key = ConnKey {
            services: name.services,
            instance: name.instance,
        };
        let id = (advisory.server.id.clone(), advisory.client.id);
        if advisory.is_connect() {
            self.reopen(&key);
            return match self.connections.opened(id, key) {
                true => ConnOutcome::Reconnected,
                false => ConnOutcome::Connected,
            };
        }
        if let Some((_, true)) = self.connections.open.remove(&id) {
            return ConnOutcome::Superseded;
        }
        let reason = advisory.reason.as_deref().unwrap_or_default();
        let wait_for_reconnect = match reason {
            REASON_CLIENT_CLOSED => advisory.clustered(),
            REASON_READ_ERROR => true,
            _ => return ConnOutcome::OtherReason,
        };
        if !self.judging_connections(now_ms) {
            return ConnOutcome::NotJudging;
        }
        let reason = format!("connection lost ({reason})");
        if wait_for_reconnect && self.cfg.reconnect_grace_ms > 0 {
            self.connections.pending.push(PendingLoss {
                due_ms: now_ms + self.cfg.reconnect_grace_ms,
                key,
                reason,
            });
            return ConnOutcome::Pending;
        }
        self.lose(&key, &reason, now_ms, out)
    }

    /// Judges the losses whose grace ran out (called every tick); returns their outcomes.
    pub fn judge_pending_losses(&mut self, now_ms: u64, out: &mut Vec<Event>) -> Vec<ConnOutcome> {
        if self.connections.pending.is_empty() {
            return Vec::new();
        }
        let (due, waiting) = std::mem::take(&mut self.connections.pending)
            .into_iter()
            .partition(|p| p.due_ms <= now_ms);
        self.connections.pending = waiting;
        let due: Vec<PendingLoss> = due;
        let judging = self.judging_connections(now_ms);
        due.into_iter()
            .map(|p| match judging {
                true => self.lose(&p.key, &p.reason, now_ms, out),
                false => ConnOutcome::NotJudging,
            })
            .collect()
    }

    fn judging_connections(&self, now_ms: u64) -> bool {
        !self.disconnected && !self.feed_stalled && now_ms >= self.conn_quiet_until_ms
    }

    fn services_of(&self, key: &ConnKey) -> Vec<ServiceName> {
        match &key.services {
            ConnServices::One(s) => vec![s.clone()],
            ConnServices::ByInstance => self
                .services
                .values()
                .filter(|t| t.instance == key.instance)
                .map(|t| t.name.clone())
                .collect(),
        }
    }

    fn reopen(&mut self, key: &ConnKey) {
        for name in self.services_of(key) {
            if let Some(t) = self.services.get_mut(&name) {
                t.instances.reopen(&key.instance);
            }
        }
    }

    /// The instance's connection is gone: each of its services with no other live
    /// instance goes DOWN now.
    fn lose(
        &mut self,
        key: &ConnKey,
        reason: &str,
        now_ms: u64,
        out: &mut Vec<Event>,
    ) -> ConnOutcome {
        let mut outcome = ConnOutcome::Unknown;
        let mut going_down = Vec::new();
        for name in self.services_of(key) {
            let Some(t) = self.services.get_mut(&name) else {
                continue;
            };
            if !t.instances.close(&key.instance) || t.status == Status::Unknown {
                continue;
            }
            let timeout = t.rules.silence_timeout_ms(t.interval_ms);
            let silence_ms = now_ms.saturating_sub(t.last_seen_ms.unwrap_or(now_ms));
            let found = if t.is_down() {
                ConnOutcome::AlreadyDown
            } else if t.instances.another_alive(&key.instance, now_ms, timeout) {
                ConnOutcome::Replica
            } else {
                let depth = self.cfg.depends_on.depth(name.as_str());
                going_down.push((depth, name, silence_ms, timeout));
                ConnOutcome::Down
            };
            outcome = outcome.max(found);
        }
        self.bring_down(going_down, |_| reason.to_owned(), now_ms, out);
        outcome
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
