//! Playbooks: the YAML model, its validation (every error with its YAML path), step templates
//! (minijinja with a fuel limit) and schedules (5-field cron). Pure: running them is
//! `automation`'s job.
//!
//! ```yaml
//! name: phishing-report
//! description: Look up reported URLs and attachments; dismiss clean reports, escalate bad ones
//! trigger: { on: event_received }
//! when: 'event.source_kind == "employee"'
//! steps:
//!   - id: lookup
//!     intel_lookup: { kinds: [url, sha256] }
//!   - id: decide
//!     branch:
//!       - when: 'steps.lookup.verdict == "malicious"'
//!         steps:
//!           - { id: ticket, open_ticket: { severity: high } }
//!           - { id: escalate, escalate: { reason: "Known-bad indicator: {{ steps.lookup.summary }}" } }
//!       - else:
//!           - { id: dismiss, dismiss_event: { reason: "Every indicator is known clean" } }
//! ```

use crate::expr::ContextCondition;
use firebreak_domain::role::Role;
use firebreak_domain::ticket::{Priority, Severity};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// Variables conditions and templates may use.
pub const VARIABLES: &[&str] = &[
    "event",
    "ticket",
    "observable",
    "emergency",
    "steps",
    "trigger",
    "playbook",
];

/// Template instructions allowed per render: a loop over a huge list stops here.
pub const TEMPLATE_FUEL: u64 = 50_000;
/// Longest rendered template output kept.
pub const MAX_RENDERED: usize = 64 * 1024;
/// Deepest branch nesting.
const MAX_DEPTH: usize = 8;
/// Most steps in one playbook (nested ones included).
const MAX_STEPS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    EventReceived,
    TicketCreated,
    TicketEscalated,
    EmergencyDeclared,
    ObservableAdded,
    Schedule,
    Manual,
}

impl TriggerKind {
    pub const ALL: [TriggerKind; 7] = [
        TriggerKind::EventReceived,
        TriggerKind::TicketCreated,
        TriggerKind::TicketEscalated,
        TriggerKind::EmergencyDeclared,
        TriggerKind::ObservableAdded,
        TriggerKind::Schedule,
        TriggerKind::Manual,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::EventReceived => "event_received",
            TriggerKind::TicketCreated => "ticket_created",
            TriggerKind::TicketEscalated => "ticket_escalated",
            TriggerKind::EmergencyDeclared => "emergency_declared",
            TriggerKind::ObservableAdded => "observable_added",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub on: TriggerKind,
    /// `schedule` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// `observable_added` only: the kinds that start it (empty: every kind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

/// A validated playbook.
#[derive(Debug, Clone, Serialize)]
pub struct Playbook {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub trigger: Trigger,
    /// CEL over [`VARIABLES`]: the playbook runs only when it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Attempts of a run before it is dead-lettered.
    pub max_attempts: u32,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The run fails (after its retries).
    Fail,
    /// The failure is recorded as the step's output and the run goes on.
    Continue,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Unique in the playbook: how a run remembers which steps are done, and how later steps
    /// read this one's output (`steps.<id>`).
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    pub on_error: OnError,
    pub action: Action,
}

/// What a step does. String fields are templates unless noted.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Looks the run's observables (or `value`) up with the connectors (all intel connectors
    /// when empty) and the local indicator store.
    IntelLookup {
        connectors: Vec<String>,
        kinds: Vec<String>,
        value: Option<String>,
        kind: Option<String>,
    },
    SetSeverity {
        severity: String,
    },
    SetPriority {
        priority: String,
    },
    /// `title`, `description` or `assignee` of the ticket.
    SetField {
        field: String,
        value: String,
    },
    AddTag {
        tag: String,
    },
    AddTask {
        title: String,
        description: Option<String>,
        assignee: Option<String>,
    },
    AddLog {
        text: String,
        kind: String,
    },
    /// `channel`: `in_app`/`email` (to usernames or `role:<role>`), `slack`/`teams`/`webhook`
    /// (to a connector's name).
    Notify {
        channel: String,
        to: Vec<String>,
        title: String,
        text: String,
    },
    /// A signed POST (Standard Webhooks) to `url`; `body` renders to JSON.
    Webhook {
        url: String,
        body: Option<String>,
    },
    CreateChangeControl {
        kind: String,
        description: String,
        systems: Vec<String>,
    },
    /// Waits until a holder of `role` approves or rejects (UI/API), or the timeout passes.
    Approval {
        role: Role,
        prompt: String,
        timeout_secs: i64,
        on_reject: Vec<Step>,
        on_timeout: Vec<Step>,
    },
    Branch {
        cases: Vec<(String, Vec<Step>)>,
        otherwise: Vec<Step>,
    },
    /// Opens a ticket from the run's event (no-op when it already has one).
    OpenTicket {
        title: Option<String>,
        severity: Option<String>,
    },
    Escalate {
        reason: String,
        impact: String,
        systems: Vec<String>,
        actions_taken: String,
    },
    DismissEvent {
        reason: String,
    },
    /// Ends the run successfully here.
    Stop {
        outcome: String,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::IntelLookup { .. } => "intel_lookup",
            Action::SetSeverity { .. } => "set_severity",
            Action::SetPriority { .. } => "set_priority",
            Action::SetField { .. } => "set_field",
            Action::AddTag { .. } => "add_tag",
            Action::AddTask { .. } => "add_task",
            Action::AddLog { .. } => "add_log",
            Action::Notify { .. } => "notify",
            Action::Webhook { .. } => "webhook",
            Action::CreateChangeControl { .. } => "create_change_control",
            Action::Approval { .. } => "approval",
            Action::Branch { .. } => "branch",
            Action::OpenTicket { .. } => "open_ticket",
            Action::Escalate { .. } => "escalate",
            Action::DismissEvent { .. } => "dismiss_event",
            Action::Stop { .. } => "stop",
        }
    }
}

