//! The system a user gets from `make up`, under a steady background: a nats-server with
//! the stacks' account layout, the monitor and gateway with their defaults, and
//! `bg_services` services publishing once a second each (open loop) from the bench.

use std::time::Duration;

use anyhow::{Context, Result};
use vitals_testkit::NatsServer;

use crate::counters::{DownWatch, drain};
use crate::load::{self, Flow, Running};
use crate::sys::CpuMeter;
use crate::util::{Part, gateway, monitor, names};

pub struct Pipeline {
    pub nats: NatsServer,
    pub monitor: Part,
    pub gateway: Part,
    pub client: async_nats::Client,
    pub bg_services: usize,
    bg: Option<Running>,
    /// DOWN of any background (`bg-`) service: must stay 0.
    pub downs: DownWatch,
}

impl Pipeline {
    pub async fn start(bg_services: usize) -> Result<Self> {
        let nats = NatsServer::start_with_accounts()?;
        let monitor = monitor(&nats, &[]).await?;
        let gateway = gateway(&nats, &[]).await?;
        let client = load::client(&nats.url()).await?;
        let downs = DownWatch::start(&client, &["bg-"]).await?;
        let mut p = Self {
            nats,
            monitor,
            gateway,
            client,
            bg_services,
            bg: None,
            downs,
        };
        if bg_services > 0 {
            let flow = Flow::new(&names("bg", bg_services)?);
            p.bg = Some(load::start(p.client.clone(), flow, bg_services as f64));
            // Warm: every background service seen (and stored) once.
            let (_, _, ok) = drain(
                &p.monitor,
                bg_services as u64,
                bg_services as u64,
                Duration::from_secs(60),
            )
            .await?;
            anyhow::ensure!(
                ok,
                "the background of {bg_services} services did not settle"
            );
        }
        Ok(p)
    }

    /// Background samples sent so far.
    pub fn bg_sent(&self) -> u64 {
        self.bg.as_ref().map_or(0, Running::sent)
    }

    /// A CPU meter over the pipeline's processes and the bench.
    pub fn cpu_meter(&self) -> CpuMeter {
        let mut m = CpuMeter::start();
        if let Some(pid) = self.nats.pid() {
            m.watch("nats-server", pid);
        }
        m.watch("monitor", self.monitor.proc.pid());
        m.watch("gateway", self.gateway.proc.pid());
        m
    }

    /// Stops the background; what it sent over the whole run.
    pub async fn stop_background(&mut self) -> Result<load::FlowStats> {
        match self.bg.take() {
            Some(bg) => Ok(bg.stop().await.context("background")?.1),
            None => Ok(load::FlowStats::default()),
        }
    }
}
