//! The help desk's work on events: read the queue, report an event for a person, dismiss false
//! positives, open a ticket from events or merge them into one; suppression rules; observables
//! of events and tickets; communications captured on a ticket.

use crate::assets::asset_link;
use crate::intake::{BATCH, observables_of, priority_of};
use crate::tickets::{check_limit, decode_cursor, encode_cursor};
use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::api::{CreateTicketRequest, Page, TicketView};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::event::{
    AddObservable, BulkFailure, BulkOutcome, Communication, CreateCommunication, DismissEvents,
    Disposition, Event, IngestSummary, MergeEvents, Observable, ObservableDetail, ObservableRef,
    ReportEvent, Reporter, SuppressionRule, SuppressionRuleBody, TicketFromEvents,
};
use firebreak_domain::ids::TicketId;
use firebreak_domain::role::{Role, groups};
use firebreak_domain::ticket::{
    Criticality, EventStatus, Severity, Source, SourceKind, Ticket, TicketStatus,
};
use firebreak_intake::{Level, NormalizedEvent, ObservableKind};
use firebreak_store::{
    ChangeSet, EventFilter, ObservableFilter, ObservableRecord, Op, RecordFilter, StoreError,
    WorkflowRecord,
};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub(crate) const K_SUPPRESSION: &str = "suppression_rule";
const K_COMMUNICATION: &str = "communication";
/// Events one bulk action takes at most.
const MAX_BULK: usize = 500;

/// `GET /events` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListEvents {
    pub status: Option<String>,
    pub source: Option<String>,
    pub severity: Option<String>,
    /// Text in the title.
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `GET /observables` query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListObservables {
    pub kind: Option<String>,
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

const CHANNELS: &[&str] = &["email", "im", "phone", "meeting", "other"];

fn parse_opt<T>(
    field: &str,
    v: Option<&str>,
    parse: fn(&str) -> Option<T>,
    expected: &str,
) -> AppResult<Option<T>> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse(s)
            .map(Some)
            .ok_or_else(|| AppError::field(field, format!("expected one of: {expected}"))),
    }
}

fn level_of(s: Severity) -> Level {
    match s {
        Severity::Low => Level::Low,
        Severity::Medium => Level::Medium,
        Severity::High => Level::High,
        Severity::Critical => Level::Critical,
    }
}

