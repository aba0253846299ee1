//! # kefu-testkit (dev-only)
//!
//! Connects tests to the private PostgreSQL and broker that `deploy/test.sh` starts, and gives
//! each test its own database and its own topic so tests run in parallel without seeing each
//! other. The locations come from `KEFU_TEST_DATABASE_URL` and `KEFU_TEST_BROKERS`, or from
//! `.kefu/test/env`, which `deploy/test.sh services` writes for running `cargo test` by hand.

use std::{path::PathBuf, sync::Once, time::Duration};

use anyhow::{Context, Result, bail};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use sqlx::{Connection, PgConnection, PgPool, postgres::PgPoolOptions};
use uuid::Uuid;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn setting(name: &str) -> Result<String> {
    if let Ok(v) = std::env::var(name) {
        return Ok(v);
    }
    let file = repo_root().join(".kefu/test/env");
    if let Ok(text) = std::fs::read_to_string(&file) {
        for line in text.lines() {
            if let Some(v) = line.strip_prefix(&format!("{name}=")) {
                return Ok(v.trim().to_string());
            }
        }
    }
    bail!(
        "{name} is not set. Run the suite with `deploy/test.sh`, or start the test services with \
         `deploy/test.sh services` and run cargo test again"
    )
}

/// Logs to the test output (captured unless the test fails). `RUST_LOG` filters.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,librdkafka=warn"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

/// URL of the test cluster's maintenance database.
pub fn admin_database_url() -> Result<String> {
    setting("KEFU_TEST_DATABASE_URL")
}

/// Bootstrap servers of the test broker.
pub fn brokers() -> Result<String> {
    setting("KEFU_TEST_BROKERS")
}

/// The Python interpreter with the consumer packages (`deploy/python-requirements.txt`).
pub fn python() -> Result<String> {
    setting("KEFU_TEST_PYTHON")
}

/// A database of its own for one test.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    /// Its name.
    pub name: String,
    /// A small pool on it.
    pub pool: PgPool,
}

