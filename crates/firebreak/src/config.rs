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
    /// AES-256 key sealing documents at rest (default `<data dir>/document.key`, created if missing).
    #[arg(long, env = "FIREBREAK_DOCUMENT_KEY_FILE", global = true)]
    pub document_key_file: Option<PathBuf>,
    /// Directory for document blobs (default `<data dir>/blobs` on SQLite; on PostgreSQL blobs
    /// are kept in the database unless this names storage every node shares).
    #[arg(long, env = "FIREBREAK_BLOB_DIR", global = true)]
    pub blob_dir: Option<PathBuf>,
}

/// `[auth]` in firebreak.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub session_idle_minutes: Option<u32>,
    pub session_absolute_hours: Option<u32>,
    pub max_failed_logins: Option<u32>,
    pub failure_window_minutes: Option<u32>,
    pub lockout_minutes: Option<u32>,
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
    /// The origin browsers use, e.g. `https://firebreak.example.org` (CSRF checks).
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Proxies whose `X-Forwarded-For` is believed (default with --behind-tls-proxy: loopback).
    pub trusted_proxies: Option<Vec<String>>,
    pub max_document_bytes: Option<u64>,
    pub document_key_file: Option<PathBuf>,
    pub blob_dir: Option<PathBuf>,
    #[serde(default)]
    pub auth: AuthFile,
    /// Single sign-on (OpenID Connect, authorization code + PKCE).
    pub oidc: Option<firebreak_server::oidc::OidcConfig>,
    /// The SMTP relay email notifications go through.
    pub smtp: Option<firebreak_server::mail::SmtpConfig>,
    /// Signing secret and outbound policy of webhook notifications.
    pub webhooks: Option<firebreak_server::webhook::WebhookConfig>,
}

/// TLS termination by `serve` itself.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
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
    pub document_key_file: PathBuf,
    /// `None`: blobs in the database (PostgreSQL without a shared directory).
    pub blob_dir: Option<PathBuf>,
    pub max_document_bytes: u64,
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub auth: firebreak_app::auth::AuthConfig,
    pub oidc: Option<firebreak_server::oidc::OidcConfig>,
    pub smtp: Option<firebreak_server::mail::SmtpConfig>,
    pub webhooks: Option<firebreak_server::webhook::WebhookConfig>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("audit_key_file", &self.audit_key_file)
            .field("ticket_prefix", &self.ticket_prefix)
            .field("blob_dir", &self.blob_dir)
            .field("tls", &self.tls)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
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
        tls: (Option<PathBuf>, Option<PathBuf>),
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
        let is_pg = database_url.starts_with("postgres");
        let blob_dir = args.blob_dir.clone().or(file.blob_dir);
        let blob_dir = match blob_dir {
            Some(d) => Some(d),
            None if is_pg => None,
            None => Some(data_dir.join("blobs")),
        };
        let tls = match (tls.0.or(file.tls_cert), tls.1.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => bail!("TLS needs both a certificate (--tls-cert) and a key (--tls-key)"),
        };
        let behind_tls_proxy = behind_tls_proxy || file.behind_tls_proxy.unwrap_or(false);
        let trusted_proxies = match file.trusted_proxies {
            Some(list) => list
                .iter()
                .map(|s| {
                    s.parse()
                        .with_context(|| format!("trusted_proxies: {s:?} is not an IP address"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
            None if behind_tls_proxy => vec!["127.0.0.1".parse()?, "::1".parse()?],
            None => vec![],
        };
        if let Some(u) = &file.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            bail!("public_url must start with https:// (got {u:?})");
        }
        let d = firebreak_app::auth::AuthConfig::default();
        let a = &file.auth;
        let minutes = |v: Option<u32>, def: time::Duration| {
            v.map_or(def, |m| time::Duration::minutes(i64::from(m.max(1))))
        };
        let auth = firebreak_app::auth::AuthConfig {
            session_idle: minutes(a.session_idle_minutes, d.session_idle),
            session_absolute: a.session_absolute_hours.map_or(d.session_absolute, |h| {
                time::Duration::hours(i64::from(h.max(1)))
            }),
            max_failures: a
                .max_failed_logins
                .map_or(d.max_failures, |n| i64::from(n.max(1))),
            failure_window: minutes(a.failure_window_minutes, d.failure_window),
            lockout: minutes(a.lockout_minutes, d.lockout),
            ..d
        };
        Ok(Self {
            document_key_file: args
                .document_key_file
                .clone()
                .or(file.document_key_file)
                .unwrap_or_else(|| data_dir.join("document.key")),
            blob_dir,
            max_document_bytes: file.max_document_bytes.unwrap_or(100 * 1024 * 1024),
            public_url: file.public_url,
            tls,
            trusted_proxies,
            auth,
            oidc: file.oidc,
            smtp: file.smtp,
            webhooks: file.webhooks,
            listen,
            audit_key_file: args
                .audit_key_file
                .clone()
                .or(file.audit_key_file)
                .unwrap_or_else(|| data_dir.join("audit.key")),
            data_dir,
            database_url,
            ticket_prefix,
            behind_tls_proxy,
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
