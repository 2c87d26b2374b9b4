//! `firebreak ingest --url URL --token TOKEN`: the same command as a client of a server. Lines
//! go to `POST /api/v1/ingest/ndjson` in chunks (at most [`CHUNK_LINES`] lines or
//! [`CHUNK_BYTES`] bytes, a line never split), one request at a time, so any input streams with
//! bounded memory; `eml` goes whole to `POST /api/v1/ingest/eml`. A chunk the server answered
//! 2xx is committed: `--resume` records its last line. The server's per-chunk line numbers are
//! shifted back to the input's, and the summary and exit codes are those of the local mode.
//! Nothing local is opened: no data dir, no database.

use super::{IngestArgs, open_input, progress_bar, read_state, report, write_state};
use crate::client::{Api, BULK};
use anyhow::{Context, bail};
use firebreak_app::intake::{LineFormat, MAX_LINE, MAX_LISTED_ERRORS};
use firebreak_domain::event::{IngestSummary, LineError};
use reqwest::Method;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// Lines per request at most: one commit batch of the server (`firebreak_app::intake::BATCH`),
/// so a chunk of one-event lines is committed in one transaction, all or nothing.
pub const CHUNK_LINES: usize = 4_096;
/// Bytes per request at most (more than a few of the longest lines the server takes).
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// An `eml` message read at most (the server's own limit is 32 MiB by default).
const MAX_EML_BYTES: u64 = 64 * 1024 * 1024;

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
    let client = match Api::new(args.url.as_deref(), args.token.as_deref(), "ingest", BULK) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("{m}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.format == "eml" {
        return eml(&client, &args).await;
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
        let mut u = reqwest::Url::parse(&client.url("/api/v1/ingest/ndjson"))
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
            .send(
                Method::POST,
                &endpoint,
                Some(("application/x-ndjson", &chunk.body)),
            )
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
async fn eml(client: &Api, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let (input, _) = open_input(&args.file)?;
    let mut raw = Vec::new();
    tokio::task::block_in_place(|| input.take(MAX_EML_BYTES + 1).read_to_end(&mut raw))
        .with_context(|| format!("reading {}", args.file))?;
    if raw.len() as u64 > MAX_EML_BYTES {
        bail!("{}: a message larger than {MAX_EML_BYTES} bytes", args.file);
    }
    let url = client.url("/api/v1/ingest/eml");
    let answer = client
        .send(Method::POST, &url, Some(("message/rfc822", &raw)))
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
}
