//! What every NATS request handler checks before it answers: that the reply goes to an
//! inbox, and that the asker is within its rate.
//!
//! NATS lets a requester choose any reply subject, and a handler's answer is published with
//! the handler's own permissions (or the server's `allow_responses`, which allows whatever
//! reply subject arrived). So a handler that answers on `health.status.x` or
//! `$KV.health_status.x` writes there on the asker's behalf. Every handler therefore
//! answers only on `_INBOX.` subjects and refuses (and counts) the rest.

use std::collections::HashMap;

/// The reply subjects Vitals answers on: what every NATS client uses for request/reply.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// Whether a handler may answer on `reply`: an inbox subject, nothing else.
pub fn is_inbox(reply: &str) -> bool {
    reply.len() > INBOX_PREFIX.len()
        && reply.starts_with(INBOX_PREFIX)
        && !reply
            .bytes()
            .any(|b| b == b'*' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
}

/// Who asked, as far as NATS tells: a client's requests share the first token after
/// `_INBOX.` (its connection's inbox prefix).
pub fn asker(reply: &str) -> &str {
    let rest = reply.strip_prefix(INBOX_PREFIX).unwrap_or(reply);
    let end = rest.find('.').unwrap_or(rest.len());
    &reply[..reply.len() - rest.len() + end]
}

/// Why a request is not answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an inbox subject: nothing is published at all.
    ReplySubject,
    /// This asker is over its rate.
    AskerRate,
    /// Everyone together is over the total rate.
    TotalRate,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplySubject => "reply_subject",
            Self::AskerRate => "asker_rate",
            Self::TotalRate => "total_rate",
        }
    }
}

/// A token bucket: `rate` per second, up to `burst` at once. Pure: time is passed in.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    fn new(burst: f64, now_ms: u64) -> Self {
        Self {
            tokens: burst,
            last_ms: now_ms,
        }
    }

    fn take(&mut self, rate: f64, burst: f64, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rates for one kind of request: per asker and in total, each a rate per second with a
/// burst of twice that.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub per_asker: f64,
    pub total: f64,
}

/// Most askers remembered at once; beyond, the ones idle longest are forgotten (an asker
/// forgotten starts with a full bucket, which the total rate still bounds).
const MAX_ASKERS: usize = 4_096;

/// The per-asker and total token buckets of one handler.
#[derive(Debug)]
pub struct RateLimiter {
    rates: Rates,
    total: Bucket,
    askers: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub fn new(rates: Rates, now_ms: u64) -> Self {
        Self {
            rates,
            total: Bucket::new(rates.total * 2.0, now_ms),
            askers: HashMap::new(),
        }
    }

    /// Admits one request from `asker` at `now_ms`, or says why not. A refused request
    /// costs its asker nothing more; one refused for the total does not use the asker's.
    pub fn admit(&mut self, asker: &str, now_ms: u64) -> Result<(), Refusal> {
        let burst = self.rates.per_asker * 2.0;
        if !self.askers.contains_key(asker) && self.askers.len() >= MAX_ASKERS {
            self.forget_idle(now_ms);
        }
        let bucket = self
            .askers
            .entry(asker.to_owned())
            .or_insert_with(|| Bucket::new(burst, now_ms));
        let mut probe = *bucket;
        if !probe.take(self.rates.per_asker, burst, now_ms) {
            *bucket = probe;
            return Err(Refusal::AskerRate);
        }
        if !self
            .total
            .take(self.rates.total, self.rates.total * 2.0, now_ms)
        {
            return Err(Refusal::TotalRate);
        }
        *bucket = probe;
        Ok(())
    }

    fn forget_idle(&mut self, now_ms: u64) {
        // Refilled buckets carry no state worth keeping; else drop the oldest half.
        let (rate, burst) = (self.rates.per_asker, self.rates.per_asker * 2.0);
        self.askers.retain(|_, b| {
            let refilled = b.tokens + now_ms.saturating_sub(b.last_ms) as f64 / 1000.0 * rate;
            refilled < burst
        });
        if self.askers.len() >= MAX_ASKERS {
            let mut ages: Vec<u64> = self.askers.values().map(|b| b.last_ms).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            self.askers.retain(|_, b| b.last_ms > cut);
        }
    }

    pub fn askers(&self) -> usize {
        self.askers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inbox_subjects_are_answered() {
        for ok in ["_INBOX.abc", "_INBOX.abc.def", "_INBOX.x.1"] {
            assert!(is_inbox(ok), "{ok}");
        }
        for bad in [
            "health.status.alpha",
            "$KV.health_status.alpha",
            "$JS.API.STREAM.PURGE.HEALTH_EVENTS",
            "metrics.billing",
            "_INBOX.",
            "_INBOX",
            "_inbox.x",
            "x._INBOX.y",
            "_INBOX.a.>",
            "_INBOX.a b",
            "",
        ] {
            assert!(!is_inbox(bad), "{bad}");
        }
    }

    #[test]
    fn the_asker_is_the_inbox_prefix() {
        assert_eq!(asker("_INBOX.conn1.req7"), "_INBOX.conn1");
        assert_eq!(asker("_INBOX.conn1"), "_INBOX.conn1");
        assert_eq!(asker("_INBOX.conn1.a.b"), "_INBOX.conn1");
    }

    #[test]
    fn each_asker_has_its_rate_and_all_share_the_total() {
        let rates = Rates {
            per_asker: 5.0,
            total: 20.0,
        };
        let mut l = RateLimiter::new(rates, 0);
        // A burst of twice the rate, then refused.
        for _ in 0..10 {
            assert_eq!(l.admit("a", 0), Ok(()));
        }
        assert_eq!(l.admit("a", 0), Err(Refusal::AskerRate));
        // Others are unaffected until the total runs out (burst 40: 30 left).
        for i in 0..30 {
            assert_eq!(l.admit(&format!("b{i}"), 0), Ok(()), "{i}");
        }
        assert_eq!(l.admit("c", 0), Err(Refusal::TotalRate));
        // Refill with time: a's 5 per second.
        assert_eq!(l.admit("a", 200), Ok(()));
        assert_eq!(l.admit("a", 200), Err(Refusal::AskerRate));
    }

    #[test]
    fn a_flood_of_new_askers_is_bounded_in_memory_and_by_the_total() {
        let mut l = RateLimiter::new(
            Rates {
                per_asker: 1.0,
                total: 100.0,
            },
            0,
        );
        let mut admitted = 0;
        for i in 0..100_000u64 {
            if l.admit(&format!("_INBOX.{i}"), i / 100).is_ok() {
                admitted += 1;
            }
        }
        assert!(l.askers() <= MAX_ASKERS);
        // 1,000 s at 100/s plus the burst of 200.
        assert!(admitted <= 100_200, "{admitted}");
    }
}
