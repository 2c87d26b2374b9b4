//! Running the real `firebreak` binary: CLI commands and servers on port 0.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_firebreak");

/// Where a test's Firebreak keeps its data, and which database it uses.
#[derive(Clone)]
pub struct Env {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub key_file: Option<PathBuf>,
    /// `FIREBREAK_JOB_LEASE_SECS` for servers (a short lease lets a restart take runs up).
    pub lease_secs: Option<u32>,
}

impl Env {
    pub fn sqlite(dir: &Path) -> Self {
        Self {
            data_dir: dir.to_path_buf(),
            database_url: None,
            key_file: None,
            lease_secs: None,
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("FIREBREAK_DATA_DIR", &self.data_dir)
            .env_remove("FIREBREAK_DATABASE_URL")
            // parallel servers: each syslog listener on a free port
            .env("FIREBREAK_SYSLOG_LISTEN", ":0")
            .env(
                "RUST_LOG",
                std::env::var("FIREBREAK_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Some(u) = &self.database_url {
            c.env("FIREBREAK_DATABASE_URL", u);
        }
        if let Some(k) = &self.key_file {
            c.env("FIREBREAK_AUDIT_KEY_FILE", k);
        }
        if let Some(l) = self.lease_secs {
            c.env("FIREBREAK_JOB_LEASE_SECS", l.to_string());
        }
        c.current_dir(&self.data_dir);
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run firebreak")
    }

    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        output_with_stdin(self.command(args), input.as_bytes())
    }

    /// Creates a user with these roles (no password) and returns a fresh token for them.
    pub fn user_token(&self, name: &str, roles: &[&str]) -> String {
        let mut args = vec!["user", "add", name];
        for r in roles {
            args.extend(["--role", r]);
        }
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.cli(&["token", "create", "--user", name]);
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn start(&self) -> Server {
        self.start_with(&[])
    }

    /// Starts `serve --listen 127.0.0.1:0` with extra arguments (http or https).
    pub fn start_with(&self, extra: &[&str]) -> Server {
        self.start_within(extra, Duration::from_secs(60))
    }

    /// `start_with`, waiting up to `timeout` for the server to listen.
    pub fn start_within(&self, extra: &[&str], timeout: Duration) -> Server {
        self.start_env(extra, &[], timeout)
    }

    /// `start_within` with extra environment variables.
    pub fn start_env(&self, extra: &[&str], envs: &[(&str, &str)], timeout: Duration) -> Server {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn firebreak serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                let addr = line
                    .strip_prefix("firebreak listening on http://")
                    .or_else(|| line.strip_prefix("firebreak listening on https://"));
                if !sent && let Some(a) = addr {
                    let _ = tx.send(a.parse::<SocketAddr>().unwrap());
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(timeout)
            .expect("server did not start listening");
        Server { child, addr }
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pg_url() -> String {
    std::env::var("FIREBREAK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema on the test PostgreSQL, selected through the URL's `options` parameter.
pub fn pg_schema_url() -> (String, String) {
    let schema = format!("fbp_{}", uuid::Uuid::now_v7().simple());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} is required (FIREBREAK_TEST_DATABASE_URL): {e}",
                pg_url()
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
    });
    let sep = if pg_url().contains('?') { '&' } else { '?' };
    (
        format!("{}{sep}options=-c%20search_path%3D{schema}", pg_url()),
        schema,
    )
}

pub fn drop_pg_schema(schema: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok(pool) = sqlx::PgPool::connect(&pg_url()).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&pool)
                .await;
        }
    });
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A reqwest client (the TLS crypto provider installed first, as reqwest needs).
pub fn http_client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A webhook receiver answering 204 that records every `webhook-id`.
pub fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ids2 = ids.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let ids = ids2.clone();
            std::thread::spawn(move || {
                let mut r = std::io::BufReader::new(s.try_clone().unwrap());
                loop {
                    let (mut len, mut id) = (0usize, None);
                    loop {
                        let mut line = String::new();
                        if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if let Some(v) = l.strip_prefix("webhook-id:") {
                            id = Some(v.trim().to_string());
                        }
                    }
                    let mut body = vec![0u8; len];
                    if std::io::Read::read_exact(&mut r, &mut body).is_err() {
                        return;
                    }
                    if let Some(id) = id {
                        ids.lock().unwrap().push(id);
                    }
                    if std::io::Write::write_all(
                        &mut s,
                        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
                    )
                    .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, ids)
}

/// Runs `cmd` with `input` on its standard input; its whole output.
pub fn output_with_stdin(mut cmd: std::process::Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
