//! Reads without touching the hot path: the engine publishes a copy of every service's
//! state on its tick (at most every 250 ms) and only when somebody asked for one;
//! snapshot requests and `GET /api/status` are served from that copy, encoded at most
//! once per copy and shared (a thousand readers of one copy hold one encoding between
//! them). A reader gets the current copy at once if nothing changed since it was made,
//! else the next one: so a read always reflects what was accepted before it was asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use tokio::sync::{OnceCell, watch};
use tokio::time::Instant;
use vitals_protocol::{ServiceName, ServiceState};

/// How long a reader waits for the engine to refresh a stale copy before it takes the old.
const REFRESH_WAIT: Duration = Duration::from_secs(1);

/// Every service's state at one moment, sorted by name.
pub struct ReadCopy {
    pub version: u64,
    pub at_ms: u64,
    /// The engine's change count when the copy was made.
    generation: u64,
    built: Instant,
    pub monitor_id: Arc<str>,
    pub services: Vec<ServiceState>,
    /// Each service's JSON, in order.
    items: OnceCell<Arc<Vec<Bytes>>>,
    /// The whole copy as one Snapshot document (for HTTP, which has no size limit).
    full: OnceCell<Bytes>,
    /// Encoded pages by first service index (both page numbers and cursors land here).
    pages: Mutex<HashMap<usize, Page>>,
    /// First index of each page, computed once per page budget.
    starts: Mutex<Option<(usize, Arc<Vec<usize>>)>>,
}

/// One encoded page and where the next one starts (None on the last).
#[derive(Clone)]
pub struct Page {
    pub body: Bytes,
    pub next: Option<usize>,
}

/// Why a page cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page {page} does not exist: the snapshot has {pages} pages")]
    NoSuchPage { page: u32, pages: u32 },
    #[error(
        "one service's state ({size} bytes) does not fit the reply size limit ({budget} bytes)"
    )]
    TooLarge { size: usize, budget: usize },
    #[error("encoding failed: {0}")]
    Encode(String),
}

#[derive(Serialize)]
struct Head<'a> {
    monitor_id: &'a str,
    at_ms: u64,
    version: u64,
    page: u32,
    pages: u32,
    total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<&'a str>,
}

/// Room left in a reply for the page's own fields (ids, counts, the cursor).
const HEAD_ROOM: usize = 512;

impl ReadCopy {
    pub fn new(
        version: u64,
        at_ms: u64,
        generation: u64,
        monitor_id: Arc<str>,
        services: Vec<ServiceState>,
    ) -> Self {
        Self {
            version,
            at_ms,
            generation,
            built: Instant::now(),
            monitor_id,
            services,
            items: OnceCell::new(),
            full: OnceCell::new(),
            pages: Mutex::new(HashMap::new()),
            starts: Mutex::new(None),
        }
    }

    /// Each service's JSON, encoded once for this copy (off the async workers).
    async fn items(self: &Arc<Self>) -> Result<Arc<Vec<Bytes>>, PageError> {
        let copy = self.clone();
        self.items
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    copy.services
                        .iter()
                        .map(|s| serde_json::to_vec(s).map(Bytes::from))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Arc::new)
                        .map_err(|e| PageError::Encode(e.to_string()))
                })
                .await
                .map_err(|e| PageError::Encode(e.to_string()))?
            })
            .await
            .cloned()
    }

    /// The whole copy as one Snapshot document.
    pub async fn full(self: &Arc<Self>) -> Result<Bytes, PageError> {
        let items = self.items().await?;
        self.full
            .get_or_try_init(|| async {
                let head = Head {
                    monitor_id: &self.monitor_id,
                    at_ms: self.at_ms,
                    version: self.version,
                    page: 0,
                    pages: 1,
                    total: self.services.len() as u64,
                    next_after: None,
                };
                assemble(&head, &items)
            })
            .await
            .cloned()
    }

    /// Page `page` (from 0) of this copy, each page as many services as fit `budget`
    /// bytes in order.
    pub async fn page(self: &Arc<Self>, page: u32, budget: usize) -> Result<Page, PageError> {
        let items = self.items().await?;
        let starts = self.starts(&items, budget)?;
        let pages = starts.len() as u32;
        let Some(&start) = starts.get(page as usize) else {
            return Err(PageError::NoSuchPage { page, pages });
        };
        self.page_at(&items, &starts, start, budget)
    }

    /// The page of services that follow `after` (by name; `after` need not exist).
    pub async fn page_after(
        self: &Arc<Self>,
        after: &ServiceName,
        budget: usize,
    ) -> Result<Page, PageError> {
        let items = self.items().await?;
        let starts = self.starts(&items, budget)?;
        let start = self.services.partition_point(|s| s.service <= *after);
        self.page_at(&items, &starts, start, budget)
    }

    fn starts(&self, items: &[Bytes], budget: usize) -> Result<Arc<Vec<usize>>, PageError> {
        let mut cached = self
            .starts
            .lock()
            .map_err(|_| PageError::Encode("poisoned".into()))?;
        if let Some((b, starts)) = cached.as_ref()
            && *b == budget
        {
            return Ok(starts.clone());
        }
        let mut starts = vec![0];
        let mut at = 0;
        while at < items.len() {
            at = pack(items, at, budget)?;
            if at < items.len() {
                starts.push(at);
            }
        }
        let starts = Arc::new(starts);
        *cached = Some((budget, starts.clone()));
        Ok(starts)
    }

    fn page_at(
        &self,
        items: &[Bytes],
        starts: &[usize],
        start: usize,
        budget: usize,
    ) -> Result<Page, PageError> {
        if let Ok(pages) = self.pages.lock()
            && let Some(page) = pages.get(&start)
        {
            return Ok(page.clone());
        }
        let end = if start < items.len() {
            pack(items, start, budget)?
        } else {
            start
        };
        let next = (end < items.len()).then_some(end);
        // The page number of a cursor page is the numbered page it starts in.
        let page = starts.partition_point(|&s| s <= start).saturating_sub(1) as u32;
        let head = Head {
            monitor_id: &self.monitor_id,
            at_ms: self.at_ms,
            version: self.version,
            page,
            pages: starts.len() as u32,
            total: items.len() as u64,
            next_after: next.map(|_| self.services[end - 1].service.as_str()),
        };
        let page = Page {
            body: assemble(&head, &items[start..end])?,
            next,
        };
        if let Ok(mut pages) = self.pages.lock() {
            pages.insert(start, page.clone());
        }
        Ok(page)
    }
}

