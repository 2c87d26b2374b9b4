//! Email intake from a report mailbox over IMAP (`[imap]` in firebreak.toml): every poll
//! fetches the mailbox's new messages and hands each to `App::capture_email`, which makes it
//! a reported event, or a communication on a ticket when the subject names one
//! (`[SEC-000042]`).
//!
//! A message is marked processed (`\Seen`, or moved to `processed_mailbox`) only after it was
//! captured. A message that is not a mail, or too large, is marked `\Seen` and flagged
//! `$FirebreakRejected` so that it is not fetched again; one that could not be stored (the
//! database unavailable) stays unread for the next poll. Passwords and message bodies are
//! never logged.

use anyhow::{Context, anyhow, bail};
use async_imap::types::{Fetch, Flag};
use async_imap::{Client, Session};
use firebreak_app::helpdesk::MailOutcome;
use firebreak_app::{App, AppError};
use futures::TryStreamExt;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Messages larger than this are not fetched: they are flagged rejected.
pub const MAX_MESSAGE_BYTES: u64 = 32 * 1024 * 1024;
/// The keyword a message that cannot be taken gets (with `\Seen`), so it is not retried.
pub const REJECTED_KEYWORD: &str = "$FirebreakRejected";
/// Messages one poll takes at most; the next poll follows at once when more are waiting.
const MAX_PER_POLL: usize = 200;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Fetching one message (up to `MAX_MESSAGE_BYTES`).
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest wait between polls after repeated failures (unless `poll_seconds` is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// `[imap]` in firebreak.toml: the report mailbox.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    /// Default 993 with `tls`, 143 without.
    pub port: Option<u16>,
    /// TLS from the first byte (default true).
    pub tls: Option<bool>,
    /// Upgrade a plain connection with STARTTLS (only with `tls = false`; default false).
    pub starttls: Option<bool>,
    pub username: String,
    pub password: Option<String>,
    /// A file holding the password (its trailing newline ignored); read at every poll.
    pub password_file: Option<PathBuf>,
    /// Default `INBOX`.
    pub mailbox: Option<String>,
    /// Default 60.
    pub poll_seconds: Option<u64>,
    /// The Firebreak user reports are attributed to (role reporter or helpdesk).
    pub reporter: String,
    /// When set, processed messages are moved there; otherwise they are marked `\Seen` and
    /// only unread messages are fetched.
    pub processed_mailbox: Option<String>,
    /// Accept any server certificate (self-signed test servers only; default false).
    pub danger_accept_invalid_certs: Option<bool>,
}

impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port())
            .field("tls", &self.tls())
            .field("starttls", &self.starttls())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("password_file", &self.password_file)
            .field("mailbox", &self.mailbox())
            .field("poll_seconds", &self.poll_seconds)
            .field("reporter", &self.reporter)
            .field("processed_mailbox", &self.processed_mailbox)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs(),
            )
            .finish()
    }
}

impl ImapConfig {
    pub fn tls(&self) -> bool {
        self.tls.unwrap_or(true)
    }

    pub fn starttls(&self) -> bool {
        self.starttls.unwrap_or(false)
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls() { 993 } else { 143 })
    }

    pub fn mailbox(&self) -> &str {
        self.mailbox.as_deref().unwrap_or("INBOX")
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_seconds.unwrap_or(60).max(1))
    }

    pub fn danger_accept_invalid_certs(&self) -> bool {
        self.danger_accept_invalid_certs.unwrap_or(false)
    }

    /// The password, from `password` or `password_file`.
    pub fn password(&self) -> anyhow::Result<String> {
        match (&self.password, &self.password_file) {
            (Some(p), None) => Ok(p.clone()),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("[imap] password_file {}", f.display()))?;
                let p = text.trim_end_matches(['\r', '\n']);
                if p.is_empty() {
                    bail!("[imap] password_file {} is empty", f.display());
                }
                Ok(p.to_string())
            }
            (Some(_), Some(_)) => bail!("[imap] set password or password_file, not both"),
            (None, None) => bail!("[imap] needs password or password_file"),
        }
    }

    /// Checks the settings (not the server): called at start-up.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.host.trim().is_empty() {
            bail!("[imap] host is empty");
        }
        if self.username.is_empty() {
            bail!("[imap] username is empty");
        }
        if self.reporter.trim().is_empty() {
            bail!("[imap] reporter is empty: name the Firebreak user reports are attributed to");
        }
        if self.tls() && self.starttls() {
            bail!("[imap] tls and starttls exclude each other: set tls = false to use starttls");
        }
        if self.poll_seconds == Some(0) {
            bail!("[imap] poll_seconds must be at least 1");
        }
        for (name, v) in [
            ("mailbox", Some(self.mailbox())),
            ("processed_mailbox", self.processed_mailbox.as_deref()),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.contains(['\r', '\n', '\0']))
            {
                bail!("[imap] {name} {v:?} is not a mailbox name");
            }
        }
        if self.processed_mailbox.as_deref() == Some(self.mailbox()) {
            bail!("[imap] processed_mailbox must differ from mailbox");
        }
        self.password().map(|_| ())
    }
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Messages waiting in the mailbox.
    pub found: usize,
    /// Captured as reported events (new ones or repeats of one, by `Message-ID`).
    pub events: usize,
    /// Captured as communications on a ticket.
    pub communications: usize,
    /// Not mail, or refused: flagged `$FirebreakRejected` and marked `\Seen`.
    pub rejected: usize,
    /// Larger than `MAX_MESSAGE_BYTES`: flagged and marked `\Seen`, not fetched.
    pub too_large: usize,
    /// Left unread for a later poll (the database unavailable, or an unexpected error).
    pub deferred: usize,
    /// Waiting beyond this poll's limit: taken by the next poll.
    pub remaining: usize,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}
