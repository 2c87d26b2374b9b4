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

/// One `[intake.sources.<name>]`: a webhook source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// JSONPath field mapping (default: the generic one).
    pub mapping: Option<firebreak_intake::webhook::Mapping>,
    /// HMAC-SHA256 key; requests must then carry a valid signature.
    pub secret: Option<String>,
    /// The key, read from a file (first line).
    pub secret_file: Option<PathBuf>,
    /// Header with the signature (default `X-Signature-256`).
    pub signature_header: Option<String>,
    /// A signed request without a token reports as this user.
    pub user: Option<String>,
}

/// `[intake]` in firebreak.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeFile {
    /// `host:port` for syslog over UDP and TCP, or `off` (default `127.0.0.1:5514`).
    pub syslog_listen: Option<String>,
    /// The name syslog events are reported as (default `syslog`).
    pub syslog_reporter: Option<String>,
    /// Intake requests in flight at most (default 16); more wait, then get 503.
    pub concurrency: Option<usize>,
    /// Largest streamed intake body in MiB (default 1024).
    pub max_body_mb: Option<u64>,
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, SourceFile>,
}

/// The resolved intake settings.
#[derive(Clone)]
pub struct Intake {
    pub syslog_listen: Option<SocketAddr>,
    pub syslog_reporter: String,
    pub concurrency: usize,
    pub max_body_bytes: u64,
    pub sources: std::collections::BTreeMap<String, firebreak_server::intake::WebhookSource>,
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
    /// The report mailbox polled over IMAP (mail to e.g. security@ becomes events).
    pub imap: Option<firebreak_server::imap::ImapConfig>,
    /// Signing secret and outbound policy of webhook notifications.
    pub webhooks: Option<firebreak_server::webhook::WebhookConfig>,
    /// Outbound requests (connectors, feeds, Slack/Teams): internal networks allowed anyway.
    #[serde(default)]
    pub outbound: firebreak_server::outbound::OutboundConfig,
    /// Event intake: syslog listener, webhook sources, limits.
    #[serde(default)]
    pub intake: IntakeFile,
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
    pub imap: Option<firebreak_server::imap::ImapConfig>,
    pub webhooks: Option<firebreak_server::webhook::WebhookConfig>,
    pub outbound: firebreak_server::outbound::OutboundConfig,
    pub intake: Intake,
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
            .field("syslog_listen", &self.intake.syslog_listen)
            .field("imap", &self.imap)
            .field(
                "intake_sources",
                &self.intake.sources.keys().collect::<Vec<_>>(),
            )
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
        syslog_listen: Option<&str>,
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
        let intake = resolve_intake(&file.intake, syslog_listen)?;
        Ok(Self {
            intake,
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
            imap: file.imap,
            webhooks: file.webhooks,
            outbound: file.outbound,
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

fn resolve_intake(f: &IntakeFile, syslog_flag: Option<&str>) -> anyhow::Result<Intake> {
    let listen = syslog_flag
        .map(str::to_string)
        .or_else(|| f.syslog_listen.clone())
        .unwrap_or_else(|| "127.0.0.1:5514".into());
    let syslog_listen = if listen.eq_ignore_ascii_case("off") {
        None
    } else {
        // `:0` means a free port on loopback
        let text = if listen.starts_with(':') {
            format!("127.0.0.1{listen}")
        } else {
            listen.clone()
        };
        Some(text.parse().with_context(|| {
            format!("syslog listen address {listen:?} is not like 127.0.0.1:5514 (or `off`)")
        })?)
    };
    let mut sources = std::collections::BTreeMap::new();
    for (name, src) in &f.sources {
        let at = format!("[intake.sources.{name}]");
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("{at}: a source name is letters, digits, '-', '_' and '.'");
        }
        let mapping = match &src.mapping {
            Some(m) => m
                .compile()
                .map_err(|e| anyhow::anyhow!("{at} {}: {}", e.field, e.message))?,
            None => firebreak_intake::webhook::CompiledMapping::generic(),
        };
        let secret = match (&src.secret, &src.secret_file) {
            (Some(_), Some(_)) => bail!("{at}: give secret or secret_file, not both"),
            (Some(s), None) => Some(s.as_bytes().to_vec()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{at} secret_file {}", path.display()))?;
                Some(text.lines().next().unwrap_or("").trim().as_bytes().to_vec())
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!("{at}: the secret must be at least 16 bytes");
        }
        if src.user.is_some() && secret.is_none() {
            bail!("{at}: `user` needs a secret (a signed request stands in for a token)");
        }
        sources.insert(
            name.clone(),
            firebreak_server::intake::WebhookSource {
                mapping,
                secret,
                signature_header: src
                    .signature_header
                    .clone()
                    .unwrap_or_else(|| "X-Signature-256".into())
                    .to_ascii_lowercase(),
                user: src.user.clone(),
            },
        );
    }
    Ok(Intake {
        syslog_listen,
        syslog_reporter: f.syslog_reporter.clone().unwrap_or_else(|| "syslog".into()),
        concurrency: f.concurrency.unwrap_or(16).clamp(1, 1024),
        max_body_bytes: f.max_body_mb.unwrap_or(1024).max(1) * 1024 * 1024,
        sources,
    })
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
