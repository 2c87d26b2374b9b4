//! `firebreak ticket ...`: tickets worked from a terminal or a script as a client of a server's
//! REST API (`/api/v1/tickets...`, `/api/v1/events/ticket`) and nothing else: list, show, create,
//! update, the incident log, communications and the workflow's transitions. Nothing local is
//! opened (no data dir, no database); the HTTP plumbing is [`crate::client`], the text output
//! [`render`]. Exit codes: 0 done, 1 the server refused (its code, message and fields on
//! stderr), 2 a usage error, 3 no usable answer from the server.

mod args;
mod render;

pub use args::TicketArgs;

use crate::client::{Api, Failure, INTERACTIVE, Refusal};
use args::{
    CommAddArgs, CommCommand, CreateArgs, ListArgs, Reason, Target, TicketCommand, UpdateArgs,
    text_or_file,
};
use reqwest::{Method, StatusCode, Url};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::ExitCode;

/// The transitions `POST /tickets/{ref}/{action}` takes (for `action`'s help and its 404).
const ACTIONS: &str = "start, resolve, accept-closure, reject-closure, reopen, mark-false-positive, \
escalate, de-escalate, request-escalation, declare-emergency, phase, post-incident-review";

/// Why a command did not succeed.
enum Error {
    /// Exit 2: the command line cannot be sent.
    Usage(String),
    /// Exit 1 (refused) or 3 (unreachable): `context` names what was asked.
    Api { context: String, failure: Failure },
    /// Exit 3: a 2xx answer that is not the API's JSON.
    BadAnswer(String),
    /// Exit 1: local trouble (a file, the terminal).
    Local(anyhow::Error),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Local(e.into())
    }
}

type Result<T> = std::result::Result<T, Error>;

/// A 2xx answer: its JSON, and its text as the server sent it (`--json` keeps its field order).
struct Answer {
    value: Value,
    raw: Box<RawValue>,
}

impl std::ops::Deref for Answer {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

/// The items of one or more pages of a list, read and as sent.
#[derive(Default)]
struct Items {
    values: Vec<Value>,
    raw: Vec<Box<RawValue>>,
}

impl Items {
    fn extend(&mut self, other: Items) {
        self.values.extend(other.values);
        self.raw.extend(other.raw);
    }

    /// One page holding every item, as sent: `{"items": [...], "next_cursor": null}`.
    fn to_json(&self) -> String {
        let items: Vec<&str> = self.raw.iter().map(|r| r.get()).collect();
        format!("{{\"items\":[{}],\"next_cursor\":null}}", items.join(","))
    }
}

/// Runs one `ticket` command; the exit code says how it went (module docs).
pub async fn run(args: TicketArgs) -> anyhow::Result<ExitCode> {
    let mut policy = INTERACTIVE;
    if let Some(secs) = args.timeout {
        policy.read_timeout = std::time::Duration::from_secs(secs);
    }
    let api = match Api::new(args.url.as_deref(), args.token.as_deref(), "ticket", policy) {
        Ok(api) => api,
        Err(m) => {
            eprintln!("error: {m}");
            return Ok(ExitCode::from(2));
        }
    };
    let client = Client { api };
    let hint_actions = matches!(args.command, TicketCommand::Action(_));
    match client.dispatch(args.command).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Error::Usage(m)) => {
            eprintln!("error: {m}");
            Ok(ExitCode::from(2))
        }
        Err(Error::Api {
            context,
            failure: Failure::Refused(r),
        }) => {
            report_refusal(&context, &r, hint_actions);
            // an answer without the API's error envelope (an HTML page from a proxy or another
            // server) is no usable answer: 3, not a refusal by Firebreak
            Ok(ExitCode::from(if r.code.is_empty() { 3 } else { 1 }))
        }
        Err(Error::Api {
            context,
            failure: Failure::Unreachable(m),
        }) => {
            eprintln!("error: {context}: {m}");
            Ok(ExitCode::from(3))
        }
        Err(Error::BadAnswer(m)) => {
            eprintln!("error: {m}");
            Ok(ExitCode::from(3))
        }
        // a closed pipe (`ticket list | head`) is the reader's choice, not a failure
        Err(Error::Local(e))
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Local(e)) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The server's refusal on stderr: what was asked, the message, code and status, then each
/// field at fault on a line of its own.
fn report_refusal(context: &str, r: &Refusal, hint_actions: bool) {
    let status = r.status.as_u16();
    let code = if r.code.is_empty() {
        String::new()
    } else {
        format!(" {}", r.code)
    };
    let joined = r
        .details
        .iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    let message = if r.message.is_empty() || (!r.details.is_empty() && r.message == joined) {
        "refused".to_string()
    } else if r.code.is_empty() && r.message.starts_with('<') {
        // a proxy's or another server's page, not the API's envelope
        format!(
            "{}, an HTML page instead of the API's JSON: is --url the Firebreak server?",
            r.status.canonical_reason().unwrap_or("refused")
        )
    } else {
        render::clean_line(&r.message)
    };
    eprintln!("error: {context}: {message} ({status}{code})");
    for (field, m) in &r.details {
        eprintln!("  {}: {}", render::clean_line(field), render::clean_line(m));
    }
    // the server's address matters when the token or the URL may be wrong
    if r.status == StatusCode::UNAUTHORIZED || r.code.is_empty() {
        eprintln!("  server: {}", r.url);
    }
    if let Some(h) = &r.hint {
        eprintln!("  {h}");
    }
    if hint_actions && matches!(status, 404 | 405) {
        eprintln!("  (no such ticket, or no such action; actions: {ACTIONS})");
    }
}

