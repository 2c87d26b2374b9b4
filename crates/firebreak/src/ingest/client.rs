//! `firebreak ingest --url URL --token TOKEN`: the same command as a client of a server. Lines
//! go to `POST /api/v1/ingest/ndjson` in chunks (at most [`CHUNK_LINES`] lines or
//! [`CHUNK_BYTES`] bytes, a line never split), one request at a time, so any input streams with
//! bounded memory; `eml` goes whole to `POST /api/v1/ingest/eml`. A chunk the server answered
//! 2xx is committed: `--resume` records its last line. The server's per-chunk line numbers are
//! shifted back to the input's, and the summary and exit codes are those of the local mode.
//! Nothing local is opened: no data dir, no database.

use super::{IngestArgs, open_input, progress_bar, read_state, report, write_state};
use anyhow::{Context, bail};
use firebreak_app::intake::{LineFormat, MAX_LINE, MAX_LISTED_ERRORS};
use firebreak_domain::event::{IngestSummary, LineError};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Lines per request at most: one commit batch of the server (`firebreak_app::intake::BATCH`),
/// so a chunk of one-event lines is committed in one transaction, all or nothing.
pub const CHUNK_LINES: usize = 4_096;
/// Bytes per request at most (more than a few of the longest lines the server takes).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// An `eml` message read at most (the server's own limit is 32 MiB by default).
const MAX_EML_BYTES: u64 = 64 * 1024 * 1024;
/// Connection errors: retries of one request, with these waits.
const BACKOFF: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// The longest `Retry-After` obeyed, and how long one request may be refused with 429/503.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_REFUSED: Duration = Duration::from_secs(600);

/// Why a request failed for good.
enum SendError {
    /// The server refused (the message names status, code and reason).
    Refused(String),
    /// The server could not be reached (after the retries).
    Unreachable(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused(m) | SendError::Unreachable(m) => f.write_str(m),
        }
    }
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    /// POSTs `body` to `url` until it is answered 2xx: waits out 429/503 (`Retry-After`, at
    /// most [`MAX_RETRY_AFTER`] each), retries connection errors with [`BACKOFF`]; fails at
    /// once on any other answer. Returns the 2xx body.
    async fn post(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, SendError> {
        let mut failures = 0usize;
        let mut refused_since: Option<Instant> = None;
        loop {
            let sent = self
                .http
                .post(url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.to_vec())
                .send()
                .await;
            let res = match sent {
                Ok(r) => r,
                Err(e) => {
                    let Some(wait) = BACKOFF.get(failures) else {
                        return Err(SendError::Unreachable(format!(
                            "cannot reach {url} ({} attempts): {}",
                            failures + 1,
                            error_chain(&e)
                        )));
                    };
                    failures += 1;
                    tracing::debug!(error = %error_chain(&e), ?wait, "retrying");
                    tokio::time::sleep(*wait).await;
                    continue;
                }
            };
            let status = res.status();
            let retry_after = res
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = match res.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) if status.is_success() => {
                    // the chunk may be committed; resending it counts repeats, never loses any
                    let Some(wait) = BACKOFF.get(failures) else {
                        return Err(SendError::Unreachable(format!(
                            "{url}: the answer could not be read: {}",
                            error_chain(&e)
                        )));
                    };
                    failures += 1;
                    tokio::time::sleep(*wait).await;
                    continue;
                }
                Err(_) => Vec::new(),
            };
            if status.is_success() {
                return Ok(bytes);
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                let since = *refused_since.get_or_insert_with(Instant::now);
                if since.elapsed() < MAX_REFUSED {
                    let wait = Duration::from_secs(retry_after.unwrap_or(1)).min(MAX_RETRY_AFTER);
                    tracing::debug!(%status, ?wait, "server busy, waiting");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let mut msg = format!("{url} answered {status}");
            if let Some(e) = describe_error(&bytes) {
                msg.push_str(": ");
                msg.push_str(&e);
            }
            if status.is_redirection()
                && let Some(l) = location
            {
                msg.push_str(&format!(" (Location: {l}; give that as --url)"));
            }
            if status == StatusCode::UNAUTHORIZED {
                msg.push_str(" (check --token / FIREBREAK_TOKEN)");
            }
            return Err(SendError::Refused(msg));
        }
    }
}

