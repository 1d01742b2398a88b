//! NATS -> view: one subscription to `health.>` for the whole gateway.
//!
//! On start and after every reconnect: subscribe first (already done, the client keeps
//! the subscription across reconnects), fetch the snapshot (the monitor's, page by page,
//! or KV's if the monitor does not answer), replay what arrived meanwhile, then go live.
//! A sync that panics is retried with a backoff, a subscription that ends is renewed;
//! meanwhile the gateway reports itself not live (clients and `/healthz` see why).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vitals_protocol::subjects::{self, HealthSubject};
use vitals_protocol::{ServiceName, ServiceState, Snapshot, SnapshotRequest};
use vitals_runtime::ConnEvent;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::view::Update;

/// Updates buffered during one sync, at most (then the sync starts over).
const MAX_BUFFERED: usize = 200_000;
/// Each snapshot page received extends the snapshot deadline by this much...
const PAGE_EXTRA: Duration = Duration::from_millis(500);
/// ...up to this many times the snapshot timeout in all.
const MAX_SNAPSHOT_TIMEOUTS: u32 = 10;
/// Retries of a failed sync or subscription: first after this, doubling...
const RETRY_FIRST: Duration = Duration::from_millis(250);
/// ...to at most this.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Parses a message from `health.>`; None for what the view does not track
/// (snapshot requests, unknown subjects) or what does not parse (counted).
pub fn parse(subject: &str, payload: &[u8], metrics: &Metrics) -> Option<Update> {
    fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], metrics: &Metrics) -> Option<T> {
        let parsed = serde_json::from_slice(payload).ok();
        if parsed.is_none() {
            metrics.feed_invalid.inc();
        }
        parsed
    }
    let kind = subjects::parse_health(subject)?;
    let update = match kind {
        HealthSubject::Heartbeat => return decode(payload, metrics).map(Update::Heartbeat),
        HealthSubject::Status(_) => decode(payload, metrics).map(Update::Status),
        HealthSubject::Alert(_) => decode(payload, metrics).map(Update::Alert),
        HealthSubject::Summary(_) => decode(payload, metrics).map(Update::Summary),
    }?;
    // The subject names the service; a payload about another one is refused.
    let about = match &update {
        Update::Status(c) => c.service.as_str(),
        Update::Alert(a) => a.service.as_str(),
        Update::Summary(s) => s.service.as_str(),
        Update::Heartbeat(_) => return Some(update),
    };
    if Some(about) != kind.service() {
        metrics.feed_invalid.inc();
        return None;
    }
    Some(update)
}