struct Client {
    api: Api,
}

impl Client {
    /// `/api/v1/<segments>`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let base = self.api.url("/api/v1");
        let mut u = Url::parse(&base).map_err(|e| Error::Usage(format!("--url: {e} ({base})")))?;
        u.path_segments_mut()
            .map_err(|()| Error::Usage(format!("--url: cannot hold a path ({base})")))?
            .extend(segments);
        Ok(u)
    }

    fn ticket_url(&self, reference: &str, tail: &[&str]) -> Result<Url> {
        if reference.trim().is_empty() {
            return Err(Error::Usage("REF: empty".into()));
        }
        let mut segments = vec!["tickets", reference.trim()];
        segments.extend_from_slice(tail);
        self.url(&segments)
    }

    async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        context: &str,
    ) -> Result<Answer> {
        let bytes = body.map(serde_json::to_vec).transpose().map_err(|e| {
            Error::Local(anyhow::Error::new(e).context("encoding the request body"))
        })?;
        let answer = self
            .api
            .send(
                method,
                url.as_str(),
                bytes.as_deref().map(|b| ("application/json", b)),
            )
            .await
            .map_err(|failure| Error::Api {
                context: context.to_string(),
                failure,
            })?;
        let bad = |e: serde_json::Error| {
            Error::BadAnswer(format!(
                "{url}: the answer is not the API's JSON ({e}); is --url a Firebreak server?"
            ))
        };
        let raw: Box<RawValue> = serde_json::from_slice(&answer).map_err(bad)?;
        let value = serde_json::from_str(raw.get()).map_err(bad)?;
        Ok(Answer { value, raw })
    }

    async fn get(&self, url: &Url, context: &str) -> Result<Answer> {
        self.call(Method::GET, url, None, context).await
    }

    /// Every item of a list, following `next_cursor` (pages of `limit`).
    async fn all_items(&self, mut url: Url, limit: u32, context: &str) -> Result<Items> {
        let limit = limit.to_string();
        add_query(&mut url, &[("limit", Some(&limit))]);
        let mut items = Items::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_url = url.clone();
            add_query(&mut page_url, &[("cursor", cursor.as_deref())]);
            let page = self.get(&page_url, context).await?;
            items.extend(page_items(&page, &page_url)?);
            match page.get("next_cursor").and_then(Value::as_str) {
                // a server that hands the same cursor back would loop forever
                Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
                _ => return Ok(items),
            }
        }
    }

    async fn dispatch(&self, command: TicketCommand) -> Result<()> {
        match command {
            TicketCommand::List(a) => self.list(a).await,
            TicketCommand::Show { target, log } => self.show(&target, log).await,
            TicketCommand::Create(a) => self.create(*a).await,
            TicketCommand::Update(a) => self.update(*a).await,
            TicketCommand::Assign { target, username } => {
                let url = self.ticket_url(&target.reference, &[])?;
                let t = self
                    .call(
                        Method::PATCH,
                        &url,
                        Some(&json!({ "assignee": username })),
                        &target.reference,
                    )
                    .await?;
                output(target.json, &t, render::ticket_line)
            }
            TicketCommand::Log { target } => {
                let log = self.log(&target.reference).await?;
                if target.json {
                    return print_json(&log.to_json());
                }
                emit(|out| render::log(out, &log.values))
            }
            TicketCommand::Note { target, text, kind } => {
                let text = text.read()?;
                let url = self.ticket_url(&target.reference, &["log"])?;
                let entry = self
                    .call(
                        Method::POST,
                        &url,
                        Some(&json!({ "text": text, "kind": kind })),
                        &target.reference,
                    )
                    .await?;
                output(target.json, &entry, |out, e| {
                    render::note_added(out, &target.reference, e)
                })
            }
            TicketCommand::Comm(c) => self.comm(c).await,
            TicketCommand::Action(a) => {
                let body = a.body()?;
                self.transition(&a.target, &a.action, body.as_ref()).await
            }
            other => {
                let (target, action, body) = shortcut(other)?;
                self.transition(&target, action, body.as_ref()).await
            }
        }
    }

    async fn list(&self, a: ListArgs) -> Result<()> {
        let mut url = self.url(&["tickets"])?;
        let assignee = if a.mine {
            let me_url = self.url(&["users", "me"])?;
            let me = self.get(&me_url, "who am I").await?;
            let name = me.get("username").and_then(Value::as_str).ok_or_else(|| {
                Error::BadAnswer(format!("{me_url}: the answer names no username"))
            })?;
            Some(name.to_string())
        } else {
            a.assignee
        };
        add_query(
            &mut url,
            &[
                ("status", a.status.as_deref()),
                ("severity", a.severity.as_deref()),
                ("criticality", a.criticality.as_deref()),
                ("assignee", assignee.as_deref()),
                ("tag", a.tag.as_deref()),
                ("q", a.search.as_deref()),
            ],
        );
        let (items, next) = if a.all {
            let items = self
                .all_items(url, a.limit.unwrap_or(500), "listing tickets")
                .await?;
            (items, None)
        } else {
            let limit = a.limit.map(|l| l.to_string());
            add_query(
                &mut url,
                &[("limit", limit.as_deref()), ("cursor", a.cursor.as_deref())],
            );
            let page = self.get(&url, "listing tickets").await?;
            if a.json {
                return print_json(page.raw.get());
            }
            let next = page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            (page_items(&page, &url)?, next)
        };
        if a.json {
            return print_json(&items.to_json());
        }
        if items.values.is_empty() {
            eprintln!("no tickets");
            return Ok(());
        }
        emit(|out| render::ticket_table(out, &items.values))?;
        if let Some(c) = next {
            eprintln!(
                "({} shown; more with --all, or the next page with --cursor {c})",
                items.values.len()
            );
        }
        Ok(())
    }

    async fn log(&self, reference: &str) -> Result<Items> {
        let url = self.ticket_url(reference, &["log"])?;
        self.all_items(url, 500, reference).await
    }

    async fn show(&self, target: &Target, with_log: bool) -> Result<()> {
        let url = self.ticket_url(&target.reference, &[])?;
        let ticket = self.get(&url, &target.reference).await?;
        if target.json {
            return print_json(ticket.raw.get());
        }
        // the events are an extra: a server or role that cannot list them still shows the ticket
        let events = match self
            .get(
                &self.ticket_url(&target.reference, &["events"])?,
                &target.reference,
            )
            .await
        {
            Ok(page) => Some(page_items(&page, &url)?),
            Err(Error::Api {
                failure: Failure::Refused(r),
                ..
            }) => {
                eprintln!(
                    "(linked events not shown: {} {})",
                    r.status.as_u16(),
                    render::clean_line(&r.message)
                );
                None
            }
            Err(e) => return Err(e),
        };
        let log = if with_log {
            Some(self.log(&target.reference).await?)
        } else {
            None
        };
        emit(|out| {
            render::ticket_detail(
                out,
                &ticket,
                events.as_ref().map(|e| e.values.as_slice()),
                log.as_ref().map(|l| l.values.as_slice()),
            )
        })
    }

    async fn create(&self, a: CreateArgs) -> Result<()> {
        if a.title.is_none() && a.events.is_empty() {
            return Err(Error::Usage(
                "--title is required (or --event EVENT_ID to open the ticket from events)".into(),
            ));
        }
        let mut body = Map::new();
        put(&mut body, "title", a.title);
        put(
            &mut body,
            "description",
            text_or_file(a.description, a.description_file.as_deref())?,
        );
        put(&mut body, "severity", a.severity);
        put(&mut body, "priority", a.priority);
        if !a.tags.is_empty() {
            body.insert("tags".into(), json!(a.tags));
        }
        if a.restricted {
            body.insert("restricted".into(), Value::Bool(true));
        }
        let url = if a.events.is_empty() {
            if let Some(kind) = a.source_kind {
                let mut source = Map::new();
                source.insert("kind".into(), Value::String(kind));
                put(&mut source, "name", a.source_name);
                put(&mut source, "contact", a.source_contact);
                body.insert("source".into(), Value::Object(source));
            }
            put(&mut body, "assignee", a.assignee);
            self.url(&["tickets"])?
        } else {
            body.insert("events".into(), json!(a.events));
            self.url(&["events", "ticket"])?
        };
        let t = self
            .call(
                Method::POST,
                &url,
                Some(&Value::Object(body)),
                "creating a ticket",
            )
            .await?;
        if a.json {
            return print_json(t.raw.get());
        }
        let number = t.get("number").and_then(Value::as_str).ok_or_else(|| {
            Error::BadAnswer(format!(
                "{url}: the answer names no ticket number: {}",
                t.raw
            ))
        })?;
        // the number alone on stdout, for `n=$(firebreak ticket create ...)`
        emit(|out| writeln!(out, "{}", render::clean_line(number)))?;
        eprintln!("created {}", render::created_summary(&t));
        Ok(())
    }

    async fn update(&self, a: UpdateArgs) -> Result<()> {
        let mut body = Map::new();
        put(&mut body, "title", a.title);
        put(
            &mut body,
            "description",
            text_or_file(a.description, a.description_file.as_deref())?,
        );
        put(&mut body, "severity", a.severity);
        put(&mut body, "priority", a.priority);
        if !a.tags.is_empty() || a.clear_tags {
            body.insert("tags".into(), json!(a.tags));
        }
        if !a.add_tags.is_empty() {
            body.insert("add_tags".into(), json!(a.add_tags));
        }
        if a.unassign {
            body.insert("assignee".into(), Value::Null);
        } else {
            put(&mut body, "assignee", a.assignee);
        }
        put(&mut body, "owner", a.owner);
        if let Some(i) = a.incident {
            body.insert("incident".into(), Value::Bool(i));
        }
        if body.is_empty() {
            return Err(Error::Usage(
                "nothing to change: give at least one of --title, --description, --severity, \
                 --priority, --tag, --clear-tags, --add-tag, --assignee, --unassign, --owner, \
                 --incident"
                    .into(),
            ));
        }
        let url = self.ticket_url(&a.target.reference, &[])?;
        let t = self
            .call(
                Method::PATCH,
                &url,
                Some(&Value::Object(body)),
                &a.target.reference,
            )
            .await?;
        output(a.target.json, &t, render::ticket_line)
    }

    async fn comm(&self, c: CommCommand) -> Result<()> {
        match c {
            CommCommand::List { target } => {
                let url = self.ticket_url(&target.reference, &["communications"])?;
                let page = self.get(&url, &target.reference).await?;
                if target.json {
                    return print_json(page.raw.get());
                }
                let items = page_items(&page, &url)?;
                emit(|out| render::communications(out, &items.values))
            }
            CommCommand::Add(a) => {
                let CommAddArgs {
                    target,
                    channel,
                    direction,
                    from,
                    to,
                    at,
                    subject,
                    text,
                } = *a;
                let mut body = Map::new();
                body.insert("channel".into(), Value::String(channel));
                put(&mut body, "direction", direction);
                put(&mut body, "from", from);
                if !to.is_empty() {
                    body.insert("to".into(), json!(to));
                }
                put(&mut body, "occurred_at", at);
                put(&mut body, "subject", subject);
                body.insert("body".into(), Value::String(text.read()?));
                let url = self.ticket_url(&target.reference, &["communications"])?;
                let c = self
                    .call(
                        Method::POST,
                        &url,
                        Some(&Value::Object(body)),
                        &target.reference,
                    )
                    .await?;
                output(target.json, &c, |out, c| {
                    render::communication_added(out, &target.reference, c)
                })
            }
        }
    }

    /// `POST /tickets/{ref}/{action}`; prints what came back (the ticket, an emergency...).
    async fn transition(&self, target: &Target, action: &str, body: Option<&Value>) -> Result<()> {
        if action.is_empty()
            || !action
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::Usage(format!(
                "ACTION {action:?}: expected a name like start or mark-false-positive ({ACTIONS})"
            )));
        }
        let url = self.ticket_url(&target.reference, &[action])?;
        let answer = self
            .call(
                Method::POST,
                &url,
                body,
                &format!("{} {action}", target.reference),
            )
            .await?;
        output(target.json, &answer, render::outcome)
    }
}

