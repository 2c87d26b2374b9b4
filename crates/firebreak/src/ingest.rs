//! `firebreak ingest FILE|- --format FORMAT`: events from a file or standard input, written
//! straight to the database (the same pipeline as the HTTP intake) in batches, with a progress
//! bar and a summary. A bad line is reported by its number and the others go in. With
//! `--resume STATE`, the number of the last committed line is kept in STATE after every batch,
//! and a second run with the same STATE starts after it.
//!
//! With `--url` (or `FIREBREAK_URL`) the command is a client of a server instead: see
//! [`client`]. No local data dir or database is opened then.

pub mod client;

use anyhow::{Context, bail};
use firebreak_app::App;
use firebreak_app::intake::{LineFormat, LineIngest};
use firebreak_domain::event::IngestSummary;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// The file to read, or `-` for standard input.
    pub file: String,
    /// eve, wazuh, ndjson, cef, leef, syslog or eml.
    #[arg(long)]
    pub format: String,
    /// EVE event types that become events (default `alert,anomaly`; others are counted as skipped).
    #[arg(long)]
    pub eve_types: Option<String>,
    /// The source name of `ndjson` records.
    #[arg(long)]
    pub source: Option<String>,
    /// The user the events are reported as (needs the reporter, helpdesk, responder or admin
    /// role; default `admin`). Local mode only: with --url the token names the user.
    #[arg(long, conflicts_with = "url")]
    pub user: Option<String>,
    /// Send the input to this server (`http(s)://host:port`) instead of writing to the local
    /// database; needs --token.
    #[arg(long, env = "FIREBREAK_URL", requires = "token")]
    pub url: Option<String>,
    /// The API token for --url (its user needs the reporter, helpdesk, responder or admin role).
    #[arg(long, env = "FIREBREAK_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Keep progress in this file and resume after its last committed line.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Client mode: lines per request at most (tests use small chunks).
    #[arg(long, hide = true, default_value_t = client::CHUNK_LINES)]
    pub chunk_lines: usize,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeState {
    file: String,
    format: String,
    /// Every line up to this one is committed.
    line: u64,
}

pub(crate) fn read_state(path: &Path, args: &IngestArgs) -> anyhow::Result<u64> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let s: ResumeState = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a resume state of firebreak ingest",
            path.display()
        )
    })?;
    if s.file != args.file || s.format != args.format {
        bail!(
            "{} resumes {} (--format {}), not {} (--format {})",
            path.display(),
            s.file,
            s.format,
            args.file,
            args.format
        );
    }
    Ok(s.line)
}

pub(crate) fn write_state(path: &Path, args: &IngestArgs, line: u64) -> anyhow::Result<()> {
    let s = ResumeState {
        file: args.file.clone(),
        format: args.format.clone(),
        line,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&s)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub(crate) fn open_input(file: &str) -> anyhow::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if file == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let f = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok((Box::new(f), len))
}

/// A byte progress bar on stderr (a spinner when the size is unknown); hidden with `--quiet`
/// or when stderr is no terminal.
pub(crate) fn progress_bar(quiet: bool, len: Option<u64>) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        match len {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            ),
            None => indicatif::ProgressBar::new_spinner(),
        }
    }
}

/// The summary line on `out`, then the listed refused lines (`line N: field: reason`) on stderr.
pub(crate) fn report(
    out: &mut impl Write,
    lines_read: u64,
    skipped_for_resume: u64,
    secs: f64,
    s: &IngestSummary,
    error_count: u64,
) -> std::io::Result<()> {
    let records = s.created + s.duplicates + s.resolved;
    writeln!(
        out,
        "{} lines read{} in {:.1} s: {} events created, {} duplicates counted, {} suppressed, {} resolved, {} skipped (not event types), {} tickets opened, {} lines refused; {:.0} records/s",
        lines_read,
        if skipped_for_resume > 0 {
            format!(" (after {skipped_for_resume} committed earlier)")
        } else {
            String::new()
        },
        secs,
        s.created,
        s.duplicates,
        s.suppressed,
        s.resolved,
        s.skipped,
        s.tickets_opened,
        error_count,
        records as f64 / secs.max(1e-9),
    )?;
    let mut err = std::io::stderr().lock();
    for e in &s.errors {
        writeln!(err, "line {}: {}: {}", e.line, e.field, e.message)?;
    }
    if error_count > s.errors.len() as u64 {
        writeln!(
            err,
            "... and {} more refused lines",
            error_count - s.errors.len() as u64
        )?;
    }
    Ok(())
}

/// Runs the command; exit 0 when every line went in, 1 when some were refused, 2 on a usage
/// error.
pub async fn run(app: &App, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let user = args.user.as_deref().unwrap_or("admin");
    let Ok(principal) = app.principal_for_user(user).await else {
        eprintln!("--user {user}: no such active user");
        return Ok(ExitCode::from(2));
    };
    if !App::may_report(&principal) {
        eprintln!(
            "--user {user}: needs the reporter, helpdesk, responder, senior_responder, manager or admin role"
        );
        return Ok(ExitCode::from(2));
    }
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    if args.format == "eml" {
        let (mut input, _) = open_input(&args.file)?;
        let mut raw = Vec::new();
        input.read_to_end(&mut raw)?;
        let outcome = app
            .capture_email(&principal, &raw, true)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.file))?;
        writeln!(out, "{}", serde_json::to_string_pretty(&outcome)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let format = match LineFormat::from_name(
        &args.format,
        args.eve_types.as_deref(),
        args.source.as_deref(),
    ) {
        Ok(f) => f,
        Err(m) => {
            eprintln!("--format: {m} (or eml)");
            return Ok(ExitCode::from(2));
        }
    };
    let skip_to = match &args.resume {
        Some(p) => read_state(p, &args)?,
        None => 0,
    };
    let (input, len) = open_input(&args.file)?;
    let bar = progress_bar(args.quiet, len);
    let mut lines = LineIngest::new(app, &principal, format);
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut buf = Vec::with_capacity(4096);
    let mut skipped_for_resume = 0u64;
    let mut last_saved = skip_to;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        bar.inc(n as u64);
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if lines.line < skip_to {
            // already committed by an earlier run
            lines.line += 1;
            skipped_for_resume += 1;
            continue;
        }
        lines.push(line).await.map_err(|e| {
            anyhow::anyhow!(
                "stopped at line {}: {e} (lines up to {} are committed{})",
                lines.line,
                lines.committed_line.max(skip_to),
                if args.resume.is_some() {
                    "; run again with the same --resume to continue"
                } else {
                    ""
                }
            )
        })?;
        if lines.committed_line > last_saved {
            last_saved = lines.committed_line;
            if let Some(p) = &args.resume {
                write_state(p, &args, last_saved)?;
            }
            bar.set_message(format!(
                "{} events",
                lines.summary.created + lines.summary.duplicates
            ));
        }
    }
    lines.flush().await.map_err(|e| {
        anyhow::anyhow!("stopped at the end: {e} (lines up to {last_saved} are committed)")
    })?;
    if let Some(p) = &args.resume {
        write_state(p, &args, lines.line)?;
    }
    bar.finish_and_clear();
    report(
        &mut out,
        lines.line - skipped_for_resume,
        skipped_for_resume,
        started.elapsed().as_secs_f64(),
        &lines.summary,
        lines.error_count,
    )?;
    Ok(if lines.error_count > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