const ACTIONS: &[&str] = &[
    "intel_lookup",
    "set_severity",
    "set_priority",
    "set_field",
    "add_tag",
    "add_task",
    "add_log",
    "notify",
    "webhook",
    "create_change_control",
    "approval",
    "branch",
    "open_ticket",
    "escalate",
    "dismiss_event",
    "stop",
];

/// One problem in a playbook, at a YAML path (`steps[2].notify.channel`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaybookError {
    pub path: String,
    pub message: String,
}

/// Deepest nesting of `[` and `{` that YAML text handed to the parser may have. The YAML
/// scanner takes time quadratic in the nesting of flow collections (`{a: {a: ...` 16,000 deep,
/// 64 KiB of text, took 7 s; a 1 MiB body would take half an hour), and the deserializer
/// refuses more than 128 levels anyway. Brackets inside strings count too: real documents are
/// nowhere near this.
pub const MAX_YAML_NESTING: usize = 128;

/// Refuses YAML text nested deeper than [`MAX_YAML_NESTING`], before it is parsed (playbooks,
/// the response plan).
pub fn check_yaml_nesting(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_YAML_NESTING {
                    return Err(format!(
                        "nested more than {MAX_YAML_NESTING} levels deep ([ and {{)"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses and validates YAML (or JSON) text; on failure, every problem found.
pub fn parse(text: &str) -> Result<Playbook, Vec<PlaybookError>> {
    if let Err(e) = check_yaml_nesting(text) {
        return Err(vec![PlaybookError {
            path: "(document)".into(),
            message: format!("not valid YAML: {e}"),
        }]);
    }
    let value: Value = match yaml_serde::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![PlaybookError {
                path: e
                    .location()
                    .map(|l| format!("line {}, column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "(document)".into()),
                message: format!("not valid YAML: {e}"),
            }]);
        }
    };
    let mut v = Validator::default();
    let pb = v.playbook(&value);
    match pb {
        Some(pb) if v.errors.is_empty() => Ok(pb),
        _ => Err(v.errors),
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<PlaybookError>,
    ids: BTreeSet<String>,
    count: usize,
}

fn key_path(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl Validator {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(PlaybookError {
            path: if path.is_empty() {
                "(document)".into()
            } else {
                path.to_string()
            },
            message: message.into(),
        });
    }

    fn object<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.err(path, "must be a mapping");
                None
            }
        }
    }

    fn unknown_keys(&mut self, m: &Map<String, Value>, path: &str, known: &[&str]) {
        for k in m.keys() {
            if !known.contains(&k.as_str()) {
                self.err(
                    &key_path(path, k),
                    format!("unknown key; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    fn string(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<String> {
        let p = key_path(path, key);
        match m.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.err(&p, "is required");
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(_) => {
                self.err(&p, "must be a string");
                None
            }
        }
    }

    /// A string that is a template: checked for syntax.
    fn template(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<String> {
        let s = self.string(m, path, key, required)?;
        if let Err(e) = check_template(&s) {
            self.err(&key_path(path, key), e);
        }
        if required && s.trim().is_empty() {
            self.err(&key_path(path, key), "must not be blank");
        }
        Some(s)
    }

    fn strings(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        key: &str,
        templates: bool,
    ) -> Vec<String> {
        let p = key_path(path, key);
        match m.get(key) {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => {
                if templates && let Err(e) = check_template(s) {
                    self.err(&p, e);
                }
                vec![s.clone()]
            }
            Some(Value::Array(a)) => {
                let mut out = Vec::new();
                for (i, x) in a.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    match x {
                        Value::String(s) => {
                            if templates && let Err(e) = check_template(s) {
                                self.err(&ip, e);
                            }
                            out.push(s.clone());
                        }
                        _ => self.err(&ip, "must be a string"),
                    }
                }
                out
            }
            Some(_) => {
                self.err(&p, "must be a list of strings");
                vec![]
            }
        }
    }

    fn condition(&mut self, m: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
        let s = self.string(m, path, key, false)?;
        if let Err(e) = ContextCondition::compile(&s, VARIABLES) {
            self.err(&key_path(path, key), format!("invalid CEL condition: {e}"));
        }
        Some(s)
    }

    fn playbook(&mut self, v: &Value) -> Option<Playbook> {
        let m = self.object(v, "")?;
        self.unknown_keys(
            m,
            "",
            &[
                "name",
                "description",
                "enabled",
                "trigger",
                "when",
                "max_attempts",
                "steps",
            ],
        );
        let name = self.string(m, "", "name", true);
        if let Some(n) = &name
            && !valid_name(n)
        {
            self.err(
                "name",
                "must be 1-64 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit",
            );
        }
        let description = self.string(m, "", "description", false).unwrap_or_default();
        let enabled = match m.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.err("enabled", "must be true or false");
                true
            }
        };
        let max_attempts = match m.get("max_attempts") {
            None => 3,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x @ 1..=20) => x as u32,
                _ => {
                    self.err("max_attempts", "must be an integer from 1 to 20");
                    3
                }
            },
            Some(_) => {
                self.err("max_attempts", "must be an integer from 1 to 20");
                3
            }
        };
        let trigger = match m.get("trigger") {
            None => {
                self.err("trigger", "is required");
                None
            }
            Some(t) => self.trigger(t),
        };
        let when = self.condition(m, "", "when");
        let steps = match m.get("steps") {
            None => {
                self.err("steps", "is required");
                vec![]
            }
            Some(s) => self.steps(s, "steps", 0),
        };
        if matches!(m.get("steps"), Some(Value::Array(a)) if a.is_empty()) {
            self.err("steps", "must hold at least one step");
        }
        Some(Playbook {
            name: name?,
            description,
            enabled,
            trigger: trigger?,
            when,
            max_attempts,
            steps,
        })
    }

    fn trigger(&mut self, v: &Value) -> Option<Trigger> {
        // `trigger: ticket_created` is short for `trigger: { on: ticket_created }`
        if let Value::String(s) = v {
            let on = self.trigger_kind(s, "trigger")?;
            if on == TriggerKind::Schedule {
                self.err("trigger.cron", "is required for a schedule");
            }
            return Some(Trigger {
                on,
                cron: None,
                kinds: vec![],
            });
        }
        let m = self.object(v, "trigger")?;
        self.unknown_keys(m, "trigger", &["on", "cron", "kinds"]);
        let on = self.string(m, "trigger", "on", true)?;
        let on = self.trigger_kind(&on, "trigger.on")?;
        let cron = self.string(m, "trigger", "cron", false);
        match (&cron, on) {
            (None, TriggerKind::Schedule) => self.err("trigger.cron", "is required for a schedule"),
            (Some(c), TriggerKind::Schedule) => {
                if let Err(e) = Cron::parse(c) {
                    self.err("trigger.cron", e);
                }
            }
            (Some(_), _) => self.err("trigger.cron", "is only for `on: schedule`"),
            (None, _) => {}
        }
        let kinds = self.strings(m, "trigger", "kinds", false);
        if !kinds.is_empty() && on != TriggerKind::ObservableAdded {
            self.err("trigger.kinds", "is only for `on: observable_added`");
        }
        for (i, k) in kinds.iter().enumerate() {
            if !OBSERVABLE_KINDS.contains(&k.as_str()) {
                self.err(
                    &format!("trigger.kinds[{i}]"),
                    format!(
                        "unknown observable kind; expected one of: {}",
                        OBSERVABLE_KINDS.join(", ")
                    ),
                );
            }
        }
        Some(Trigger { on, cron, kinds })
    }

    fn trigger_kind(&mut self, s: &str, path: &str) -> Option<TriggerKind> {
        let k = TriggerKind::parse(s);
        if k.is_none() {
            self.err(
                path,
                format!(
                    "unknown trigger {s:?}; expected one of: {}",
                    TriggerKind::ALL.map(|k| k.as_str()).join(", ")
                ),
            );
        }
        k
    }

    fn steps(&mut self, v: &Value, path: &str, depth: usize) -> Vec<Step> {
        if depth > MAX_DEPTH {
            self.err(path, format!("nested deeper than {MAX_DEPTH} levels"));
            return vec![];
        }
        let Value::Array(items) = v else {
            self.err(path, "must be a list of steps");
            return vec![];
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            self.count += 1;
            if self.count == MAX_STEPS + 1 {
                self.err(&p, format!("a playbook holds at most {MAX_STEPS} steps"));
            }
            if let Some(s) = self.step(item, &p, depth) {
                out.push(s);
            }
        }
        out
    }

    fn step(&mut self, v: &Value, path: &str, depth: usize) -> Option<Step> {
        let m = self.object(v, path)?;
        let mut known = vec!["id", "when", "on_error"];
        known.extend_from_slice(ACTIONS);
        self.unknown_keys(m, path, &known);
        let id = self.string(m, path, "id", true);
        if let Some(id) = &id {
            if !valid_name(id) {
                self.err(
                    &key_path(path, "id"),
                    "must be 1-64 characters: lowercase letters, digits, '-' and '_'",
                );
            } else if !self.ids.insert(id.clone()) {
                self.err(&key_path(path, "id"), format!("duplicate step id {id:?}"));
            }
        }
        let when = self.condition(m, path, "when");
        let on_error = match self.string(m, path, "on_error", false).as_deref() {
            None | Some("fail") => OnError::Fail,
            Some("continue") => OnError::Continue,
            Some(_) => {
                self.err(&key_path(path, "on_error"), "must be `fail` or `continue`");
                OnError::Fail
            }
        };
        let actions: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| m.contains_key(*a))
            .collect();
        let action = match actions.as_slice() {
            [a] => {
                let ap = key_path(path, a);
                self.action(a, &m[*a], &ap, depth)
            }
            [] => {
                self.err(
                    path,
                    format!("needs an action, one of: {}", ACTIONS.join(", ")),
                );
                None
            }
            more => {
                self.err(
                    path,
                    format!(
                        "has several actions ({}); a step does one thing",
                        more.join(", ")
                    ),
                );
                None
            }
        };
        Some(Step {
            id: id?,
            when,
            on_error,
            action: action?,
        })
    }

    fn args<'a>(
        &mut self,
        v: &'a Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        if v.is_null() {
            return Some(&EMPTY);
        }
        let m = self.object(v, path)?;
        self.unknown_keys(m, path, known);
        Some(m)
    }

    fn action(&mut self, name: &str, v: &Value, p: &str, depth: usize) -> Option<Action> {
        Some(match name {
            "intel_lookup" => {
                let m = self.args(v, p, &["connectors", "kinds", "value", "kind"])?;
                let kinds = self.strings(m, p, "kinds", false);
                for (i, k) in kinds.iter().enumerate() {
                    if !OBSERVABLE_KINDS.contains(&k.as_str()) {
                        self.err(&format!("{p}.kinds[{i}]"), "unknown observable kind");
                    }
                }
                let kind = self.string(m, p, "kind", false);
                if let Some(k) = &kind
                    && !OBSERVABLE_KINDS.contains(&k.as_str())
                {
                    self.err(&key_path(p, "kind"), "unknown observable kind");
                }
                Action::IntelLookup {
                    connectors: self.strings(m, p, "connectors", false),
                    kinds,
                    value: self.template(m, p, "value", false),
                    kind,
                }
            }
            "set_severity" => {
                let m = self.args(v, p, &["severity"])?;
                let s = self.template(m, p, "severity", true)?;
                if !s.contains("{{") && Severity::parse(&s).is_none() {
                    self.err(
                        &key_path(p, "severity"),
                        format!("expected one of: {}", Severity::expected()),
                    );
                }
                Action::SetSeverity { severity: s }
            }
            "set_priority" => {
                let m = self.args(v, p, &["priority"])?;
                let s = self.template(m, p, "priority", true)?;
                if !s.contains("{{") && Priority::parse(&s).is_none() {
                    self.err(
                        &key_path(p, "priority"),
                        format!("expected one of: {}", Priority::expected()),
                    );
                }
                Action::SetPriority { priority: s }
            }
            "set_field" => {
                let m = self.args(v, p, &["field", "value"])?;
                let field = self.string(m, p, "field", true);
                if let Some(f) = &field
                    && !["title", "description", "assignee"].contains(&f.as_str())
                {
                    self.err(
                        &key_path(p, "field"),
                        "expected one of: title, description, assignee",
                    );
                }
                Action::SetField {
                    field: field?,
                    value: self.template(m, p, "value", true)?,
                }
            }
            "add_tag" => {
                let m = self.args(v, p, &["tag"])?;
                Action::AddTag {
                    tag: self.template(m, p, "tag", true)?,
                }
            }
            "add_task" => {
                let m = self.args(v, p, &["title", "description", "assignee"])?;
                Action::AddTask {
                    title: self.template(m, p, "title", true)?,
                    description: self.template(m, p, "description", false),
                    assignee: self.template(m, p, "assignee", false),
                }
            }
            "add_log" => {
                let m = self.args(v, p, &["text", "kind"])?;
                let kind = self
                    .string(m, p, "kind", false)
                    .unwrap_or_else(|| "action".into());
                if !["note", "action", "evidence"].contains(&kind.as_str()) {
                    self.err(
                        &key_path(p, "kind"),
                        "expected one of: note, action, evidence",
                    );
                }
                Action::AddLog {
                    text: self.template(m, p, "text", true)?,
                    kind,
                }
            }
            "notify" => {
                let m = self.args(v, p, &["channel", "to", "title", "text"])?;
                let channel = self.string(m, p, "channel", true);
                if let Some(c) = &channel
                    && !NOTIFY_CHANNELS.contains(&c.as_str())
                {
                    self.err(
                        &key_path(p, "channel"),
                        format!("expected one of: {}", NOTIFY_CHANNELS.join(", ")),
                    );
                }
                let to = self.strings(m, p, "to", true);
                if to.is_empty() {
                    self.err(
                        &key_path(p, "to"),
                        "is required (usernames, role:<role>, or a connector's name)",
                    );
                }
                for (i, t) in to.iter().enumerate() {
                    if let Some(r) = t.strip_prefix("role:")
                        && Role::parse(r).is_none()
                    {
                        self.err(&format!("{p}.to[{i}]"), format!("unknown role {r:?}"));
                    }
                }
                Action::Notify {
                    channel: channel?,
                    to,
                    title: self.template(m, p, "title", true)?,
                    text: self.template(m, p, "text", false).unwrap_or_default(),
                }
            }
            "webhook" => {
                let m = self.args(v, p, &["url", "body"])?;
                let url = self.template(m, p, "url", true)?;
                if !(url.contains("{{")
                    || url.starts_with("https://")
                    || url.starts_with("http://"))
                {
                    self.err(&key_path(p, "url"), "must be an http(s) URL");
                }
                Action::Webhook {
                    url,
                    body: self.template(m, p, "body", false),
                }
            }
            "create_change_control" => {
                let m = self.args(v, p, &["kind", "description", "systems"])?;
                let kind = self
                    .string(m, p, "kind", false)
                    .unwrap_or_else(|| "normal".into());
                if !["normal", "emergency", "lockdown"].contains(&kind.as_str()) {
                    self.err(
                        &key_path(p, "kind"),
                        "expected one of: normal, emergency, lockdown",
                    );
                }
                let systems = self.strings(m, p, "systems", true);
                if systems.is_empty() {
                    self.err(&key_path(p, "systems"), "is required");
                }
                Action::CreateChangeControl {
                    kind,
                    description: self.template(m, p, "description", true)?,
                    systems,
                }
            }
            "approval" => {
                let m = self.args(
                    v,
                    p,
                    &["role", "prompt", "timeout", "on_reject", "on_timeout"],
                )?;
                let role = self.string(m, p, "role", true).and_then(|r| {
                    let role = Role::parse(&r);
                    match role {
                        None => self.err(&key_path(p, "role"), format!("unknown role {r:?}")),
                        // whoever decides must be able to see the run
                        Some(x) if !firebreak_domain::role::groups::READERS.contains(&x) => self.err(
                            &key_path(p, "role"),
                            "must be a role that sees runs: helpdesk, responder, senior_responder, manager, auditor or admin",
                        ),
                        Some(_) => {}
                    }
                    role
                });
                let timeout = self
                    .string(m, p, "timeout", false)
                    .unwrap_or_else(|| "24h".into());
                let timeout_secs = match parse_duration(&timeout) {
                    Ok(s) => s,
                    Err(e) => {
                        self.err(&key_path(p, "timeout"), e);
                        0
                    }
                };
                let on_reject = match m.get("on_reject") {
                    Some(s) => self.steps(s, &key_path(p, "on_reject"), depth + 1),
                    None => vec![],
                };
                let on_timeout = match m.get("on_timeout") {
                    Some(s) => self.steps(s, &key_path(p, "on_timeout"), depth + 1),
                    None => vec![],
                };
                Action::Approval {
                    role: role?,
                    prompt: self.template(m, p, "prompt", true)?,
                    timeout_secs,
                    on_reject,
                    on_timeout,
                }
            }
            "branch" => {
                let Value::Array(cases) = v else {
                    self.err(
                        p,
                        "must be a list of `{when, steps}` cases (and at most one `{else}`)",
                    );
                    return None;
                };
                let mut out = Vec::new();
                let mut otherwise = None;
                for (i, c) in cases.iter().enumerate() {
                    let cp = format!("{p}[{i}]");
                    let Some(cm) = self.object(c, &cp) else {
                        continue;
                    };
                    if let Some(e) = cm.get("else") {
                        self.unknown_keys(cm, &cp, &["else"]);
                        if otherwise.is_some() {
                            self.err(&cp, "only one `else` case");
                        } else if i + 1 != cases.len() {
                            self.err(&cp, "`else` must be the last case");
                        }
                        otherwise = Some(self.steps(e, &key_path(&cp, "else"), depth + 1));
                        continue;
                    }
                    self.unknown_keys(cm, &cp, &["when", "steps"]);
                    let when = self.condition(cm, &cp, "when");
                    if when.is_none() && !cm.contains_key("when") {
                        self.err(
                            &key_path(&cp, "when"),
                            "is required (or make it the `else` case)",
                        );
                    }
                    let steps = match cm.get("steps") {
                        Some(s) => self.steps(s, &key_path(&cp, "steps"), depth + 1),
                        None => {
                            self.err(&key_path(&cp, "steps"), "is required");
                            vec![]
                        }
                    };
                    if let Some(w) = when {
                        out.push((w, steps));
                    }
                }
                if out.is_empty() {
                    self.err(p, "needs at least one `when` case");
                }
                Action::Branch {
                    cases: out,
                    otherwise: otherwise.unwrap_or_default(),
                }
            }
            "open_ticket" => {
                let m = self.args(v, p, &["title", "severity"])?;
                let severity = self.template(m, p, "severity", false);
                if let Some(s) = &severity
                    && !s.contains("{{")
                    && Severity::parse(s).is_none()
                {
                    self.err(
                        &key_path(p, "severity"),
                        format!("expected one of: {}", Severity::expected()),
                    );
                }
                Action::OpenTicket {
                    title: self.template(m, p, "title", false),
                    severity,
                }
            }
            "escalate" => {
                let m = self.args(v, p, &["reason", "impact", "systems", "actions_taken"])?;
                Action::Escalate {
                    reason: self.template(m, p, "reason", true)?,
                    impact: self
                        .template(m, p, "impact", false)
                        .unwrap_or_else(|| "To be assessed by tier 2".into()),
                    systems: self.strings(m, p, "systems", true),
                    actions_taken: self
                        .template(m, p, "actions_taken", false)
                        .unwrap_or_else(|| "Automated analysis by a playbook".into()),
                }
            }
            "dismiss_event" => {
                let m = self.args(v, p, &["reason"])?;
                Action::DismissEvent {
                    reason: self.template(m, p, "reason", true)?,
                }
            }
            "stop" => {
                let m = self.args(v, p, &["outcome"])?;
                Action::Stop {
                    outcome: self
                        .template(m, p, "outcome", false)
                        .unwrap_or_else(|| "stopped".into()),
                }
            }
            _ => return None,
        })
    }
}