/// The end of the page that starts at `start`: as many items as fit `budget` (at least
/// one, or an error if that one alone does not fit).
fn pack(items: &[Bytes], start: usize, budget: usize) -> Result<usize, PageError> {
    let room = budget.saturating_sub(HEAD_ROOM);
    let mut used = 0;
    let mut end = start;
    while end < items.len() {
        let size = items[end].len() + 1;
        if used + size > room {
            break;
        }
        used += size;
        end += 1;
    }
    if end == start && start < items.len() {
        return Err(PageError::TooLarge {
            size: items[start].len(),
            budget,
        });
    }
    Ok(end)
}

/// `{head fields..., "services": [items]}` in one buffer.
fn assemble(head: &Head<'_>, items: &[Bytes]) -> Result<Bytes, PageError> {
    let head = serde_json::to_vec(head).map_err(|e| PageError::Encode(e.to_string()))?;
    let size = head.len() + 16 + items.iter().map(|i| i.len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    // The head is an object: reopen it to append the list.
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"services\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item);
    }
    out.put_slice(b"]}");
    Ok(out.freeze())
}

/// The engine's side: counts changes and publishes a fresh copy when one was asked for.
pub struct Publisher {
    tx: watch::Sender<Arc<ReadCopy>>,
    wanted: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    version: u64,
}

/// The readers' side (cheap to clone).
#[derive(Clone)]
pub struct Reads {
    rx: watch::Receiver<Arc<ReadCopy>>,
    wanted: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

pub fn channel(monitor_id: Arc<str>) -> (Publisher, Reads) {
    let first = Arc::new(ReadCopy::new(0, 0, 0, monitor_id, Vec::new()));
    let (tx, rx) = watch::channel(first);
    let wanted = Arc::new(AtomicBool::new(true));
    let generation = Arc::new(AtomicU64::new(1));
    (
        Publisher {
            tx,
            wanted: wanted.clone(),
            generation: generation.clone(),
            version: 0,
        },
        Reads {
            rx,
            wanted,
            generation,
        },
    )
}

impl Publisher {
    /// Records that the engine's state changed (one relaxed add per batch).
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether a reader asked for a fresher copy than the current one.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    pub fn publish(&mut self, at_ms: u64, services: Vec<ServiceState>) {
        self.wanted.store(false, Ordering::Release);
        self.version += 1;
        let generation = self.generation.load(Ordering::Acquire);
        let monitor_id = self.tx.borrow().monitor_id.clone();
        self.tx.send_replace(Arc::new(ReadCopy::new(
            self.version,
            at_ms,
            generation,
            monitor_id,
            services,
        )));
    }
}

impl Reads {
    /// The current copy if nothing changed since it was made, else the next one the
    /// engine publishes (waiting a bounded time; if the engine is too busy to answer,
    /// the last one).
    pub async fn current(&self) -> Arc<ReadCopy> {
        self.recent(Duration::ZERO).await
    }

