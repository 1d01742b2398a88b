//! The common sample's shape read without serde's machinery: a flat object of the known
//! keys, strings without escapes, plain numbers. Anything else (an escape, an unknown or
//! repeated key, `null`, a nested part, `source`, whitespace oddities) returns None and the
//! caller takes the serde path, which alone decides every refusal. Numbers go through
//! serde_json itself, so a value read here is bit for bit the value serde reads.

use std::borrow::Cow;

use super::RawSample;

/// Bits of the keys seen, to refuse a repeated key (serde's `duplicate field`).
const SERVICE: u16 = 1;
const INSTANCE: u16 = 1 << 1;
const SEQ: u16 = 1 << 2;
const TS_MS: u16 = 1 << 3;
const CPU: u16 = 1 << 4;
const MEM: u16 = 1 << 5;
const LATENCY: u16 = 1 << 6;
const ERROR_RATE: u16 = 1 << 7;
const HEALTH_URL: u16 = 1 << 8;
const STOPPING: u16 = 1 << 9;
const INTERVAL: u16 = 1 << 10;
const REQUIRED: u16 = SERVICE | INSTANCE | SEQ | TS_MS | LATENCY | ERROR_RATE | HEALTH_URL;

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    at: usize,
}

/// Powers of ten a decimal is divided by, as serde_json's table has them (all exact).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Digits of a plain decimal (`123`, `21.5`, `0.002`): the significand and how many of its
/// digits are after the point. None for anything else (a sign, an exponent, a leading
/// zero, no digit after the point, more than 15 digits).
fn plain_decimal(tok: &[u8]) -> Option<(u64, usize)> {
    let (int, frac) = match tok.iter().position(|&c| c == b'.') {
        Some(dot) => (&tok[..dot], Some(&tok[dot + 1..])),
        None => (tok, None),
    };
    let frac = frac.unwrap_or(&[]);
    if int.is_empty()
        || (int.len() > 1 && int[0] == b'0')
        || int.len() + frac.len() > 15
        || (tok.len() > int.len() && frac.is_empty())
    {
        return None;
    }
    let mut sig = 0u64;
    for &c in int.iter().chain(frac) {
        if !c.is_ascii_digit() {
            return None;
        }
        sig = sig * 10 + u64::from(c - b'0');
    }
    Some((sig, frac.len()))
}

impl<'a> Cursor<'a> {
    /// JSON's whitespace, as serde_json skips it (no byte below 0x20 is left: see `read`).
    fn ws(&mut self) {
        while let Some(b' ') = self.b.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// A string without escapes (the payload is UTF-8 without control characters).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\')?;
        if self.b[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are at an ASCII quote, so at character boundaries of valid UTF-8.
        self.text.get(start..start + len)
    }

    /// The bytes of a number token, up to the next delimiter.
    fn number(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            self.at += 1;
        }
        (self.at > start).then(|| &self.b[start..self.at])
    }

    /// A plain decimal is computed as serde_json computes it (an integer as itself, else
    /// the significand divided by a power of ten: one correctly rounded operation on
    /// exact values); any other number is handed to serde_json.
    fn f64(&mut self) -> Option<f64> {
        let tok = self.number()?;
        match plain_decimal(tok) {
            Some((sig, 0)) => Some(sig as f64),
            Some((sig, frac)) => Some(sig as f64 / POW10[frac]),
            None => serde_json::from_slice(tok).ok(),
        }
    }

    fn u64(&mut self) -> Option<u64> {
        let tok = self.number()?;
        match plain_decimal(tok) {
            Some((n, 0)) => Some(n),
            _ => serde_json::from_slice(tok).ok(),
        }
    }

    fn bool(&mut self) -> Option<bool> {
        self.ws();
        let rest = &self.b[self.at..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.at += len;
        Some(value)
    }
}

/// The sample if it has the common shape, else None (the serde path decides).
pub(super) fn read(payload: &[u8]) -> Option<RawSample<'_>> {
    // A control character is an error inside a string and whitespace outside one: a
    // payload with any (a pretty-printed one) is left to serde. Written as a fold so it
    // runs over whole vectors.
    if payload.iter().fold(false, |any, &c| any | (c < 0x20)) {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?;
    let mut c = Cursor {
        text,
        b: payload,
        at: 0,
    };
    c.eat(b'{')?;
    let mut seen = 0u16;
    let mut raw = RawSample {
        service: Cow::Borrowed(""),
        instance: Cow::Borrowed(""),
        seq: 0,
        ts_ms: 0,
        cpu_pct: None,
        mem_pct: None,
        latency_ms: 0.0,
        error_rate: 0.0,
        health_url: Cow::Borrowed(""),
        stopping: false,
        source: Default::default(),
        probe: None,
        host: None,
        interval_ms: None,
    };
    loop {
        let key = c.string()?;
        c.eat(b':')?;
        let bit = match key {
            "service" => {
                raw.service = Cow::Borrowed(c.string()?);
                SERVICE
            }
            "instance" => {
                raw.instance = Cow::Borrowed(c.string()?);
                INSTANCE
            }
            "seq" => {
                raw.seq = c.u64()?;
                SEQ
            }
            "ts_ms" => {
                raw.ts_ms = c.u64()?;
                TS_MS
            }
            "cpu_pct" => {
                raw.cpu_pct = Some(c.f64()?);
                CPU
            }
            "mem_pct" => {
                raw.mem_pct = Some(c.f64()?);
                MEM
            }
            "latency_ms" => {
                raw.latency_ms = c.f64()?;
                LATENCY
            }
            "error_rate" => {
                raw.error_rate = c.f64()?;
                ERROR_RATE
            }
            "health_url" => {
                raw.health_url = Cow::Borrowed(c.string()?);
                HEALTH_URL
            }
            "stopping" => {
                raw.stopping = c.bool()?;
                STOPPING
            }
            "interval_ms" => {
                raw.interval_ms = Some(c.u64()?);
                INTERVAL
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        c.ws();
        match c.peek()? {
            b',' => c.at += 1,
            b'}' => {
                c.at += 1;
                break;
            }
            _ => return None,
        }
    }
    c.ws();
    (c.at == payload.len() && seen & REQUIRED == REQUIRED).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // A number read here is the number serde_json reads, bit for bit, or none.
        #[test]
        fn numbers_are_read_as_serde_reads_them(
            tok in "-?[0-9]{0,17}(\\.[0-9]{0,17})?([eE][+-]?[0-9]{1,3})?",
        ) {
            let mut c = Cursor { text: &tok, b: tok.as_bytes(), at: 0 };
            let serde_f64 = serde_json::from_str::<f64>(&tok).ok();
            proptest::prop_assert_eq!(c.f64().map(f64::to_bits), serde_f64.map(f64::to_bits));
            let mut c = Cursor { text: &tok, b: tok.as_bytes(), at: 0 };
            proptest::prop_assert_eq!(c.u64(), serde_json::from_str::<u64>(&tok).ok());
        }
    }
}