pub const NOTIFY_CHANNELS: &[&str] = &["in_app", "email", "slack", "teams", "webhook"];

pub const OBSERVABLE_KINDS: &[&str] = &[
    "ip", "domain", "url", "email", "md5", "sha1", "sha256", "cve", "filename", "hostname", "user",
    "other",
];

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// `90s`, `15m`, `4h`, `2d` (at least a minute, at most 30 days).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let bad = || format!("{s:?} is not a duration like 30m, 4h or 2d");
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => return Err(bad()),
    }
    .ok_or_else(|| "must be between 1 minute and 30 days".to_string())?;
    if !(60..=30 * 86_400).contains(&secs) {
        return Err("must be between 1 minute and 30 days".into());
    }
    Ok(secs)
}

fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env
}

/// Most operators, brackets and separators one template tag (`{{ }}`, `{% %}`) may hold.
/// minijinja's parser bounds bracket nesting but not chains (`{{ -----1 }}`, `{{ x|f|f|f }}`,
/// `{{ 1 + 1 + 1 }}`, `{{ a.b.b.b }}`), each link of which is one more level of recursion: about
/// 28,000 overflow an 8 MiB stack, fewer a worker thread's 2 MiB, and a stack overflow kills the
/// process. 400 links need some 120 KiB.
pub const MAX_TAG_OPERATORS: usize = 400;

