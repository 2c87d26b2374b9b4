//! Ticket use cases: create, read, list, edit, the normal-path transitions, the incident log.

use crate::{App, AppError, AppResult, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firebreak_domain::api::*;
use firebreak_domain::audit::{AuditDraft, AuditRecord};
use firebreak_domain::ids::TicketId;
use firebreak_domain::role::{Role, groups};
use firebreak_domain::ticket::*;
use firebreak_store::{AccessGrant, ChangeSet, Op, StoreError, TicketFilter, Visibility};
use serde_json::json;

/// Filters of `GET /tickets`, already parsed.
#[derive(Debug, Clone, Default)]
pub struct ListTickets {
    pub status: Option<TicketStatus>,
    pub criticality: Option<Criticality>,
    pub severity: Option<Severity>,
    pub assignee: Option<String>,
    pub tag: Option<String>,
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Opaque cursors: base64url of `<kind>:<position>`.
pub fn encode_cursor(kind: &str, pos: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{pos}"))
}

pub fn decode_cursor(kind: &str, cursor: &str) -> AppResult<i64> {
    let bad = || AppError::field("cursor", "not a cursor returned by this list");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (k, pos) = text.split_once(':').ok_or_else(bad)?;
    if k != kind {
        return Err(bad());
    }
    pos.parse().map_err(|_| bad())
}

pub fn check_limit(limit: Option<u32>) -> AppResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(AppError::field("limit", "must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(AppError::field(
            "limit",
            format!("must be at most {MAX_LIMIT}"),
        )),
        Some(n) => Ok(n),
    }
}

const MAX_RETRIES: usize = 5;

impl App {
    fn view(&self, t: Ticket) -> TicketView {
        TicketView::new(t, &self.config.ticket_prefix)
    }

    /// Records an authorization denial in the audit chain, then returns the 403.
    pub(crate) async fn deny(
        &self,
        p: &Principal,
        action: &str,
        ticket: Option<&Ticket>,
        reason: String,
    ) -> AppError {
        let object = ticket.map(|t| t.id.to_string()).unwrap_or_default();
        let mut entry = AuditDraft::new(p.username(), "authz.denied", "ticket", object)
            .details(json!({"attempted": action, "reason": reason}));
        if let Some(t) = ticket {
            entry = entry.ticket(t.id);
        }
        if let Err(e) = self.commit(ChangeSet::new().audit(entry)).await {
            tracing::warn!(error = %e, "could not audit a denial");
        }
        tracing::info!(user = p.username(), action, decision = "deny", %reason, "authorization");
        AppError::Forbidden(reason)
    }