/// The workflow shortcuts as `(ticket, action, body)`.
fn shortcut(c: TicketCommand) -> Result<(Target, &'static str, Option<Value>)> {
    let comment = |c: Option<String>| c.map(|c| json!({ "comment": c }));
    let reason = |r: Reason| Some(json!({ "reason": r.reason }));
    Ok(match c {
        TicketCommand::Start { target, comment: c } => (target, "start", comment(c)),
        TicketCommand::Resolve {
            target,
            resolution,
            category,
        } => (
            target,
            "resolve",
            Some(json!({ "resolution": resolution, "problem_category": category })),
        ),
        TicketCommand::AcceptClosure { target, comment: c } => {
            (target, "accept-closure", comment(c))
        }
        TicketCommand::RejectClosure { target, reason: r } => (target, "reject-closure", reason(r)),
        TicketCommand::Reopen { target, reason: r } => (target, "reopen", reason(r)),
        TicketCommand::MarkFalsePositive { target, reason: r } => {
            (target, "mark-false-positive", reason(r))
        }
        TicketCommand::Escalate {
            target,
            reason,
            impact,
            systems,
            actions_taken,
        } => (
            target,
            "escalate",
            Some(json!({ "report": {
                "reason": reason, "impact": impact, "systems": systems,
                "actions_taken": actions_taken,
            }})),
        ),
        TicketCommand::DeEscalate { target, reason: r } => (target, "de-escalate", reason(r)),
        TicketCommand::RequestEscalation { target, reason: r } => {
            (target, "request-escalation", reason(r))
        }
        TicketCommand::DeclareEmergency { target, reason: r } => {
            (target, "declare-emergency", reason(r))
        }
        TicketCommand::Phase {
            target,
            phase,
            note,
        } => {
            let mut body = Map::new();
            body.insert("phase".into(), json!(phase));
            put(&mut body, "note", note);
            (target, "phase", Some(Value::Object(body)))
        }
        TicketCommand::List(_)
        | TicketCommand::Show { .. }
        | TicketCommand::Create(_)
        | TicketCommand::Update(_)
        | TicketCommand::Assign { .. }
        | TicketCommand::Log { .. }
        | TicketCommand::Note { .. }
        | TicketCommand::Comm(_)
        | TicketCommand::Action(_) => {
            return Err(Error::Local(anyhow::anyhow!("not a workflow shortcut")));
        }
    })
}