/// Refuses a template with a tag of more than [`MAX_TAG_OPERATORS`] operators, before minijinja
/// parses it. Tags are found as minijinja's lexer finds them: comments skipped, string literals
/// (with backslash escapes) not counted, a tag ending at `}}` or `%}` outside brackets.
fn check_tag_operators(s: &str) -> Result<(), String> {
    const WORDS: [&[u8]; 7] = [b"not", b"and", b"or", b"is", b"in", b"if", b"else"];
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let (c0, c1) = (b[i], b[i + 1]);
        if c0 == b'{' && c1 == b'#' {
            match b[i + 2..].windows(2).position(|w| w == b"#}") {
                Some(p) => i += 2 + p + 2,
                None => return Ok(()),
            }
            continue;
        }
        if c0 != b'{' || (c1 != b'{' && c1 != b'%') {
            i += 1;
            continue;
        }
        let close = if c1 == b'{' { b'}' } else { b'%' };
        i += 2;
        let (mut ops, mut depth) = (0usize, 0usize);
        while let Some(&c) = b.get(i) {
            match c {
                b'"' | b'\'' => {
                    i += 1;
                    while let Some(&d) = b.get(i) {
                        i += if d == b'\\' { 2 } else { 1 };
                        if d == c {
                            break;
                        }
                    }
                    continue;
                }
                _ if depth == 0 && c == close && b.get(i + 1) == Some(&b'}') => {
                    i += 2;
                    break;
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    ops += 1;
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ if c.is_ascii_alphanumeric() || c == b'_' => {
                    let start = i;
                    while b
                        .get(i)
                        .is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_')
                    {
                        i += 1;
                    }
                    if WORDS.contains(&&b[start..i]) {
                        ops += 1;
                    }
                    if ops > MAX_TAG_OPERATORS {
                        break;
                    }
                    continue;
                }
                _ if c.is_ascii_whitespace() || !c.is_ascii() => {}
                _ => ops += 1,
            }
            if ops > MAX_TAG_OPERATORS {
                break;
            }
            i += 1;
        }
        if ops > MAX_TAG_OPERATORS {
            return Err(format!(
                "a tag holds more than {MAX_TAG_OPERATORS} operators; split the expression"
            ));
        }
    }
    Ok(())
}