    /// Like [`Reads::current`], but a copy made less than `max_age` ago also serves: the
    /// next pages of a cursor walk need no newer copy than the first page had.
    pub async fn recent(&self, max_age: Duration) -> Arc<ReadCopy> {
        let copy = self.rx.borrow().clone();
        let unchanged = copy.generation == self.generation.load(Ordering::Acquire);
        if copy.version > 0 && (unchanged || copy.built.elapsed() < max_age) {
            return copy;
        }
        self.wanted.store(true, Ordering::Release);
        let mut rx = self.rx.clone();
        let fresh =
            tokio::time::timeout(REFRESH_WAIT, rx.wait_for(|c| c.version > copy.version)).await;
        match fresh {
            Ok(Ok(c)) => c.clone(),
            _ => copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use vitals_protocol::{Figures, Snapshot, Status};

    use super::*;

    fn state(name: &str) -> ServiceState {
        ServiceState {
            service: ServiceName::parse(name).unwrap(),
            status: Status::Healthy,
            since_ms: 1,
            last_seen_ms: Some(2),
            reasons: vec!["first sample".into()],
            alerts: vec![],
            instance: format!("{name}-1"),
            health_url: "http://127.0.0.1:3001/health".into(),
            figures: Figures::default(),
            last_alert: None,
            interval_ms: None,
            source: Default::default(),
            probe: None,
            host: None,
        }
    }

    fn copy(n: usize) -> Arc<ReadCopy> {
        let services = (0..n).map(|i| state(&format!("svc-{i:05}"))).collect();
        Arc::new(ReadCopy::new(7, 100, 1, "m-1".into(), services))
    }

    fn parse(page: &Page) -> Snapshot {
        serde_json::from_slice(&page.body).unwrap()
    }

    #[tokio::test]
    async fn pages_fit_the_budget_and_cover_every_service_once() {
        let c = copy(1_000);
        let budget = 16 * 1024;
        let first = c.page(0, budget).await.unwrap();
        let p0 = parse(&first);
        assert!(p0.pages > 1);
        assert_eq!(p0.total, 1_000);
        let mut seen = Vec::new();
        for n in 0..p0.pages {
            let page = c.page(n, budget).await.unwrap();
            assert!(page.body.len() <= budget, "page {n}: {}", page.body.len());
            let snap = parse(&page);
            assert_eq!((snap.page, snap.pages, snap.version), (n, p0.pages, 7));
            assert_eq!(snap.next_after.is_none(), n + 1 == p0.pages);
            seen.extend(snap.services.into_iter().map(|s| s.service));
        }
        let want: Vec<_> = c.services.iter().map(|s| s.service.clone()).collect();
        assert_eq!(seen, want);
        assert!(matches!(
            c.page(p0.pages, budget).await,
            Err(PageError::NoSuchPage { .. })
        ));
    }

    #[tokio::test]
    async fn cursors_follow_the_pages_and_survive_a_new_copy() {
        let c = copy(500);
        let budget = 8 * 1024;
        let mut seen = Vec::new();
        let mut page = parse(&c.page(0, budget).await.unwrap());
        loop {
            seen.extend(page.services.iter().map(|s| s.service.clone()));
            let Some(after) = page.next_after else { break };
            page = parse(&c.page_after(&after, budget).await.unwrap());
        }
        assert_eq!(seen.len(), 500);
        // A cursor taken from one copy works on another that gained and lost services.
        let mut services: Vec<_> = c.services[1..].to_vec();
        services.push(state("zzz"));
        let next = Arc::new(ReadCopy::new(8, 200, 1, "m-1".into(), services));
        let after = ServiceName::parse("svc-00100").unwrap();
        let p = parse(&next.page_after(&after, budget).await.unwrap());
        assert_eq!(p.services[0].service.as_str(), "svc-00101");
    }

    #[tokio::test]
    async fn an_empty_copy_has_one_empty_page_and_the_full_document_parses() {
        let c = copy(0);
        let p = parse(&c.page(0, 4096).await.unwrap());
        assert_eq!((p.pages, p.total, p.services.len()), (1, 0, 0));
        let c = copy(3);
        let full: Snapshot = serde_json::from_slice(&c.full().await.unwrap()).unwrap();
        assert_eq!(full.services.len(), 3);
        assert_eq!((full.page, full.pages, full.total), (0, 1, 3));
    }

    #[tokio::test]
    async fn a_state_larger_than_the_budget_is_an_error_not_a_silent_drop() {
        let c = copy(2);
        assert!(matches!(
            c.page(0, HEAD_ROOM + 10).await,
            Err(PageError::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn encoding_happens_once_per_copy() {
        let c = copy(10);
        let a = c.page(0, 64 * 1024).await.unwrap();
        let b = c.page(0, 64 * 1024).await.unwrap();
        assert_eq!(a.body.as_ptr(), b.body.as_ptr(), "the same shared bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_is_served_until_something_changes_then_the_next_one() {
        let (mut publisher, reads) = channel("m".into());
        assert!(publisher.wanted(), "nothing published yet");
        publisher.publish(1, vec![state("a")]);
        assert!(!publisher.wanted());
        assert_eq!(reads.current().await.version, 1);
        assert_eq!(
            reads.current().await.version,
            1,
            "nothing changed: no refresh"
        );
        assert!(!publisher.wanted());
        publisher.changed();
        let reader = tokio::spawn({
            let reads = reads.clone();
            async move { reads.current().await.version }
        });
        tokio::task::yield_now().await;
        assert!(publisher.wanted(), "a reader asked");
        publisher.publish(2, vec![state("a"), state("b")]);
        assert_eq!(reader.await.unwrap(), 2);
        // An engine that never answers: the reader gets the old copy after a bound.
        publisher.changed();
        assert_eq!(reads.current().await.version, 2);
    }
}
