//! A receivers file that cannot work is refused at start: exit 2 and what is wrong.

use std::time::Duration;

use anyhow::{Result, ensure};
use vitals_testkit::ChildProc;

use crate::helpers::write_config;

#[tokio::test]
async fn bad_config_is_refused_with_the_reason() -> Result<()> {
    let rec = "[[receiver]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/h\"\n";
    for (text, says) in [
        (format!("{rec}[[route]]\nreceivers = [\"nobody\"]\n"), "unknown receiver"),
        (format!("{rec}{rec}[[route]]\nreceivers = [\"ops\"]\n"), "defined twice"),
        (
            "[[receiver]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"not a url\"\n[[route]]\nreceivers = [\"ops\"]\n".to_owned(),
            "is not http(s)",
        ),
        ("this is not toml".to_owned(), "configuration"),
    ] {
        let (_dir, path) = write_config(&text).await?;
        let p = path.to_string_lossy().into_owned();
        // Nothing listens on this NATS port: the file is refused before any connection.
        let mut proc = ChildProc::spawn(
            "notifier",
            &["--config", &p, "--http-addr", "127.0.0.1:0", "--nats-url", "nats://127.0.0.1:1"],
            &[],
        )?;
        let status = proc.wait_exit(Duration::from_secs(10)).await?;
        ensure!(status.code() == Some(2), "{says}: exit {status:?}\n{}", proc.logs());
        ensure!(proc.logs().contains(says), "{says}: {}", proc.logs());
        ensure!(proc.logs().contains("refused to start"));
    }
    let mut proc = ChildProc::spawn("notifier", &["--http-addr", "127.0.0.1:0"], &[])?;
    let status = proc.wait_exit(Duration::from_secs(10)).await?;
    ensure!(status.code() == Some(2), "no --config: {status:?}");
    Ok(())
}