fn check_template(s: &str) -> Result<(), String> {
    if !s.contains("{{") && !s.contains("{%") {
        return Ok(());
    }
    check_tag_operators(s).map_err(|e| format!("invalid template: {e}"))?;
    template_env()
        .template_from_str(s)
        .map(|_| ())
        .map_err(|e| format!("invalid template: {e}"))
}

/// Renders a step input against the run's context (fuel-limited: a runaway loop fails).
pub fn render(template: &str, context: &Map<String, Value>) -> Result<String, String> {
    if !template.contains("{{") && !template.contains("{%") {
        return Ok(template.to_string());
    }
    check_tag_operators(template).map_err(|e| format!("invalid template: {e}"))?;
    let env = template_env();
    let t = env
        .template_from_str(template)
        .map_err(|e| format!("invalid template: {e}"))?;
    let out = t
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| format!("template failed: {e}"))?;
    if out.len() > MAX_RENDERED {
        return Err(format!("template output exceeds {MAX_RENDERED} bytes"));
    }
    Ok(out)
}

/// Renders a JSON body: every value a template prints is JSON-escaped (user text cannot add
/// keys), and the result must parse as JSON.
pub fn render_json(template: &str, context: &Map<String, Value>) -> Result<String, String> {
    check_tag_operators(template).map_err(|e| format!("invalid template: {e}"))?;
    let mut env = template_env();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Json);
    let t = env
        .template_from_str(template)
        .map_err(|e| format!("invalid template: {e}"))?;
    let out = t
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map_err(|e| format!("template failed: {e}"))?;
    if out.len() > MAX_RENDERED {
        return Err(format!("template output exceeds {MAX_RENDERED} bytes"));
    }
    serde_json::from_str::<Value>(&out).map_err(|e| format!("does not render to JSON: {e}"))?;
    Ok(out)
}

