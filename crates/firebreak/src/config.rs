//! Settings: defaults, then `firebreak.toml`, then `FIREBREAK_*` environment, then flags
//! (clap merges the last two). Validated once at start-up; passed explicitly, never global.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Options shared by every command that opens the database (under a heading of their own, so
/// that the client commands' help keeps them apart).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Database (commands that open it directly)")]
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

/// Connection limits of `serve`: flags and `FIREBREAK_*` variables (over `[http]`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HttpArgs {
    /// Connections served at once; more wait in the listen backlog (default 1024).
    #[arg(long, env = "FIREBREAK_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds for a client to send the request line and headers; also how long an idle
    /// keep-alive connection stays open (default 10).
    #[arg(long, env = "FIREBREAK_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds for a request body, plus one per `--body-min-rate` bytes received (default 30).
    #[arg(long, env = "FIREBREAK_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Bytes per second of body that earn one more second (default 1024).
    #[arg(long, env = "FIREBREAK_BODY_MIN_RATE")]
    pub body_min_rate: Option<u64>,
    /// Seconds a client may leave a response unread before the connection is closed (default 30).
    #[arg(long, env = "FIREBREAK_SEND_TIMEOUT_SECS")]
    pub send_timeout_secs: Option<u64>,
}

/// `[http]` in firebreak.toml: connection limits (docs/OPERATIONS.md "Connection limits").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub max_connections: Option<usize>,
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub body_min_rate: Option<u64>,
    pub send_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
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
    /// Splunk HEC: accept the token as `?token=` (Splunk's `allowQueryStringAuth`; off by
    /// default, since URLs end up in proxies' and senders' logs).
    pub hec_query_token: Option<bool>,
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
    pub hec_query_token: bool,
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
    /// Connection limits and timeouts of the HTTP listener.
    #[serde(default)]
    pub http: HttpFile,
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
    pub http: firebreak_server::HttpLimits,
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
            .field("http", &self.http)
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
        http: &HttpArgs,
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
        let http = resolve_http(http, &file.http)?;
        Ok(Self {
            intake,
            http,
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

/// Flags and environment over `[http]` over the defaults; zero is refused (it would disable
/// the limit or serve nothing).
fn resolve_http(args: &HttpArgs, file: &HttpFile) -> anyhow::Result<firebreak_server::HttpLimits> {
    let d = firebreak_server::HttpLimits::default();
    let secs =
        |name: &str, flag: Option<u64>, file: Option<u64>, def: std::time::Duration| match flag
            .or(file)
        {
            None => Ok(def),
            Some(0) => bail!("{name} must be at least 1 second"),
            Some(n) if n > 86_400 => bail!("{name} must be at most 86400 seconds (one day)"),
            Some(n) => Ok(std::time::Duration::from_secs(n)),
        };
    let max_connections = match args.max_connections.or(file.max_connections) {
        None => d.max_connections,
        Some(n) if (1..=1_000_000).contains(&n) => n,
        Some(n) => bail!("max_connections must be between 1 and 1000000 (got {n})"),
    };
    let body_min_rate = match args.body_min_rate.or(file.body_min_rate) {
        None => d.body_min_rate,
        Some(0) => bail!("body_min_rate must be at least 1 byte per second"),
        Some(n) => n,
    };
    Ok(firebreak_server::HttpLimits {
        max_connections,
        header_timeout: secs(
            "header_timeout_secs",
            args.header_timeout_secs,
            file.header_timeout_secs,
            d.header_timeout,
        )?,
        body_timeout: secs(
            "body_timeout_secs",
            args.body_timeout_secs,
            file.body_timeout_secs,
            d.body_timeout,
        )?,
        body_min_rate,
        send_timeout: secs(
            "send_timeout_secs",
            args.send_timeout_secs,
            file.send_timeout_secs,
            d.send_timeout,
        )?,
        shutdown_grace: secs(
            "shutdown_grace_secs",
            None,
            file.shutdown_grace_secs,
            d.shutdown_grace,
        )?,
    })
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
        hec_query_token: f.hec_query_token.unwrap_or(false),
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_limits_flags_over_file_over_defaults() {
        let file: FileConfig = toml::from_str(
            "[http]\nmax_connections = 64\nheader_timeout_secs = 5\nshutdown_grace_secs = 3\n",
        )
        .unwrap();
        let flags = HttpArgs {
            max_connections: Some(32),
            ..HttpArgs::default()
        };
        let l = resolve_http(&flags, &file.http).unwrap();
        assert_eq!(l.max_connections, 32);
        assert_eq!(l.header_timeout, std::time::Duration::from_secs(5));
        assert_eq!(l.shutdown_grace, std::time::Duration::from_secs(3));
        assert_eq!(
            l.body_timeout,
            firebreak_server::HttpLimits::default().body_timeout
        );
        for bad in [
            HttpArgs {
                max_connections: Some(0),
                ..HttpArgs::default()
            },
            HttpArgs {
                header_timeout_secs: Some(0),
                ..HttpArgs::default()
            },
            HttpArgs {
                body_min_rate: Some(0),
                ..HttpArgs::default()
            },
        ] {
            assert!(resolve_http(&bad, &HttpFile::default()).is_err(), "{bad:?}");
        }
        assert!(toml::from_str::<FileConfig>("[http]\nmax_conections = 1\n").is_err());
    }

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
