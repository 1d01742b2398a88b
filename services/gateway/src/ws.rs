//! One WebSocket client: its snapshot, then live frames with a per-connection `seq`.
//! A client that falls behind gets a fresh snapshot instead of what it missed; one that
//! stops reading is dropped after the write timeout; the others never wait for it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_util::sync::CancellationToken;
use vitals_protocol::ClientMessage;

use crate::hub::{Body, Hub, Out, frame};
use crate::metrics::Metrics;
use crate::upgrade::Socket;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub write_timeout: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// How long a client connecting during start-up waits for the first view.
    pub first_sync_wait: Duration,
}

/// Frames written per flush at most (what is ready is batched into one write).
const BATCH: usize = 256;
/// Larger messages (snapshots) go out as fragments of this size: the WebSocket library
/// keeps its write buffer as large as the largest frame it ever wrote, per connection, so
/// one big snapshot would otherwise pin that much memory for the connection's lifetime.
pub const FRAGMENT: usize = 8 * 1024;

/// Queues `text` as one WebSocket message: a single frame, or fragments of [`FRAGMENT`]
/// bytes (reassembled by every client into the same message).
async fn feed_text(
    sink: &mut SplitSink<Socket, Message>,
    text: String,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if text.len() <= FRAGMENT {
        return sink.feed(Message::text(text)).await;
    }
    let bytes = Bytes::from(text);
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + FRAGMENT).min(bytes.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        sink.feed(Message::Frame(Frame::message(
            bytes.slice(start..end),
            opcode,
            end == bytes.len(),
        )))
        .await?;
        start = end;
    }
    Ok(())
}

struct Client {
    sink: SplitSink<Socket, Message>,
    seq: u64,
    metrics: Arc<Metrics>,
    limits: Limits,
}

impl Client {
    /// Writes `bodies` as frames with consecutive seqs, in one flush, within the write timeout.
    async fn send(&mut self, bodies: &[Body]) -> bool {
        let mut bytes = 0;
        let write = async {
            for body in bodies {
                let text = frame(self.seq, body);
                self.seq += 1;
                bytes += text.len();
                feed_text(&mut self.sink, text).await?;
            }
            self.sink.flush().await
        };
        match tokio::time::timeout(self.limits.write_timeout, write).await {
            Ok(Ok(())) => {
                self.metrics.messages_out.inc_by(bodies.len() as u64);
                self.metrics.bytes_out.inc_by(bytes as u64);
                true
            }
            Ok(Err(_)) => {
                self.metrics.dropped("error");
                false
            }
            Err(_) => {
                self.metrics.dropped("write_timeout");
                false
            }
        }
    }
}

/// Counts the client while it is connected; holds its connection slot.
struct Connected {
    metrics: Arc<Metrics>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.metrics.clients.dec();
    }
}

pub async fn serve(
    socket: Socket,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    limits: Limits,
    slot: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    metrics.clients.inc();
    metrics.connections.inc();
    let _connected = Connected {
        metrics: metrics.clone(),
        _slot: slot,
    };
    let (sink, mut stream) = socket.split();
    let mut client = Client {
        sink,
        seq: 0,
        metrics: metrics.clone(),
        limits,
    };
    hub.wait_synced(limits.first_sync_wait).await;
    let (mut rx, snapshot) = hub.join(false);
    if !client.send(&[snapshot]).await {
        return;
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut last_heard = Instant::now();
    let mut batch: Vec<Body> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                let close = Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "gateway shutting down".into() }));
                let _ = tokio::time::timeout(limits.write_timeout, client.sink.send(close)).await;
                break;
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(ClientMessage::Resync) => {
                            let (new_rx, snapshot) = hub.join(true);
                            rx = new_rx;
                            metrics.resyncs.inc();
                            if !client.send(&[snapshot]).await {
                                break;
                            }
                        }
                        Err(_) => {
                            metrics.client_messages_ignored.inc();
                        }
                    },
                    Some(Ok(Message::Binary(_))) => {
                        metrics.client_messages_ignored.inc();
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => {
                        metrics.dropped("closed");
                        break;
                    }
                    // Oversize frames and protocol violations end here, counted.
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "client connection error");
                        metrics.dropped("error");
                        break;
                    }
                }
            }
            out = rx.recv() => {
                batch.clear();
                let mut oldest = None;
                if !take(&hub, &metrics, &mut rx, out, &mut batch, &mut oldest) {
                    break;
                }
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(out) => {
                            if !take(&hub, &metrics, &mut rx, Ok(out), &mut batch, &mut oldest) {
                                break;
                            }
                        }
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            let lagged = Err(broadcast::error::RecvError::Lagged(n));
                            take(&hub, &metrics, &mut rx, lagged, &mut batch, &mut oldest);
                        }
                        Err(_) => break,
                    }
                }
                if !client.send(&batch).await {
                    break;
                }
                if let Some(at) = oldest {
                    metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    metrics.dropped("idle");
                    break;
                }
                let ping = tokio::time::timeout(limits.write_timeout, client.sink.send(Message::Ping(Default::default()))).await;
                if !matches!(ping, Ok(Ok(()))) {
                    metrics.dropped("write_timeout");
                    break;
                }
            }
        }
    }
}

/// Adds what one broadcast item means for this client to `batch`: a frame, or after a
/// lag or a resync a fresh snapshot (what is already batched stays: it came before).
/// Returns false when the feed ended.
fn take(
    hub: &Hub,
    metrics: &Metrics,
    rx: &mut broadcast::Receiver<Out>,
    out: Result<Out, broadcast::error::RecvError>,
    batch: &mut Vec<Body>,
    oldest: &mut Option<std::time::Instant>,
) -> bool {
    match out {
        Ok(Out::Frame(body, at)) => {
            *oldest = Some(oldest.map_or(at, |o: std::time::Instant| o.min(at)));
            batch.push(body);
        }
        Ok(Out::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
            let (new_rx, snapshot) = hub.join(true);
            *rx = new_rx;
            batch.push(snapshot);
            metrics.resyncs.inc();
        }
        Err(broadcast::error::RecvError::Closed) => return false,
    }
    true
}
