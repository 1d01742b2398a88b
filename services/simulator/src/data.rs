//! The mock business data behind `GET /data`: a few recent records fitting the
//! service's name, so the dashboard has something to show when a person opens it.

use rand::Rng;
use serde_json::{Value, json};

const FIRST: [&str; 8] = [
    "ada", "grace", "alan", "edsger", "barbara", "ken", "margaret", "linus",
];
const ROWS: usize = 5;

/// `now_ms` dates the records; `rng` fills them in.
pub fn mock_data<R: Rng>(service: &str, now_ms: u64, rng: &mut R) -> Value {
    let ago = |rng: &mut R, max_s: u64| now_ms.saturating_sub(rng.random_range(0..max_s) * 1000);
    let user = |rng: &mut R| format!("{}{}", one_of(rng, &FIRST), rng.random_range(1..100));
    let (kind, rows): (&str, Vec<Value>) = match service {
        "auth" => (
            "sessions",
            (0..ROWS)
                .map(|_| {
                    json!({
                        "user": user(rng),
                        "method": one_of(rng, &["password", "sso", "passkey"]),
                        "ok": rng.random_bool(0.9),
                        "at_ms": ago(rng, 600),
                    })
                })
                .collect(),
        ),
        "billing" => (
            "invoices",
            (0..ROWS)
                .map(|_| {
                    json!({
                        "invoice": format!("INV-{:06}", rng.random_range(0..1_000_000)),
                        "customer": user(rng),
                        "amount_cents": rng.random_range(500..250_000),
                        "currency": "EUR",
                        "status": one_of(rng, &["paid", "open", "overdue"]),
                        "at_ms": ago(rng, 86_400),
                    })
                })
                .collect(),
        ),
        "notifications" => (
            "messages",
            (0..ROWS)
                .map(|_| {
                    json!({
                        "to": user(rng),
                        "channel": one_of(rng, &["email", "sms", "push"]),
                        "delivered": rng.random_bool(0.95),
                        "at_ms": ago(rng, 300),
                    })
                })
                .collect(),
        ),
        "analytics" => (
            "pages",
            ["/", "/pricing", "/docs", "/login", "/blog"]
                .iter()
                .map(|page| {
                    json!({
                        "page": page,
                        "views_1h": rng.random_range(10..5_000),
                        "bounce_rate": (rng.random_range(0.1..0.8f64) * 100.0).round() / 100.0,
                    })
                })
                .collect(),
        ),
        _ => (
            "orders",
            (0..ROWS)
                .map(|_| {
                    json!({
                        "order": rng.random_range(10_000..99_999),
                        "customer": user(rng),
                        "items": rng.random_range(1..6),
                        "total_cents": rng.random_range(300..40_000),
                        "at_ms": ago(rng, 3_600),
                    })
                })
                .collect(),
        ),
    };
    json!({ "service": service, "kind": kind, "at_ms": now_ms, "items": rows })
}

fn one_of<'a>(rng: &mut impl Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn each_service_gets_its_own_kind_of_records() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for (svc, kind) in [
            ("auth", "sessions"),
            ("billing", "invoices"),
            ("load-7", "orders"),
        ] {
            let v = mock_data(svc, 1_000_000, &mut rng);
            assert_eq!(v["kind"], kind);
            assert_eq!(v["service"], svc);
            assert_eq!(v["items"].as_array().unwrap().len(), ROWS);
        }
    }
}