/// Creates an empty database with a unique name.
pub async fn fresh_database() -> Result<TestDatabase> {
    init_tracing();
    let admin = admin_database_url()?;
    let name = format!("t_{}", Uuid::new_v4().simple());
    let mut conn =
        PgConnection::connect(&admin).await.with_context(|| format!("cannot reach the test PostgreSQL at {admin}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .context("CREATE DATABASE")?;
    conn.close().await.ok();
    let url = replace_database(&admin, &name);
    let pool = PgPoolOptions::new().max_connections(8).acquire_timeout(Duration::from_secs(30)).connect(&url).await?;
    Ok(TestDatabase { url, name, pool })
}

/// The same server URL with another database name.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// Creates a topic with `partitions` partitions on the test broker.
pub async fn create_topic(name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers()?).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await?;
    for r in results {
        if let Err((topic, code)) = r {
            bail!("cannot create topic {topic}: {code}");
        }
    }
    Ok(())
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `kefu` binary of this workspace: `KEFU_BIN` when set, else built once with cargo.
pub fn kefu_binary() -> Result<PathBuf> {
    use std::sync::OnceLock;
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("KEFU_BIN") {
            return Ok(PathBuf::from(bin));
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "kefu-cli", "--bin", "kefu"])
            .current_dir(repo_root())
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("building the kefu binary failed".into());
        }
        let target =
            std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("target"));
        Ok(target.join("debug").join("kefu"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// A running `kefu` process, killed when dropped.
pub struct KefuProcess {
    child: std::process::Child,
    /// `http://host:port` of its gateway, when it runs one.
    pub base_url: Option<String>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl KefuProcess {
    /// Starts `kefu <args>` with `env` and waits until it says it is ready (for commands that
    /// run a gateway) or has started.
    pub fn start(args: &[&str], env: &[(&str, String)], wait_for_gateway: bool) -> Result<Self> {
        use std::io::BufRead;
        let mut command = std::process::Command::new(kefu_binary()?);
        command
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("KEFU_TEST_CHILD_LOG").unwrap_or_else(|_| "info,sqlx=warn,librdkafka=warn".into()),
            )
            .env("KEFU_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().context("cannot start kefu")?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    if let Some(url) = line.strip_prefix("kefu is ready: GraphQL at ") {
                        let _ = tx.send(url.trim_end_matches("/graphql").to_string());
                    }
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        let mut process = KefuProcess { child, base_url: None, log };
        if wait_for_gateway {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(url) => process.base_url = Some(url),
                Err(_) => bail!("kefu did not become ready; its log:\n{}", process.log_tail(80)),
            }
        }
        Ok(process)
    }

    /// The last lines it logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        log[log.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the log contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().map(|l| l.iter().any(|line| line.contains(needle))).unwrap_or(false)
    }

    /// Kills it at once (SIGKILL): no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks it to stop (SIGTERM) and waits.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                self.kill();
                bail!("kefu did not stop within 30 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The GraphQL endpoint.
    pub fn graphql_url(&self) -> Result<String> {
        self.base_url
            .as_ref()
            .map(|b| format!("{b}/graphql"))
            .ok_or_else(|| anyhow::anyhow!("this kefu process runs no gateway"))
    }
}

impl Drop for KefuProcess {
    fn drop(&mut self) {
        let lines = match std::env::var("KEFU_TEST_SHOW_LOGS").as_deref() {
            Ok("all") => usize::MAX,
            Ok(_) => 60,
            Err(_) if std::thread::panicking() => 60,
            Err(_) => 0,
        };
        let exited = self.child.try_wait().ok().flatten();
        self.kill();
        if lines > 0 {
            eprintln!("--- kefu log (last lines; exited by itself: {exited:?}) ---\n{}", self.log_tail(lines));
        }
    }
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn lib_sh(script: &str) -> Result<()> {
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source deploy/lib.sh && {script}"))
        .current_dir(repo_root())
        .output()?;
    if !output.status.success() {
        bail!(
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A PostgreSQL cluster of its own for a test that must stop and start the database (the
/// shared test cluster must stay up). Uses deploy/lib.sh, so it runs as the scripts do.
pub struct PrivatePostgres {
    profile: String,
    /// Its port.
    pub port: u16,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster of its own (where `deploy/lib.sh` keeps clusters).
    pub fn start() -> Result<Self> {
        let profile = format!("tmp-pg-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let port = free_port()?;
        lib_sh(&format!("start_postgres {profile} {port} fast"))?;
        Ok(PrivatePostgres { profile, port })
    }

    /// URL of its `kefu` database.
    pub fn url(&self) -> String {
        format!("postgres://kefu@127.0.0.1:{}/kefu", self.port)
    }

    /// Stops the server (data is kept).
    pub fn stop(&self) -> Result<()> {
        lib_sh(&format!("stop_postgres {}", self.profile))
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) -> Result<()> {
        lib_sh(&format!("start_postgres {} {} fast", self.profile, self.port))
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Stops the server and deletes its data, wherever deploy/lib.sh keeps it.
        let _ = lib_sh(&format!("reset_postgres {}", self.profile));
        let _ = std::fs::remove_dir_all(repo_root().join(".kefu").join(&self.profile));
    }
}

/// A broker process of its own for a test that must stop and start the broker.
pub struct PrivateBroker {
    profile: String,
    /// Its port.
    pub port: u16,
}

impl PrivateBroker {
    /// Starts a tansu broker with memory storage.
    pub fn start() -> Result<Self> {
        let profile = format!("tmp-broker-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let port = free_port()?;
        lib_sh(&format!("start_broker {profile} {port}"))?;
        Ok(PrivateBroker { profile, port })
    }

    /// Bootstrap servers.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (its memory storage forgets everything).
    pub fn stop(&self) -> Result<()> {
        lib_sh(&format!("stop_broker {}", self.profile))?;
        // Wait until the port is closed.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the broker on port {} did not stop", self.port)
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers, as in a
    /// network partition. Its data is kept.
    pub fn pause(&self) -> Result<()> {
        self.signal("STOP")
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let pid = std::fs::read_to_string(repo_root().join(".kefu").join(&self.profile).join("broker.pid"))?;
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), pid.trim()]).status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Starts it again on the same port (empty).
    pub fn restart(&self) -> Result<()> {
        lib_sh(&format!("start_broker {} {}", self.profile, self.port))
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(repo_root().join(".kefu").join(&self.profile));
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            replace_database("postgres://kefu@127.0.0.1:5432/postgres", "t_1"),
            "postgres://kefu@127.0.0.1:5432/t_1"
        );
        assert_eq!(
            replace_database("postgres://kefu@127.0.0.1:5432/postgres?sslmode=disable", "t_1"),
            "postgres://kefu@127.0.0.1:5432/t_1?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://kefu@h:1", "t"), "postgres://kefu@h:1/t");
    }
}