    /// Resolves `SEC-000042` or a UUID to a ticket the principal may see; others are 404.
    pub async fn find_ticket(&self, p: &Principal, reference: &str) -> AppResult<Ticket> {
        if !p.can_read() {
            return Err(AppError::NotFound);
        }
        let res = if let Some(n) = parse_number(&self.config.ticket_prefix, reference) {
            self.store.get_ticket_by_number(n).await
        } else if let Ok(id) = reference.parse::<TicketId>() {
            self.store.get_ticket(id).await
        } else {
            return Err(AppError::NotFound);
        };
        let t = match res {
            Ok(t) => t,
            Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if !self.can_see(p, &t).await? {
            // the caller hears 404 (no existence leak); the attempt is on the record
            let _ = self
                .deny(
                    p,
                    "ticket.read",
                    Some(&t),
                    "the ticket is not visible to this user".into(),
                )
                .await;
            return Err(AppError::NotFound);
        }
        Ok(t)
    }

    /// A ticket the principal may see and work (help desk, responders, managers, with a token
    /// that may write); a refusal is audited as `action` with `reason`.
    pub(crate) async fn team_ticket(
        &self,
        p: &Principal,
        reference: &str,
        action: &str,
        reason: &str,
    ) -> AppResult<Ticket> {
        let t = self.find_ticket(p, reference).await?;
        if !p.can_write() || !p.has_any(groups::TEAM) {
            return Err(self.deny(p, action, Some(&t), reason.into()).await);
        }
        Ok(t)
    }

    pub async fn get_ticket(&self, p: &Principal, reference: &str) -> AppResult<TicketView> {
        Ok(self.view(self.find_ticket(p, reference).await?))
    }

    pub async fn create_ticket(
        &self,
        p: &Principal,
        req: &CreateTicketRequest,
    ) -> AppResult<TicketView> {
        if !p.can_write() || !p.has_any(groups::TICKET_OPENERS) {
            return Err(self
                .deny(p, "ticket.create", None, "opening tickets requires the helpdesk, responder, senior_responder or manager role".into())
                .await);
        }
        let v = req.validate()?;
        if let Some(a) = &v.assignee {
            self.check_active_user("assignee", a).await?;
        }
        let now = self.now();
        let mut t = Ticket {
            id: TicketId::new(),
            number: 0,
            title: v.title,
            description: v.description,
            source: v.source.unwrap_or(Source {
                kind: SourceKind::Internal,
                name: Some(p.username().to_string()),
                contact: None,
            }),
            severity: v.severity,
            priority: v.priority,
            criticality: Criticality::Normal,
            tier: 1,
            status: TicketStatus::Open,
            owner: p.username().to_string(),
            assignee: v.assignee,
            restricted: v.restricted,
            tags: v.tags,
            resolution: None,
            problem_category: None,
            false_positive: false,
            incident: false,
            created_by: p.username().to_string(),
            created_at: now,
            updated_at: now,
            version: 1,
            escalation_reason: None,
        };
        // the plan's thresholds can make a ticket an escalation from the start
        let plan = self.current_plan().await?;
        if req.priority.is_none()
            && let Some(pr) = plan.thresholds.priority_by_severity.get(&t.severity)
        {
            t.priority = *pr;
        }
        let mut classified = None;
        if plan.thresholds.escalate_severities.contains(&t.severity) {
            t.criticality = Criticality::Escalation;
            t.tier = 2;
            classified = Some(format!(
                "the response plan escalates {} severity",
                t.severity.as_str()
            ));
            t.escalation_reason.clone_from(&classified);
        }
        let entry = AuditDraft::new(p.username(), "ticket.created", "ticket", t.id).ticket(t.id).details(json!({
            "title": t.title, "severity": t.severity, "priority": t.priority, "source": t.source,
            "restricted": t.restricted, "tags": t.tags, "assignee": t.assignee,
            "criticality": t.criticality, "classification_reason": classified,
        }));
        let mut cs = ChangeSet::new()
            .op(Op::InsertTicket(t.clone()))
            .audit(entry);
        let observables = crate::intake::observables_of(Vec::new(), &[&t.title, &t.description]);
        if !observables.is_empty() {
            cs = cs.op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables,
                at: now,
            });
        }
        let out = self.commit(cs).await?;
        t.number = out
            .ticket_numbers
            .first()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("store assigned no ticket number"))?;
        tracing::info!(
            user = p.username(),
            ticket.number = t.number,
            "ticket created"
        );
        Ok(self.view(t))
    }

    pub async fn list_tickets(
        &self,
        p: &Principal,
        q: &ListTickets,
    ) -> AppResult<Page<TicketView>> {
        let limit = check_limit(q.limit)?;
        let before_number = q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| decode_cursor("t", c))
            .transpose()?;
        if !p.can_read() {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        }
        for (field, value) in [("q", &q.q), ("assignee", &q.assignee), ("tag", &q.tag)] {
            if let Some(msg) = value.as_deref().and_then(control_char) {
                return Err(AppError::field(field, msg));
            }
        }
        if let Some(text) = &q.q
            && text.chars().count() > MAX_SHORT
        {
            return Err(AppError::field(
                "q",
                format!("must be at most {MAX_SHORT} characters"),
            ));
        }
        let filter = TicketFilter {
            status: q.status,
            criticality: q.criticality,
            severity: q.severity,
            assignee: q.assignee.clone(),
            tag: q.tag.clone(),
            text: q.q.clone().filter(|s| !s.trim().is_empty()),
            before_number,
            limit: limit + 1,
            visible_to: Some(Visibility {
                username: p.username().to_string(),
                restricted_ok: p.restricted_ok(),
                only_own: p.only_own(),
            }),
        };
        let mut items = self.store.list_tickets(&filter).await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| encode_cursor("t", t.number))
        } else {
            None
        };
        Ok(Page {
            items: items.into_iter().map(|t| self.view(t)).collect(),
            next_cursor,
        })
    }

    pub async fn update_ticket(
        &self,
        p: &Principal,
        reference: &str,
        req: &UpdateTicketRequest,
    ) -> AppResult<TicketView> {
        for _ in 0..MAX_RETRIES {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write() || !p.has_any(groups::TEAM) {
                return Err(self
                    .deny(
                        p,
                        "ticket.update",
                        Some(&t),
                        "editing tickets requires a helpdesk, responder or manager role".into(),
                    )
                    .await);
            }
            let (mut n, changed) = req.apply(&t)?;
            if changed.is_empty() {
                return Ok(self.view(t));
            }
            if changed.contains(&"assignee")
                && let Some(a) = &n.assignee
            {
                self.check_active_user("assignee", a).await?;
            }
            if changed.contains(&"owner") && t.owner != p.username() && !p.has_any(&[Role::Manager])
            {
                return Err(self
                    .deny(p, "ticket.update", Some(&t), format!("only the ticket owner ({}) or a manager may hand the ticket to another owner", t.owner))
                    .await);
            }
            if changed.contains(&"owner") {
                self.check_active_user("owner", &n.owner).await?;
            }
            n.updated_at = self.now();
            let mut diff = serde_json::Map::new();
            let (before, after) = (
                serde_json::to_value(&t).unwrap_or_default(),
                serde_json::to_value(&n).unwrap_or_default(),
            );
            for f in &changed {
                diff.insert(
                    (*f).to_string(),
                    json!({"from": before.get(*f), "to": after.get(*f)}),
                );
            }
            let entry = AuditDraft::new(p.username(), "ticket.updated", "ticket", t.id)
                .ticket(t.id)
                .details(json!({ "changes": diff }));
            if let Some(view) = self.save_ticket(p, &t, n, entry, "ticket.update").await? {
                return Ok(view);
            }
        }
        Err(AppError::Conflict {
            code: "concurrent_update",
            message: "the ticket keeps changing concurrently; retry".into(),
        })
    }

    /// Runs one of the normal-path actions (start, resolve, accept/reject closure, reopen,
    /// mark-false-positive) and logs it.
    pub async fn transition(
        &self,
        p: &Principal,
        reference: &str,
        action: &TicketAction,
        comment: Option<&str>,
    ) -> AppResult<TicketView> {
        if let Some(c) = comment
            && c.chars().count() > MAX_TEXT
        {
            return Err(AppError::field(
                "comment",
                format!("must be at most {MAX_TEXT} characters"),
            ));
        }
        for _ in 0..MAX_RETRIES {
            let t = self.find_ticket(p, reference).await?;
            let authz = if p.can_write() {
                action.authorize(p.write_roles(), p.username(), &t)
            } else {
                Err("this token may not make changes".into())
            };
            if let Err(reason) = authz {
                return Err(self.deny(p, action.name(), Some(&t), reason).await);
            }
            // an open emergency closes through its own obligations, never around them
            if matches!(
                action,
                TicketAction::Resolve { .. }
                    | TicketAction::AcceptClosure
                    | TicketAction::MarkFalsePositive { .. }
            ) && self.has_open_emergency(&t).await?
            {
                return Err(AppError::Conflict {
                    code: "emergency_open",
                    message: "an emergency is open on this ticket: it closes through the emergency's course of action (POST /emergencies/{id}/close)".into(),
                });
            }
            let n = action.apply(&t, p.username(), self.now())?;
            let mut details = json!({"from": t.status, "to": n.status});
            match action {
                TicketAction::Resolve {
                    resolution,
                    problem_category,
                } => {
                    details["resolution"] = json!(resolution);
                    details["problem_category"] = json!(problem_category);
                }
                TicketAction::RejectClosure { reason }
                | TicketAction::Reopen { reason }
                | TicketAction::MarkFalsePositive { reason } => {
                    details["reason"] = json!(reason);
                }
                TicketAction::Start | TicketAction::AcceptClosure => {}
            }
            if n.assignee != t.assignee {
                details["assignee"] = json!(n.assignee);
            }
            if let Some(c) = comment.filter(|c| !c.trim().is_empty()) {
                details["comment"] = json!(c);
            }
            let entry = AuditDraft::new(
                p.username(),
                &format!("ticket.{}", action.name()),
                "ticket",
                t.id,
            )
            .ticket(t.id)
            .details(details);
            if let Some(view) = self.save_ticket(p, &t, n, entry, action.name()).await? {
                return Ok(view);
            }
        }
        Err(AppError::Conflict {
            code: "concurrent_update",
            message: "the ticket keeps changing concurrently; retry".into(),
        })
    }

    /// Commits a changed ticket with its audit entry if nobody changed it meanwhile; `None` on a
    /// version conflict (the caller re-reads and retries).
    async fn save_ticket(
        &self,
        p: &Principal,
        old: &Ticket,
        new: Ticket,
        entry: AuditDraft,
        action: &str,
    ) -> AppResult<Option<TicketView>> {
        let cs = ChangeSet::new()
            .op(Op::UpdateTicket {
                ticket: new.clone(),
                expected_version: old.version,
            })
            .audit(entry);
        let saved = self.commit_ticket_change(cs, old, new).await?;
        if saved.is_some() {
            tracing::info!(
                user = p.username(),
                ticket.number = old.number,
                action,
                decision = "allow",
                "authorization"
            );
        }
        Ok(saved)
    }

    /// Commits a change set holding `Op::UpdateTicket` of `old` to `new` (and whatever goes with
    /// it); `None` on a version conflict, for the caller to re-read and retry.
    pub(crate) async fn commit_ticket_change(
        &self,
        cs: ChangeSet,
        old: &Ticket,
        mut new: Ticket,
    ) -> AppResult<Option<TicketView>> {
        match self.commit(cs).await {
            Ok(_) => {
                new.version = old.version + 1;
                Ok(Some(self.view(new)))
            }
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn add_log_entry(
        &self,
        p: &Principal,
        reference: &str,
        req: &CreateLogEntryRequest,
    ) -> AppResult<LogEntryView> {
        let t = self
            .team_ticket(
                p,
                reference,
                "log.add",
                "writing to the incident log requires a helpdesk, responder or manager role",
            )
            .await?;
        let text = req.validate()?;
        let entry = AuditDraft::new(
            p.username(),
            &format!("log.{}", req.kind.as_str()),
            "ticket",
            t.id,
        )
        .ticket(t.id)
        .details(json!({"kind": req.kind, "text": text}));
        let mut cs = ChangeSet::new().audit(entry);
        let observables = crate::intake::observables_of(Vec::new(), &[&text]);
        if !observables.is_empty() {
            cs = cs.op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables,
                at: self.now(),
            });
        }
        let out = self.commit(cs).await?;
        tracing::info!(
            user = p.username(),
            ticket.number = t.number,
            action = "log.add",
            decision = "allow",
            "authorization"
        );
        let seq = out.audit_seqs.first().copied().unwrap_or_default();
        let recs = self.store.ticket_audit(t.id, seq - 1, 1).await?;
        recs.into_iter()
            .next()
            .map(log_view)
            .ok_or(AppError::NotFound)
    }

    pub async fn list_log(
        &self,
        p: &Principal,
        reference: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> AppResult<Page<LogEntryView>> {
        let t = self.find_ticket(p, reference).await?;
        let limit = check_limit(limit)?;
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| decode_cursor("l", c))
            .transpose()?
            .unwrap_or(0);
        let mut recs = self.store.ticket_audit(t.id, after, limit + 1).await?;
        let next_cursor = if recs.len() > limit as usize {
            recs.truncate(limit as usize);
            recs.last().map(|r| encode_cursor("l", r.seq))
        } else {
            None
        };
        Ok(Page {
            items: recs.into_iter().map(log_view).collect(),
            next_cursor,
        })
    }

    pub(crate) async fn check_active_user(&self, field: &str, username: &str) -> AppResult<()> {
        if firebreak_domain::user::validate_username(username).is_err() {
            return Err(AppError::field(
                field,
                format!("no user named {username:?}"),
            ));
        }
        match self.store.get_user_by_name(username).await {
            Ok(u) if !u.user.disabled => Ok(()),
            Ok(_) => Err(AppError::field(
                field,
                format!("user {username} is disabled"),
            )),
            Err(StoreError::NotFound) => {
                Err(AppError::field(field, format!("no user named {username}")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether the principal is the ticket's creator, owner or assignee.
fn involved(p: &Principal, t: &Ticket) -> bool {
    t.owner == p.username()
        || t.created_by == p.username()
        || t.assignee.as_deref() == Some(p.username())
}

impl App {
    /// Whether a principal may see a ticket at all (404 otherwise): restricted tickets need admin,
    /// the clearance, involvement or the access list; reporters and executives see only tickets
    /// they are involved in or were given access to.
    pub async fn can_see(&self, p: &Principal, t: &Ticket) -> AppResult<bool> {
        let hidden = (t.restricted && !p.restricted_ok()) || p.only_own();
        if !hidden || involved(p, t) {
            return Ok(true);
        }
        if self.store.has_ticket_access(t.id, p.username()).await? {
            return Ok(true);
        }
        // the team of an emergency on the ticket may read it while the emergency lasts
        // (logged, once per user and ticket every 10 minutes: a live page re-reads the ticket
        // whenever a ticket changes, and each read would otherwise be an entry)
        if self.on_open_emergency_team(p.username(), t).await? {
            let now = self.now();
            let key = (p.username().to_string(), t.id.0);
            let recent = self.team_reads.lock().is_ok_and(|mut m| {
                let fresh = m
                    .get(&key)
                    .is_some_and(|at| now - *at < time::Duration::minutes(10));
                if !fresh {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(key.clone(), now);
                }
                fresh
            });
            if recent {
                return Ok(true);
            }
            let entry = AuditDraft::new(
                p.username(),
                "ticket.read_by_emergency_team",
                "ticket",
                t.id,
            )
            .ticket(t.id)
            .details(json!({"reason": "member of an open emergency on this restricted ticket"}));
            if let Err(e) = self.commit(ChangeSet::new().audit(entry)).await {
                // not on the record: the next read tries again
                if let Ok(mut m) = self.team_reads.lock() {
                    m.remove(&key);
                }
                return Err(e.into());
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn may_manage_access(p: &Principal, t: &Ticket) -> bool {
        p.can_write()
            && (p.user.has_role(Role::Admin)
                || p.has_any(&[Role::Manager])
                || t.owner == p.username())
    }

    /// The ticket's access list (readers of the ticket).
    pub async fn list_access(&self, p: &Principal, reference: &str) -> AppResult<Vec<AccessGrant>> {
        let t = self.find_ticket(p, reference).await?;
        Ok(self.store.ticket_access(t.id).await?)
    }

    /// Adds a user to the ticket's access list (admins, managers, the owner); logged.
    pub async fn grant_access(
        &self,
        p: &Principal,
        reference: &str,
        req: &AccessRequest,
    ) -> AppResult<Vec<AccessGrant>> {
        let t = self.find_ticket(p, reference).await?;
        if !Self::may_manage_access(p, &t) {
            return Err(self
                .deny(
                    p,
                    "ticket.access_grant",
                    Some(&t),
                    "granting access requires the admin or manager role, or ticket ownership"
                        .into(),
                )
                .await);
        }
        self.check_active_user("username", &req.username).await?;
        if let Some(r) = req.reason.as_deref() {
            let mut errs = Vec::new();
            optional_text("reason", Some(r), MAX_TEXT, &mut errs);
            if !errs.is_empty() {
                return Err(AppError::Validation(errs));
            }
        }
        if !self.store.has_ticket_access(t.id, &req.username).await? {
            let entry = AuditDraft::new(p.username(), "ticket.access_granted", "ticket", t.id)
                .ticket(t.id)
                .details(json!({"username": req.username, "reason": req.reason}));
            let op = Op::GrantTicketAccess {
                ticket_id: t.id,
                username: req.username.clone(),
                granted_by: p.username().to_string(),
                at: self.now(),
            };
            self.store_commit(ChangeSet::new().op(op).audit(entry))
                .await?;
        }
        Ok(self.store.ticket_access(t.id).await?)
    }

    /// Removes a user from the ticket's access list; logged. 404 when they were not on it.
    pub async fn revoke_access(
        &self,
        p: &Principal,
        reference: &str,
        username: &str,
    ) -> AppResult<Vec<AccessGrant>> {
        let t = self.find_ticket(p, reference).await?;
        if !Self::may_manage_access(p, &t) {
            return Err(self
                .deny(
                    p,
                    "ticket.access_revoke",
                    Some(&t),
                    "revoking access requires the admin or manager role, or ticket ownership"
                        .into(),
                )
                .await);
        }
        let entry = AuditDraft::new(p.username(), "ticket.access_revoked", "ticket", t.id)
            .ticket(t.id)
            .details(json!({"username": username}));
        let op = Op::RevokeTicketAccess {
            ticket_id: t.id,
            username: username.to_string(),
        };
        self.store_commit(ChangeSet::new().op(op).audit(entry))
            .await?;
        Ok(self.store.ticket_access(t.id).await?)
    }
}

/// A timeline entry from an audit record: notes keep their text, changes get a summary.
pub fn log_view(r: AuditRecord) -> LogEntryView {
    let details: serde_json::Value =
        serde_json::from_str(&r.details).unwrap_or(serde_json::Value::Null);
    let s = |k: &str| {
        details
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (kind, text) = match r.action.as_str() {
        a if a.starts_with("log.") => (s("kind"), s("text")),
        "ticket.created" => (
            "change".into(),
            format!("opened the ticket: {}", s("title")),
        ),
        "ticket.updated" => {
            let fields: Vec<String> = details
                .get("changes")
                .and_then(|c| c.as_object())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            ("change".into(), format!("changed {}", fields.join(", ")))
        }
        a if a.starts_with("playbook.") => {
            let what = a.trim_start_matches("playbook.").replace('_', " ");
            let summary = details
                .pointer("/output/summary")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let mut text = match a {
                "playbook.step" => format!(
                    "playbook step {} ({}): {}",
                    s("step"),
                    s("action"),
                    s("status")
                ),
                "playbook.queued" | "playbook.started" | "playbook.resumed" => {
                    format!(
                        "playbook {} {what} (trigger {})",
                        s("playbook"),
                        s("trigger")
                    )
                }
                _ => format!("playbook {what}"),
            };
            let prompt = details
                .pointer("/approval/prompt")
                .and_then(|v| v.as_str())
                .map(|p| {
                    let role = details
                        .pointer("/approval/role")
                        .and_then(|v| v.as_str())
                        .unwrap_or("user");
                    format!("a {role} must decide: {p}")
                });
            for v in [
                summary,
                prompt,
                Some(s("error")),
                Some(s("outcome")),
                Some(s("reason")),
            ]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            {
                text.push_str(&format!(": {v}"));
            }
            if let Some(ms) = details.get("duration_ms").and_then(|v| v.as_i64()) {
                text.push_str(&format!(" ({ms} ms)"));
            }
            ("change".into(), text)
        }
        "ticket.observable_added" => {
            let mut text = format!("observable added: {} {}", s("kind"), s("value"));
            if details.get("ioc").and_then(|v| v.as_bool()) == Some(true) {
                text.push_str(" (indicator of compromise)");
            }
            if !s("description").is_empty() {
                text.push_str(&format!("; {}", s("description")));
            }
            ("change".into(), text)
        }
        "communication.recorded" => {
            // `to` is a list (several recipients); `from` a name or address
            let to: Vec<&str> = details
                .get("to")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let mut text = format!("{} {} recorded", s("direction"), s("channel"))
                .trim()
                .to_string();
            if !s("from").is_empty() {
                text.push_str(&format!(": from {}", s("from")));
            }
            if !to.is_empty() {
                text.push_str(&format!(" to {}", to.join(", ")));
            }
            if !s("subject").is_empty() {
                text.push_str(&format!("; subject: {}", s("subject")));
            }
            ("change".into(), text)
        }
        "authz.denied" => (
            "denied".into(),
            format!("was refused {}: {}", s("attempted"), s("reason")),
        ),
        a => {
            let verb = a
                .strip_prefix("ticket.")
                .unwrap_or(a)
                .replace(['.', '_'], " ");
            let (from, to) = (s("from"), s("to"));
            let mut text = match (from.is_empty(), to.is_empty()) {
                (true, true) => verb,
                (true, false) => format!("{verb}: {to}"),
                _ => format!("{verb}: {from} → {to}"),
            };
            for k in [
                "coordinator",
                "kind",
                "description",
                "filename",
                "reason",
                "rationale",
                "resolution",
                "problem_category",
                "comment",
                "summary",
            ] {
                let v = s(k);
                if !v.is_empty() {
                    text.push_str(&format!("; {}: {v}", k.replace('_', " ")));
                }
            }
            ("change".into(), text)
        }
    };
    LogEntryView {
        seq: r.seq,
        id: r.id,
        at: firebreak_store::from_millis(r.occurred_at_ms),
        actor: r.actor,
        action: r.action,
        kind,
        text,
        details,
        hash: r.hash,
    }
}