/// A 5-field cron schedule (minute hour day-of-month month day-of-week, UTC) with `*`, lists,
/// ranges, steps and month/day names; day-of-month and day-of-week combine as in Vixie cron
/// (either matches when both are restricted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    dom_any: bool,
    dow_any: bool,
}

impl Cron {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = match s.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), not {}",
                f.len()
            ));
        }
        const MONTHS: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let minutes = field(f[0], 0, 59, &[], 0, "minute")?;
        let hours = field(f[1], 0, 23, &[], 0, "hour")?;
        let days = field(f[2], 1, 31, &[], 0, "day of month")?;
        let months = field(f[3], 1, 12, MONTHS, 1, "month")?;
        let mut weekdays = field(f[4], 0, 7, DAYS, 0, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            dom_any: f[2] == "*",
            dow_any: f[4] == "*",
        })
    }

    fn day_matches(&self, t: OffsetDateTime) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().number_days_from_sunday()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    fn matches(&self, t: OffsetDateTime) -> bool {
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().number_days_from_sunday()) != 0;
        let day = match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        };
        self.minutes & (1 << t.minute()) != 0
            && self.hours & (1 << t.hour()) != 0
            && self.months & (1 << u8::from(t.month())) != 0
            && day
    }

    /// The first time strictly after `after` (to the minute) that the schedule names, within
    /// about four years.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut t =
            after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + time::Duration::minutes(1);
        let limit = after + time::Duration::days(4 * 366);
        while t <= limit {
            if self.months & (1 << u8::from(t.month())) == 0 {
                // first minute of the next month
                let (y, m) = if t.month() == time::Month::December {
                    (t.year() + 1, time::Month::January)
                } else {
                    (t.year(), t.month().next())
                };
                t = time::Date::from_calendar_date(y, m, 1)
                    .ok()?
                    .midnight()
                    .assume_utc();
                continue;
            }
            if !self.day_matches(t) {
                t = (t.date().next_day()?).midnight().assume_utc();
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.replace_minute(0).ok()? + time::Duration::hours(1);
                continue;
            }
            if self.matches(t) {
                return Some(t);
            }
            t += time::Duration::minutes(1);
        }
        None
    }
}

