//! One TCP probe: resolve, connect, close. Latency is the time to a connection (name
//! resolution included); the caller bounds it with the target's timeout.

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http_probe::classify_io_kind;
use crate::sample::{Failure, Outcome};

/// Probes `address` (`host:port`, IPv6 in brackets): every address it resolves to in
/// turn, until one accepts.
pub async fn probe(address: &str) -> Outcome {
    let start = Instant::now();
    let elapsed_ms = || start.elapsed().as_secs_f64() * 1000.0;
    let addrs: Vec<_> = match tokio::net::lookup_host(address).await {
        Ok(a) => a.collect(),
        Err(_) => return Outcome::failed(elapsed_ms(), Failure::Dns),
    };
    let mut failure = Failure::Dns;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let latency_ms = elapsed_ms();
                drop(stream);
                return Outcome {
                    latency_ms,
                    status_code: None,
                    failure: None,
                    cert_expires_ms: None,
                };
            }
            Err(e) => failure = classify_io_kind(e.kind()).unwrap_or(Failure::ConnectError),
        }
    }
    Outcome::failed(elapsed_ms(), failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_then_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = probe(&addr).await;
        assert!(open.ok(), "{open:?}");
        drop(listener);
        let closed = probe(&addr).await;
        assert_eq!(closed.failure, Some(Failure::ConnectRefused));
    }
}
