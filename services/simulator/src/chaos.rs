//! `chaos.<service>` request/reply: switches a service's fault at run time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{ChaosReply, FaultMode, subjects};

use crate::Crash;
use crate::service::SimService;
use crate::stats::{LogEvery, Stats};

/// How long a crash waits for its reply to reach the server.
const CRASH_FLUSH: Duration = Duration::from_secs(1);

/// Refused reply subjects are logged at most once per 10 s.
static BAD_REPLY_LOG: LogEvery = LogEvery::new(10_000);

pub struct Chaos {
    pub client: async_nats::Client,
    pub services: Arc<HashMap<String, Arc<SimService>>>,
    pub stats: Arc<Stats>,
    pub crash: Crash,
}

impl Chaos {
    /// Subscribes (the client re-subscribes by itself after a reconnect) and serves
    /// requests until `stop`. One process with many services takes `chaos.*` and
    /// ignores names it does not simulate, rather than holding 10k subscriptions.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let subject = match self.services.values().next() {
            Some(only) if self.services.len() == 1 => subjects::chaos(&only.name),
            _ => subjects::CHAOS_ALL.to_owned(),
        };
        let mut sub = self
            .client
            .subscribe(subject.clone())
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
        tracing::info!(subject, "waiting for chaos requests");
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => break,
                msg = sub.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
            };
            self.handle(msg).await;
        }
        let _ = sub.unsubscribe().await;
        Ok(())
    }

    async fn handle(&self, msg: async_nats::Message) {
        let Some(svc) = subjects::service_of_chaos(&msg.subject).and_then(|n| self.services.get(n))
        else {
            tracing::debug!(subject = %msg.subject, "chaos request for a service not simulated here");
            return;
        };
        // The reply subject is the asker's choice: answering anywhere but an inbox would
        // let whoever may send chaos publish as this simulator (e.g. into health.> or
        // $KV.>). Such a request is refused whole, not acted on.
        if let Some(to) = &msg.reply
            && !vitals_runtime::requests::is_inbox(to)
        {
            self.stats.chaos_bad_reply.inc();
            if let Some(held_back) = BAD_REPLY_LOG.ready(crate::epoch_ms()) {
                tracing::warn!(service = %svc.name, reply = %to, held_back, "chaos request refused: reply subject is not an inbox");
            }
            return;
        }
        self.stats.chaos_requests.inc();
        let reply = match svc.handle_request(&msg.payload).await {
            Ok(reply) => {
                tracing::info!(service = %svc.name, mode = reply.mode.as_str(), until_ms = ?reply.until_ms, via = "nats", "fault set");
                reply
            }
            Err(refused) => {
                self.stats.chaos_errors.inc();
                tracing::warn!(service = %svc.name, error = refused.error.as_deref().unwrap_or(""), "chaos request refused");
                refused
            }
        };
        let crash = reply.ok && reply.mode == FaultMode::Crash;
        if let Some(to) = msg.reply {
            self.send_reply(to, &reply).await;
        }
        if crash {
            // Make sure the operator hears "ok" before the process goes.
            let _ = tokio::time::timeout(CRASH_FLUSH, self.client.flush()).await;
            self.crash.now(&svc.name);
        }
    }

    async fn send_reply(&self, to: async_nats::Subject, reply: &ChaosReply) {
        let body = match serde_json::to_vec(reply) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding chaos reply");
                return;
            }
        };
        if let Err(e) = self.client.publish(to, body.into()).await {
            self.stats.publish_errors.inc();
            tracing::warn!(error = %e, "sending chaos reply");
        }
    }
}

#[cfg(test)]
mod tests {
    use vitals_runtime::requests::is_inbox as reply_is_inbox;

    #[test]
    fn only_inboxes_are_answered() {
        assert!(reply_is_inbox("_INBOX.abc.1"));
        for bad in [
            "health.status.x",
            "metrics.billing",
            "$KV.health_status.x",
            "_INBOX",
            "_inbox.x",
            "",
        ] {
            assert!(!reply_is_inbox(bad), "{bad}");
        }
    }
}
