//! From one probe's outcome to the MetricSample it publishes, pure: no clock, no I/O.

use vitals_protocol::{MetricSample, ProbeResult, Refusal, Source, Target};

/// How many of a target's latest probes its `error_rate` is taken over.
pub const WINDOW: usize = 20;

/// Why a probe failed, as a short word: what the sample's `probe.error` says and the
/// `/metrics` failure reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    Timeout,
    ConnectRefused,
    /// An HTTP status `expect_status` does not take.
    Status(u16),
    BodyMismatch,
    Tls,
    Dns,
    ConnectionClosed,
    ConnectError,
    /// A response that is not HTTP (or not one hyper can read).
    Protocol,
}

impl Failure {
    /// The `/metrics` label; every value appears in [`Failure::REASONS`].
    pub fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectRefused => "connect_refused",
            Self::Status(_) => "status",
            Self::BodyMismatch => "body_mismatch",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::ConnectionClosed => "connection_closed",
            Self::ConnectError => "connect_error",
            Self::Protocol => "protocol_error",
        }
    }

    pub const REASONS: [&'static str; 9] = [
        "timeout",
        "connect_refused",
        "status",
        "body_mismatch",
        "tls",
        "dns",
        "connection_closed",
        "connect_error",
        "protocol_error",
    ];

    /// The sample's `probe.error`.
    pub fn words(self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::ConnectRefused => "connect refused".into(),
            Self::Status(code) => format!("status {code}"),
            Self::BodyMismatch => "body mismatch".into(),
            Self::Tls => "tls".into(),
            Self::Dns => "dns".into(),
            Self::ConnectionClosed => "connection closed".into(),
            Self::ConnectError => "connect error".into(),
            Self::Protocol => "protocol error".into(),
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Time to the response (HTTP headers, TCP connect), or to the failure or the timeout.
    pub latency_ms: f64,
    /// The HTTP status, when a response came back (even one that failed the check).
    pub status_code: Option<u16>,
    pub failure: Option<Failure>,
    /// The leaf certificate's notAfter, epoch ms (HTTPS only).
    pub cert_expires_ms: Option<u64>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    pub fn failed(latency_ms: f64, failure: Failure) -> Self {
        Self {
            latency_ms,
            status_code: None,
            failure: Some(failure),
            cert_expires_ms: None,
        }
    }
}

/// The last [`WINDOW`] results of one target, as a ring of bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    failures: u32,
    len: u8,
}

impl Recent {
    pub fn push(&mut self, ok: bool) {
        let mask = (1u32 << WINDOW) - 1;
        self.failures = ((self.failures << 1) | u32::from(!ok)) & mask;
        self.len = (self.len + 1).min(WINDOW as u8);
    }

    /// The failed share of the results held (0 when none yet).
    pub fn error_rate(&self) -> f64 {
        if self.len == 0 {
            return 0.0;
        }
        f64::from(self.failures.count_ones()) / f64::from(self.len)
    }
}

/// Who publishes, and the figures every sample of a run shares.
#[derive(Debug, Clone)]
pub struct Publisher<'a> {
    pub instance: &'a str,
    pub cert_warn_days: u32,
}