/// Appends the pairs that have a value to `url`'s query (none: the URL keeps no `?`).
fn add_query(url: &mut Url, pairs: &[(&str, Option<&str>)]) {
    if pairs.iter().any(|(_, v)| v.is_some()) {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
}

fn put(body: &mut Map<String, Value>, key: &str, value: Option<String>) {
    if let Some(v) = value {
        body.insert(key.into(), Value::String(v));
    }
}

/// The `items` of a list answer.
fn page_items(page: &Answer, url: &Url) -> Result<Items> {
    #[derive(serde::Deserialize)]
    struct RawPage {
        items: Vec<Box<RawValue>>,
    }
    let bad = || Error::BadAnswer(format!("{url}: the answer is not a list (no items)"));
    let p: RawPage = serde_json::from_str(page.raw.get()).map_err(|_| bad())?;
    let values = p
        .items
        .iter()
        .map(|r| serde_json::from_str(r.get()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(Items {
        values,
        raw: p.items,
    })
}

/// Writes to standard output through `f`.
fn emit(f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    f(&mut out)?;
    out.flush()?;
    Ok(())
}

/// JSON text as the server sent it, indented.
fn print_json(raw: &str) -> Result<()> {
    emit(|out| writeln!(out, "{}", render::pretty_json(raw)))
}

/// The answer as JSON (`--json`) or as `text` renders it.
fn output(
    json: bool,
    answer: &Answer,
    text: impl FnOnce(&mut dyn Write, &Value) -> std::io::Result<()>,
) -> Result<()> {
    if json {
        print_json(answer.raw.get())
    } else {
        emit(|out| text(out, &answer.value))
    }
}
