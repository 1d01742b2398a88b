//! The health URL rule: which `health_url` a browser may be pointed at, and which origins an
//! operator allows. Whoever can publish one sample chooses a `health_url`, and every viewer's
//! browser polls it when the live feed is down, so the rule is strict: plain ASCII
//! `http(s)://host[:port][/path][?query]`, no user info, a host a browser resolves the way
//! it reads (no numeric-only or hex/octal IPv4 forms, no punycode), and never a link-local
//! or cloud-metadata address. The dashboard holds a port of it (`frontend/src/lib/healthurl.ts`);
//! both are tested against `services/protocol/testdata/health_urls.json`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest accepted `health_url`.
pub const MAX_URL_LEN: usize = 512;

/// Host names of cloud metadata services (compared lowercased).
const METADATA_HOSTS: [&str; 7] = [
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
    "metadata.platformequinix.com",
];

/// IPv4 metadata endpoints outside 169.254.0.0/16: Alibaba, Azure's wire server.
const METADATA_V4: [Ipv4Addr; 2] = [
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's IPv6 metadata endpoint (`fd00:ec2::254`).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// A URL split into what the origin check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthUrl<'a> {
    pub https: bool,
    /// As written (lowercased by the caller when compared); IPv6 keeps its brackets.
    pub host: &'a str,
    /// The explicit port, or the scheme's default.
    pub port: u16,
}

/// Checks a health URL; the error says which part is refused.
pub fn check_health_url(url: &str) -> Result<HealthUrl<'_>, &'static str> {
    if url.len() > MAX_URL_LEN {
        return Err("longer than 512 characters");
    }
    // ASCII only: this refuses IDN homographs, zero-width and right-to-left characters at
    // once; of ASCII, only what needs no escaping and that browsers do not reinterpret.
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii_graphic() || "\"<>\\^`{|}".contains(*c))
    {
        return Err(if c.is_ascii() {
            "space, control or unsafe character"
        } else {
            "non-ASCII character"
        });
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err("not http:// or https://");
    };
    if rest.contains('#') {
        return Err("fragment");
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err("user info");
    }
    if authority.contains('%') {
        return Err("percent-encoded host");
    }
    let (host, port) = split_port(authority)?;
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p,
    };
    check_host(host)?;
    Ok(HealthUrl { https, host, port })
}

/// True when `url` passes [`check_health_url`].
pub fn is_acceptable_health_url(url: &str) -> bool {
    check_health_url(url).is_ok()
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => match &authority[i + 1..] {
                "" => (&authority[..=i], None),
                p => match p.strip_prefix(':') {
                    Some(p) => (&authority[..=i], Some(p)),
                    None => return Err("junk after an IPv6 address"),
                },
            },
            None => return Err("unclosed IPv6 address"),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad port");
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err("bad port"),
            }
        }
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("unclosed IPv6 address")?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| "bad IPv6 address")?;
        return check_v6(ip);
    }
    let lower = host.to_ascii_lowercase();
    if lower.len() > 253 {
        return Err("host longer than 253 characters");
    }
    let labels: Vec<&str> = lower.split('.').collect();
    // A host whose last label is a number is read by browsers as an IPv4 address in any of
    // its forms (`2852039166`, `0xa9.0xfe.0xa9.0xfe`, `0251.0376.0251.0376`, `169.254.43518`):
    // only the canonical dotted-decimal form is accepted, so what is checked is what is used.
    let last = labels.last().copied().unwrap_or("");
    let numeric_last = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric_last {
        let ip = canonical_v4(&labels).ok_or("numeric host not in dotted-decimal form")?;
        return check_v4(ip);
    }
    for label in &labels {
        if label.is_empty() {
            return Err("empty label in host");
        }
        if label.len() > 63 {
            return Err("host label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err("host is not a plain DNS name");
        }
        if label.starts_with("xn--") {
            return Err("punycode (IDN) host");
        }
    }
    if METADATA_HOSTS.contains(&lower.as_str()) {
        return Err("cloud metadata host");
    }
    Ok(())
}

/// Exactly four decimal parts 0-255 without leading zeros.
fn canonical_v4(labels: &[&str]) -> Option<Ipv4Addr> {
    if labels.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, label) in octets.iter_mut().zip(labels) {
        if label.is_empty()
            || label.len() > 3
            || !label.bytes().all(|b| b.is_ascii_digit())
            || (label.len() > 1 && label.starts_with('0'))
        {
            return None;
        }
        *o = label.parse().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

fn check_v4(ip: Ipv4Addr) -> Result<(), &'static str> {
    if ip.is_link_local() || METADATA_V4.contains(&ip) {
        return Err("link-local or cloud metadata address");
    }
    if ip.octets()[0] == 0 || ip.is_broadcast() || ip.is_multicast() {
        return Err("unroutable address");
    }
    Ok(())
}

fn check_v6(ip: Ipv6Addr) -> Result<(), &'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return check_v4(v4);
    }
    let first = ip.segments()[0];
    if (first & 0xffc0) == 0xfe80 || ip == METADATA_V6 {
        return Err("link-local or cloud metadata address");
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err("unroutable address");
    }
    Ok(())
}

/// The origins an operator lets the dashboard poll: `scheme://host:port`, with `*` for any
/// port (`http://127.0.0.1:*`), or a lone `*` for any URL that passes the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    any: bool,
    https: bool,
    host: String,
    /// None: any port.
    port: Option<u16>,
}

