use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::process::workspace_root;

/// A real nats-server on a free loopback port, JetStream in a temp dir; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server with JetStream, no auth.
    pub fn start() -> Result<Self> {
        Self::start_inner(None)
    }

    /// Starts a server laid out like the stacks' nats.conf, without its users: one account
    /// `VITALS` (JetStream on; a connection without credentials lands in it) and a system
    /// account whose client connect/disconnect events for VITALS are imported on
    /// `vitals.conn.>`, so the monitor sees connections close ([`ACCOUNTS_CONF`]).
    pub fn start_with_accounts() -> Result<Self> {
        Self::start_inner(Some(ACCOUNTS_CONF))
    }

    /// Starts a server with `config` (a nats.conf body); the port and store dir are set
    /// on the command line, so the config must not set `port`, `listen` or `store_dir`.
    pub fn start_with_config(config: &str) -> Result<Self> {
        Self::start_inner(Some(config))
    }

    fn start_inner(config: Option<&str>) -> Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for nats-server")?;
        let config = match config {
            Some(body) => {
                let path = dir.path().join("nats.conf");
                std::fs::write(&path, body)?;
                Some(path)
            }
            None => None,
        };
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            config,
        };
        let child = server.spawn(None)?;
        let pid = child.id();
        server.child = Some(child);
        server.port = wait_for_ports_file(server.dir.path(), pid)?;
        server.wait_accepting()?;
        Ok(server)
    }

    fn spawn(&self, port: Option<u16>) -> Result<Child> {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut cmd = Command::new(nats_server_bin());
        if let Some(cfg) = &self.config {
            cmd.arg("-c").arg(cfg);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .arg("--ports_file_dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        cmd.spawn().with_context(|| {
            format!(
                "starting {:?} (run `make test` to install it)",
                nats_server_bin()
            )
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub async fn client(&self) -> Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .context("connecting to test nats-server")
    }

    /// SIGKILL: the server's sockets close at once. JetStream data stays on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store dir (after `kill`).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = self.spawn(Some(self.port))?;
            self.child = Some(child);
            match self.wait_accepting() {
                Ok(()) => return Ok(()),
                // The old listener may not be released yet; try again briefly.
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => self.kill(),
            }
        }
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing.
    pub fn pause(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self.pid().context("nats-server not running")?;
        kill(Pid::from_raw(pid as i32), sig).context("signalling nats-server")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_accepting(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("nats-server exited early ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "nats-server did not accept connections within 10 s:\n{}",
            self.log()
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.resume();
        self.kill();
    }
}

/// The accounts of the repo's nats.conf, minimal: see [`NatsServer::start_with_accounts`].
pub const ACCOUNTS_CONF: &str = r#"
accounts {
  SYS: {
    exports: [
      { stream: "$SYS.ACCOUNT.VITALS.CONNECT" }
      { stream: "$SYS.ACCOUNT.VITALS.DISCONNECT" }
    ]
  }
  VITALS: {
    jetstream: enabled
    users: [ { user: anyone, password: anyone } ]
    imports: [
      { stream: { account: SYS, subject: "$SYS.ACCOUNT.VITALS.CONNECT" }, to: "vitals.conn.connect" }
      { stream: { account: SYS, subject: "$SYS.ACCOUNT.VITALS.DISCONNECT" }, to: "vitals.conn.disconnect" }
    ]
  }
}
system_account: SYS
no_auth_user: anyone
"#;

/// `NATS_SERVER_BIN`, else the project virtualenv's, else `nats-server` on PATH.
/// The repo's nats.conf as the stacks run it, minus the fixed client and monitoring ports
/// (a test server takes a free `-p`; 8222 may be a developer's stack), for
/// [`NatsServer::start_with_config`]: the real users and permissions in a test.
pub fn repo_nats_conf() -> Result<String> {
    let path = workspace_root().join("nats.conf");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let mut out = String::new();
    for line in text.lines() {
        let key = line.trim_start();
        ensure!(
            !key.starts_with("store_dir") && !key.starts_with("store:"),
            "nats.conf must not set store_dir (the stack passes -sd): {line}"
        );
        if key.starts_with("port:") || key.starts_with("http_port:") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    ensure!(
        out.contains("no_auth_user"),
        "nats.conf has no no_auth_user"
    );
    Ok(out)
}

pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

fn wait_for_ports_file(dir: &Path, pid: u32) -> Result<u16> {
    let path = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = json["nats"][0].as_str()
            && let Some(port) = url.rsplit(':').next().and_then(|p| p.parse().ok())
        {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("nats-server wrote no ports file in {}", dir.display())
}
