//! The command line of `firebreak ticket`: its subcommands and flags, and the request bodies
//! built from flags alone (`--set key=value`, texts read from files or standard input).

use super::{Error, Result};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args)]
#[command(
    after_help = "Exit status: 0 done, 1 the server refused (its reason on stderr), \
2 a usage error, 3 no usable answer from the server.\n\
REF is a ticket's number (SEC-000042) or id."
)]
pub struct TicketArgs {
    /// The server, `http(s)://host:port`.
    #[arg(long, env = "FIREBREAK_URL", global = true, help_heading = "Server")]
    pub url: Option<String>,
    /// An API token (`firebreak token create --user NAME`).
    #[arg(
        long,
        env = "FIREBREAK_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Server"
    )]
    pub token: Option<String>,
    /// Seconds to wait for the server's answer to a request (default 30).
    #[arg(
        long,
        env = "FIREBREAK_TIMEOUT",
        global = true,
        help_heading = "Server",
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub timeout: Option<u64>,
    #[command(subcommand)]
    pub command: TicketCommand,
}

/// A ticket, and the answer as the API's JSON instead of text.
#[derive(Args)]
pub struct Target {
    /// The ticket's number (SEC-000042) or id.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Print the server's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum TicketCommand {
    /// List tickets, newest first (a table; --json for the API's page).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// One ticket: its fields, escalation reason and linked events; --log adds its timeline.
    Show {
        #[command(flatten)]
        target: Target,
        /// Also print the incident log (timeline).
        #[arg(long, conflicts_with = "json")]
        log: bool,
    },
    /// Open a ticket; prints its number on stdout (the id and a summary on stderr).
    Create(Box<CreateArgs>),
    /// Change a ticket's fields: only those given change (the API has no version precondition;
    /// a concurrent edit of other fields is kept).
    Update(Box<UpdateArgs>),
    /// Set who works the ticket.
    Assign {
        #[command(flatten)]
        target: Target,
        /// A username.
        username: String,
    },
    /// The ticket's incident log (timeline), oldest first.
    Log {
        #[command(flatten)]
        target: Target,
    },
    /// Write to the ticket's incident log.
    Note {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        text: TextArgs,
        /// note, action or evidence.
        #[arg(long, default_value = "note")]
        kind: String,
    },
    /// Communications (email, chat, phone, meeting) captured on the ticket.
    #[command(subcommand)]
    Comm(CommCommand),
    /// Take the ticket: open -> in_progress (responders).
    Start {
        #[command(flatten)]
        target: Target,
        /// Kept in the log entry.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Submit for closure: in_progress -> pending_closure.
    Resolve {
        #[command(flatten)]
        target: Target,
        /// What was done.
        #[arg(long)]
        resolution: String,
        /// The problem category.
        #[arg(long, visible_alias = "problem-category")]
        category: String,
    },
    /// The owner accepts the resolution: pending_closure -> closed.
    AcceptClosure {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        comment: Option<String>,
    },
    /// The owner rejects the resolution: pending_closure -> in_progress.
    RejectClosure {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Reopen a closed ticket.
    Reopen {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Close the ticket as a false positive.
    MarkFalsePositive {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Escalate to tier 2 with an Escalation Report; IT management is notified.
    Escalate {
        #[command(flatten)]
        target: Target,
        /// Why the ticket needs tier 2.
        #[arg(long)]
        reason: String,
        /// The business impact so far.
        #[arg(long)]
        impact: String,
        /// An affected system (repeat for several).
        #[arg(long = "system", value_name = "SYSTEM")]
        systems: Vec<String>,
        /// What has been done so far.
        #[arg(long)]
        actions_taken: String,
    },
    /// Tier 2 returns an escalation to the normal path.
    DeEscalate {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Management requests immediate escalation.
    RequestEscalation {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Declare an emergency (tier 2 on an escalation, management on any ticket).
    DeclareEmergency {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        reason: Reason,
    },
    /// Move the ticket to a phase: identification, containment, eradication, recovery,
    /// lessons_learned (forward only).
    Phase {
        #[command(flatten)]
        target: Target,
        phase: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Any transition `POST /api/v1/tickets/REF/ACTION`, with a body given as JSON or built
    /// from --set key=value (key:=JSON for a non-string value, a.b=... for nested objects).
    Action(Box<ActionArgs>),
}

#[derive(Args)]
pub struct Reason {
    /// Why (kept in the log).
    #[arg(long)]
    pub reason: String,
}

/// A text given inline, or read from a file or standard input.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct TextArgs {
    /// The text.
    #[arg(long)]
    pub text: Option<String>,
    /// Read the text from this file (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub text_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ListArgs {
    /// open, in_progress, pending_closure or closed.
    #[arg(long)]
    pub status: Option<String>,
    /// low, medium, high or critical.
    #[arg(long)]
    pub severity: Option<String>,
    /// normal, escalation or emergency.
    #[arg(long)]
    pub criticality: Option<String>,
    /// Tickets assigned to this username.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Tickets assigned to the token's user.
    #[arg(long, conflicts_with = "assignee")]
    pub mine: bool,
    /// Tickets with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Text in the title or description.
    #[arg(long, short = 'q', value_name = "TEXT")]
    pub search: Option<String>,
    /// Tickets per page (1-500; the server's default is 50).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Start at this page (`next_cursor` of the previous one).
    #[arg(long, conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Every page, following `next_cursor`.
    #[arg(long)]
    pub all: bool,
    /// Print the API's JSON page (with --all: one page holding every item).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The title (required unless --event gives one).
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Read the description from this file (`-` for standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "description")]
    pub description_file: Option<PathBuf>,
    /// low, medium, high or critical (default medium, or the events' highest).
    #[arg(long)]
    pub severity: Option<String>,
    /// p1 to p4 (default from the plan or the severity).
    #[arg(long)]
    pub priority: Option<String>,
    /// Who reported it: employee, vendor, customer, partner, device, sensor or internal
    /// (default internal, named after you).
    #[arg(long, value_name = "KIND")]
    pub source_kind: Option<String>,
    /// The reporter's name.
    #[arg(long, value_name = "NAME", requires = "source_kind")]
    pub source_name: Option<String>,
    /// How to reach the reporter.
    #[arg(long, value_name = "CONTACT", requires = "source_kind")]
    pub source_contact: Option<String>,
    /// Who works the ticket (a username).
    #[arg(long)]
    pub assignee: Option<String>,
    /// A tag (repeat for several).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Visible only to admins, the cleared and the people granted access.
    #[arg(long)]
    pub restricted: bool,
    /// Open the ticket from this event (an id; repeat for several): the events are linked to
    /// it, and its title and severity default to theirs.
    #[arg(long = "event", value_name = "EVENT_ID", conflicts_with_all = ["source_kind", "assignee"])]
    pub events: Vec<String>,
    /// Print the created ticket as JSON instead of its number.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Read the description from this file (`-` for standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "description")]
    pub description_file: Option<PathBuf>,
    /// low, medium, high or critical.
    #[arg(long)]
    pub severity: Option<String>,
    /// p1 to p4.
    #[arg(long)]
    pub priority: Option<String>,
    /// Replace the tags with these (repeat for several).
    #[arg(long = "tag", value_name = "TAG", conflicts_with = "clear_tags")]
    pub tags: Vec<String>,
    /// Remove every tag.
    #[arg(long)]
    pub clear_tags: bool,
    /// Add a tag to the current ones (repeat for several).
    #[arg(long = "add-tag", value_name = "TAG")]
    pub add_tags: Vec<String>,
    /// Who works the ticket (a username).
    #[arg(long, conflicts_with = "unassign")]
    pub assignee: Option<String>,
    /// Nobody works the ticket.
    #[arg(long)]
    pub unassign: bool,
    /// The ticket owner (who accepts closure).
    #[arg(long)]
    pub owner: Option<String>,
    /// The root cause is human: a security incident in the narrow sense (true or false).
    #[arg(long, value_name = "BOOL")]
    pub incident: Option<bool>,
}

#[derive(Args)]
pub struct ActionArgs {
    #[command(flatten)]
    pub target: Target,
    /// The action, e.g. start, resolve, escalate, declare-emergency.
    pub action: String,
    /// The body as JSON.
    #[arg(long, conflicts_with_all = ["body_file", "set"])]
    pub body: Option<String>,
    /// Read the JSON body from this file (`-` for standard input).
    #[arg(long, value_name = "FILE", conflicts_with = "set")]
    pub body_file: Option<PathBuf>,
    /// A body field: key=text, key:=JSON, a.b=text for nested objects (repeat).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Subcommand)]
pub enum CommCommand {
    /// The communications captured on the ticket, oldest first.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Capture a communication on the ticket (help desk and up).
    Add(Box<CommAddArgs>),
}

#[derive(Args)]
pub struct CommAddArgs {
    #[command(flatten)]
    pub target: Target,
    /// email, im, phone, meeting or other.
    #[arg(long)]
    pub channel: String,
    /// inbound (default) or outbound.
    #[arg(long)]
    pub direction: Option<String>,
    #[arg(long)]
    pub from: Option<String>,
    /// A recipient (repeat for several).
    #[arg(long = "to", value_name = "TO")]
    pub to: Vec<String>,
    /// When it happened (RFC 3339; default now).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
    #[command(flatten)]
    pub text: TextArgs,
}

impl TextArgs {
    pub(super) fn read(&self) -> Result<String> {
        match (&self.text, &self.text_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(f)) => read_text(f),
            (None, None) => Err(Error::Usage("give --text or --text-file".into())),
        }
    }
}

impl ActionArgs {
    /// The body: `--body`, `--body-file`, the `--set` fields, or none.
    pub(super) fn body(&self) -> Result<Option<Value>> {
        let text = match (&self.body, &self.body_file) {
            (Some(b), _) => Some(b.clone()),
            (None, Some(f)) => Some(read_text(f)?),
            (None, None) => None,
        };
        if let Some(text) = text {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Usage(format!("--body: not JSON: {e}")));
        }
        if self.set.is_empty() {
            return Ok(None);
        }
        let mut body = Map::new();
        for s in &self.set {
            set_field(&mut body, s).map_err(|m| Error::Usage(format!("--set {s}: {m}")))?;
        }
        Ok(Some(Value::Object(body)))
    }
}

/// Applies one `--set`: `a.b=text` (a string) or `a.b:=json`.
pub fn set_field(body: &mut Map<String, Value>, spec: &str) -> std::result::Result<(), String> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) if k.ends_with(':') => (
            &k[..k.len() - 1],
            serde_json::from_str(v).map_err(|e| format!("not JSON after :=: {e}"))?,
        ),
        Some((k, v)) => (k, Value::String(v.to_string())),
        None => return Err("expected key=value or key:=json".into()),
    };
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err("empty key".into());
    }
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut map = body;
    for p in parents {
        let slot = map
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        map = slot
            .as_object_mut()
            .ok_or_else(|| format!("{p} is already set to a value that is not an object"))?;
    }
    map.insert((*last).to_string(), value);
    Ok(())
}