/// A fresh view and where it came from (`monitor`, `kv` or `none`).
pub type Synced = (Vec<ServiceState>, &'static str);
/// How a sync is done (replaceable in tests).
pub type SyncFn = Arc<dyn Fn() -> BoxFuture<'static, Synced> + Send + Sync>;

pub struct Feed {
    pub client: async_nats::Client,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    sync: SyncFn,
}

/// The shared doubling delay with jitter, counting attempts; reset on success.
struct Backoff(u32);

impl Backoff {
    const POLICY: vitals_runtime::Backoff = vitals_runtime::Backoff {
        base: RETRY_FIRST,
        max: RETRY_MAX,
    };
    fn new() -> Self {
        Self(0)
    }
    fn next(&mut self) -> Instant {
        self.0 = self.0.saturating_add(1);
        Instant::now() + Self::POLICY.delay(self.0)
    }
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Why the view is not being kept current, if it is not.
#[derive(Default)]
struct Problems {
    subscription: Option<String>,
    sync: Option<String>,
}

impl Problems {
    fn text(&self) -> Option<String> {
        match (&self.subscription, &self.sync) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a.clone()),
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Feed {
    pub fn new(
        client: async_nats::Client,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        snapshot_timeout: Duration,
    ) -> Self {
        let sync: SyncFn = {
            let (client, metrics) = (client.clone(), metrics.clone());
            Arc::new(move || {
                let (client, metrics) = (client.clone(), metrics.clone());
                Box::pin(async move { sync_view(&client, &metrics, snapshot_timeout).await })
            })
        };
        Self {
            client,
            hub,
            metrics,
            sync,
        }
    }

    /// The same feed with another way to sync (tests: one that panics).
    pub fn with_sync(self, sync: SyncFn) -> Self {
        Self { sync, ..self }
    }

    pub async fn run(
        self,
        sub: async_nats::Subscriber,
        mut conn: mpsc::UnboundedReceiver<ConnEvent>,
        cancel: CancellationToken,
    ) {
        let mut sub = Some(sub);
        let mut syncing: Option<(JoinHandle<Synced>, Vec<Update>)> = None;
        let mut problems = Problems::default();
        let (mut sync_backoff, mut sub_backoff) = (Backoff::new(), Backoff::new());
        let (mut retry_sync_at, mut resubscribe_at) = (None, None);
        // The subscription was renewed: live again once the sync that follows is done.
        let mut renewed = false;
        // A heartbeat from a monitor other than the last one seen (a restart, or the
        // first monitor after starting empty) means a new full state: sync again.
        let mut monitor_id: Option<String> = None;
        let connected = |c: &async_nats::Client| {
            c.connection_state() == async_nats::connection::State::Connected
        };
        if connected(&self.client) {
            syncing = Some((self.start_sync(), Vec::new()));
        }
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(change) = conn.recv() => match change {
                    ConnEvent::SlowConsumer => {
                        self.metrics.feed_slow_consumer.inc();
                        tracing::warn!("the gateway fell behind NATS; messages dropped");
                    }
                    ConnEvent::Disconnected => {
                        self.metrics.nats_connected.set(0);
                        if let Some((task, _)) = syncing.take() {
                            task.abort();
                        }
                        // The reconnect syncs anyway.
                        retry_sync_at = None;
                        self.hub.disconnected();
                    }
                    ConnEvent::Connected => {
                        self.metrics.nats_connected.set(1);
                        if let Some((task, _)) = syncing.take() {
                            task.abort();
                        }
                        retry_sync_at = None;
                        syncing = Some((self.start_sync(), Vec::new()));
                    }
                },
                done = async { (&mut syncing.as_mut()?.0).await.ok() }, if syncing.is_some() => {
                    let buffered = syncing.take().map(|(_, b)| b).unwrap_or_default();
                    match done {
                        Some((services, source)) => {
                            tracing::info!(services = services.len(), source, replayed = buffered.len(), "view synced");
                            self.hub.replace(services, source, buffered);
                            sync_backoff.reset();
                            problems.sync = None;
                            if renewed {
                                renewed = false;
                                problems.subscription = None;
                            }
                        }
                        None => {
                            // Not an abort (those are taken out of `syncing` first): a panic.
                            self.metrics.sync_failures.inc();
                            let at = sync_backoff.next();
                            tracing::error!(retry_in_ms = (at - Instant::now()).as_millis() as u64, "the snapshot sync task panicked; the view may be stale");
                            problems.sync = Some("snapshot sync failed (task panicked); retrying".into());
                            retry_sync_at = Some(at);
                            // What was buffered still applies (idempotently) to the old view.
                            for update in buffered {
                                self.hub.publish(update);
                            }
                        }
                    }
                    self.hub.set_live(problems.text());
                }
                () = sleep_until(retry_sync_at), if retry_sync_at.is_some() => {
                    retry_sync_at = None;
                    if syncing.is_none() && connected(&self.client) {
                        tracing::info!("retrying the snapshot sync");
                        syncing = Some((self.start_sync(), Vec::new()));
                    }
                }
                () = sleep_until(resubscribe_at), if resubscribe_at.is_some() => {
                    resubscribe_at = None;
                    match self.client.subscribe(subjects::HEALTH_ALL).await {
                        Ok(new) => {
                            tracing::info!("subscribed to health.> again; syncing");
                            sub = Some(new);
                            sub_backoff.reset();
                            renewed = true;
                            // Whatever was published while unsubscribed is missed: sync.
                            if let Some((task, _)) = syncing.take() {
                                task.abort();
                            }
                            syncing = Some((self.start_sync(), Vec::new()));
                        }
                        Err(e) => {
                            let at = sub_backoff.next();
                            tracing::warn!(error = %e, retry_in_ms = (at - Instant::now()).as_millis() as u64, "cannot subscribe to health.>");
                            resubscribe_at = Some(at);
                        }
                    }
                }
                msg = async { sub.as_mut()?.next().await }, if sub.is_some() => {
                    let Some(msg) = msg else {
                        sub = None;
                        self.metrics.subscription_ends.inc();
                        let at = sub_backoff.next();
                        tracing::error!(retry_in_ms = (at - Instant::now()).as_millis() as u64, "the subscription to health.> ended; the view is frozen until it is renewed");
                        problems.subscription = Some("subscription to health.> ended; resubscribing".into());
                        self.hub.set_live(problems.text());
                        resubscribe_at = Some(at);
                        continue;
                    };
                    self.metrics.feed_in.inc();
                    let Some(update) = parse(&msg.subject, &msg.payload, &self.metrics) else { continue };
                    if let Update::Heartbeat(hb) = &update
                        && monitor_id.as_deref() != Some(hb.monitor_id.as_str())
                    {
                        let first = monitor_id.is_none();
                        monitor_id = Some(hb.monitor_id.clone());
                        if !first && syncing.is_none() {
                            tracing::info!(monitor_id = %hb.monitor_id, "a new monitor is up; syncing");
                            syncing = Some((self.start_sync(), Vec::new()));
                        }
                    }
                    match syncing.as_mut() {
                        Some((_, buffer)) if buffer.len() < MAX_BUFFERED => buffer.push(update),
                        Some(_) => {
                            tracing::warn!("too much arrived during a sync; starting over");
                            if let Some((task, _)) = syncing.take() {
                                task.abort();
                            }
                            syncing = Some((self.start_sync(), Vec::new()));
                        }
                        None => self.hub.publish(update),
                    }
                }
            }
        }
        if let Some((task, _)) = syncing.take() {
            task.abort();
        }
    }

    fn start_sync(&self) -> JoinHandle<Synced> {
        tokio::spawn((self.sync)())
    }
}

/// The monitor's snapshot, else KV's, else nothing.
async fn sync_view(client: &async_nats::Client, metrics: &Metrics, timeout: Duration) -> Synced {
    if let Some(services) = request_snapshot(client, timeout, metrics).await {
        return (services, "monitor");
    }
    metrics.snapshot_fallbacks.inc();
    match read_kv(client).await {
        Ok(states) => (states, "kv"),
        // No monitor has ever run here: start empty. When a monitor appears, its
        // first heartbeat triggers a new sync.
        Err(e) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "no snapshot from the monitor or KV; starting empty"
            );
            (Vec::new(), "none")
        }
    }
}

