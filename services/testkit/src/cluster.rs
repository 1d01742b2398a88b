//! A real NATS cluster on loopback: N nats-servers with routes to each other, JetStream on
//! each, the stacks' account layout ([`ACCOUNTS_CONF`]). Each node is a [`NatsServer`]
//! (kill, restart, pause by node).

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use crate::nats::{ACCOUNTS_CONF, NatsServer};

pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until a message published on the first reaches a
    /// subscriber on every other (the routes are up).
    pub async fn start(n: usize) -> Result<Self> {
        let route_ports = free_ports(n)?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, port) in route_ports.iter().enumerate() {
            let config = format!(
                "server_name: n{i}\n{ACCOUNTS_CONF}\ncluster {{\n  name: vitals\n  listen: \"127.0.0.1:{port}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            nodes.push(NatsServer::start_with_config(&config)?);
        }
        let cluster = Self { nodes };
        cluster.wait_routed().await?;
        cluster.wait_jetstream().await?;
        Ok(cluster)
    }

    /// Every node's client URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(NatsServer::url).collect();
        urls.join(",")
    }

    /// JetStream answers once the nodes have elected a meta leader.
    async fn wait_jetstream(&self) -> Result<()> {
        let js = async_nats::jetstream::new(self.nodes[0].client().await?);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match js.query_account().await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    bail!("JetStream not ready on the cluster within 30 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn wait_routed(&self) -> Result<()> {
        let first = self.nodes[0].client().await?;
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            let other = node.client().await?;
            let subject = format!("vitals-test.routed.{i}");
            let mut sub = other.subscribe(subject.clone()).await?;
            other.flush().await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                first.publish(subject.clone(), "".into()).await?;
                first.flush().await?;
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(100), sub.next()).await
                {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("node n{i} not routed to n0 within 15 s:\n{}", node.log());
                }
            }
        }
        Ok(())
    }
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("finding a free port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