impl OriginPattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Self {
                any: true,
                https: false,
                host: String::new(),
                port: None,
            });
        }
        let (base, any_port) = match raw.strip_suffix(":*") {
            Some(base) => (base, true),
            None => (raw, false),
        };
        let base = base.strip_suffix('/').unwrap_or(base);
        let url = check_health_url(base).map_err(|e| format!("{raw:?}: {e}"))?;
        let authority = base.split_once("://").map_or("", |(_, a)| a);
        if authority.contains(['/', '?']) {
            return Err(format!(
                "{raw:?}: an origin is scheme://host[:port], without a path"
            ));
        }
        Ok(Self {
            any: false,
            https: url.https,
            host: url.host.to_ascii_lowercase(),
            port: (!any_port).then_some(url.port),
        })
    }

    /// Whether `url` (already accepted by [`check_health_url`]) is in this origin.
    pub fn allows(&self, url: &HealthUrl<'_>) -> bool {
        self.any
            || (self.https == url.https
                && self.host.eq_ignore_ascii_case(url.host)
                && self.port.is_none_or(|p| p == url.port))
    }
}

/// Whether `url` passes the rule and one of `origins` allows it.
pub fn health_url_allowed(url: &str, origins: &[OriginPattern]) -> bool {
    check_health_url(url).is_ok_and(|u| origins.iter().any(|o| o.allows(&u)))
}

/// The stack's own simulators (ports 3001-3004 on loopback), the default allow-list.
pub fn default_health_origins() -> Vec<String> {
    let mut out = Vec::new();
    for host in ["127.0.0.1", "localhost"] {
        for port in 3001..=3004 {
            out.push(format!("http://{host}:{port}"));
        }
    }
    out
}

/// An `http://` or `https://` URL split into what one request needs. Pure text work: no
/// resolution. Refuses userinfo (`user@`), whitespace in the authority and a path that is
/// not printable ASCII, so nothing it returns can smuggle a header or a second request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl<'a> {
    pub tls: bool,
    /// Without IPv6 brackets.
    pub host: &'a str,
    pub port: u16,
    /// As written: the Host header.
    pub authority: &'a str,
    /// Path and query, `/` when empty; the fragment is dropped (it is never sent).
    pub path: &'a str,
}

impl<'a> HttpUrl<'a> {
    pub fn parse(url: &'a str) -> Option<Self> {
        let (tls, rest) = match url.strip_prefix("https://") {
            Some(r) => (true, r),
            None => (false, url.strip_prefix("http://")?),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') || authority.contains(char::is_whitespace) {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().ok()?,
            None if tls => 443,
            None => 80,
        };
        let path = if path.is_empty() { "/" } else { path };
        (!host.is_empty() && path.bytes().all(|b| b.is_ascii_graphic())).then_some(Self {
            tls,
            host,
            port,
            authority,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table both this crate and the dashboard's port are tested against.
    const CASES: &str = include_str!("../testdata/health_urls.json");

    fn cases() -> serde_json::Value {
        serde_json::from_str(CASES).unwrap()
    }

    #[test]
    fn the_shared_table_of_urls() {
        let v = cases();
        for url in v["accepted"].as_array().unwrap() {
            let url = url.as_str().unwrap();
            assert!(
                check_health_url(url).is_ok(),
                "should accept {url:?}: {:?}",
                check_health_url(url)
            );
        }
        for url in v["refused"].as_array().unwrap() {
            let url = url.as_str().unwrap();
            assert!(check_health_url(url).is_err(), "should refuse {url:?}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_LEN));
        assert!(check_health_url(&long).is_err());
    }

    #[test]
    fn the_shared_table_of_origins() {
        let v = cases();
        for case in v["origins"].as_array().unwrap() {
            let patterns: Vec<OriginPattern> = case["allow"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| OriginPattern::parse(p.as_str().unwrap()).unwrap())
                .collect();
            let url = case["url"].as_str().unwrap();
            assert_eq!(
                health_url_allowed(url, &patterns),
                case["allowed"].as_bool().unwrap(),
                "{case}"
            );
        }
        for bad in v["bad_origins"].as_array().unwrap() {
            let bad = bad.as_str().unwrap();
            assert!(OriginPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_defaults_are_the_stacks_simulators() {
        let allow: Vec<OriginPattern> = default_health_origins()
            .iter()
            .map(|o| OriginPattern::parse(o).unwrap())
            .collect();
        assert!(health_url_allowed("http://127.0.0.1:3002/health", &allow));
        assert!(health_url_allowed("http://localhost:3004/health", &allow));
        assert!(!health_url_allowed("http://127.0.0.1:9100/metrics", &allow));
        assert!(!health_url_allowed("https://127.0.0.1:3001/health", &allow));
    }

    proptest::proptest! {
        /// Whatever the input, the check returns; an accepted URL is plain ASCII.
        #[test]
        fn never_panics(url in ".{0,80}", tail in "[a-z0-9:/.\\[\\]@%]{0,40}") {
            let _ = check_health_url(&url);
            let joined = format!("http://{tail}");
            if check_health_url(&joined).is_ok() {
                proptest::prop_assert!(joined.is_ascii());
            }
        }
    }

    #[test]
    fn http_urls_split_into_what_a_request_needs() {
        let u = HttpUrl::parse("https://[::1]/hook?x=1#frag").unwrap();
        assert_eq!(
            (u.tls, u.host, u.port, u.authority, u.path),
            (true, "::1", 443, "[::1]", "/hook?x=1")
        );
        let u = HttpUrl::parse("http://h:9000").unwrap();
        assert_eq!((u.port, u.path), (9000, "/"));
        for bad in [
            "ftp://h/",
            "http://user:pw@h/",
            "http:///x",
            "http://h:99999/",
            "http://h/a b",
            "http://h\tx/",
        ] {
            assert_eq!(HttpUrl::parse(bad), None, "{bad}");
        }
    }
}