/// A file's text, or standard input's for `-`.
pub(super) fn read_text(path: &Path) -> Result<String> {
    if path.as_os_str() != "-" {
        return std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("{}: {e}", path.display())));
    }
    let mut s = String::new();
    tokio::task::block_in_place(|| std::io::stdin().read_to_string(&mut s))
        .map_err(|e| Error::Local(anyhow::Error::new(e).context("reading standard input")))?;
    Ok(s)
}

/// An inline text, or a file's (`--description` / `--description-file`).
pub(super) fn text_or_file(text: Option<String>, file: Option<&Path>) -> Result<Option<String>> {
    match file {
        Some(f) => read_text(f).map(Some),
        None => Ok(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ticket_set_fields_build_nested_bodies() {
        let mut body = Map::new();
        for s in [
            "reason=it spread",
            "report.systems:=[\"web-01\",\"db-02\"]",
            "report.reason=why=this",
            "escalate:=true",
        ] {
            set_field(&mut body, s).unwrap();
        }
        assert_eq!(
            Value::Object(body.clone()),
            json!({"reason": "it spread", "escalate": true,
                   "report": {"systems": ["web-01", "db-02"], "reason": "why=this"}})
        );
        assert!(set_field(&mut body, "reason.x=1").is_err());
        assert!(set_field(&mut body, "novalue").is_err());
        assert!(set_field(&mut body, "a..b=1").is_err());
        assert!(set_field(&mut body, "x:={bad").is_err());
    }
}
