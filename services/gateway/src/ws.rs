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

use crate::hub::{Body, Hub, Joined, Out, frame_prefix, snapshot_prefix};
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
/// On shutdown, how long the close frame may take to write: a client that does not read
/// must not hold up the exit.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// One message to write: a shared body behind a per-connection prefix.
enum Piece {
    Frame(Body),
    Snapshot { resync: bool, body: Bytes },
}

/// Queues `prefix` + `body` as one WebSocket text message: a single frame when small,
/// else a first fragment holding only the prefix and continuation fragments that are
/// slices of the shared body (no per-connection copy of it).
async fn feed_text(
    sink: &mut SplitSink<Socket, Message>,
    prefix: String,
    body: &Bytes,
) -> Result<usize, tokio_tungstenite::tungstenite::Error> {
    let len = prefix.len() + body.len();
    if len <= FRAGMENT {
        let mut text = prefix;
        // Bodies are serde_json output sliced after its ASCII `{`: always UTF-8.
        text.push_str(std::str::from_utf8(body).unwrap_or("\"type\":\"error\"}"));
        sink.feed(Message::text(text)).await?;
        return Ok(len);
    }
    sink.feed(Message::Frame(Frame::message(
        Bytes::from(prefix),
        OpCode::Data(Data::Text),
        false,
    )))
    .await?;
    let mut start = 0;
    while start < body.len() {
        let end = (start + FRAGMENT).min(body.len());
        sink.feed(Message::Frame(Frame::message(
            body.slice(start..end),
            OpCode::Data(Data::Continue),
            end == body.len(),
        )))
        .await?;
        start = end;
    }
    Ok(len)
}

/// How a write ended.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Ok,
    /// Dropped (counted): error or write timeout.
    Failed,
    /// Shutdown began during the write.
    Cancelled,
}

struct Client {
    sink: SplitSink<Socket, Message>,
    seq: u64,
    metrics: Arc<Metrics>,
    limits: Limits,
    cancel: CancellationToken,
}

impl Client {
    /// Writes `pieces` with consecutive seqs, in one flush, within the write timeout.
    async fn send(&mut self, pieces: &[Piece]) -> Sent {
        let mut bytes = 0;
        let write = async {
            for piece in pieces {
                bytes += match piece {
                    Piece::Frame(body) => feed_text(&mut self.sink, frame_prefix(self.seq), body),
                    Piece::Snapshot { resync, body } => {
                        feed_text(&mut self.sink, snapshot_prefix(self.seq, *resync), body)
                    }
                }
                .await?;
                self.seq += 1;
            }
            self.sink.flush().await
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.limits.write_timeout, write) => r,
            () = self.cancel.cancelled() => return Sent::Cancelled,
        };
        match outcome {
            Ok(Ok(())) => {
                self.metrics.messages_out.inc_by(pieces.len() as u64);
                self.metrics.bytes_out.inc_by(bytes as u64);
                Sent::Ok
            }
            Ok(Err(_)) => {
                self.metrics.dropped("error");
                Sent::Failed
            }
            Err(_) => {
                self.metrics.dropped("write_timeout");
                Sent::Failed
            }
        }
    }

    /// The 1001 close on shutdown, bounded so a client that does not read cannot hang it.
    async fn close_going_away(&mut self) {
        self.close_with(CloseCode::Away, "gateway shutting down")
            .await;
    }

    /// A close frame, bounded like every write.
    async fn close_with(&mut self, code: CloseCode, reason: &'static str) {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let bound = self.limits.write_timeout.min(CLOSE_WRITE);
        let _ = tokio::time::timeout(bound, self.sink.send(close)).await;
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

/// The pieces a join gives: the snapshot, then the frames it does not contain yet.
fn joined_pieces(joined: Joined, resync: bool, batch: &mut Vec<Piece>) -> broadcast::Receiver<Out> {
    batch.push(Piece::Snapshot {
        resync,
        body: joined.snapshot,
    });
    batch.extend(joined.catch_up.into_iter().map(Piece::Frame));
    joined.rx
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
        cancel: cancel.clone(),
    };
    let mut batch: Vec<Piece> = Vec::with_capacity(BATCH);
    let joined = tokio::select! {
        joined = async {
            hub.wait_synced(limits.first_sync_wait).await;
            hub.join().await
        } => joined,
        () = cancel.cancelled() => {
            client.close_going_away().await;
            return;
        }
    };
    let mut rx = joined_pieces(joined, false, &mut batch);
    match client.send(&batch).await {
        Sent::Ok => {}
        Sent::Failed => return,
        Sent::Cancelled => {
            client.close_going_away().await;
            return;
        }
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    let mut last_heard = Instant::now();
    loop {
        batch.clear();
        let mut oldest = None;
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(ClientMessage::Resync) => {
                            metrics.resyncs.inc();
                            rx = joined_pieces(hub.join().await, true, &mut batch);
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
                        return;
                    }
                    // Too big for --max-client-message: say so (1009, "message too big")
                    // before the connection ends, so the client knows it was not a crash.
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        tracing::debug!(error = %e, "client message too large");
                        metrics.dropped("too_large");
                        client.close_with(CloseCode::Size, "message too big").await;
                        return;
                    }
                    // Protocol violations end here, counted.
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "client connection error");
                        metrics.dropped("error");
                        return;
                    }
                }
            }
            out = rx.recv() => {
                let mut resync = match out {
                    Ok(out) => take(out, &mut batch, &mut oldest),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                while !resync && batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(out) => resync = take(out, &mut batch, &mut oldest),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => resync = true,
                        Err(_) => break,
                    }
                }
                // After a lag or a replaced view: a fresh snapshot (what is already
                // batched stays: it came before).
                if resync {
                    metrics.resyncs.inc();
                    rx = joined_pieces(hub.join().await, true, &mut batch);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.idle_timeout {
                    metrics.dropped("idle");
                    return;
                }
                let ping = tokio::select! {
                    r = tokio::time::timeout(limits.write_timeout, client.sink.send(Message::Ping(Default::default()))) => r,
                    () = cancel.cancelled() => break,
                };
                if !matches!(ping, Ok(Ok(()))) {
                    metrics.dropped("write_timeout");
                    return;
                }
            }
        }
        if !batch.is_empty() {
            match client.send(&batch).await {
                Sent::Ok => {}
                Sent::Failed => return,
                Sent::Cancelled => break,
            }
            if let Some(at) = oldest {
                metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
            }
        }
    }
    client.close_going_away().await;
}

/// Adds one broadcast item to `batch`; returns true when it asks for a fresh snapshot.
fn take(out: Out, batch: &mut Vec<Piece>, oldest: &mut Option<std::time::Instant>) -> bool {
    match out {
        Out::Frame(body, at) => {
            *oldest = Some(oldest.map_or(at, |o: std::time::Instant| o.min(at)));
            batch.push(Piece::Frame(body));
            false
        }
        Out::Resync => true,
    }
}