type Stream = Box<dyn Io>;

/// An IMAP command, bounded in time, its error naming it.
async fn timed<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = async_imap::error::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.with_context(|| format!("IMAP {what}")),
        Err(_) => Err(anyhow!(
            "IMAP {what}: no answer within {} s",
            limit.as_secs()
        )),
    }
}

/// A verifier that accepts any certificate (but still checks the handshake's signatures):
/// `danger_accept_invalid_certs`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS over `tcp` (rustls with ring; the platform's trusted roots).
async fn tls_wrap(
    cfg: &ImapConfig,
    tcp: TcpStream,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
        if cfg.danger_accept_invalid_certs() {
            Arc::new(AcceptAnyCertificate(provider.clone()))
        } else {
            Arc::new(
                rustls_platform_verifier::Verifier::new(provider.clone())
                    .context("loading the platform's trusted certificates")?,
            )
        };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(cfg.host.clone())
        .map_err(|e| anyhow!("[imap] host {:?} is not a server name: {e}", cfg.host))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
        Ok(r) => r.with_context(|| format!("TLS with IMAP server {}", cfg.host)),
        Err(_) => bail!("TLS with IMAP server {}: handshake timed out", cfg.host),
    }
}

/// Reads the server's greeting; a `BYE` (or nothing) is an error.
async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug>(
    client: &mut Client<T>,
    host: &str,
) -> anyhow::Result<()> {
    use async_imap::imap_proto::{Response, Status};
    let res = match tokio::time::timeout(COMMAND_TIMEOUT, client.read_response()).await {
        Ok(r) => r.with_context(|| format!("reading the greeting of IMAP server {host}"))?,
        Err(_) => bail!("IMAP server {host} sent no greeting"),
    };
    let Some(res) = res else {
        bail!("IMAP server {host} closed the connection before its greeting");
    };
    match res.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        Response::Data {
            status: Status::Bye,
            ..
        } => bail!("IMAP server {host} refused the connection (BYE)"),
        _ => bail!("IMAP server {host} sent an unexpected greeting"),
    }
}

async fn connect(cfg: &ImapConfig) -> anyhow::Result<Client<Stream>> {
    let (host, port) = (cfg.host.as_str(), cfg.port());
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(r) => r.with_context(|| format!("connecting to IMAP server {host}:{port}"))?,
        Err(_) => bail!("connecting to IMAP server {host}:{port}: timed out"),
    };
    if cfg.tls() {
        let tls = tls_wrap(cfg, tcp).await?;
        let mut client = Client::new(Box::new(tls) as Stream);
        greeting(&mut client, host).await?;
        Ok(client)
    } else if cfg.starttls() {
        let mut client = Client::new(tcp);
        greeting(&mut client, host).await?;
        timed(
            "STARTTLS",
            COMMAND_TIMEOUT,
            client.run_command_and_check_ok("STARTTLS", None),
        )
        .await?;
        let tls = tls_wrap(cfg, client.into_inner()).await?;
        Ok(Client::new(Box::new(tls) as Stream))
    } else {
        let mut client = Client::new(Box::new(tcp) as Stream);
        greeting(&mut client, host).await?;
        Ok(client)
    }
}

/// What to do with a message `capture_email` did not take.
enum Failure {
    /// It will never be taken: flag it and mark it read.
    Reject(String),
    /// Leave it unread, go on with the next one.
    Defer(String),
    /// Leave it (and the rest) unread until the next poll: the database is unavailable.
    StopPoll(String),
    /// Leave it unread; the poll fails (the reporter may not report).
    Fail(anyhow::Error),
}

