//! How the process is told to stop: a signal (graceful, exit 0; see
//! `vitals_runtime::shutdown_signal`) or the crash fault (exit 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use vitals_protocol::ServiceName;

/// The crash fault: stops everything at once, without the graceful goodbye.
#[derive(Debug, Clone)]
pub struct Crash {
    crashed: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl Crash {
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            crashed: Arc::new(AtomicBool::new(false)),
            stop,
        }
    }

    pub fn now(&self, service: &ServiceName) {
        tracing::error!(service = %service, "crash fault: exiting with code 3");
        self.crashed.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn happened(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }
}