/// The sample for `outcome`, already pushed into `recent`. Checked with the protocol's own
/// validation, so the prober never sends what the monitor would refuse.
pub fn build(
    target: &Target,
    who: &Publisher<'_>,
    seq: u64,
    ts_ms: u64,
    outcome: &Outcome,
    recent: &Recent,
) -> Result<MetricSample, Refusal> {
    let service = target.service_name().cloned().ok_or_else(|| {
        Refusal::new(
            vitals_protocol::RefusalReason::BadName,
            "target has no service",
        )
    })?;
    let sample = MetricSample {
        service,
        instance: who.instance.to_owned(),
        seq,
        ts_ms,
        cpu_pct: None,
        mem_pct: None,
        latency_ms: outcome
            .latency_ms
            .clamp(0.0, vitals_protocol::MAX_LATENCY_MS),
        error_rate: recent.error_rate(),
        health_url: target.sample_health_url(),
        stopping: false,
        source: Source::Probe,
        probe: Some(ProbeResult {
            ok: outcome.ok(),
            status_code: outcome.status_code.filter(|c| (100..=599).contains(c)),
            error: outcome.failure.map(Failure::words),
            apdex_t_ms: target.apdex_t_ms,
            cert_expires_ms: outcome.cert_expires_ms,
            cert_warn_days: outcome.cert_expires_ms.map(|_| who.cert_warn_days),
        }),
        host: None,
        interval_ms: Some(target.interval_ms()),
    };
    sample.validate()?;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(json: &str) -> Target {
        Target::from_json("shop", json.as_bytes()).unwrap()
    }

    const WHO: Publisher<'static> = Publisher {
        instance: "prober-abc123",
        cert_warn_days: 14,
    };

    #[test]
    fn the_window_holds_the_last_twenty() {
        let mut r = Recent::default();
        assert_eq!(r.error_rate(), 0.0);
        r.push(false);
        assert_eq!(r.error_rate(), 1.0);
        r.push(true);
        assert_eq!(r.error_rate(), 0.5);
        for _ in 0..WINDOW {
            r.push(true);
        }
        assert_eq!(r.error_rate(), 0.0, "the failure fell out of the window");
        for _ in 0..5 {
            r.push(false);
        }
        assert_eq!(r.error_rate(), 5.0 / 20.0);
    }

    #[test]
    fn a_good_http_probe() {
        let t =
            target(r#"{"kind":"http","url":"https://shop.example.com/health","apdex_t_ms":250}"#);
        let mut r = Recent::default();
        r.push(true);
        let o = Outcome {
            latency_ms: 12.5,
            status_code: Some(200),
            failure: None,
            cert_expires_ms: Some(1_800_000_000_000),
        };
        let s = build(&t, &WHO, 1, 1_700_000_000_000, &o, &r).unwrap();
        assert_eq!(s.source, Source::Probe);
        assert_eq!((s.cpu_pct, s.mem_pct), (None, None));
        assert_eq!(s.health_url, "https://shop.example.com/health");
        assert_eq!(s.error_rate, 0.0);
        let p = s.probe.unwrap();
        assert!(p.ok);
        assert_eq!(p.status_code, Some(200));
        assert_eq!(p.error, None);
        assert_eq!(p.apdex_t_ms, Some(250));
        assert_eq!(p.cert_expires_ms, Some(1_800_000_000_000));
        assert_eq!(p.cert_warn_days, Some(14));
    }

    #[test]
    fn failures_carry_their_words() {
        let t = target(r#"{"kind":"tcp","address":"db:5432"}"#);
        let mut r = Recent::default();
        r.push(true);
        r.push(false);
        let o = Outcome::failed(500.0, Failure::Timeout);
        let s = build(&t, &WHO, 7, 1, &o, &r).unwrap();
        assert_eq!(
            s.health_url, "",
            "a TCP target has nothing a browser may poll"
        );
        assert_eq!(s.error_rate, 0.5);
        let p = s.probe.unwrap();
        assert!(!p.ok);
        assert_eq!(p.error.as_deref(), Some("timeout"));
        assert_eq!((p.cert_expires_ms, p.cert_warn_days), (None, None));
        let words: Vec<String> = [
            Failure::Status(503),
            Failure::ConnectRefused,
            Failure::BodyMismatch,
            Failure::ConnectionClosed,
        ]
        .into_iter()
        .map(Failure::words)
        .collect();
        assert_eq!(
            words,
            [
                "status 503",
                "connect refused",
                "body mismatch",
                "connection closed"
            ]
        );
        for f in [Failure::Status(1), Failure::Protocol, Failure::Dns] {
            assert!(Failure::REASONS.contains(&f.reason()));
        }
    }

    #[test]
    fn out_of_range_figures_never_leave() {
        let t = target(r#"{"kind":"http","url":"http://x/"}"#);
        let o = Outcome {
            latency_ms: f64::INFINITY,
            status_code: Some(42),
            failure: None,
            cert_expires_ms: None,
        };
        let s = build(&t, &WHO, 1, 1, &o, &Recent::default()).unwrap();
        assert_eq!(s.latency_ms, vitals_protocol::MAX_LATENCY_MS);
        assert_eq!(s.probe.unwrap().status_code, None);
        let bad = Publisher {
            instance: "",
            cert_warn_days: 1,
        };
        assert!(build(&t, &bad, 1, 1, &o, &Recent::default()).is_err());
    }
}