fn field(
    s: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
    what: &str,
) -> Result<u64, String> {
    let bad = || format!("{what} field {s:?} is not valid (range {min}-{max})");
    let value = |x: &str| -> Result<u32, String> {
        let lower = x.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(i as u32 + name_base);
        }
        let v: u32 = x.parse().map_err(|_| bad())?;
        if v < min || v > max {
            return Err(bad());
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st.parse().map_err(|_| bad())?;
                if st == 0 {
                    return Err(bad());
                }
                (r, st)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(bad());
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            match v.checked_add(step) {
                Some(n) => v = n,
                None => break,
            }
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    const PHISHING: &str = r#"
name: phishing-report
description: Look up what was reported
trigger: { on: event_received }
when: 'event.source_kind == "employee"'
steps:
  - id: lookup
    intel_lookup: { kinds: [url, sha256] }
  - id: decide
    branch:
      - when: 'steps.lookup.verdict == "malicious"'
        steps:
          - { id: ticket, open_ticket: { severity: high } }
          - id: escalate
            escalate: { reason: "Known bad: {{ steps.lookup.summary }}" }
      - else:
          - { id: dismiss, dismiss_event: { reason: "All clean" } }
"#;

    #[test]
    fn a_valid_playbook_parses() {
        let pb = parse(PHISHING).unwrap();
        assert_eq!(pb.name, "phishing-report");
        assert_eq!(pb.trigger.on, TriggerKind::EventReceived);
        assert_eq!(pb.steps.len(), 2);
        let Action::Branch { cases, otherwise } = &pb.steps[1].action else {
            panic!("not a branch")
        };
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].1.len(), 2);
        assert_eq!(otherwise[0].id, "dismiss");
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let bad = r#"
name: Bad Name
trigger: { on: sometimes }
when: 'event.source =='
extra: 1
steps:
  - id: a
    add_log: { text: "{{ unclosed", kind: diary }
  - id: a
    notify: { channel: pigeon, to: ["role:wizard"], title: hi }
  - id: c
  - id: d
    add_tag: { tag: x }
    add_log: { text: y }
  - id: e
    approval: { role: manager, prompt: ok, timeout: 5y }
"#;
        let errs = parse(bad).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "name",
            "trigger.on",
            "when",
            "extra",
            "steps[0].add_log.text",
            "steps[0].add_log.kind",
            "steps[1].id",
            "steps[1].notify.channel",
            "steps[1].notify.to[0]",
            "steps[2]",
            "steps[3]",
            "steps[4].approval.timeout",
        ] {
            assert!(paths.contains(&p), "no error at {p}: {errs:?}");
        }
    }

    #[test]
    fn templates_render_and_run_out_of_fuel() {
        let mut ctx = Map::new();
        ctx.insert(
            "ticket".into(),
            serde_json::json!({"number": 7, "title": "<b>x</b>"}),
        );
        assert_eq!(
            render("T{{ ticket.number }} {{ ticket.title }}", &ctx).unwrap(),
            "T7 <b>x</b>"
        );
        assert_eq!(render("{{ ticket.missing.deeper }}", &ctx).unwrap(), "");
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100) %}x{% endfor %}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(e.contains("fuel") || e.contains("exceeds"), "{e}");
    }

    /// Found with fuzz/template seeds: chains of operators (`{{ -----1 }}`, filters, `+`,
    /// attributes) overflowed the stack in minijinja, killing the process. Refused first.
    #[test]
    fn templates_with_overlong_operator_chains_are_refused() {
        let ctx = Map::new();
        for chain in [
            format!("{{{{ {}1 }}}}", "-".repeat(50_000)),
            format!("{{{{ 1{} }}}}", "|abs".repeat(50_000)),
            format!("{{{{ 1{} }}}}", " + 1".repeat(50_000)),
            format!("{{{{ event{} }}}}", ".a".repeat(50_000)),
            format!("{{{{ {}1 }}}}", "not ".repeat(50_000)),
            format!("{{% set x = 1{} %}}", " ~ 1".repeat(50_000)),
            // a dict literal's `}}` does not end the tag for minijinja, nor here
            format!(
                "{{{{ {{\"a\": {{\"b\": 1}}}} ~ {}1 }}}}",
                "-".repeat(50_000)
            ),
        ] {
            let e = render(&chain, &ctx).unwrap_err();
            assert!(e.contains("operators"), "{e}");
            assert!(render_json(&chain, &ctx).is_err());
            assert!(check_template(&chain).is_err());
        }
        // strings and comments do not count; ordinary templates render
        let long_string = format!("{{{{ \"{}\" }}}}", "-.".repeat(5_000));
        assert_eq!(render(&long_string, &ctx).unwrap().len(), 10_000);
        let comment = format!("{{# {} #}}{{{{ 1 + 1 }}}}", "-".repeat(5_000));
        assert_eq!(render(&comment, &ctx).unwrap(), "2");
        let ok = format!("{{{{ 0{} }}}}", " + 1".repeat(MAX_TAG_OPERATORS / 2));
        assert!(render(&ok, &ctx).is_ok());
    }

    #[test]
    fn cron_finds_the_next_time() {
        let c = Cron::parse("*/15 9-17 * * mon-fri").unwrap();
        // Saturday 2026-12-05 10:00 -> Monday 09:00
        assert_eq!(
            c.next_after(datetime!(2026-12-05 10:00 UTC)).unwrap(),
            datetime!(2026-12-07 09:00 UTC)
        );
        assert_eq!(
            c.next_after(datetime!(2026-12-07 09:00 UTC)).unwrap(),
            datetime!(2026-12-07 09:15 UTC)
        );
        let d = Cron::parse("@monthly").unwrap();
        assert_eq!(
            d.next_after(datetime!(2026-12-05 10:00 UTC)).unwrap(),
            datetime!(2027-01-01 00:00 UTC)
        );
        let feb29 = Cron::parse("0 12 29 feb *").unwrap();
        assert_eq!(
            feb29.next_after(datetime!(2026-12-05 10:00 UTC)).unwrap(),
            datetime!(2028-02-29 12:00 UTC)
        );
        assert!(Cron::parse("61 * * * *").is_err());
        assert!(Cron::parse("* * *").is_err());
        assert!(Cron::parse("*/0 * * * *").is_err());
    }

    /// Found with the fuzz targets' pathological seeds: deeply nested flow collections took
    /// the YAML scanner quadratic time (16,000 levels: 7 s). Refused before parsing, at once.
    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        let deep = format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        let started = std::time::Instant::now();
        let errs = parse(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(errs[0].message.contains("nested more than"), "{errs:?}");
        assert!(check_yaml_nesting(&"[".repeat(200)).is_err());
        assert!(check_yaml_nesting(&"[]".repeat(10_000)).is_ok());
        let ok = format!(
            "{}1{}",
            "[".repeat(MAX_YAML_NESTING),
            "]".repeat(MAX_YAML_NESTING)
        );
        assert!(check_yaml_nesting(&ok).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("4h").unwrap(), 4 * 3600);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert!(parse_duration("10s").is_err());
        assert!(parse_duration("4 hours").is_err());
    }
}
