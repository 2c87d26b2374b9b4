//! Settings: defaults, then `firebreak.toml`, then `FIREBREAK_*` environment, then flags
//! (clap merges the last two). Validated once at start-up; passed explicitly, never global.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Options shared by every command that opens the database.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Data directory (SQLite database, keys, audit head).
    #[arg(long, env = "FIREBREAK_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://...`; default `sqlite://<data dir>/firebreak.db`.
    #[arg(
        long,
        env = "FIREBREAK_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Configuration file (default `./firebreak.toml` when present).
    #[arg(long, env = "FIREBREAK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Ed25519 key signing the audit chain's heads (default `<data dir>/audit.key`, created if missing).
    #[arg(long, env = "FIREBREAK_AUDIT_KEY_FILE", global = true)]
    pub audit_key_file: Option<PathBuf>,
}

/// `firebreak.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub audit_key_file: Option<PathBuf>,
    pub ticket_prefix: Option<String>,
    pub behind_tls_proxy: Option<bool>,
}

/// The resolved settings.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub audit_key_file: PathBuf,
    pub ticket_prefix: String,
    pub behind_tls_proxy: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("audit_key_file", &self.audit_key_file)
            .field("ticket_prefix", &self.ticket_prefix)
            .finish()
    }
}

/// Hides a password in a database URL (user info and a `password=` parameter).
pub fn redact_url(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.to_ascii_lowercase().starts_with("password=") {
                        "password=***".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn load_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("firebreak.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("invalid configuration file {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Settings {
    pub fn resolve(
        args: &StoreArgs,
        listen: Option<&str>,
        behind_tls_proxy: bool,
    ) -> anyhow::Result<Self> {
        let file = load_file(args.config.as_deref())?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./firebreak-data"));
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("firebreak.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!(
                "database url must start with sqlite:// or postgres:// (got {})",
                redact_url(&database_url)
            );
        }
        let listen_text = listen
            .map(str::to_string)
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!("--listen: {listen_text:?} is not an address like 127.0.0.1:8080")
        })?;
        let ticket_prefix = file.ticket_prefix.unwrap_or_else(|| "SEC".into());
        if ticket_prefix.is_empty()
            || ticket_prefix.len() > 10
            || !ticket_prefix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            bail!("ticket_prefix must be 1-10 letters or digits (got {ticket_prefix:?})");
        }
        Ok(Self {
            listen,
            audit_key_file: args
                .audit_key_file
                .clone()
                .or(file.audit_key_file)
                .unwrap_or_else(|| data_dir.join("audit.key")),
            data_dir,
            database_url,
            ticket_prefix,
            behind_tls_proxy: behind_tls_proxy || file.behind_tls_proxy.unwrap_or(false),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=x"),
            "postgres://h/db?user=u&password=***&sslmode=x"
        );
    }
}
