//! HTTPS: a certificate trusted through --ca-file that expires in 3 days raises
//! CERT_EXPIRING; one that does not verify fails the probe with `tls`.

use anyhow::Result;
use vitals_testkit::{NatsServer, SOON};

use crate::helpers::{
    Server, error_of, monitor, prober, self_signed, subscribe, targets_file, until,
};

const DAY_MS: f64 = 86_400_000.0;

#[tokio::test]
async fn an_expiring_certificate_warns_and_an_untrusted_one_fails() -> Result<()> {
    let nats = NatsServer::start()?;
    let client = nats.client().await?;
    let _monitor = monitor(&nats, &[]).await?;
    let (trusted_tls, trusted_pem) = self_signed(3)?;
    let (untrusted_tls, _) = self_signed(300)?;
    let trusted = Server::https(trusted_tls).await?;
    let untrusted = Server::https(untrusted_tls).await?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, trusted_pem)?;

    let mut expiring = subscribe(&client, "metrics.expiring".into()).await?;
    let mut bad = subscribe(&client, "metrics.badcert".into()).await?;
    let mut alerts = subscribe(&client, "health.alert.expiring".into()).await?;
    let (_files, file) = targets_file(&format!(
        "[[target]]\nservice = \"expiring\"\nkind = \"http\"\nurl = \"{}\"\ninterval_ms = 1000\n\
         [[target]]\nservice = \"badcert\"\nkind = \"http\"\nurl = \"{}\"\ninterval_ms = 1000\n",
        trusted.url("https", "/health"),
        untrusted.url("https", "/health"),
    ))?;
    let ca = ca.to_str().unwrap_or_default().to_owned();
    let _prober = prober(&nats, &["--targets", &file, "--ca-file", &ca]).await?;

    let good = until(&mut expiring, "a good HTTPS probe", SOON, |s| {
        s["probe"]["ok"] == true
    })
    .await?;
    let s = good.last().cloned().unwrap_or_default();
    assert_eq!(s["probe"]["status_code"], 200);
    assert_eq!(s["probe"]["cert_warn_days"], 14);
    let left_days = (s["probe"]["cert_expires_ms"].as_f64().unwrap_or(0.0)
        - s["ts_ms"].as_f64().unwrap_or(0.0))
        / DAY_MS;
    assert!(
        (2.9..=3.0).contains(&left_days),
        "expires in {left_days} days: {s}"
    );
    let fired = until(&mut alerts, "CERT_EXPIRING", SOON, |a| {
        a["alert"] == "CERT_EXPIRING" && a["state"] == "firing"
    })
    .await?;
    let a = fired.last().cloned().unwrap_or_default();
    assert_eq!(a["threshold"], 14.0);

    let failed = until(&mut bad, "a tls failure", SOON, |s| {
        s["probe"]["ok"] == false
    })
    .await?;
    let s = failed.last().cloned().unwrap_or_default();
    assert_eq!(error_of(&s), "tls", "{s}");
    assert!(s["probe"].get("cert_expires_ms").is_none(), "{s}");
    Ok(())
}
