//! The `firebreak` binary: command-line parsing, configuration, wiring of store, app and server.
#![forbid(unsafe_code)]

mod backup;
mod client;
mod config;
mod ingest;
mod ticket;

use anyhow::{Context, bail};

/// mimalloc in place of glibc's malloc: intake parses on one thread and frees on others, and
/// glibc spent most of the parsing thread's time in `_int_malloc`/`malloc_consolidate` and a
/// third of the workers' in `_int_free`/`unlink_chunk` (`perf`, a million EVE lines).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use config::{Settings, StoreArgs, redact_url};
use firebreak_app::{App, AppConfig, AppError, CLI_ACTOR, NewUser, TokenSpec};
use firebreak_domain::role::{Role, Scope};
use firebreak_store::{AuditSigner, DynStore, HeadFile};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "firebreak",
    version,
    about = "Security incident management and response"
)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum IndicatorsCommand {
    /// Import a feed file into the database (CSV is streamed in chunks: any size).
    Import {
        file: PathBuf,
        /// stix, misp or csv.
        #[arg(long)]
        format: String,
        /// The source name for items that name none.
        #[arg(long, default_value = "manual")]
        source: String,
        /// Replace the source's indicators instead of adding to them.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Subcommand)]
enum PlaybookCommand {
    /// Store playbooks from YAML files (a file or a directory of *.yaml/*.yml) in the database:
    /// new ones, or new versions of stored ones with the same name. Every invalid file is
    /// reported with its errors and nothing of it is stored; exit 1 if any was invalid.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate a playbook and say what it would do with a sample event (no database, no
    /// network): exit 0 when valid, 1 when invalid, 2 on a usage error.
    Test {
        /// The playbook's YAML file.
        file: PathBuf,
        /// An event as `GET /api/v1/events/{id}` returns it, or a raw payload with `--format`.
        #[arg(long)]
        event: PathBuf,
        /// The raw payload's format: eve, wazuh, ndjson, cef, leef, syslog.
        #[arg(long)]
        format: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (API, web UI, intake, workers).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "FIREBREAK_LISTEN")]
        listen: Option<String>,
        /// Allow plain HTTP on a non-loopback address because a TLS proxy terminates in front.
        #[arg(long, env = "FIREBREAK_BEHIND_TLS_PROXY")]
        behind_tls_proxy: bool,
        /// Log as JSON lines instead of text.
        #[arg(long, env = "FIREBREAK_LOG_JSON")]
        log_json: bool,
        /// Terminate TLS here: PEM certificate chain (with --tls-key).
        #[arg(long, env = "FIREBREAK_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, env = "FIREBREAK_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Syslog (UDP and TCP) address, `:0` for a free port, or `off`.
        #[arg(long, env = "FIREBREAK_SYSLOG_LISTEN")]
        syslog_listen: Option<String>,
        #[command(flatten)]
        http: config::HttpArgs,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The response plan (YAML).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Ingest events from a file or standard input (eve, wazuh, ndjson, cef, leef, syslog, eml):
    /// into the local database, or with --url/--token (FIREBREAK_URL/FIREBREAK_TOKEN) to a
    /// server's intake API in chunks.
    Ingest(ingest::IngestArgs),
    /// Work tickets on a server (--url/--token or FIREBREAK_URL/FIREBREAK_TOKEN): list, show,
    /// create, update, the incident log, communications and the workflow's transitions.
    Ticket(ticket::TicketArgs),
    /// The local indicator store.
    #[command(subcommand)]
    Indicators(IndicatorsCommand),
    /// Playbooks: check what one would do, touching nothing.
    #[command(subcommand)]
    Playbook(PlaybookCommand),
    /// Write an online, consistent backup of the database and document contents to one file
    /// (`backup --output PATH`), or check one (`backup verify PATH`).
    Backup(BackupArgs),
    /// Restore a backup file into the configured database, which must be empty (a new data
    /// dir, or a new PostgreSQL database); the result is verified.
    Restore {
        /// The backup file.
        path: PathBuf,
    },
    /// Copy everything into another empty database (SQLite to PostgreSQL, or back), keeping
    /// ids, ticket numbers and the audit chain; the copy is verified.
    MigrateStore {
        /// The target: postgres://... or sqlite://...
        #[arg(long)]
        to: String,
        /// Keep document contents as files in this directory (shared by every node) instead of
        /// in the target database.
        #[arg(long)]
        to_blob_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The backup file to write (must not exist).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Leave the audit and document keys out (keep them elsewhere: without them the backup's
    /// documents cannot be opened and its audit chain cannot be continued).
    #[arg(long)]
    without_keys: bool,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Restore the file into a scratch database and check it: the file's checksum, the audit
    /// chain and its signatures, foreign keys and counters, every document's content. Exit 0
    /// when intact, 1 naming what is wrong.
    Verify {
        path: PathBuf,
        /// Where the scratch database goes (default: the system's temporary directory).
        #[arg(long)]
        scratch_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (prints a random password unless --password-stdin).
    Add {
        name: String,
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, default_value_t = 0)]
        seniority: i32,
        #[arg(long)]
        email: Option<String>,
        /// Grant a clearance (`restricted`: may read restricted tickets).
        #[arg(long = "clearance")]
        clearances: Vec<String>,
        /// Create the user off duty.
        #[arg(long)]
        off_duty: bool,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Disable a user; their sessions and tokens stop working at once.
    Disable { name: String },
    /// Set a user's password (prints a random one unless --password-stdin); ends their sessions.
    SetPassword {
        name: String,
        /// Read the password from one line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user's second factor (TOTP and recovery codes), e.g. after a lost phone.
    ResetMfa { name: String },
    /// Replace a user's roles.
    SetRole {
        name: String,
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token; prints only the token.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: Option<String>,
        /// Limit the token (`read`, `write`, `intake`, `admin`); default: all the user's rights.
        #[arg(long = "scope", value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Lifetime, e.g. `90d`, `12h`, `30m`; default: no expiry.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<time::Duration>,
    },
    /// List a user's tokens (never the secrets).
    List {
        #[arg(long)]
        user: String,
    },
    /// Revoke one token by id; it fails from the next request on.
    Revoke {
        #[arg(long)]
        user: String,
        id: String,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Install a plan from a YAML file (a new version; every problem is listed by path).
    Import { file: PathBuf },
    /// Write the plan in force to a YAML file (`-` for standard output).
    Export { file: PathBuf },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain, its signed checkpoints and the head kept outside the database.
    Verify,
}

/// A password from one line of standard input (`--password-stdin`; the newline is not part of
/// it), or a random one to show once.
fn password_input(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if !from_stdin {
        return Ok((firebreak_app::generate_password(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let pw = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line)
        .to_string();
    Ok((pw, false))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!(
            "unknown role {s:?}; expected one of {}",
            Role::ALL.map(|r| r.as_str()).join(", ")
        )
    })
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s)
        .ok_or_else(|| format!("unknown scope {s:?}; expected one of read, write, intake, admin"))
}

fn parse_duration(s: &str) -> Result<time::Duration, String> {
    let bad = || format!("{s:?} is not a duration like 90d, 12h, 30m or 45s (at most 3650d)");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(secs) if secs > 0 && secs <= 3650 * 86_400 => Ok(time::Duration::seconds(secs)),
        _ => Err(bad()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    firebreak_server::tls::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

struct Opened {
    store: DynStore,
    signer: Arc<AuditSigner>,
    head: HeadFile,
    settings: Settings,
}

async fn open(settings: Settings, create_key: bool) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    if create_key && settings.is_postgres() && !settings.audit_key_file.exists() {
        tracing::warn!(path = %settings.audit_key_file.display(), "generating an audit key; every node on this PostgreSQL must share it (FIREBREAK_AUDIT_KEY_FILE)");
    }
    let key_existed = settings.audit_key_file.exists();
    let key = AuditSigner::load_key(&settings.audit_key_file, create_key)?;
    let our_key_id = firebreak_domain::audit::key_id(&key.verifying_key());
    let head = HeadFile::new(settings.data_dir.join("audit-head"));
    let signer = Arc::new(AuditSigner::new(key, Some(head.clone())));
    let store: DynStore = if settings.is_postgres() {
        Arc::new(
            firebreak_store_postgres::PgStore::open_url(
                &settings.database_url,
                signer.clone(),
                db_write_timeout()?,
            )
            .await
            .with_context(|| format!("opening {}", redact_url(&settings.database_url)))?,
        )
    } else {
        Arc::new(
            firebreak_store_sqlite::SqliteStore::open(&settings.database_url, signer.clone())
                .await
                .with_context(|| format!("opening {}", settings.database_url))?,
        )
    };
    // A command given the wrong key (another data dir, a node without the shared key file) must
    // not sign new entries with it: the chain would stop verifying. `audit verify` reports it.
    if create_key
        && let Some(cp) = store.last_checkpoint().await?
        && cp.key_id != our_key_id
    {
        store.close().await;
        if !key_existed {
            let _ = std::fs::remove_file(&settings.audit_key_file);
        }
        bail!(
            "the audit key {} (key id {our_key_id}) did not sign this database's audit log (key id {}): set FIREBREAK_AUDIT_KEY_FILE to the key the other nodes use",
            settings.audit_key_file.display(),
            cp.key_id
        );
    }
    Ok(Opened {
        store,
        signer,
        head,
        settings,
    })
}

/// The application for administration commands (no document store).
fn app_for(o: &Opened) -> App {
    App::new(
        o.store.clone(),
        AppConfig {
            ticket_prefix: o.settings.ticket_prefix.clone(),
            auth: o.settings.auth.clone(),
            max_document_bytes: o.settings.max_document_bytes,
            job_lease: std::env::var("FIREBREAK_JOB_LEASE_SECS")
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|s| (1..=86_400).contains(s))
                .map(time::Duration::seconds)
                .unwrap_or(firebreak_app::automation::LEASE),
            match_indicators: std::env::var("FIREBREAK_INDICATOR_MATCHING")
                .map(|v| v != "off")
                .unwrap_or(true),
        },
    )
}

/// The application for `serve`: with the document store.
fn server_app(o: &Opened) -> anyhow::Result<App> {
    let s = &o.settings;
    if s.is_postgres() && !s.document_key_file.exists() {
        tracing::warn!(path = %s.document_key_file.display(), "generating a document key; every node on this PostgreSQL must share it (FIREBREAK_DOCUMENT_KEY_FILE)");
    }
    let key = firebreak_app::documents::load_or_create_key(&s.document_key_file)?;
    let blobs = firebreak_app::documents::BlobStore::new(key, s.blob_dir.clone())
        .with_context(|| format!("opening the blob directory {:?}", s.blob_dir))?;
    let outbound = firebreak_server::outbound::GuardedClient::new(&s.outbound)
        .context("[outbound] in firebreak.toml")?;
    let mut app = app_for(o)
        .with_blobs(blobs)
        .with_secret_key(&key)
        .with_http(Arc::new(outbound));
    if let Some(smtp) = &s.smtp {
        let mailer =
            firebreak_server::mail::SmtpMailer::new(smtp).context("[smtp] in firebreak.toml")?;
        app = app.with_mailer(Arc::new(mailer));
    }
    if let Some(w) = &s.webhooks {
        let sender = firebreak_server::webhook::WebhookSender::new(w)
            .context("[webhooks] in firebreak.toml")?;
        app = app.with_webhooks(Arc::new(sender));
    }
    Ok(app)
}

/// Settings for a command that works on the database (no listener).
fn admin_settings(store: &StoreArgs) -> anyhow::Result<Settings> {
    Settings::resolve(
        store,
        None,
        false,
        (None, None),
        None,
        &config::HttpArgs::default(),
    )
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            behind_tls_proxy,
            log_json,
            tls_cert,
            tls_key,
            syslog_listen,
            http,
        } => {
            init_tracing(log_json);
            let settings = Settings::resolve(
                &cli.store,
                listen.as_deref(),
                behind_tls_proxy,
                (tls_cert, tls_key),
                syslog_listen.as_deref(),
                &http,
            )?;
            serve(settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Playbook(PlaybookCommand::Test {
            file,
            event,
            format,
        }) => playbook_test(&file, &event, format.as_deref()),
        Command::Backup(BackupArgs {
            command: Some(BackupCommand::Verify { path, scratch_dir }),
            ..
        }) => {
            init_tracing(false);
            backup::verify(&path, scratch_dir).await
        }
        Command::Backup(BackupArgs {
            command: None,
            output,
            without_keys,
        }) => {
            init_tracing(false);
            let Some(output) = output else {
                bail!("backup needs --output PATH (or: backup verify PATH)");
            };
            let settings = admin_settings(&cli.store)?;
            backup::backup(settings, &output, !without_keys).await
        }
        Command::Restore { path } => {
            init_tracing(false);
            let settings = admin_settings(&cli.store)?;
            backup::restore(settings, &path).await
        }
        Command::MigrateStore { to, to_blob_dir } => {
            init_tracing(false);
            let settings = admin_settings(&cli.store)?;
            backup::migrate_store(settings, &to, to_blob_dir).await
        }
        // client mode: nothing local is opened (no data dir, no database)
        Command::Ingest(args) if args.url.is_some() => {
            init_tracing(false);
            ingest::client::run(args).await
        }
        Command::Ticket(args) => {
            init_tracing(false);
            ticket::run(args).await
        }
        command => {
            init_tracing(false);
            let settings = admin_settings(&cli.store)?;
            let o = open(settings, !matches!(command, Command::Audit(_))).await?;
            let res = admin(&o, command).await;
            o.store.close().await;
            res
        }
    }
}

/// `firebreak indicators import`: CSV in chunks of 200,000 rows (each with the header), other
/// formats whole.
async fn import_indicators(
    app: &App,
    file: &Path,
    format: &str,
    source: &str,
    replace: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::BufRead;
    let started = std::time::Instant::now();
    #[derive(Default)]
    struct Tally {
        imported: usize,
        skipped: usize,
        errors: usize,
    }
    impl Tally {
        fn add(&mut self, r: &firebreak_app::intel::ImportReport, offset: usize) {
            self.imported += r.imported;
            self.skipped += r.skipped;
            for e in &r.errors {
                // positions are per chunk: shift line numbers back to the file's
                let pos = match e
                    .position
                    .strip_prefix("line ")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) => format!("line {}", n + offset),
                    None => e.position.clone(),
                };
                eprintln!("{pos}: {}", e.message);
            }
            self.errors += r.errors.len();
        }
    }
    let mut tally = Tally::default();
    if format == "csv" {
        let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, f).lines();
        let Some(header) = lines.next().transpose()? else {
            eprintln!("{}: empty file", file.display());
            return Ok(ExitCode::from(1));
        };
        let mut chunk = String::with_capacity(16 << 20);
        let mut rows = 0usize;
        let mut offset = 0usize;
        let mut first = true;
        loop {
            let line = lines.next().transpose()?;
            if let Some(l) = &line {
                if chunk.is_empty() {
                    chunk.push_str(&header);
                    chunk.push('\n');
                }
                chunk.push_str(l);
                chunk.push('\n');
                rows += 1;
            }
            if rows == 200_000 || (line.is_none() && rows > 0) {
                let r = app
                    .import_indicators_as_operator(
                        "csv",
                        chunk.as_bytes(),
                        source,
                        replace && first,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                tally.add(&r, offset);
                first = false;
                offset += rows;
                rows = 0;
                chunk.clear();
                eprint!("\r{} imported", tally.imported);
            }
            if line.is_none() {
                break;
            }
        }
        eprintln!();
    } else {
        let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
        let r = app
            .import_indicators_as_operator(format, &bytes, source, replace)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tally.add(&r, 0);
    }
    println!(
        "imported {} indicator(s), skipped {}, {} error(s) in {:.1} s",
        tally.imported,
        tally.skipped,
        tally.errors,
        started.elapsed().as_secs_f64()
    );
    Ok(if tally.errors > 0 && tally.imported == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `firebreak playbook test`.
fn playbook_test(file: &Path, event: &Path, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let yaml = match std::fs::read_to_string(file) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let sample = match std::fs::read_to_string(event) {
        Ok(y) => y,
        Err(e) => {
            eprintln!("--event {}: {e}", event.display());
            return Ok(ExitCode::from(2));
        }
    };
    let pb = match firebreak_app::playbook::parse(&yaml) {
        Ok(pb) => pb,
        Err(errs) => {
            println!(
                "{}: invalid playbook ({} error(s)):",
                file.display(),
                errs.len()
            );
            for e in errs {
                println!("  {}: {}", e.path, e.message);
            }
            return Ok(ExitCode::from(1));
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let event_json = match format {
        Some(f) => {
            let lf = match firebreak_app::intake::LineFormat::from_name(f, None, None) {
                Ok(lf) => lf,
                Err(m) => {
                    eprintln!("--format: {m}");
                    return Ok(ExitCode::from(2));
                }
            };
            let line = sample.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let events = match lf.parse_line(line, now) {
                Ok(ev) => ev,
                Err(e) => {
                    eprintln!("--event {}: not a {f} record: {e}", event.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let Some(ne) = events.into_iter().next() else {
                println!(
                    "{}: valid; nothing would run: the {f} record makes no event",
                    file.display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let (e, _, _) = firebreak_app::intake::to_event(ne, "playbook-test", now);
            serde_json::to_value(&e)?
        }
        None => match serde_json::from_str::<firebreak_domain::event::Event>(&sample) {
            Ok(e) => serde_json::to_value(&e)?,
            Err(err) => {
                eprintln!(
                    "--event {}: not an event as GET /api/v1/events/{{id}} returns it ({err}); give --format for a raw payload",
                    event.display()
                );
                return Ok(ExitCode::from(2));
            }
        },
    };
    let (runs, lines) = firebreak_app::automation::dry_run(&pb, &event_json);
    println!(
        "{}: valid playbook {} (trigger {})",
        file.display(),
        pb.name,
        pb.trigger.on.as_str()
    );
    for l in lines {
        println!("{l}");
    }
    if !runs {
        println!("(nothing would change)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn admin(o: &Opened, command: Command) -> anyhow::Result<ExitCode> {
    let app = app_for(o);
    let mut out = std::io::stdout().lock();
    match command {
        Command::Serve { .. }
        | Command::Playbook(PlaybookCommand::Test { .. })
        | Command::Backup(_)
        | Command::Restore { .. }
        | Command::MigrateStore { .. }
        | Command::Ticket(_) => {
            bail!("not an administration command")
        }
        Command::Ingest(args) => {
            drop(out);
            return ingest::run(&app, args).await;
        }
        Command::Playbook(PlaybookCommand::Import { paths }) => {
            let mut files = Vec::new();
            for p in &paths {
                if p.is_dir() {
                    let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                        .with_context(|| p.display().to_string())?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                        .collect();
                    found.sort();
                    files.extend(found);
                } else {
                    files.push(p.clone());
                }
            }
            let mut bad = 0;
            for f in &files {
                let yaml = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
                match app.import_playbook_as_operator(&yaml).await {
                    Ok((v, created)) => writeln!(
                        out,
                        "{}: {} {} version {}",
                        f.display(),
                        if created { "stored" } else { "updated" },
                        v.name,
                        v.version
                    )?,
                    Err(firebreak_app::AppError::Validation(errs)) => {
                        bad += 1;
                        writeln!(out, "{}: invalid ({} error(s)):", f.display(), errs.len())?;
                        for e in errs {
                            writeln!(out, "  {}: {}", e.field, e.message)?;
                        }
                    }
                    Err(e) => bail!("{}: {e}", f.display()),
                }
            }
            return Ok(if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Indicators(IndicatorsCommand::Import {
            file,
            format,
            source,
            replace,
        }) => {
            drop(out);
            return import_indicators(&app, &file, &format, &source, replace).await;
        }
        Command::Migrate => {
            writeln!(
                out,
                "migrations applied to {}",
                redact_url(&o.settings.database_url)
            )?;
        }
        Command::User(UserCommand::Add {
            name,
            roles,
            title,
            seniority,
            email,
            clearances,
            off_duty,
            password_stdin,
        }) => {
            let (password, show) = password_input(password_stdin)?;
            let u = NewUser {
                username: name,
                roles,
                title,
                seniority,
                on_duty: !off_duty,
                email,
                clearances,
                password: Some(password.clone()),
            };
            let user = app.add_user(CLI_ACTOR, &u).await.map_err(app_err)?;
            writeln!(
                out,
                "created user {} ({})",
                user.username,
                user.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
            if show {
                writeln!(out, "password: {password}")?;
            }
        }
        Command::User(UserCommand::List) => {
            writeln!(
                out,
                "{:<24} {:<36} {:<18} {:>9} {:<8} {:<8}",
                "USERNAME", "ROLES", "TITLE", "SENIORITY", "ON DUTY", "STATE"
            )?;
            for u in app.all_users().await.map_err(app_err)? {
                let roles = u
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                writeln!(
                    out,
                    "{:<24} {:<36} {:<18} {:>9} {:<8} {:<8}",
                    u.username,
                    roles,
                    u.title.unwrap_or_default(),
                    u.seniority,
                    if u.on_duty { "yes" } else { "no" },
                    if u.disabled { "disabled" } else { "active" }
                )?;
            }
        }
        Command::User(UserCommand::Disable { name }) => {
            app.disable_user(CLI_ACTOR, &name).await.map_err(app_err)?;
            writeln!(
                out,
                "disabled user {name}; their sessions and tokens are revoked"
            )?;
        }
        Command::User(UserCommand::SetPassword {
            name,
            password_stdin,
        }) => {
            let (password, show) = password_input(password_stdin)?;
            app.reset_password(CLI_ACTOR, &name, &password)
                .await
                .map_err(app_err)?;
            if show {
                writeln!(out, "{password}")?;
            } else {
                writeln!(out, "password of {name} set; their sessions are ended")?;
            }
        }
        Command::User(UserCommand::ResetMfa { name }) => {
            app.reset_second_factor(CLI_ACTOR, &name)
                .await
                .map_err(app_err)?;
            writeln!(out, "second factor of {name} removed")?;
        }
        Command::User(UserCommand::SetRole { name, roles }) => {
            let u = app
                .set_roles(CLI_ACTOR, &name, &roles)
                .await
                .map_err(app_err)?;
            writeln!(
                out,
                "{}: {}",
                u.username,
                u.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        Command::Token(TokenCommand::Create {
            user,
            name,
            scopes,
            expires,
        }) => {
            let (_, secret) = app
                .create_token(
                    CLI_ACTOR,
                    &TokenSpec {
                        username: user,
                        name,
                        scopes,
                        expires_in: expires,
                    },
                )
                .await
                .map_err(app_err)?;
            writeln!(out, "{secret}")?;
        }
        Command::Token(TokenCommand::List { user }) => {
            writeln!(
                out,
                "{:<36} {:<16} {:<20} {:<20} {:<20} {:<8}",
                "ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "STATE"
            )?;
            let fmt = |t: Option<time::OffsetDateTime>| {
                t.and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| "-".into())
            };
            let now = time::OffsetDateTime::now_utc();
            for t in app.list_tokens(&user).await.map_err(app_err)? {
                let scopes = if t.scopes.is_empty() {
                    "all".to_string()
                } else {
                    t.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                writeln!(
                    out,
                    "{:<36} {:<16} {:<20} {:<20} {:<20} {:<8}",
                    t.id,
                    t.name,
                    scopes,
                    fmt(Some(t.created_at)),
                    fmt(t.expires_at),
                    state
                )?;
            }
        }
        Command::Token(TokenCommand::Revoke { user, id }) => {
            app.revoke_token(CLI_ACTOR, &user, &id)
                .await
                .map_err(app_err)?;
            writeln!(out, "revoked token {id}")?;
        }
        Command::Audit(AuditCommand::Verify) => {
            return verify(o, &mut out).await;
        }
        Command::Plan(PlanCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            firebreak_app::playbook::check_yaml_nesting(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let de = yaml_serde::Deserializer::from_str(&text);
            let plan: firebreak_domain::plan::Plan = serde_path_to_error::deserialize(de)
                .map_err(|e| anyhow::anyhow!("{}: {}: {}", file.display(), e.path(), e.inner()))?;
            let v = app.save_plan(CLI_ACTOR, &plan).await.map_err(app_err)?;
            writeln!(out, "plan {:?} is now version {}", v.plan.name, v.version)?;
        }
        Command::Plan(PlanCommand::Export { file }) => {
            let v = app.current_plan_fresh().await.map_err(app_err)?;
            let yaml = yaml_serde::to_string(&v.plan).context("writing the plan as YAML")?;
            let text = format!(
                "# response plan version {} ({})\n{yaml}",
                v.version,
                v.updated_by.as_deref().unwrap_or("built-in")
            );
            if file.as_os_str() == "-" {
                write!(out, "{text}")?;
            } else {
                std::fs::write(&file, text)
                    .with_context(|| format!("writing {}", file.display()))?;
                writeln!(
                    out,
                    "wrote plan version {} to {}",
                    v.version,
                    file.display()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(o: &Opened, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match firebreak_app::verify::verify_audit(&o.store, o.signer.verifying_key(), &o.head).await {
        Ok(r) => {
            writeln!(
                out,
                "audit chain intact: {} entries, {} signed checkpoints, last entry {} ({})",
                r.entries, r.checkpoints, r.last_seq, r.last_hash
            )?;
            match r.head_file_seq {
                Some(s) => writeln!(out, "head outside the database: entry {s} (matches)")?,
                None if r.entries > 0 => {
                    writeln!(
                        out,
                        "AUDIT CHAIN BROKEN: the head file {} is missing, so removal of the newest entries cannot be ruled out",
                        o.head.path().display()
                    )?;
                    return Ok(ExitCode::from(1));
                }
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(firebreak_app::verify::VerifyError::Broken(b)) => {
            writeln!(out, "AUDIT CHAIN BROKEN at entry {}: {}", b.seq, b.reason)?;
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

fn app_err(e: AppError) -> anyhow::Error {
    match e {
        AppError::Validation(fields) => {
            anyhow::anyhow!(
                "{}",
                fields
                    .iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
        other => anyhow::anyhow!("{other}"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    if !settings.listen.ip().is_loopback() && !settings.behind_tls_proxy && settings.tls.is_none() {
        bail!(
            "refusing to serve plain HTTP on the non-loopback address {}: use --tls-cert/--tls-key, or put a TLS proxy in front and pass --behind-tls-proxy",
            settings.listen
        );
    }
    tracing::info!(settings = ?settings, "starting firebreak {}", env!("CARGO_PKG_VERSION"));
    // a bad certificate stops start-up before anything else happens
    let tls = match &settings.tls {
        Some(t) => Some(firebreak_server::tls::server_config(&t.cert, &t.key)?),
        None => None,
    };
    firebreak_server::metrics::install();
    let o = open(settings, true).await?;
    let app = server_app(&o)?;
    if let Some(password) = app.bootstrap_admin().await.map_err(app_err)? {
        announce_admin(&o.settings.data_dir, &password)?;
    }
    let listener = tokio::net::TcpListener::bind(o.settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", o.settings.listen))?;
    let addr = listener.local_addr()?;
    // a listener that cannot bind stops start-up, naming the address
    let syslog = match o.settings.intake.syslog_listen {
        Some(a) => Some(firebreak_server::syslog::bind(a).await?),
        None => None,
    };
    let mut intake = firebreak_server::intake::IntakeSettings::new(
        o.settings.intake.sources.clone(),
        o.settings.intake.concurrency,
    );
    intake.max_body_bytes = o.settings.intake.max_body_bytes;
    intake.hec_query_token = o.settings.intake.hec_query_token;
    intake.ticket_prefix = o.settings.ticket_prefix.clone();
    let web = firebreak_server::web::WebConfig {
        public_origin: o.settings.public_url.clone(),
        secure_transport: tls.is_some() || o.settings.behind_tls_proxy,
        trusted_proxies: o.settings.trusted_proxies.clone(),
        oidc: match o.settings.oidc.clone() {
            Some(c) => Some(Arc::new(
                firebreak_server::oidc::OidcClient::new(c).context("[oidc] in firebreak.toml")?,
            )),
            None => None,
        },
        intake,
    };
    if let Some((udp, tcp)) = syslog {
        let principal = App::service_principal(&o.settings.intake.syslog_reporter);
        let (addrs, _stats) = firebreak_server::syslog::start(app.clone(), principal, udp, tcp)?;
        println!(
            "syslog listening on udp://{} tcp://{}",
            addrs.udp, addrs.tcp
        );
    }
    // the report mailbox: its settings and its reporter are checked before anything is served
    if let Some(imap) = o.settings.imap.clone() {
        imap.check()?;
        let reporter = app
            .principal_for_user(&imap.reporter)
            .await
            .map_err(|e| match e {
                AppError::Unauthenticated => anyhow::anyhow!(
                    "[imap] reporter {:?} is not an active Firebreak user: create it (role reporter) or name another",
                    imap.reporter
                ),
                other => anyhow::anyhow!("[imap] reporter {:?}: {other}", imap.reporter),
            })?;
        if !App::may_report(&reporter) {
            bail!(
                "[imap] reporter {:?} may not report events: give it the reporter or helpdesk role",
                imap.reporter
            );
        }
        println!(
            "polling imap{}://{}@{}:{}/{} every {} s as {}",
            if imap.tls() { "s" } else { "" },
            imap.username,
            imap.host,
            imap.port(),
            imap.mailbox(),
            imap.poll_interval().as_secs(),
            imap.reporter
        );
        firebreak_server::imap::spawn(app.clone(), imap);
    }
    // email notifications go out in the background; a failure never blocks the response
    if app.has_mailer() || app.has_webhooks() {
        let mailer_app = app.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = mailer_app.deliver_pending().await {
                    tracing::warn!(error = %e, "delivering notifications");
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        });
    }
    firebreak_server::automation::spawn_workers(app.clone());
    let router = firebreak_server::router_with(app, web);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, backend = o.store.backend(), scheme, "listening");
    println!("firebreak listening on {scheme}://{addr}");
    std::io::stdout().flush()?;
    match tls {
        Some(config) => {
            let listener = firebreak_server::tls::TlsListener::new(listener, config)?;
            firebreak_server::serve_tls(listener, router, o.settings.http, shutdown_signal())
                .await?;
        }
        None => {
            firebreak_server::serve(listener, router, o.settings.http, shutdown_signal()).await?
        }
    }
    tracing::info!("shutting down: draining the writer");
    o.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `FIREBREAK_DB_WRITE_TIMEOUT_SECS`: how long one PostgreSQL write transaction may take
/// before its writes are refused with 503 (default 30).
fn db_write_timeout() -> anyhow::Result<std::time::Duration> {
    match std::env::var("FIREBREAK_DB_WRITE_TIMEOUT_SECS") {
        Err(_) => Ok(firebreak_store_postgres::WRITE_TIMEOUT),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n @ 1..=3600) => Ok(std::time::Duration::from_secs(n)),
            _ => bail!("FIREBREAK_DB_WRITE_TIMEOUT_SECS must be 1 to 3600 seconds (got {v:?})"),
        },
    }
}

fn announce_admin(data_dir: &Path, password: &str) -> anyhow::Result<()> {
    let hint = "sign in as admin, or create an API token with: firebreak token create --user admin";
    if std::io::stdout().is_terminal() {
        println!("created the first user `admin` with password: {password}");
        println!("(shown once) {hint}");
    } else {
        let path = data_dir.join("initial-admin-password");
        let _ = std::fs::remove_file(&path);
        firebreak_store::write_private(&path, format!("{password}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::warn!(path = %path.display(), "created the first user `admin`; its password is in this file (mode 0600): read it, then delete the file");
        println!(
            "created the first user `admin`; password written to {}",
            path.display()
        );
        println!("{hint}");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received, shutting down");
}
