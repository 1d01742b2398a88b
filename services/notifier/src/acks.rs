//! When a HEALTH_EVENTS message is acked: once every receiver it was routed to has
//! accepted it or given up on it. Until then it is kept here and marked in progress every
//! third of `ack_wait`, so a receiver that takes minutes does not get it redelivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The messages being delivered, by stream sequence.
#[derive(Clone)]
pub struct Acker {
    pending: Arc<Mutex<HashMap<u64, Message>>>,
    done_tx: mpsc::UnboundedSender<u64>,
}

/// One message's share held by each receiver it goes to.
pub struct Done {
    remaining: AtomicUsize,
    seq: u64,
    acker: Acker,
}

impl Done {
    /// This receiver is finished with the message (delivered, skipped or dead-lettered).
    pub fn finish(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.acker.done_tx.send(self.seq);
        }
    }
}

impl Acker {
    /// The acker and the task that acks and marks progress (until `cancel`).
    pub fn new(
        ack_wait: Duration,
        cancel: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let acker = Self {
            pending: Arc::default(),
            done_tx,
        };
        let task = run(acker.pending.clone(), done_rx, ack_wait / 3, cancel);
        (acker, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Message>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `seq` is being delivered already; a redelivered copy then only refreshes
    /// the handle used to ack it.
    pub fn refresh(&self, seq: u64, msg: Message) -> Option<Message> {
        let mut p = self.lock();
        if let Some(slot) = p.get_mut(&seq) {
            *slot = msg;
            None
        } else {
            Some(msg)
        }
    }

    /// Keeps `msg` until `receivers` shares of it are finished.
    pub fn track(&self, seq: u64, msg: Message, receivers: usize) -> Arc<Done> {
        self.lock().insert(seq, msg);
        Arc::new(Done {
            remaining: AtomicUsize::new(receivers),
            seq,
            acker: self.clone(),
        })
    }

    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

async fn run(
    pending: Arc<Mutex<HashMap<u64, Message>>>,
    mut done: mpsc::UnboundedReceiver<u64>,
    progress_every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(progress_every.max(Duration::from_millis(500)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            seq = done.recv() => {
                let Some(seq) = seq else { return };
                let msg = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&seq);
                if let Some(msg) = msg
                    && let Err(e) = msg.double_ack().await
                {
                    // Redelivered later and skipped then (KV vitals_notified has it).
                    tracing::warn!(seq, error = %e, "ack failed");
                }
            }
            _ = tick.tick() => {
                let msgs: Vec<Message> = pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned()
                    .collect();
                for m in msgs {
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            }
        }
    }
}