/// One page of the monitor's snapshot; "no responders" (it may be resubscribing after the
/// same reconnect) is retried until the caller's deadline.
async fn ask(
    client: &async_nats::Client,
    body: Bytes,
) -> Result<async_nats::Message, async_nats::RequestError> {
    loop {
        match client.request(subjects::SNAPSHOT, body.clone()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Why a reply is not a usable snapshot page.
pub fn check_page(
    msg: &async_nats::Message,
    after: Option<&ServiceName>,
) -> Result<Snapshot, (&'static str, String)> {
    if let Some(headers) = &msg.headers
        && let Some(error) = headers.get("Nats-Service-Error")
    {
        let code = headers
            .get("Nats-Service-Error-Code")
            .map_or("?", |c| c.as_str());
        return Err(("error_reply", format!("{code} {}", error.as_str())));
    }
    let page: Snapshot =
        serde_json::from_slice(&msg.payload).map_err(|e| ("invalid", e.to_string()))?;
    // Each page must move forward, or a broken monitor could keep us paging forever.
    if let (Some(after), Some(next)) = (after, &page.next_after)
        && next <= after
    {
        return Err((
            "invalid",
            format!("next_after {next} does not follow {after}"),
        ));
    }
    Ok(page)
}

/// Asks the monitor for its snapshot page by page (`after` the last name of the previous
/// page), so no reply has to fit the whole view. Within `timeout`, extended a little per
/// page; any failure (counted by reason) means None: the caller reads KV instead.
async fn request_snapshot(
    client: &async_nats::Client,
    timeout: Duration,
    metrics: &Metrics,
) -> Option<Vec<ServiceState>> {
    let start = Instant::now();
    let cap = start + timeout * MAX_SNAPSHOT_TIMEOUTS;
    let mut deadline = start + timeout;
    let mut services = Vec::new();
    let mut after: Option<ServiceName> = None;
    let mut monitor_id: Option<String> = None;
    let fail = |reason: &'static str, detail: String| {
        metrics.snapshot_failed(reason);
        tracing::warn!(
            reason,
            detail,
            "no usable snapshot from the monitor; reading KV"
        );
        None
    };
    for pages in 0u32.. {
        let body = match &after {
            None => Bytes::new(),
            Some(a) => {
                let request = SnapshotRequest {
                    page: None,
                    after: Some(a.clone()),
                };
                Bytes::from(serde_json::to_vec(&request).unwrap_or_default())
            }
        };
        let msg = match tokio::time::timeout_at(deadline, ask(client, body)).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => return fail("request", e.to_string()),
            Err(_) => return fail("timeout", format!("after {pages} pages")),
        };
        let page = match check_page(&msg, after.as_ref()) {
            Ok(page) => page,
            Err((reason, detail)) => return fail(reason, detail),
        };
        if monitor_id.get_or_insert_with(|| page.monitor_id.clone()) != &page.monitor_id {
            return fail("invalid", "pages from two monitors".into());
        }
        services.extend(page.services);
        match page.next_after {
            None => return Some(services),
            Some(next) => after = Some(next),
        }
        deadline = (deadline + PAGE_EXTRA).min(cap);
    }
    None
}

async fn read_kv(client: &async_nats::Client) -> anyhow::Result<Vec<ServiceState>> {
    use anyhow::Context;
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .get_key_value(subjects::KV_BUCKET)
        .await
        .context("opening KV health_status")?;
    vitals_runtime::load_service_states(&kv).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_subject_and_refuses_mismatches() {
        let m = Metrics::new();
        let change = r#"{"service":"auth","status":"DOWN","previous":"HEALTHY","at_ms":5,"reasons":["stopped"]}"#;
        assert!(matches!(
            parse("health.status.auth", change.as_bytes(), &m),
            Some(Update::Status(_))
        ));
        assert!(parse("health.status.billing", change.as_bytes(), &m).is_none());
        assert!(parse("health.status.auth", b"junk", &m).is_none());
        assert!(parse("health.snapshot", b"", &m).is_none());
        assert!(parse("health.other.auth", change.as_bytes(), &m).is_none());
        assert!(parse("health.status.auth.x", change.as_bytes(), &m).is_none());
        assert_eq!(m.feed_invalid.get(), 2);
    }

    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::broadcast;
    use vitals_protocol::GatewayState;
    use vitals_runtime::Clock;

    use crate::hub::Out;

    /// The next `gateway` frame a client would get.
    async fn next_gateway(rx: &mut broadcast::Receiver<Out>) -> GatewayState {
        let found = tokio::time::timeout(vitals_testkit::SOON, async {
            loop {
                if let Ok(Out::Frame(body, _)) = rx.recv().await {
                    let json = format!("{{{}", String::from_utf8_lossy(&body));
                    if let Ok(vitals_protocol::FeedMessage::Gateway { data }) =
                        serde_json::from_str(&json)
                    {
                        return data;
                    }
                }
            }
        })
        .await;
        found.expect("a gateway frame in time")
    }

    struct Rig {
        _nats: vitals_testkit::NatsServer,
        client: async_nats::Client,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        rx: broadcast::Receiver<Out>,
        cancel: CancellationToken,
        _conn: mpsc::UnboundedSender<ConnEvent>,
    }

    impl Rig {
        async fn start(sync: SyncFn, unsubscribe_after: Option<u64>) -> anyhow::Result<Self> {
            let nats = vitals_testkit::NatsServer::start()?;
            let client = nats.client().await?;
            let metrics = Arc::new(Metrics::new());
            let hub = Arc::new(Hub::new(64, Clock::new(), metrics.clone()));
            let rx = hub.join().await.rx;
            let mut sub = client.subscribe(subjects::HEALTH_ALL).await?;
            if let Some(n) = unsubscribe_after {
                sub.unsubscribe_after(n).await?;
            }
            client.flush().await?;
            let feed = Feed::new(
                client.clone(),
                hub.clone(),
                metrics.clone(),
                Duration::from_millis(100),
            )
            .with_sync(sync);
            let (tx, conn) = mpsc::unbounded_channel();
            let cancel = CancellationToken::new();
            tokio::spawn(feed.run(sub, conn, cancel.clone()));
            Ok(Self {
                _nats: nats,
                client,
                hub,
                metrics,
                rx,
                cancel,
                _conn: tx,
            })
        }

        async fn publish_status(&self, service: &str) -> anyhow::Result<()> {
            let body = format!(
                r#"{{"service":"{service}","status":"HEALTHY","previous":"UNKNOWN","at_ms":5,"reasons":[]}}"#
            );
            self.client
                .publish(format!("health.status.{service}"), body.into())
                .await?;
            self.client.flush().await?;
            Ok(())
        }

        async fn has(&self, service: &str) -> bool {
            let seen = vitals_testkit::wait_until(vitals_testkit::SOON, || async {
                let status = self.hub.status();
                status
                    .services
                    .iter()
                    .any(|s| s.service.as_str() == service)
                    .then_some(())
            })
            .await;
            seen.is_some()
        }
    }

    fn empty_sync() -> SyncFn {
        Arc::new(|| Box::pin(async { (Vec::new(), "monitor") }))
    }

    /// A subscription that ends (here: auto-unsubscribed after one message by the real
    /// client) makes the gateway say it is not live, then renew it, sync, and say it is.
    #[tokio::test]
    async fn a_subscription_that_ends_is_reported_then_renewed() -> anyhow::Result<()> {
        let mut rig = Rig::start(empty_sync(), Some(1)).await?;
        rig.publish_status("a").await?;
        let dead = loop {
            let g = next_gateway(&mut rig.rx).await;
            if !g.live {
                break g;
            }
        };
        assert!(
            dead.problem
                .as_deref()
                .is_some_and(|p| p.contains("subscription")),
            "{dead:?}"
        );
        let back = next_gateway(&mut rig.rx).await;
        assert!(back.live && back.problem.is_none(), "{back:?}");
        assert_eq!(rig.metrics.subscription_ends.get(), 1);
        // The renewed subscription feeds the view.
        rig.publish_status("b").await?;
        assert!(rig.has("b").await);
        rig.cancel.cancel();
        Ok(())
    }

    /// A sync task that panics is reported (not live, counted) and retried.
    #[tokio::test]
    async fn a_panicking_sync_is_reported_and_retried() -> anyhow::Result<()> {
        let calls = Arc::new(AtomicUsize::new(0));
        let sync: SyncFn = {
            let calls = calls.clone();
            Arc::new(move || {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    assert!(!first, "injected sync failure");
                    (Vec::new(), "monitor")
                })
            })
        };
        let mut rig = Rig::start(sync, None).await?;
        let dead = next_gateway(&mut rig.rx).await;
        assert!(!dead.live, "{dead:?}");
        assert!(
            dead.problem
                .as_deref()
                .is_some_and(|p| p.contains("panicked")),
            "{dead:?}"
        );
        let back = loop {
            let g = next_gateway(&mut rig.rx).await;
            if g.live {
                break g;
            }
        };
        assert!(back.nats_connected && back.problem.is_none(), "{back:?}");
        assert_eq!(rig.metrics.sync_failures.get(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        rig.publish_status("a").await?;
        assert!(rig.has("a").await);
        rig.cancel.cancel();
        Ok(())
    }
}