fn max_severity(events: &[Event]) -> Severity {
    events
        .iter()
        .map(|e| e.severity)
        .max()
        .unwrap_or(Severity::Medium)
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// An observable as given (`kind` a hint, else guessed from the value), checked and made
/// canonical; with its description, trimmed.
fn checked_observable(b: &AddObservable) -> AppResult<(ObservableRef, Option<&str>)> {
    let hint = match b.kind.as_deref() {
        None => None,
        Some(k) => Some(ObservableKind::parse(k).ok_or_else(|| {
            AppError::field("kind", "expected one of: ip, domain, url, email, md5, sha1, sha256, cve, filename, hostname, user, other")
        })?),
    };
    if b.value.trim().is_empty() || b.value.len() > 2048 {
        return Err(AppError::field("value", "1 to 2048 characters"));
    }
    let description = b
        .description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if description.is_some_and(|d| d.len() > 4096) {
        return Err(AppError::field("description", "at most 4096 characters"));
    }
    let o = firebreak_intake::observables::classify(hint, b.value.trim()).ok_or_else(|| {
        AppError::field(
            "value",
            match &b.kind {
                Some(k) => format!("not a valid {k}"),
                None => "not a recognizable observable; give its kind".into(),
            },
        )
    })?;
    let r = ObservableRef {
        kind: o.kind.as_str().into(),
        value: o.value,
    };
    Ok((r, description))
}

impl App {
    pub(crate) fn reads_all_events(p: &Principal) -> bool {
        p.has_any(groups::READERS)
    }

    fn works_events(p: &Principal) -> bool {
        p.can_write() && p.has_any(groups::TEAM)
    }

    /// An event the principal may see: the team sees every event (except those on tickets it
    /// cannot see), others only what they reported. Others get 404.
    pub async fn find_event(&self, p: &Principal, id: &str) -> AppResult<Event> {
        if !p.can_read() && !Self::may_report(p) {
            return Err(AppError::NotFound);
        }
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let e = match self.store.get_event(id).await {
            Ok(e) => e,
            Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if !self.event_visible(p, &e, &mut HashMap::new()).await? {
            return Err(AppError::NotFound);
        }
        Ok(e)
    }

    async fn event_visible(
        &self,
        p: &Principal,
        e: &Event,
        tickets: &mut HashMap<TicketId, bool>,
    ) -> AppResult<bool> {
        self.event_visible_by(p, &e.reported_by, e.ticket_id, tickets)
            .await
    }

    /// [`App::event_visible`] from the two things it depends on: who reported the event and
    /// the ticket it went into.
    pub(crate) async fn event_visible_by(
        &self,
        p: &Principal,
        reported_by: &str,
        ticket_id: Option<TicketId>,
        tickets: &mut HashMap<TicketId, bool>,
    ) -> AppResult<bool> {
        if !(Self::reads_all_events(p) && p.can_read()) && reported_by != p.username() {
            return Ok(false);
        }
        let Some(tid) = ticket_id else {
            return Ok(true);
        };
        if let Some(v) = tickets.get(&tid) {
            return Ok(*v);
        }
        let t = self.store.get_ticket(tid).await?;
        let v = reported_by == p.username() && !t.restricted || self.can_see(p, &t).await?;
        tickets.insert(tid, v);
        Ok(v)
    }

    pub async fn list_events(&self, p: &Principal, q: &ListEvents) -> AppResult<Page<Event>> {
        if !p.can_read() && !Self::may_report(p) {
            return Err(AppError::Forbidden(
                "reading events requires a token allowed to read".into(),
            ));
        }
        let limit = check_limit(q.limit)?;
        let status = parse_opt(
            "status",
            q.status.as_deref(),
            EventStatus::parse,
            &EventStatus::expected(),
        )?;
        let severity = parse_opt(
            "severity",
            q.severity.as_deref(),
            Severity::parse,
            &Severity::expected(),
        )?;
        let before = q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| decode_cursor("e", c))
            .transpose()?;
        let mut filter = EventFilter {
            status,
            source: q.source.clone().filter(|s| !s.is_empty()),
            severity,
            text: q.q.clone().filter(|s| !s.trim().is_empty()),
            before_seq: before,
            limit: limit + 1,
            ..Default::default()
        };
        // a token that may only report (scope `intake`) sees what it reported, whatever the role
        if !(Self::reads_all_events(p) && p.can_read()) {
            filter.reported_by = Some(p.username().to_string());
        }
        let mut rows = self.store.list_events(&filter).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|(seq, _)| encode_cursor("e", *seq))
        } else {
            None
        };
        let mut cache = HashMap::new();
        let mut items = Vec::with_capacity(rows.len());
        for (_, e) in rows {
            if self.event_visible(p, &e, &mut cache).await? {
                items.push(e);
            }
        }
        Ok(Page { items, next_cursor })
    }

    /// How many events have each status (the queue's counters).
    pub async fn event_counts(&self, p: &Principal) -> AppResult<BTreeMap<String, i64>> {
        if !p.can_read() || !Self::reads_all_events(p) {
            return Err(AppError::Forbidden(
                "event counts are for the help desk, responders, managers and auditors".into(),
            ));
        }
        let mut out: BTreeMap<String, i64> = EventStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        for (s, n) in self.store.count_events().await? {
            out.insert(s.as_str().into(), n);
        }
        Ok(out)
    }

    /// A report filed by or for a person (the report form).
    pub async fn report_event(&self, p: &Principal, b: &ReportEvent) -> AppResult<Event> {
        self.check_reporter(p).await?;
        b.check()?;
        let reporter = b.reporter.clone().unwrap_or(Reporter {
            kind: SourceKind::Employee,
            name: Some(p.username().to_string()),
            contact: p.user.email.clone(),
        });
        let mut ne = NormalizedEvent::new(reporter.kind.as_str(), "report-form", b.title.trim());
        ne.description = b.description.clone();
        ne.severity = level_of(b.severity.unwrap_or(Severity::Medium));
        ne.occurred_at = b.occurred_at;
        ne.host = b.host.clone().filter(|h| !h.trim().is_empty());
        ne.tags = b.tags.clone();
        ne.reporter = Some(firebreak_intake::Reporter {
            kind: reporter.kind.as_str().into(),
            name: reporter.name.clone(),
            contact: reporter.contact.clone(),
        });
        for (i, o) in b.observables.iter().enumerate() {
            let hint = ObservableKind::parse(&o.kind).ok_or_else(|| {
                AppError::field(
                    &format!("observables[{i}].kind"),
                    "expected one of: ip, domain, url, email, md5, sha1, sha256, cve, filename, hostname, user, other",
                )
            })?;
            let ob =
                firebreak_intake::observables::classify(Some(hint), &o.value).ok_or_else(|| {
                    AppError::field(
                        &format!("observables[{i}].value"),
                        format!("not a valid {}", o.kind),
                    )
                })?;
            ne.observables.push(ob);
        }
        // every report is its own event: people's reports are never merged by fingerprint
        ne.dedup_key = Some(format!("report:{}", Uuid::now_v7()));
        ne.raw = serde_json::to_string(&json!({
            "title": b.title, "description": b.description, "severity": b.severity,
            "reporter": reporter, "host": b.host, "tags": b.tags, "observables": b.observables,
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut summary = IngestSummary::default();
        self.ingest_batch(p.username(), vec![ne], &mut summary, None)
            .await?;
        let id = summary
            .events
            .first()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("the report produced no event"))?;
        Ok(self.store.get_event(id).await?)
    }

    async fn events_for_action(&self, p: &Principal, ids: &[Uuid]) -> AppResult<Vec<Event>> {
        if ids.is_empty() {
            return Err(AppError::field("events", "name at least one event"));
        }
        if ids.len() > MAX_BULK {
            return Err(AppError::field(
                "events",
                format!("at most {MAX_BULK} events at once"),
            ));
        }
        let mut out = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if out.iter().any(|e: &Event| e.id == *id) {
                continue;
            }
            match self.find_event(p, &id.to_string()).await {
                Ok(e) => out.push(e),
                Err(AppError::NotFound) => {
                    return Err(AppError::field(
                        &format!("events[{i}]"),
                        format!("no event {id}"),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn out_of_queue(e: &Event) -> AppError {
        AppError::Conflict {
            code: "event_not_in_queue",
            message: format!(
                "event {} is {} already{}",
                e.id,
                e.status.as_str(),
                e.ticket_id
                    .map(|t| format!(" (ticket {t})"))
                    .unwrap_or_default()
            ),
        }
    }

    /// Dismisses events as false positives, with the reason; each one on its own, so that one
    /// that was taken meanwhile does not stop the others.
    pub async fn dismiss_events(&self, p: &Principal, b: &DismissEvents) -> AppResult<BulkOutcome> {
        if !Self::works_events(p) {
            return Err(self
                .deny(
                    p,
                    "event.dismiss",
                    None,
                    "dismissing events is for the help desk, responders and managers".into(),
                )
                .await);
        }
        let reason = b.reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(AppError::field("reason", "1 to 2000 characters"));
        }
        let events = self.events_for_action(p, &b.events).await?;
        let mut out = BulkOutcome {
            done: vec![],
            failed: vec![],
        };
        for e in events {
            match self.dismiss_one(p, e, reason).await {
                Ok(id) => out.done.push(id),
                Err((id, err)) => out.failed.push(BulkFailure {
                    event: id,
                    code: match &err {
                        AppError::Conflict { code, .. } => (*code).to_string(),
                        _ => "failed".into(),
                    },
                    message: err.to_string(),
                }),
            }
        }
        Ok(out)
    }

    async fn dismiss_one(
        &self,
        p: &Principal,
        mut e: Event,
        reason: &str,
    ) -> Result<Uuid, (Uuid, AppError)> {
        let id = e.id;
        for _ in 0..5 {
            if !e.in_queue() {
                return Err((id, Self::out_of_queue(&e)));
            }
            let old = e.version;
            let from = e.status;
            e.status = EventStatus::Dismissed;
            e.disposition = Some(Disposition {
                by: p.username().into(),
                at: self.now(),
                reason: Some(reason.into()),
            });
            let cs = ChangeSet::new()
                .op(Op::UpdateEvent {
                    event: Box::new(e.clone()),
                    expected_version: old,
                })
                .audit(
                    AuditDraft::new(p.username(), "event.dismissed", "event", id)
                        .details(json!({"reason": reason, "from": from, "title": e.title, "source": e.source})),
                );
            match self.commit(cs).await {
                Ok(_) => return Ok(id),
                Err(StoreError::Conflict(_)) => {
                    e = self.store.get_event(id).await.map_err(|x| (id, x.into()))?;
                }
                Err(x) => return Err((id, x.into())),
            }
        }
        Err((
            id,
            AppError::Conflict {
                code: "concurrent_update",
                message: "the event kept changing; retry".into(),
            },
        ))
    }

    /// Opens one ticket from one or more queued events.
    pub async fn ticket_from_events(
        &self,
        p: &Principal,
        b: &TicketFromEvents,
    ) -> AppResult<TicketView> {
        if !p.can_write() || !p.has_any(groups::TICKET_OPENERS) {
            return Err(self
                .deny(p, "event.ticket", None, "opening tickets requires the helpdesk, responder, senior_responder or manager role".into())
                .await);
        }
        let events = self.events_for_action(p, &b.events).await?;
        if let Some(e) = events.iter().find(|e| !e.in_queue()) {
            return Err(Self::out_of_queue(e));
        }
        self.open_ticket_for_events(p.username(), p.username(), &events, Some(b))
            .await
    }

    /// The ticket for `events` (validated like `POST /tickets`), the events marked `ticketed`,
    /// their observables and assets linked: one commit.
    pub(crate) async fn open_ticket_for_events(
        &self,
        actor: &str,
        owner: &str,
        events: &[Event],
        b: Option<&TicketFromEvents>,
    ) -> AppResult<TicketView> {
        let first = events
            .first()
            .ok_or_else(|| AppError::field("events", "name at least one event"))?;
        let severity = b
            .and_then(|b| b.severity)
            .unwrap_or_else(|| max_severity(events));
        let description = b.and_then(|b| b.description.clone()).unwrap_or_else(|| {
            let mut d = String::new();
            for e in events {
                d.push_str(&format!(
                    "Event {} from {} ({}), {} occurrence(s), first {}:\n{}\n{}\n\n",
                    e.id,
                    e.source,
                    e.source_kind.as_str(),
                    e.occurrences,
                    e.occurred_at,
                    e.title,
                    clip(e.description.as_deref().unwrap_or(""), 4000)
                ));
            }
            clip(d.trim_end(), 60_000)
        });
        let reporter = first.reporter.clone();
        let req = CreateTicketRequest {
            title: b
                .and_then(|b| b.title.clone())
                .unwrap_or_else(|| clip(&first.title, 300)),
            description: Some(description),
            source: Some(Source {
                kind: reporter
                    .as_ref()
                    .map(|r| r.kind)
                    .unwrap_or(first.source_kind),
                name: Some(clip(
                    reporter
                        .as_ref()
                        .and_then(|r| r.name.as_deref())
                        .unwrap_or(&first.source),
                    200,
                )),
                contact: reporter
                    .as_ref()
                    .and_then(|r| r.contact.clone())
                    .map(|c| clip(&c, 200)),
            }),
            severity: Some(severity),
            priority: b.and_then(|b| b.priority),
            restricted: b.map(|b| b.restricted),
            tags: b.map(|b| b.tags.clone()),
            assignee: None,
        };
        let v = req.validate()?;
        let plan = self.current_plan().await?;
        let now = self.now();
        let priority = b.and_then(|b| b.priority).unwrap_or_else(|| {
            let from_events = priority_of(events, severity);
            plan.thresholds
                .priority_by_severity
                .get(&severity)
                .copied()
                .map_or(from_events, |pl| pl.min(from_events))
        });
        let mut reason = events.iter().find_map(|e| {
            e.classification
                .as_ref()
                .and_then(|c| c.escalation_reason.clone())
        });
        if reason.is_none() && plan.thresholds.escalate_severities.contains(&severity) {
            reason = Some(format!(
                "the response plan escalates {} severity",
                severity.as_str()
            ));
        }
        let mut t = Ticket {
            id: TicketId::new(),
            number: 0,
            title: v.title,
            description: v.description,
            source: v.source.unwrap_or(Source {
                kind: SourceKind::Internal,
                name: Some(actor.to_string()),
                contact: None,
            }),
            severity,
            priority,
            criticality: if reason.is_some() {
                Criticality::Escalation
            } else {
                Criticality::Normal
            },
            tier: if reason.is_some() { 2 } else { 1 },
            status: TicketStatus::Open,
            owner: owner.to_string(),
            assignee: None,
            restricted: v.restricted,
            tags: v.tags,
            resolution: None,
            problem_category: None,
            false_positive: false,
            incident: false,
            created_by: actor.to_string(),
            created_at: now,
            updated_at: now,
            version: 1,
            escalation_reason: reason.clone(),
        };
        let mut cs = ChangeSet::new().op(Op::InsertTicket(t.clone())).audit(
            AuditDraft::new(actor, "ticket.created", "ticket", t.id)
                .ticket(t.id)
                .details(json!({
                    "title": t.title, "severity": t.severity, "priority": t.priority, "source": t.source,
                    "restricted": t.restricted, "tags": t.tags, "criticality": t.criticality,
                    "classification_reason": reason, "from_events": events.iter().map(|e| e.id).collect::<Vec<_>>(),
                })),
        );
        let mut observables: Vec<ObservableRef> = Vec::new();
        let mut asset_ids: Vec<Uuid> = Vec::new();
        for e in events {
            let mut n = e.clone();
            n.status = EventStatus::Ticketed;
            n.ticket_id = Some(t.id);
            n.disposition = Some(Disposition {
                by: actor.to_string(),
                at: now,
                reason: Some(format!("ticket opened from the event by {actor}")),
            });
            cs = cs
                .op(Op::UpdateEvent {
                    event: Box::new(n),
                    expected_version: e.version,
                })
                .audit(
                    AuditDraft::new(actor, "event.ticketed", "event", e.id)
                        .ticket(t.id)
                        .details(json!({"event": e.id, "source": e.source, "title": e.title, "occurrences": e.occurrences})),
                );
            for o in &e.observables {
                if !observables.contains(o) {
                    observables.push(o.clone());
                }
            }
            for a in &e.assets {
                if !asset_ids.contains(&a.id) {
                    asset_ids.push(a.id);
                    cs = cs.op(Op::InsertRecord(asset_link(t.id, a.id, &a.name, now)));
                }
            }
        }
        for o in observables_of(Vec::new(), &[&t.title, &t.description]) {
            if !observables.contains(&o) {
                observables.push(o);
            }
        }
        if !observables.is_empty() {
            cs = cs.op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables,
                at: now,
            });
        }
        let out = match self.commit(cs).await {
            Ok(o) => o,
            Err(StoreError::Conflict(_)) => {
                return Err(AppError::Conflict {
                    code: "concurrent_update",
                    message: "an event changed meanwhile (another ticket or a dismissal?); reload and retry".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        t.number = out
            .ticket_numbers
            .first()
            .copied()
            .ok_or_else(|| anyhow::anyhow!("store assigned no ticket number"))?;
        tracing::info!(
            user = actor,
            ticket.number = t.number,
            events = events.len(),
            "ticket opened from events"
        );
        Ok(TicketView::new(t, &self.config.ticket_prefix))
    }

    /// Adds queued events to an existing ticket (status `merged`).
    pub async fn merge_events(&self, p: &Principal, b: &MergeEvents) -> AppResult<TicketView> {
        let t = self.find_ticket(p, &b.ticket).await.map_err(|e| match e {
            AppError::NotFound => AppError::field("ticket", format!("no ticket {:?}", b.ticket)),
            other => other,
        })?;
        if !Self::works_events(p) {
            return Err(self
                .deny(
                    p,
                    "event.merge",
                    Some(&t),
                    "merging events is for the help desk, responders and managers".into(),
                )
                .await);
        }
        if t.status == TicketStatus::Closed {
            return Err(AppError::Conflict {
                code: "invalid_transition",
                message: "the ticket is closed; reopen it first".into(),
            });
        }
        let events = self.events_for_action(p, &b.events).await?;
        if let Some(e) = events.iter().find(|e| !e.in_queue()) {
            return Err(Self::out_of_queue(e));
        }
        let now = self.now();
        let linked: Vec<Uuid> = self.ticket_assets(&t).await?.iter().map(|a| a.id).collect();
        let mut cs = ChangeSet::new();
        let mut observables: Vec<ObservableRef> = Vec::new();
        let mut escalate: Option<String> = None;
        let mut added_assets: Vec<Uuid> = Vec::new();
        for e in &events {
            let mut n = e.clone();
            n.status = EventStatus::Merged;
            n.ticket_id = Some(t.id);
            n.disposition = Some(Disposition {
                by: p.username().into(),
                at: now,
                reason: Some(format!(
                    "merged into {}",
                    firebreak_domain::api::format_number(&self.config.ticket_prefix, t.number)
                )),
            });
            cs = cs
                .op(Op::UpdateEvent {
                    event: Box::new(n),
                    expected_version: e.version,
                })
                .audit(
                    AuditDraft::new(p.username(), "event.merged", "event", e.id)
                        .ticket(t.id)
                        .details(json!({"event": e.id, "source": e.source, "title": e.title, "occurrences": e.occurrences})),
                );
            for o in &e.observables {
                if !observables.contains(o) {
                    observables.push(o.clone());
                }
            }
            for a in &e.assets {
                if !linked.contains(&a.id) && !added_assets.contains(&a.id) {
                    added_assets.push(a.id);
                    cs = cs.op(Op::InsertRecord(asset_link(t.id, a.id, &a.name, now)));
                }
            }
            if escalate.is_none() {
                escalate = e
                    .classification
                    .as_ref()
                    .and_then(|c| c.escalation_reason.clone());
            }
        }
        if !observables.is_empty() {
            cs = cs.op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables,
                at: now,
            });
        }
        let mut n = t.clone();
        if let Some(reason) = &escalate
            && t.criticality == Criticality::Normal
        {
            n.criticality = Criticality::Escalation;
            n.tier = 2;
            n.escalation_reason = Some(reason.clone());
            n.updated_at = now;
            cs = cs
                .op(Op::UpdateTicket {
                    ticket: n.clone(),
                    expected_version: t.version,
                })
                .audit(
                    AuditDraft::new(p.username(), "ticket.classified", "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({"from": "normal", "to": "escalation", "reason": reason})),
                );
        }
        match self.commit_ticket_change(cs, &t, n.clone()).await? {
            Some(v) if n.criticality != t.criticality => Ok(v),
            Some(_) => Ok(TicketView::new(t, &self.config.ticket_prefix)),
            None => Err(AppError::Conflict {
                code: "concurrent_update",
                message: "the ticket or an event changed meanwhile; reload and retry".into(),
            }),
        }
    }

    /// The events linked to a ticket (ticketed into it or merged), newest first.
    pub async fn ticket_events(&self, p: &Principal, reference: &str) -> AppResult<Vec<Event>> {
        let t = self.find_ticket(p, reference).await?;
        let rows = self
            .store
            .list_events(&EventFilter {
                ticket_id: Some(t.id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    // ---- suppression rules ----

    pub(crate) async fn suppression_rules_raw(&self) -> AppResult<Vec<SuppressionRule>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_SUPPRESSION.into(),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        Ok(recs
            .iter()
            .filter(|r| r.status != "deleted")
            .filter_map(|r| match serde_json::from_str::<SuppressionRule>(&r.data) {
                Ok(rule) => Some(rule),
                Err(e) => {
                    tracing::warn!(rule = %r.id, error = %e, "stored suppression rule unreadable; skipped");
                    None
                }
            })
            .collect())
    }

    fn may_manage_rules(p: &Principal) -> bool {
        p.can_write() && (p.user.has_role(Role::Admin) || p.has_any(groups::TEAM))
    }

    /// Every rule, with its hit counters.
    pub async fn list_suppression_rules(&self, p: &Principal) -> AppResult<Vec<SuppressionRule>> {
        if !p.can_read() || !(Self::reads_all_events(p)) {
            return Err(AppError::Forbidden(
                "suppression rules are for the help desk, responders, managers, auditors and admins".into(),
            ));
        }
        let hits = self.store.suppression_hits().await?;
        let mut rules = self.suppression_rules_raw().await?;
        for r in &mut rules {
            if let Some(h) = hits.iter().find(|h| h.rule_id == r.id) {
                r.hits = h.events;
                r.hit_occurrences = h.occurrences;
                r.last_hit = Some(h.last_hit);
            }
        }
        Ok(rules)
    }

    pub async fn get_suppression_rule(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<SuppressionRule> {
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        self.list_suppression_rules(p)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(AppError::NotFound)
    }

    async fn check_rule_body(&self, p: &Principal, b: &SuppressionRuleBody) -> AppResult<()> {
        let mut errs = b.validate();
        // the help desk's rules hide events from everyone: they must end
        let senior = p.user.has_role(Role::Admin)
            || p.has_any(&[Role::Responder, Role::SeniorResponder, Role::Manager]);
        if !senior {
            match b.expires_at {
                None => errs.push(firebreak_domain::FieldError::new(
                    "expires_at",
                    "required for rules made by the help desk (at most 90 days ahead)",
                )),
                Some(x) if x > self.now() + time::Duration::days(90) => {
                    errs.push(firebreak_domain::FieldError::new(
                        "expires_at",
                        "at most 90 days ahead for rules made by the help desk",
                    ))
                }
                Some(_) => {}
            }
        }
        if !b.condition.trim().is_empty()
            && let Err(e) = crate::expr::Condition::compile(&b.condition)
        {
            errs.push(firebreak_domain::FieldError::new(
                "condition",
                format!("not a valid CEL condition: {e}"),
            ));
        }
        if let Some(exp) = b.expires_at
            && exp <= self.now()
        {
            errs.push(firebreak_domain::FieldError::new(
                "expires_at",
                "must be in the future",
            ));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(errs))
        }
    }

    pub async fn create_suppression_rule(
        &self,
        p: &Principal,
        b: &SuppressionRuleBody,
    ) -> AppResult<SuppressionRule> {
        if !Self::may_manage_rules(p) {
            return Err(self
                .deny(p, "suppression_rule.create", None, "suppression rules are managed by the help desk, responders, managers and admins".into())
                .await);
        }
        self.check_rule_body(p, b).await?;
        if let Some(o) = &b.owner {
            self.check_active_user("owner", o).await?;
        }
        let now = self.now();
        let rule = SuppressionRule {
            id: Uuid::now_v7(),
            name: b.name.trim().into(),
            condition: b.condition.trim().into(),
            reason: b.reason.trim().into(),
            owner: b.owner.clone().unwrap_or_else(|| p.username().into()),
            expires_at: b.expires_at,
            enabled: b.enabled,
            created_by: p.username().into(),
            created_at: now,
            hits: 0,
            hit_occurrences: 0,
            last_hit: None,
        };
        let rec = WorkflowRecord {
            id: rule.id,
            kind: K_SUPPRESSION.into(),
            ticket_id: None,
            parent_id: None,
            status: "active".into(),
            principal: Some(rule.owner.clone()),
            data: serde_json::to_string(&rule).map_err(|e| anyhow::anyhow!("{e}"))?,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.store_commit(
            ChangeSet::new().op(Op::InsertRecord(rec)).audit(
                AuditDraft::new(
                    p.username(),
                    "suppression_rule.created",
                    "suppression_rule",
                    rule.id,
                )
                .details(
                    json!({"name": rule.name, "condition": rule.condition, "reason": rule.reason,
                                        "owner": rule.owner, "expires_at": rule.expires_at}),
                ),
            ),
        )
        .await?;
        self.invalidate_intake();
        Ok(rule)
    }

    /// Replaces a rule (`deleted: true` removes it from use; the record stays for the audit).
    pub async fn update_suppression_rule(
        &self,
        p: &Principal,
        id: &str,
        b: Option<&SuppressionRuleBody>,
    ) -> AppResult<Option<SuppressionRule>> {
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let rec = match self.store.get_record(id).await {
            Ok(r) if r.kind == K_SUPPRESSION && r.status != "deleted" => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if !Self::may_manage_rules(p) {
            return Err(self
                .deny(p, "suppression_rule.update", None, "suppression rules are managed by the help desk, responders, managers and admins".into())
                .await);
        }
        let mut rule: SuppressionRule = serde_json::from_str(&rec.data)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("stored rule unreadable: {e}")))?;
        let now = self.now();
        let (action, status) = match b {
            Some(b) => {
                self.check_rule_body(p, b).await?;
                if let Some(o) = &b.owner {
                    self.check_active_user("owner", o).await?;
                }
                rule.name = b.name.trim().into();
                rule.condition = b.condition.trim().into();
                rule.reason = b.reason.trim().into();
                if let Some(o) = &b.owner {
                    rule.owner = o.clone();
                }
                rule.expires_at = b.expires_at;
                rule.enabled = b.enabled;
                ("suppression_rule.updated", "active")
            }
            None => ("suppression_rule.deleted", "deleted"),
        };
        let mut n = rec.clone();
        n.status = status.into();
        n.principal = Some(rule.owner.clone());
        n.data = serde_json::to_string(&rule).map_err(|e| anyhow::anyhow!("{e}"))?;
        n.updated_at = now;
        self.store_commit(
                ChangeSet::new()
                    .op(Op::UpdateRecord {
                        record: n,
                        expected_version: rec.version,
                    })
                    .audit(
                        AuditDraft::new(p.username(), action, "suppression_rule", id).details(json!({
                            "name": rule.name, "condition": rule.condition, "reason": rule.reason,
                            "owner": rule.owner, "expires_at": rule.expires_at, "enabled": rule.enabled})),
                    ),
            )
            .await?;
        self.invalidate_intake();
        if b.is_none() {
            return Ok(None);
        }
        Ok(Some(self.get_suppression_rule(p, &id.to_string()).await?))
    }

    // ---- observables ----

    fn observable_view(r: ObservableRecord) -> Observable {
        Observable {
            id: r.id,
            kind: r.kind,
            value: r.value,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            events: r.events,
            tickets: r.tickets,
        }
    }

    pub async fn list_observables(
        &self,
        p: &Principal,
        q: &ListObservables,
    ) -> AppResult<Page<Observable>> {
        if !p.can_read() || !Self::reads_all_events(p) {
            return Err(AppError::Forbidden(
                "observables are for the help desk, responders, managers, auditors and admins"
                    .into(),
            ));
        }
        let limit = check_limit(q.limit)?;
        let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => {
                let (ms, id) = c
                    .split_once('.')
                    .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<Uuid>().ok()?)))
                    .ok_or_else(|| AppError::field("cursor", "not a cursor this API gave"))?;
                Some((ms, id))
            }
        };
        let mut rows = self
            .store
            .list_observables(&ObservableFilter {
                kind: q.kind.clone().filter(|k| !k.is_empty()),
                text: q.q.clone().filter(|k| !k.trim().is_empty()),
                after,
                limit: limit + 1,
                ..Default::default()
            })
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last()
                .map(|r| format!("{}.{}", firebreak_store::to_millis(r.last_seen), r.id))
        } else {
            None
        };
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            if self.observable_visible(p, &r).await? {
                items.push(Self::observable_view(r));
            }
        }
        Ok(Page { items, next_cursor })
    }

    /// An observable seen only on tickets the principal may not see (restricted ones) is not
    /// shown to them: its value alone could tell what the ticket is about.
    pub(crate) async fn observable_visible(
        &self,
        p: &Principal,
        r: &ObservableRecord,
    ) -> AppResult<bool> {
        if r.events > 0 || p.restricted_ok() {
            return Ok(true);
        }
        for tid in self.store.observable_tickets(r.id).await? {
            let t = self.store.get_ticket(tid).await?;
            if self.can_see(p, &t).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn get_observable(&self, p: &Principal, id: &str) -> AppResult<ObservableDetail> {
        if !p.can_read() || !Self::reads_all_events(p) {
            return Err(AppError::NotFound);
        }
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let r = self.store.get_observable(id).await?;
        if !self.observable_visible(p, &r).await? {
            return Err(AppError::NotFound);
        }
        let mut event_ids = Vec::new();
        let mut seen_tickets = HashMap::new();
        for eid in self.store.observable_events(id, 100).await? {
            let e = self.store.get_event(eid).await?;
            if self.event_visible(p, &e, &mut seen_tickets).await? {
                event_ids.push(eid);
            }
        }
        let mut ticket_numbers = Vec::new();
        for tid in self.store.observable_tickets(id).await? {
            let t = self.store.get_ticket(tid).await?;
            if self.can_see(p, &t).await? {
                ticket_numbers.push(firebreak_domain::api::format_number(
                    &self.config.ticket_prefix,
                    t.number,
                ));
            }
        }
        Ok(ObservableDetail {
            observable: Self::observable_view(r),
            event_ids,
            ticket_numbers,
        })
    }

    pub async fn ticket_observables(
        &self,
        p: &Principal,
        reference: &str,
    ) -> AppResult<Vec<Observable>> {
        let t = self.find_ticket(p, reference).await?;
        let rows = self
            .store
            .list_observables(&ObservableFilter {
                ticket_id: Some(t.id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        Ok(rows.into_iter().map(Self::observable_view).collect())
    }

    pub async fn add_ticket_observable(
        &self,
        p: &Principal,
        reference: &str,
        b: &AddObservable,
    ) -> AppResult<Observable> {
        let t = self
            .team_ticket(
                p,
                reference,
                "ticket.observable",
                "observables are added by the help desk, responders and managers",
            )
            .await?;
        let (r, description) = checked_observable(b)?;
        let now = self.now();
        self.store_commit(
            ChangeSet::new()
                .op(Op::LinkTicketObservables {
                    ticket_id: t.id,
                    observables: vec![r.clone()],
                    at: now,
                })
                .audit(
                    AuditDraft::new(p.username(), "ticket.observable_added", "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({"kind": r.kind, "value": r.value,
                            "description": description, "ioc": b.ioc.unwrap_or(false)})),
                ),
        )
        .await?;
        Ok(Self::observable_view(
            self.store.get_observable(r.id()).await?,
        ))
    }

    /// Adds observables to a stored event (TheHive's `POST /alert/{id}/observable`): for those
    /// who may submit events (refused and audited otherwise) and who can see the event (404
    /// otherwise). In one change set: the event's list, the links, and an audit entry per new
    /// observable (in the incident log of the event's ticket, when it is on one). Observables
    /// the event already has are answered and not added again. Answers them, in order.
    pub async fn add_event_observables(
        &self,
        p: &Principal,
        id: &str,
        items: &[AddObservable],
    ) -> AppResult<Vec<Observable>> {
        self.check_reporter(p).await?;
        let mut e = self.find_event(p, id).await?;
        if items.is_empty() {
            return Err(AppError::field("observables", "at least one"));
        }
        if items.len() > 1000 {
            return Err(AppError::field("observables", "at most 1000 at once"));
        }
        let mut checked = Vec::with_capacity(items.len());
        for b in items {
            checked.push(checked_observable(b)?);
        }
        let mut done = false;
        for _ in 0..5 {
            let now = self.now();
            let old = e.version;
            let mut cs = ChangeSet::new();
            let mut added = Vec::new();
            for ((r, description), b) in checked.iter().zip(items) {
                if e.observables.contains(r) || added.contains(r) {
                    continue;
                }
                added.push(r.clone());
                let mut entry =
                    AuditDraft::new(p.username(), "event.observable_added", "event", e.id)
                        .details(json!({"kind": r.kind, "value": r.value,
                        "description": description, "ioc": b.ioc.unwrap_or(false)}));
                if let Some(t) = e.ticket_id {
                    entry = entry.ticket(t);
                }
                cs = cs.audit(entry);
            }
            if added.is_empty() {
                done = true;
                break;
            }
            e.observables.extend(added.iter().cloned());
            cs = cs
                .op(Op::UpdateEvent {
                    event: Box::new(e.clone()),
                    expected_version: old,
                })
                .op(Op::LinkEventObservables {
                    event_id: e.id,
                    observables: added,
                    at: now,
                });
            match self.commit(cs).await {
                Ok(_) => {
                    done = true;
                    break;
                }
                Err(StoreError::Conflict(_)) => {
                    e = match self.store.get_event(e.id).await {
                        Ok(e) => e,
                        Err(StoreError::NotFound) => return Err(AppError::NotFound),
                        Err(x) => return Err(x.into()),
                    };
                }
                Err(StoreError::NotFound) => return Err(AppError::NotFound),
                Err(x) => return Err(x.into()),
            }
        }
        if !done {
            return Err(AppError::Conflict {
                code: "concurrent_update",
                message: "the event kept changing; retry".into(),
            });
        }
        let mut out = Vec::with_capacity(checked.len());
        for (r, _) in &checked {
            out.push(Self::observable_view(
                self.store.get_observable(r.id()).await?,
            ));
        }
        Ok(out)
    }

    // ---- communications ----

    pub async fn add_communication(
        &self,
        p: &Principal,
        reference: &str,
        b: &CreateCommunication,
    ) -> AppResult<Communication> {
        let t = self
            .team_ticket(
                p,
                reference,
                "ticket.communication",
                "communications are captured by the help desk, responders and managers",
            )
            .await?;
        let mut errs = Vec::new();
        if !CHANNELS.contains(&b.channel.as_str()) {
            errs.push(firebreak_domain::FieldError::new(
                "channel",
                format!("expected one of: {}", CHANNELS.join(", ")),
            ));
        }
        if !matches!(b.direction.as_str(), "inbound" | "outbound") {
            errs.push(firebreak_domain::FieldError::new(
                "direction",
                "expected one of: inbound, outbound",
            ));
        }
        if b.body.chars().count() > 1_000_000 || b.body.contains('\0') {
            errs.push(firebreak_domain::FieldError::new(
                "body",
                "at most 1000000 characters, no NUL",
            ));
        }
        if b.subject
            .as_deref()
            .is_some_and(|s| s.chars().count() > 1000)
        {
            errs.push(firebreak_domain::FieldError::new(
                "subject",
                "at most 1000 characters",
            ));
        }
        if b.from.as_deref().is_some_and(|s| s.chars().count() > 320) {
            errs.push(firebreak_domain::FieldError::new(
                "from",
                "at most 320 characters",
            ));
        }
        if b.to.len() > 100 || b.to.iter().any(|s| s.chars().count() > 320) {
            errs.push(firebreak_domain::FieldError::new(
                "to",
                "at most 100 recipients of 320 characters",
            ));
        }
        if !errs.is_empty() {
            return Err(AppError::Validation(errs));
        }
        let docs = self.store.list_documents(t.id).await?;
        for (i, a) in b.attachments.iter().enumerate() {
            if !docs.iter().any(|d| d.id.as_uuid() == *a) {
                return Err(AppError::field(
                    &format!("attachments[{i}]"),
                    "no such document on this ticket; upload it first",
                ));
            }
        }
        let c = Communication {
            id: Uuid::now_v7(),
            channel: b.channel.clone(),
            direction: b.direction.clone(),
            from: b.from.clone(),
            to: b.to.clone(),
            occurred_at: b
                .occurred_at
                .map(firebreak_store::truncate_millis)
                .unwrap_or(self.now()),
            subject: b.subject.clone(),
            body: b.body.clone(),
            attachments: b.attachments.clone(),
            message_id: None,
            recorded_by: p.username().into(),
            recorded_at: self.now(),
        };
        self.record_communication(p.username(), &t, c).await
    }

    /// Stores a communication on a ticket with its observables, audited on the timeline.
    pub(crate) async fn record_communication(
        &self,
        actor: &str,
        t: &Ticket,
        c: Communication,
    ) -> AppResult<Communication> {
        let now = self.now();
        let rec = WorkflowRecord {
            id: c.id,
            kind: K_COMMUNICATION.into(),
            ticket_id: Some(t.id),
            parent_id: None,
            status: c.direction.clone(),
            principal: Some(actor.into()),
            data: serde_json::to_string(&c).map_err(|e| anyhow::anyhow!("{e}"))?,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut cs = ChangeSet::new().op(Op::InsertRecord(rec)).audit(
            AuditDraft::new(actor, "communication.recorded", "communication", c.id)
                .ticket(t.id)
                .details(json!({"channel": c.channel, "direction": c.direction, "from": c.from,
                                "to": c.to, "subject": c.subject,
                                "occurred_at": c.occurred_at.format(&time::format_description::well_known::Rfc3339).ok(),
                                "body_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(c.body.as_bytes())),
                                "message_id": c.message_id})),
        );
        let obs = observables_of(Vec::new(), &[c.subject.as_deref().unwrap_or(""), &c.body]);
        if !obs.is_empty() {
            cs = cs.op(Op::LinkTicketObservables {
                ticket_id: t.id,
                observables: obs,
                at: now,
            });
        }
        self.commit(cs).await?;
        Ok(c)
    }

    pub async fn list_communications(
        &self,
        p: &Principal,
        reference: &str,
    ) -> AppResult<Vec<Communication>> {
        let t = self.find_ticket(p, reference).await?;
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_COMMUNICATION.into(),
                ticket_id: Some(t.id),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        recs.iter()
            .map(|r| {
                serde_json::from_str(&r.data).map_err(|e| {
                    AppError::Unexpected(anyhow::anyhow!("stored communication unreadable: {e}"))
                })
            })
            .collect()
    }
}

/// The batch size for callers that stream records (NDJSON, HEC, syslog).
pub const INGEST_BATCH: usize = BATCH;

/// What happened to one email.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MailOutcome {
    /// Its subject named a ticket: captured as a communication on it.
    Communication {
        ticket: String,
        #[serde(rename = "communication")]
        id: Uuid,
        /// Documents stored on the ticket: the message itself and its attachments.
        documents: Vec<Uuid>,
    },
    /// A new report: an event (or a repeat of one, by `Message-ID`).
    Event { summary: IngestSummary },
}

impl App {
    /// One email from the report mailbox or an `.eml` upload. A subject carrying the number of
    /// an existing ticket (`[SEC-000042]`) makes it a communication on that ticket, with the
    /// message and its attachments stored as documents when the document store is configured;
    /// any other mail is a reported event.
    ///
    /// `mailbox` is true for the configured report mailbox (IMAP): like a ticketing system's
    /// mail gateway, it files a reply on the ticket its subject names. An uploaded message is
    /// filed on a ticket only when the uploader may see and work that ticket; otherwise it is a
    /// new report, and the answer says nothing about the ticket.
    pub async fn capture_email(
        &self,
        p: &Principal,
        raw: &[u8],
        mailbox: bool,
    ) -> AppResult<MailOutcome> {
        self.check_reporter(p).await?;
        let mail =
            firebreak_intake::eml::parse(raw).map_err(|e| AppError::field(&e.field, e.message))?;
        let number = mail.subject.as_deref().and_then(|s| {
            firebreak_intake::eml::ticket_number_in_subject(s, &self.config.ticket_prefix)
        });
        if let Some(n) = number {
            match self.store.get_ticket_by_number(n).await {
                Ok(t)
                    if mailbox
                        || (p.can_write()
                            && p.has_any(groups::TEAM)
                            && self.can_see(p, &t).await?) =>
                {
                    return self.mail_to_ticket(p, &t, &mail, raw).await;
                }
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    tracing::info!(
                        number = n,
                        "mail names a ticket that does not exist; taken as a new report"
                    )
                }
                Err(e) => return Err(e.into()),
            }
        }
        let text = String::from_utf8_lossy(raw);
        let ne = firebreak_intake::eml::to_event(&mail, &text);
        let mut summary = IngestSummary::default();
        self.ingest(p, vec![ne], &mut summary).await?;
        Ok(MailOutcome::Event { summary })
    }

    async fn mail_to_ticket(
        &self,
        p: &Principal,
        t: &Ticket,
        mail: &firebreak_intake::eml::ParsedMail,
        raw: &[u8],
    ) -> AppResult<MailOutcome> {
        let addr = |a: &firebreak_intake::eml::MailAddress| match (&a.name, &a.address) {
            (Some(n), Some(ad)) => format!("{n} <{ad}>"),
            (None, Some(ad)) => ad.clone(),
            (Some(n), None) => n.clone(),
            (None, None) => String::new(),
        };
        // the same message again (a re-poll, a second upload) is the communication it was
        if let Some(mid) = &mail.message_id {
            let existing = self
                .store
                .list_records(&RecordFilter {
                    kind: K_COMMUNICATION.into(),
                    ticket_id: Some(t.id),
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            for r in existing {
                if let Ok(c) = serde_json::from_str::<Communication>(&r.data)
                    && c.message_id.as_deref() == Some(mid.as_str())
                {
                    return Ok(MailOutcome::Communication {
                        ticket: firebreak_domain::api::format_number(
                            &self.config.ticket_prefix,
                            t.number,
                        ),
                        id: c.id,
                        documents: c.attachments,
                    });
                }
            }
        }
        let mut documents = Vec::new();
        if self.blobs.is_some() {
            let mut files: Vec<(String, String, &[u8])> = vec![(
                format!(
                    "{}.eml",
                    mail.message_id
                        .as_deref()
                        .map(|m| m
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                            .take(80)
                            .collect::<String>())
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "message".into())
                ),
                "message/rfc822".into(),
                raw,
            )];
            for a in &mail.attachments {
                files.push((
                    a.filename.clone().unwrap_or_else(|| "attachment".into()),
                    a.content_type.clone(),
                    &a.bytes,
                ));
            }
            for (name, ct, bytes) in files {
                let mut w = self.document_writer()?;
                w.push(bytes)?;
                let sealed = w.finish()?;
                let d = self
                    .record_document(
                        p.username(),
                        t,
                        crate::documents::DocumentMeta {
                            filename: name,
                            content_type: Some(ct),
                            description: Some("received by email".into()),
                            source: mail.from.as_ref().map(addr),
                            collection_notes: mail
                                .message_id
                                .as_ref()
                                .map(|m| format!("Message-ID <{m}>")),
                        },
                        sealed,
                    )
                    .await?;
                documents.push(d.id.as_uuid());
            }
        }
        let c = Communication {
            id: Uuid::now_v7(),
            channel: "email".into(),
            direction: "inbound".into(),
            from: mail.from.as_ref().map(addr),
            to: mail.to.iter().map(addr).collect(),
            occurred_at: mail
                .date
                .map(firebreak_store::truncate_millis)
                .unwrap_or(self.now()),
            subject: mail.subject.clone(),
            body: clip(&mail.text, 1_000_000),
            attachments: documents.clone(),
            message_id: mail.message_id.clone(),
            recorded_by: p.username().into(),
            recorded_at: self.now(),
        };
        let c = self.record_communication(p.username(), t, c).await?;
        Ok(MailOutcome::Communication {
            ticket: firebreak_domain::api::format_number(&self.config.ticket_prefix, t.number),
            id: c.id,
            documents,
        })
    }
}