fn classify(e: AppError) -> Failure {
    match e {
        AppError::Validation(fields) => Failure::Reject(
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        AppError::TooLarge(m) => Failure::Reject(m),
        AppError::Unavailable(_) | AppError::StorageFull => Failure::StopPoll(e.to_string()),
        AppError::Forbidden(_) | AppError::Unauthenticated => Failure::Fail(anyhow!(
            "[imap] reporter may not report events: {e} (give the user the reporter or helpdesk role)"
        )),
        other => Failure::Defer(format!("{other:#}")),
    }
}

struct Poll<'a> {
    session: &'a mut Session<Stream>,
    cfg: &'a ImapConfig,
    /// The server stores our keyword.
    keywords: bool,
    /// The server has MOVE / UIDPLUS.
    can_move: bool,
    uidplus: bool,
}

impl Poll<'_> {
    async fn store(&mut self, uid: u32, flags: &str) -> anyhow::Result<()> {
        let what = format!("UID STORE {uid}");
        let session = &mut *self.session;
        timed(&what, COMMAND_TIMEOUT, async {
            session
                .uid_store(uid.to_string(), format!("+FLAGS.SILENT ({flags})"))
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .map(|_| ())
    }

    /// `\Seen` and `$FirebreakRejected`: it is not fetched again.
    async fn reject(&mut self, uid: u32) -> anyhow::Result<()> {
        if self.keywords {
            self.store(uid, &format!("\\Seen {REJECTED_KEYWORD}")).await
        } else {
            self.store(uid, "\\Seen").await
        }
    }

    /// Marks a captured message processed: read, and moved when `processed_mailbox` is set.
    async fn done(&mut self, uid: u32) -> anyhow::Result<()> {
        self.store(uid, "\\Seen").await?;
        let Some(target) = self.cfg.processed_mailbox.as_deref() else {
            return Ok(());
        };
        let set = uid.to_string();
        if self.can_move {
            return timed(
                &format!("UID MOVE to {target:?}"),
                COMMAND_TIMEOUT,
                self.session.uid_mv(&set, target),
            )
            .await;
        }
        timed(
            &format!("UID COPY to {target:?}"),
            COMMAND_TIMEOUT,
            self.session.uid_copy(&set, target),
        )
        .await?;
        self.store(uid, "\\Deleted").await?;
        if self.uidplus {
            let session = &mut *self.session;
            timed("UID EXPUNGE", COMMAND_TIMEOUT, async {
                session
                    .uid_expunge(&set)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        }
        Ok(())
    }

    async fn fetch(
        &mut self,
        set: &str,
        query: &str,
        limit: Duration,
    ) -> anyhow::Result<Vec<Fetch>> {
        let session = &mut *self.session;
        timed(&format!("UID FETCH {query}"), limit, async {
            session.uid_fetch(set, query).await?.try_collect().await
        })
        .await
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One poll: connects, logs in, captures every new message, logs out.
pub async fn poll_once(app: &App, cfg: &ImapConfig) -> anyhow::Result<PollStats> {
    // no point in reading mail the database cannot take
    let principal = app.principal_for_user(&cfg.reporter).await.map_err(|e| {
        anyhow!(
            "[imap] reporter {:?}: {}",
            cfg.reporter,
            match e {
                AppError::Unauthenticated => "no such active user".to_string(),
                other => other.to_string(),
            }
        )
    })?;
    let password = cfg.password()?;
    let client = connect(cfg).await?;
    let mut session =
        match tokio::time::timeout(COMMAND_TIMEOUT, client.login(&cfg.username, &password)).await {
            Ok(Ok(s)) => s,
            Ok(Err((e, _))) => bail!(
                "IMAP login as {:?} at {} failed: {e}",
                cfg.username,
                cfg.host
            ),
            Err(_) => bail!("IMAP login at {}: no answer", cfg.host),
        };
    drop(password);
    let result = poll_session(app, cfg, &principal, &mut session).await;
    if let Err(e) = timed("LOGOUT", COMMAND_TIMEOUT, session.logout()).await {
        tracing::debug!(error = %format!("{e:#}"), "IMAP logout");
    }
    result
}

async fn poll_session(
    app: &App,
    cfg: &ImapConfig,
    principal: &firebreak_app::Principal,
    session: &mut Session<Stream>,
) -> anyhow::Result<PollStats> {
    let mailbox = timed(
        &format!("SELECT {:?}", cfg.mailbox()),
        COMMAND_TIMEOUT,
        session.select(cfg.mailbox()),
    )
    .await?;
    let keywords = mailbox.permanent_flags.iter().any(|f| match f {
        Flag::MayCreate => true,
        Flag::Custom(c) => c == REJECTED_KEYWORD,
        _ => false,
    });
    let (mut can_move, mut uidplus) = (false, false);
    if let Some(target) = cfg.processed_mailbox.as_deref() {
        let caps = timed("CAPABILITY", COMMAND_TIMEOUT, session.capabilities()).await?;
        can_move = caps.has_str("MOVE");
        uidplus = caps.has_str("UIDPLUS");
        // an existing mailbox answers NO
        if let Ok(Ok(())) = tokio::time::timeout(COMMAND_TIMEOUT, session.create(target)).await {
            tracing::info!(
                mailbox = target,
                "created the IMAP mailbox for processed reports"
            );
        }
    }
    let query = match (&cfg.processed_mailbox, keywords) {
        (Some(_), true) => format!("UNDELETED UNKEYWORD {REJECTED_KEYWORD}"),
        _ => "UNSEEN UNDELETED".to_string(),
    };
    let mut uids: Vec<u32> = timed(
        &format!("UID SEARCH {query}"),
        COMMAND_TIMEOUT,
        session.uid_search(&query),
    )
    .await?
    .into_iter()
    .collect();
    uids.sort_unstable();
    let mut stats = PollStats {
        found: uids.len(),
        ..Default::default()
    };
    if uids.is_empty() {
        return Ok(stats);
    }
    if uids.len() > MAX_PER_POLL {
        stats.remaining = uids.len() - MAX_PER_POLL;
        uids.truncate(MAX_PER_POLL);
    }
    let mut poll = Poll {
        session,
        cfg,
        keywords,
        can_move,
        uidplus,
    };
    let sizes: std::collections::HashMap<u32, u32> = poll
        .fetch(&uid_set(&uids), "(UID RFC822.SIZE)", COMMAND_TIMEOUT)
        .await?
        .iter()
        .filter_map(|f| Some((f.uid?, f.size?)))
        .collect();
    for (i, &uid) in uids.iter().enumerate() {
        let Some(&size) = sizes.get(&uid) else {
            // expunged meanwhile by another client
            continue;
        };
        if u64::from(size) > MAX_MESSAGE_BYTES {
            tracing::warn!(
                uid,
                size,
                limit = MAX_MESSAGE_BYTES,
                "report mailbox: message too large, flagged {REJECTED_KEYWORD} and not taken"
            );
            poll.reject(uid).await?;
            stats.too_large += 1;
            metrics::counter!("firebreak_imap_messages_total", "outcome" => "too_large")
                .increment(1);
            continue;
        }
        let fetched = poll
            .fetch(&uid.to_string(), "(UID BODY.PEEK[])", FETCH_TIMEOUT)
            .await?;
        let Some(raw) = fetched
            .iter()
            .filter(|f| f.uid == Some(uid))
            .find_map(|f| f.body().map(<[u8]>::to_vec))
        else {
            continue;
        };
        drop(fetched);
        if raw.len() as u64 > MAX_MESSAGE_BYTES {
            tracing::warn!(uid, size = raw.len(), "report mailbox: message too large");
            poll.reject(uid).await?;
            stats.too_large += 1;
            metrics::counter!("firebreak_imap_messages_total", "outcome" => "too_large")
                .increment(1);
            continue;
        }
        let failure = match app.capture_email(principal, &raw, true).await {
            Ok(MailOutcome::Event { summary })
                if !summary.errors.is_empty()
                    && summary.created + summary.duplicates + summary.suppressed == 0 =>
            {
                Failure::Reject(
                    summary
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            }
            Ok(out) => {
                poll.done(uid).await.context(
                    "the message was captured but could not be marked processed: it may be taken again",
                )?;
                let outcome = match out {
                    MailOutcome::Event { .. } => {
                        stats.events += 1;
                        "event"
                    }
                    MailOutcome::Communication { ticket, .. } => {
                        tracing::info!(uid, %ticket, "report mailbox: mail captured on a ticket");
                        stats.communications += 1;
                        "communication"
                    }
                };
                metrics::counter!("firebreak_imap_messages_total", "outcome" => outcome)
                    .increment(1);
                continue;
            }
            Err(e) => classify(e),
        };
        match failure {
            Failure::Reject(why) => {
                tracing::warn!(uid, reason = %why, "report mailbox: message refused, flagged {REJECTED_KEYWORD} and marked read");
                poll.reject(uid).await?;
                stats.rejected += 1;
                metrics::counter!("firebreak_imap_messages_total", "outcome" => "rejected")
                    .increment(1);
            }
            Failure::Defer(why) => {
                tracing::error!(uid, error = %why, "report mailbox: message not captured; left unread for the next poll");
                stats.deferred += 1;
                metrics::counter!("firebreak_imap_messages_total", "outcome" => "deferred")
                    .increment(1);
            }
            Failure::StopPoll(why) => {
                let left = uids.len() - i;
                tracing::warn!(uid, error = %why, left, "report mailbox: the database cannot take mail now; messages left unread for the next poll");
                stats.deferred += left;
                metrics::counter!("firebreak_imap_messages_total", "outcome" => "deferred")
                    .increment(left as u64);
                break;
            }
            Failure::Fail(e) => return Err(e),
        }
    }
    Ok(stats)
}

/// Polls the mailbox every `poll_seconds` until the task is aborted; failures are logged and
/// back off (doubling, up to 15 minutes or `poll_seconds` when longer).
pub fn spawn(app: App, cfg: ImapConfig) -> tokio::task::JoinHandle<()> {
    crate::tls::install_crypto_provider();
    tokio::spawn(async move {
        let every = cfg.poll_interval();
        let ceiling = MAX_BACKOFF.max(every);
        let mut failures: u32 = 0;
        loop {
            let wait = match poll_once(&app, &cfg).await {
                Ok(s) => {
                    if s.found > 0 {
                        tracing::info!(
                            mailbox = cfg.mailbox(),
                            found = s.found,
                            events = s.events,
                            communications = s.communications,
                            rejected = s.rejected + s.too_large,
                            deferred = s.deferred,
                            "report mailbox polled"
                        );
                    }
                    if s.deferred > 0 {
                        metrics::counter!("firebreak_imap_errors_total").increment(1);
                        failures = failures.saturating_add(1);
                        backoff(every, failures, ceiling)
                    } else {
                        failures = 0;
                        if s.remaining > 0 {
                            Duration::ZERO
                        } else {
                            every
                        }
                    }
                }
                Err(e) => {
                    metrics::counter!("firebreak_imap_errors_total").increment(1);
                    failures = failures.saturating_add(1);
                    let wait = backoff(every, failures, ceiling);
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        host = %cfg.host,
                        retry_in_s = wait.as_secs(),
                        "report mailbox poll failed"
                    );
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

fn backoff(every: Duration, failures: u32, ceiling: Duration) -> Duration {
    every
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(ceiling)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> ImapConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_debug_hides_the_password() {
        let c = cfg(serde_json::json!({
            "host": "imap.example.org", "username": "security", "password": "hunter2",
            "reporter": "mailbox"
        }));
        assert!(c.tls());
        assert_eq!(c.port(), 993);
        assert_eq!(c.mailbox(), "INBOX");
        assert_eq!(c.poll_interval(), Duration::from_secs(60));
        c.check().unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("[redacted]"));
        let plain = cfg(serde_json::json!({
            "host": "h", "tls": false, "username": "u", "password": "p", "reporter": "r"
        }));
        assert_eq!(plain.port(), 143);
    }

    #[test]
    fn check_refuses_contradictions() {
        let base = serde_json::json!({"host": "h", "username": "u", "reporter": "r"});
        let mut none = base.clone();
        none["tls"] = false.into();
        assert!(cfg(none).check().is_err(), "no password");
        let mut both = base.clone();
        both["password"] = "p".into();
        both["password_file"] = "/nonexistent".into();
        assert!(cfg(both).check().is_err());
        let mut starttls = base.clone();
        starttls["password"] = "p".into();
        starttls["starttls"] = true.into();
        assert!(cfg(starttls).check().is_err(), "tls and starttls");
        let mut same = base.clone();
        same["password"] = "p".into();
        same["processed_mailbox"] = "INBOX".into();
        assert!(cfg(same).check().is_err());
        let mut unknown = base;
        unknown["pasword"] = "p".into();
        assert!(serde_json::from_value::<ImapConfig>(unknown).is_err());
    }

    #[test]
    fn password_file_drops_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\n").unwrap();
        let c = cfg(serde_json::json!({
            "host": "h", "username": "u", "reporter": "r", "password_file": f
        }));
        assert_eq!(c.password().unwrap(), "s3cret");
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(60), 1, s(900)), s(60));
        assert_eq!(backoff(s(60), 2, s(900)), s(120));
        assert_eq!(backoff(s(60), 9, s(900)), s(900));
        assert_eq!(backoff(s(60), u32::MAX, s(900)), s(900));
    }
}