/// The source's message and its causes (reqwest hides the useful part, e.g. "Connection
/// refused", in the chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cause = c.source();
    }
    s
}

/// The error envelope `{"error": {"code", "message", "details"}}` as one line, or the start of
/// a body that is not one.
fn describe_error(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(e) = v.get("error")
    {
        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
        let mut m = e
            .get("message")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string();
        if !code.is_empty() {
            m = format!("{m} ({code})");
        }
        if let Some(details) = e.get("details").and_then(|d| d.as_array()) {
            for d in details {
                let field = d.get("field").and_then(|f| f.as_str()).unwrap_or("");
                let dm = d.get("message").and_then(|f| f.as_str()).unwrap_or("");
                m.push_str(&format!("; {field}: {dm}"));
            }
        }
        return Some(m);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(200).collect())
}

/// Reads one line (without its newline) into `out`, keeping at most `max + 1` bytes of it.
/// Returns the bytes consumed (0 at the end) and whether the line was longer than `max`.
fn read_line_bounded(
    r: &mut impl BufRead,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    out.clear();
    let mut consumed = 0usize;
    let mut overlong = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok((consumed, overlong));
        }
        let (part, done) = match avail.iter().position(|b| *b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !overlong {
            let room = (max + 1).saturating_sub(out.len());
            out.extend_from_slice(&part[..part.len().min(room)]);
            overlong = out.len() > max;
        }
        let n = done.unwrap_or(avail.len());
        r.consume(n);
        consumed += n;
        if done.is_some() {
            return Ok((consumed, overlong));
        }
    }
}

/// Lines in, request bodies out.
struct Chunker<R> {
    reader: BufReader<R>,
    /// The number of the last line read.
    line: u64,
    /// A line read that did not fit in the last chunk.
    held: Option<Vec<u8>>,
    buf: Vec<u8>,
    max_lines: usize,
}

struct Chunk {
    /// The input's line number just before the chunk's first line.
    offset: u64,
    lines: u64,
    body: Vec<u8>,
    /// Input bytes consumed for it (for the progress bar).
    consumed: u64,
    /// Lines refused here (longer than the server takes), by the input's numbers.
    errors: Vec<LineError>,
}

impl<R: Read> Chunker<R> {
    /// Reads and drops the lines up to `line` (committed by an earlier run); returns how many.
    fn skip(&mut self, line: u64, bar: &indicatif::ProgressBar) -> std::io::Result<u64> {
        let mut n = 0;
        while self.line < line {
            let (c, _) = read_line_bounded(&mut self.reader, &mut self.buf, 0)?;
            if c == 0 {
                break;
            }
            bar.inc(c as u64);
            self.line += 1;
            n += 1;
        }
        Ok(n)
    }

    /// The next chunk, or `None` at the end of the input.
    fn next(&mut self) -> std::io::Result<Option<Chunk>> {
        let mut chunk = Chunk {
            // a held line was counted when it was read
            offset: self.line - u64::from(self.held.is_some()),
            lines: 0,
            body: Vec::new(),
            consumed: 0,
            errors: Vec::new(),
        };
        if let Some(line) = self.held.take() {
            chunk.body.extend_from_slice(&line);
            chunk.body.push(b'\n');
            chunk.lines = 1;
        }
        while chunk.lines < self.max_lines as u64 {
            // one byte more than the server takes: it strips a `\r` before it measures
            let (c, overlong) = read_line_bounded(&mut self.reader, &mut self.buf, MAX_LINE + 1)?;
            if c == 0 {
                break;
            }
            self.line += 1;
            chunk.consumed += c as u64;
            if overlong {
                // the server would refuse it too: refused here, sent as a blank line so the
                // server's numbering stays the input's
                chunk.errors.push(LineError {
                    line: self.line,
                    field: "line".into(),
                    message: format!("longer than {MAX_LINE} bytes"),
                });
                self.buf.clear();
            }
            if chunk.lines > 0 && chunk.body.len() + self.buf.len() + 1 > CHUNK_BYTES {
                self.held = Some(std::mem::take(&mut self.buf));
                break;
            }
            chunk.body.extend_from_slice(&self.buf);
            chunk.body.push(b'\n');
            chunk.lines += 1;
        }
        Ok((chunk.lines > 0).then_some(chunk))
    }
}

