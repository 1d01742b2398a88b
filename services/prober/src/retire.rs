//! A removed target retires its service (`health.retire`), so the monitor forgets it at
//! once instead of reporting it DOWN. One request at a time, paced under the monitor's
//! per-asker limit, each retried a few times when no monitor answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vitals_protocol::{RetireReply, RetireRequest, ServiceName, subjects};
use vitals_runtime::Backoff;

use crate::metrics::Metrics;

const ATTEMPTS: u32 = 4;
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
const RETRY: Backoff = Backoff {
    base: Duration::from_millis(500),
    max: Duration::from_secs(4),
};
/// The monitor takes 5 retire requests a second from one asker.
const PACE: Duration = Duration::from_millis(250);

/// Retires each service sent on `queue` until `cancel` (what is still queued then is
/// left: the monitor retires long-DOWN services by itself).
pub async fn run(
    client: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<ServiceName>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    loop {
        let service = tokio::select! {
            s = queue.recv() => match s {
                Some(s) => s,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let outcome = tokio::select! {
            o = retire(&client, &service) => o,
            () = cancel.cancelled() => return,
        };
        metrics.retire(outcome);
        tokio::select! {
            () = tokio::time::sleep(PACE) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// One service, with retries: `retired`, `refused` (the monitor answered no: e.g. it
/// never saw the service) or `no_answer`.
async fn retire(client: &async_nats::Client, service: &ServiceName) -> &'static str {
    let body = match serde_json::to_vec(&RetireRequest {
        service: service.to_string(),
    }) {
        Ok(b) => b,
        Err(_) => return "refused",
    };
    for attempt in 1..=ATTEMPTS {
        // The task's last samples are sent before the request that retires it.
        let _ = client.flush().await;
        let asked = tokio::time::timeout(
            ANSWER_WITHIN,
            client.request(subjects::RETIRE, body.clone().into()),
        )
        .await;
        let why = match asked {
            Ok(Ok(msg)) => match serde_json::from_slice::<RetireReply>(&msg.payload) {
                Ok(r) if r.ok => {
                    tracing::info!(service = %service, previous = ?r.previous, resolved = r.resolved.len(), "target removed: service retired");
                    return "retired";
                }
                Ok(r) => {
                    let error = r.error.unwrap_or_default();
                    // The monitor's rate limit or its own slowness: worth another try.
                    if !(error.contains("rate limited") || error.contains("in time")) {
                        tracing::warn!(service = %service, error = %error, "target removed: the monitor did not retire the service");
                        return "refused";
                    }
                    error
                }
                Err(e) => format!("unreadable reply: {e}"),
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer in time".to_owned(),
        };
        tracing::debug!(service = %service, attempt, why = %why, "retire request not answered");
        if attempt < ATTEMPTS {
            tokio::time::sleep(RETRY.delay(attempt)).await;
        }
    }
    tracing::warn!(service = %service, attempts = ATTEMPTS, "target removed but no monitor answered the retire request; it will go DOWN by silence");
    "no_answer"
}