/// Runs the command against `args.url`; exit codes as the local mode's.
pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let (Some(url), Some(token)) = (args.url.clone(), args.token.clone()) else {
        eprintln!("--url needs --token (or FIREBREAK_TOKEN)");
        return Ok(ExitCode::from(2));
    };
    let base = url.trim_end_matches('/').to_string();
    match reqwest::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            eprintln!("--url {url}: not an http:// or https:// URL");
            return Ok(ExitCode::from(2));
        }
    }
    if token.trim().is_empty() {
        eprintln!("--token: empty");
        return Ok(ExitCode::from(2));
    }
    let http = reqwest::Client::builder()
        .user_agent(concat!("firebreak-ingest/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // a chunk commits in well under this; a server that hangs longer is retried
        .read_timeout(Duration::from_secs(300))
        // a redirect would drop the body (and maybe the token): reported instead
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let client = Client { http, token };
    if args.format == "eml" {
        return eml(&client, &base, &args).await;
    }
    if let Err(m) = LineFormat::from_name(
        &args.format,
        args.eve_types.as_deref(),
        args.source.as_deref(),
    ) {
        eprintln!("--format: {m} (or eml)");
        return Ok(ExitCode::from(2));
    }
    if args.chunk_lines == 0 {
        eprintln!("--chunk-lines: at least 1");
        return Ok(ExitCode::from(2));
    }
    let endpoint = {
        let mut u = reqwest::Url::parse(&format!("{base}/api/v1/ingest/ndjson"))
            .context("building the intake URL")?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("format", &args.format);
            if let Some(t) = &args.eve_types {
                q.append_pair("eve_types", t);
            }
            if let Some(s) = &args.source {
                q.append_pair("source", s);
            }
        }
        u.to_string()
    };
    let skip_to = match &args.resume {
        Some(p) => read_state(p, &args)?,
        None => 0,
    };
    let started = Instant::now();
    let (input, len) = open_input(&args.file)?;
    let bar = progress_bar(args.quiet, len);
    let mut chunks = Chunker {
        reader: BufReader::with_capacity(256 * 1024, input),
        line: 0,
        held: None,
        buf: Vec::with_capacity(4096),
        max_lines: args.chunk_lines,
    };
    let skipped_for_resume = tokio::task::block_in_place(|| chunks.skip(skip_to, &bar))?;
    let mut total = IngestSummary::default();
    let mut error_count = 0u64;
    let mut unlisted = false;
    let mut hidden_total = 0u64;
    let mut add_error = |total: &mut IngestSummary, e: LineError| {
        error_count += 1;
        if total.errors.len() < MAX_LISTED_ERRORS {
            total.errors.push(e);
        }
    };
    let mut committed = chunks.line;
    while let Some(chunk) = tokio::task::block_in_place(|| chunks.next())? {
        let answer = client
            .post(&endpoint, "application/x-ndjson", &chunk.body)
            .await
            .map_err(|e| {
                bar.abandon();
                anyhow::anyhow!(
                    "stopped at line {}: {e} (lines up to {committed} are committed{})",
                    chunk.offset + 1,
                    if args.resume.is_some() {
                        "; run again with the same --resume to continue"
                    } else {
                        ""
                    }
                )
            })?;
        let part: IngestSummary = serde_json::from_slice(&answer).with_context(|| {
            format!(
                "{endpoint}: the answer is not an intake summary (lines up to {} are committed)",
                chunk.offset + chunk.lines
            )
        })?;
        committed = chunk.offset + chunk.lines;
        if let Some(p) = &args.resume {
            write_state(p, &args, committed)?;
        }
        total.add_counts(&part);
        // the server lists at most MAX_LISTED_ERRORS per request and counts all in `refused`
        // (an older server sends no `refused`: a full list may then hide more)
        let listed = part.errors.len() as u64;
        let hidden = part.refused.saturating_sub(listed);
        unlisted |= part.refused == 0 && listed >= MAX_LISTED_ERRORS as u64;
        hidden_total += hidden;
        // in line order: the lines refused here were sent blank, the server says nothing of them
        let mut local = chunk.errors.into_iter().peekable();
        for e in part.errors {
            let line = chunk.offset + e.line;
            while let Some(l) = local.next_if(|l| l.line < line) {
                add_error(&mut total, l);
            }
            add_error(&mut total, LineError { line, ..e });
        }
        for l in local {
            add_error(&mut total, l);
        }
        bar.inc(chunk.consumed);
        bar.set_message(format!("{} events", total.created + total.duplicates));
    }
    bar.finish_and_clear();
    let error_count = error_count + hidden_total;
    let mut out = std::io::stdout().lock();
    report(
        &mut out,
        chunks.line - skipped_for_resume,
        skipped_for_resume,
        started.elapsed().as_secs_f64(),
        &total,
        error_count,
    )?;
    if unlisted {
        eprintln!(
            "(the server lists at most {MAX_LISTED_ERRORS} refused lines per request of {} lines: more may have been refused than counted here)",
            args.chunk_lines
        );
    }
    Ok(if error_count > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One message to `POST /api/v1/ingest/eml`; prints the server's answer.
async fn eml(client: &Client, base: &str, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let (input, _) = open_input(&args.file)?;
    let mut raw = Vec::new();
    tokio::task::block_in_place(|| input.take(MAX_EML_BYTES + 1).read_to_end(&mut raw))
        .with_context(|| format!("reading {}", args.file))?;
    if raw.len() as u64 > MAX_EML_BYTES {
        bail!("{}: a message larger than {MAX_EML_BYTES} bytes", args.file);
    }
    let url = format!("{base}/api/v1/ingest/eml");
    let answer = client
        .post(&url, "message/rfc822", &raw)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file))?;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .with_context(|| format!("{url}: the answer is not JSON"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_client_chunks_keep_lines_whole_and_numbered() {
        let input = b"a\nbb\n\nccc\nlast-without-newline".to_vec();
        let mut c = Chunker {
            reader: BufReader::with_capacity(3, std::io::Cursor::new(input)),
            line: 0,
            held: None,
            buf: Vec::new(),
            max_lines: 2,
        };
        let mut got = Vec::new();
        while let Some(ch) = c.next().unwrap() {
            got.push((ch.offset, ch.lines, String::from_utf8(ch.body).unwrap()));
        }
        assert_eq!(
            got,
            vec![
                (0, 2, "a\nbb\n".to_string()),
                (2, 2, "\nccc\n".to_string()),
                (4, 1, "last-without-newline\n".to_string()),
            ]
        );
    }

    #[test]
    fn ingest_client_overlong_lines_are_refused_locally_and_sent_blank() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nheld\nok\n");
        let mut c = Chunker {
            reader: BufReader::new(std::io::Cursor::new(input)),
            line: 0,
            held: None,
            buf: Vec::new(),
            max_lines: 10,
        };
        let ch = c.next().unwrap().unwrap();
        assert_eq!(ch.body, b"\nheld\nok\n");
        assert_eq!(ch.errors.len(), 1);
        assert_eq!(ch.errors[0].line, 1);
        assert!(c.next().unwrap().is_none());
    }

    #[test]
    fn ingest_client_a_line_that_does_not_fit_starts_the_next_chunk() {
        // lines of the longest length taken: three fit in CHUNK_BYTES, the fourth starts the next
        let mut input = Vec::new();
        for _ in 0..5 {
            input.extend_from_slice(&vec![b'y'; MAX_LINE]);
            input.push(b'\n');
        }
        let mut c = Chunker {
            reader: BufReader::new(std::io::Cursor::new(input)),
            line: 0,
            held: None,
            buf: Vec::new(),
            max_lines: 100,
        };
        let mut got = Vec::new();
        while let Some(ch) = c.next().unwrap() {
            assert!(ch.body.len() <= CHUNK_BYTES && ch.errors.is_empty());
            got.push((ch.offset, ch.lines, ch.body.len()));
        }
        assert_eq!(
            got,
            vec![(0, 3, 3 * (MAX_LINE + 1)), (3, 2, 2 * (MAX_LINE + 1))]
        );
    }

    #[test]
    fn ingest_client_error_envelope_is_one_line() {
        let body = br#"{"error":{"code":"unauthenticated","message":"missing or invalid credentials","details":[]}}"#;
        assert_eq!(
            describe_error(body).unwrap(),
            "missing or invalid credentials (unauthenticated)"
        );
        assert_eq!(describe_error(b"  ").as_deref(), None);
    }
}
