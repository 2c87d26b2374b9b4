//! The response process beyond the normal path: escalation (with its report), management's
//! request for immediate escalation, emergencies (coordinator, team, war room, meetings and
//! minutes, status reports, course of action, obligations), notifications, and change controls
//! with the two-person rule. Records are kept as workflow records; each change commits with
//! its audit entries, like every other change.

use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::api::{TicketView, format_number};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::plan::{Channel, PlanEvent};
use firebreak_domain::response::*;
use firebreak_domain::role::Role;
use firebreak_domain::ticket::{Criticality, Ticket, TicketStatus};
use firebreak_domain::user::User;
use firebreak_store::{ChangeSet, Op, RecordFilter, StoreError, TicketFilter, WorkflowRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

const K_ESCALATION: &str = "escalation_report";
const K_EMERGENCY: &str = "emergency";
const K_MEETING: &str = "meeting";
const K_STATUS_REPORT: &str = "status_report";
const K_CHANGE: &str = "change_control";
const K_NOTIFICATION: &str = "notification";
const K_TEST_REPORT: &str = "test_report";
const K_SMR: &str = "senior_management_report";
const K_PHASE: &str = "phase";
const K_PIR: &str = "post_incident_review";
const K_TASK: &str = "task";

/// The war room when neither the emergency nor the plan names one.
pub const DEFAULT_WAR_ROOM: &str = "War Room";

#[expect(
    clippy::too_many_arguments,
    reason = "one call shape for every record kind: the arguments are the table's columns"
)]
fn record<T: Serialize>(
    kind: &str,
    id: Uuid,
    ticket: &Ticket,
    parent: Option<Uuid>,
    status: &str,
    principal: Option<&str>,
    data: &T,
    now: OffsetDateTime,
) -> AppResult<WorkflowRecord> {
    Ok(WorkflowRecord {
        id,
        kind: kind.into(),
        ticket_id: Some(ticket.id),
        parent_id: parent,
        status: status.into(),
        principal: principal.map(str::to_string),
        data: serde_json::to_string(data)
            .map_err(|e| anyhow::anyhow!("serializing {kind}: {e}"))?,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

fn parse<T: DeserializeOwned>(r: &WorkflowRecord) -> AppResult<T> {
    serde_json::from_str(&r.data).map_err(|e| {
        AppError::Unexpected(anyhow::anyhow!(
            "stored {} {} unreadable: {e}",
            r.kind,
            r.id
        ))
    })
}

fn conflict(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Conflict {
        code,
        message: message.into(),
    }
}

fn is_security_staff(u: &User) -> bool {
    u.has_role(Role::Responder) || u.has_role(Role::SeniorResponder)
}

fn is_management(u: &User) -> bool {
    u.has_role(Role::Manager) || title_is(u.title.as_deref(), &MANAGEMENT_TITLES)
}

impl App {
    fn number(&self, t: &Ticket) -> String {
        format_number(&self.config.ticket_prefix, t.number)
    }

    async fn active_users(&self) -> AppResult<Vec<User>> {
        Ok(self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| !u.disabled)
            .collect())
    }

    /// An in-app notification record for `recipient` about `t`.
    fn notification(
        &self,
        t: &Ticket,
        parent: Option<Uuid>,
        recipient: &str,
        title: &str,
    ) -> AppResult<WorkflowRecord> {
        self.notification_on(t, parent, recipient, title, Channel::InApp)
    }

    /// A notification record on a channel. In-app ones are delivered by being recorded; email
    /// and webhooks need a transport, and say so when none is configured.
    pub(crate) fn notification_on(
        &self,
        t: &Ticket,
        parent: Option<Uuid>,
        recipient: &str,
        title: &str,
        channel: Channel,
    ) -> AppResult<WorkflowRecord> {
        let (channel, status, detail) = match channel {
            Channel::InApp => ("in_app", "delivered", None),
            Channel::Email if self.has_mailer() => ("email", "pending", None),
            Channel::Webhook if self.has_webhooks() => ("webhook", "pending", None),
            Channel::Email => (
                "email",
                "failed",
                Some("no SMTP relay is configured".to_string()),
            ),
            Channel::Webhook => (
                "webhook",
                "failed",
                Some("no webhook endpoint is configured".to_string()),
            ),
        };
        let n = Notification {
            id: Uuid::now_v7(),
            recipient: recipient.into(),
            title: title.into(),
            channel: channel.into(),
            status: status.into(),
            detail,
            attempts: 0,
            retry_at: None,
            ticket_number: self.number(t),
            created_at: self.now(),
        };
        record(
            K_NOTIFICATION,
            n.id,
            t,
            parent,
            &n.status,
            Some(recipient),
            &n,
            self.now(),
        )
    }

    /// Notifications for `event` as the plan's communication protocols say: every active user
    /// holding one of the roles or titles, or named; each on the protocol's channel. Returns
    /// the records and who was told.
    async fn tell(
        &self,
        t: &Ticket,
        parent: Option<Uuid>,
        event: PlanEvent,
        title: &str,
    ) -> AppResult<(ChangeSet, Vec<String>)> {
        let plan = self.current_plan().await?;
        let users = self.active_users().await?;
        let number = self.number(t);
        let mut frag = ChangeSet::new();
        let mut told: Vec<String> = Vec::new();
        for proto in plan.protocols_on(event) {
            if proto.channel == Channel::Webhook {
                // one signed delivery per webhook protocol; restricted details stay inside
                if let Some(url) = &proto.url {
                    let text = if t.restricted {
                        format!("{number} needs attention")
                    } else {
                        title.to_string()
                    };
                    frag = frag.op(Op::InsertRecord(self.notification_on(
                        t,
                        parent,
                        url,
                        &text,
                        Channel::Webhook,
                    )?));
                }
                continue;
            }
            let titles: Vec<&str> = proto.titles.iter().map(String::as_str).collect();
            for u in &users {
                let hit = u.roles.iter().any(|r| proto.roles.contains(r))
                    || title_is(u.title.as_deref(), &titles)
                    || proto.users.contains(&u.username);
                if !hit || told.contains(&u.username) {
                    continue;
                }
                // what the recipient may see decides what they are told
                let involved = t.owner == u.username
                    || t.created_by == u.username
                    || t.assignee.as_deref() == Some(u.username.as_str());
                let sees = involved
                    || self.store.has_ticket_access(t.id, &u.username).await?
                    || if t.restricted {
                        u.has_role(Role::Admin) || u.has_clearance_restricted()
                    } else {
                        u.roles
                            .iter()
                            .any(|r| firebreak_domain::role::groups::READERS.contains(r))
                    };
                let text = if sees {
                    title.to_string()
                } else if t.restricted {
                    // a restricted ticket's details never reach someone who may not read it
                    format!("{number} needs your attention")
                } else {
                    // executives read the tickets they are told about
                    frag = frag
                        .op(Op::GrantTicketAccess {
                            ticket_id: t.id,
                            username: u.username.clone(),
                            granted_by: "system".into(),
                            at: self.now(),
                        })
                        .audit(
                            AuditDraft::new("system", "ticket.access_granted", "ticket", t.id)
                                .ticket(t.id)
                                .details(json!({"username": u.username, "reason": "told under the response plan"})),
                        );
                    title.to_string()
                };
                frag = frag.op(Op::InsertRecord(self.notification_on(
                    t,
                    parent,
                    &u.username,
                    &text,
                    proto.channel,
                )?));
                told.push(u.username.clone());
            }
        }
        Ok((frag, told))
    }

    /// The on-duty senior responder with the fewest open tier-2 tickets (ties: by name).
    async fn default_tier2_assignee(&self) -> AppResult<Option<String>> {
        let mut best: Option<(usize, String)> = None;
        for u in self.active_users().await? {
            if !(u.on_duty && u.has_role(Role::SeniorResponder)) {
                continue;
            }
            let open = self
                .store
                .list_tickets(&TicketFilter {
                    assignee: Some(u.username.clone()),
                    limit: 1000,
                    ..Default::default()
                })
                .await?
                .iter()
                .filter(|t| t.tier == 2 && t.status != TicketStatus::Closed)
                .count();
            if best
                .as_ref()
                .is_none_or(|(n, name)| (open, &u.username) < (*n, name))
            {
                best = Some((open, u.username));
            }
        }
        Ok(best.map(|(_, n)| n))
    }

    /// Moves a ticket to tier 2 as an escalation, with the records and notifications that go
    /// with it, in one commit; retried on a concurrent ticket change.
    async fn escalate_with(
        &self,
        p: &Principal,
        reference: &str,
        action: &str,
        report: &EscalationReport,
        allowed: &[Role],
        allow_escalated: bool,
    ) -> AppResult<TicketView> {
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write() || !p.has_any(allowed) {
                let who: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                return Err(self
                    .deny(
                        p,
                        action,
                        Some(&t),
                        format!("{action} is for: {}", who.join(", ")),
                    )
                    .await);
            }
            if t.status == TicketStatus::Closed {
                return Err(conflict(
                    "invalid_transition",
                    "the ticket is closed; reopen it first",
                ));
            }
            if t.criticality == Criticality::Emergency
                || (t.criticality == Criticality::Escalation && !allow_escalated)
            {
                return Err(conflict(
                    "already_escalated",
                    format!("the ticket is already {}", t.criticality.as_str()),
                ));
            }
            let now = self.now();
            let mut n = t.clone();
            n.criticality = Criticality::Escalation;
            n.tier = 2;
            n.escalation_reason = Some(format!("escalation report: {}", report.reason.trim()));
            if let Some(a) = self.default_tier2_assignee().await? {
                n.assignee = Some(a);
            }
            n.updated_at = now;
            let number = self.number(&t);
            let mut cs = ChangeSet::new()
                .op(Op::UpdateTicket {
                    ticket: n.clone(),
                    expected_version: t.version,
                })
                .op(Op::InsertRecord(record(
                    K_ESCALATION,
                    Uuid::now_v7(),
                    &t,
                    None,
                    "filed",
                    Some(p.username()),
                    &json!({"report": report, "filed_by": p.username(), "action": action}),
                    now,
                )?))
                .audit(
                    AuditDraft::new(p.username(), &format!("ticket.{action}"), "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({
                            "from": t.criticality, "to": n.criticality, "tier": 2,
                            "assignee": n.assignee, "report": report,
                        })),
                );
            // IT management is told, as the plan's protocols say
            let (notes, told) = self
                .tell(
                    &t,
                    None,
                    PlanEvent::Escalation,
                    &format!("{number} escalated to tier 2: {}", report.reason),
                )
                .await?;
            cs.ops.extend(notes.ops);
            cs.audit.extend(notes.audit);
            // the owners of the affected assets are told too
            for a in self.ticket_assets(&t).await? {
                let Some(owner) = a.owner.clone() else {
                    continue;
                };
                if told.contains(&owner) {
                    continue;
                }
                let channel = match self.store.get_user_by_name(&owner).await {
                    Ok(u) if !u.user.disabled => Channel::InApp,
                    Ok(_) => continue,
                    Err(StoreError::NotFound) if owner.contains('@') => Channel::Email,
                    Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(e.into()),
                };
                let title = if t.restricted {
                    format!("{number} affects your asset {}", a.name)
                } else {
                    format!(
                        "{number} affects your asset {} and was escalated: {}",
                        a.name, report.reason
                    )
                };
                cs = cs.op(Op::InsertRecord(
                    self.notification_on(&t, None, &owner, &title, channel)?,
                ));
            }
            if let Some(view) = self.commit_ticket_change(cs, &t, n).await? {
                return Ok(view);
            }
        }
        Err(conflict(
            "concurrent_update",
            "the ticket keeps changing concurrently; retry",
        ))
    }

    /// `escalate`: requires an Escalation Report; tier 2 takes over; management is told.
    pub async fn escalate(
        &self,
        p: &Principal,
        reference: &str,
        req: &EscalateRequest,
    ) -> AppResult<TicketView> {
        req.validate()?;
        self.escalate_with(
            p,
            reference,
            "escalate",
            &req.report,
            &[Role::Helpdesk, Role::Responder, Role::SeniorResponder],
            false,
        )
        .await
    }

    /// `reject-closure` with `escalate: true`: the owner sends the ticket back and to tier 2.
    pub async fn escalate_on_rejection(
        &self,
        p: &Principal,
        reference: &str,
        report: &EscalationReport,
    ) -> AppResult<TicketView> {
        self.escalate_with(
            p,
            reference,
            "escalate",
            report,
            &[
                Role::Helpdesk,
                Role::Responder,
                Role::SeniorResponder,
                Role::Manager,
            ],
            false,
        )
        .await
    }

    /// `request-escalation`: management asks for immediate escalation.
    pub async fn request_escalation(
        &self,
        p: &Principal,
        reference: &str,
        req: &ReasonBody,
    ) -> AppResult<TicketView> {
        let reason = req.validate()?;
        let report = EscalationReport {
            reason: reason.clone(),
            impact: "immediate escalation requested by management".into(),
            systems: vec![],
            actions_taken: format!("management request by {}", p.username()),
        };
        self.escalate_with(
            p,
            reference,
            "request_escalation",
            &report,
            &[Role::Manager],
            false,
        )
        .await
    }

    /// `POST /escalation-requests`: management asks for immediate escalation before any ticket
    /// exists; a ticket is opened for it and tier 2 is tasked with it at once.
    pub async fn escalation_request(
        &self,
        p: &Principal,
        body: &EscalationRequestBody,
    ) -> AppResult<TicketView> {
        if !p.can_write() || !p.has_any(&[Role::Manager]) {
            return Err(self
                .deny(
                    p,
                    "escalation_request",
                    None,
                    "requesting immediate escalation is for managers".into(),
                )
                .await);
        }
        let reason = ReasonBody {
            reason: body.reason.clone(),
        }
        .validate()?;
        let req = firebreak_domain::api::CreateTicketRequest {
            title: body
                .title
                .clone()
                .unwrap_or_else(|| format!("Escalation requested by {}", p.username())),
            description: Some(body.description.clone().unwrap_or_else(|| reason.clone())),
            source: None,
            severity: None,
            priority: None,
            restricted: None,
            tags: None,
            assignee: None,
        };
        let t = self.create_ticket(p, &req).await?;
        let report = EscalationReport {
            reason,
            impact: "immediate escalation requested by management before a ticket existed".into(),
            systems: vec![],
            actions_taken: format!("management request by {}", p.username()),
        };
        // the plan's thresholds may already have made it an escalation: file the report anyway
        self.escalate_with(
            p,
            &t.number,
            "request_escalation",
            &report,
            &[Role::Manager],
            true,
        )
        .await
    }

    /// The coordinator by default: the most senior on-duty security staff member, ties to the
    /// one with fewer open emergencies, then by name.
    async fn default_coordinator(&self) -> AppResult<Option<(String, String)>> {
        let mut best: Option<(i32, usize, String)> = None;
        for u in self.active_users().await? {
            if !(u.on_duty && is_security_staff(&u)) {
                continue;
            }
            let open = self
                .store
                .list_records(&RecordFilter {
                    kind: K_EMERGENCY.into(),
                    status: Some("open".into()),
                    principal: Some(u.username.clone()),
                    ..Default::default()
                })
                .await?
                .len();
            let better = match &best {
                None => true,
                Some((s, o, name)) => {
                    u.seniority > *s || (u.seniority == *s && (open, &u.username) < (*o, name))
                }
            };
            if better {
                best = Some((u.seniority, open, u.username));
            }
        }
        Ok(best.map(|(s, o, name)| {
            (
                name,
                format!("most senior on-duty security staff member (seniority {s}, {o} open emergencies)"),
            )
        }))
    }

    /// Declares an emergency on a ticket: tier 2 from an escalation, or management directly.
    pub async fn declare_emergency(
        &self,
        p: &Principal,
        reference: &str,
        req: &ReasonBody,
    ) -> AppResult<Emergency> {
        let reason = req.validate()?;
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            let direct = p.has_any(&[Role::Manager, Role::Executive]);
            // (an emergency ticket is past escalation: the answer is then "already declared")
            let from_escalation = p.has_any(&[Role::SeniorResponder])
                && matches!(
                    t.criticality,
                    Criticality::Escalation | Criticality::Emergency
                );
            if !p.can_write() || !(direct || from_escalation) {
                let why = if p.has_any(&[Role::SeniorResponder]) {
                    "tier 2 declares an emergency from an escalated ticket: escalate it first"
                } else {
                    "declaring an emergency is for senior responders (escalated tickets) and management"
                };
                return Err(self
                    .deny(p, "declare_emergency", Some(&t), why.into())
                    .await);
            }
            if t.status == TicketStatus::Closed {
                return Err(conflict(
                    "invalid_transition",
                    "the ticket is closed; reopen it first",
                ));
            }
            if self.has_open_emergency(&t).await? {
                return Err(conflict(
                    "already_emergency",
                    "an emergency is already open on this ticket",
                ));
            }
            let now = self.now();
            let plan = self.current_plan().await?;
            let (coordinator, why) = match self.default_coordinator().await? {
                Some(c) => c,
                None => (
                    p.username().to_string(),
                    "no security staff member is on duty: the declarer coordinates".to_string(),
                ),
            };
            let e = Emergency {
                id: Uuid::now_v7(),
                ticket_number: self.number(&t),
                status: EmergencyStatus::Open,
                declared_by: p.username().into(),
                declared_at: now,
                reason: reason.clone(),
                coordinator: Some(coordinator.clone()),
                coordinator_reason: Some(why.clone()),
                team: vec![coordinator.clone()],
                war_room: Some(plan.default_war_room()),
                course_of_action: None,
                course_rationale: None,
                course_chosen_at: None,
                open_obligations: vec![],
                next_meeting: None,
                criteria: plan.emergency_criteria.clone(),
                contacts: vec![],
                deadlines: vec![],
            };
            let mut n = t.clone();
            n.criticality = Criticality::Emergency;
            n.tier = 2;
            n.updated_at = now;
            let mut cs = ChangeSet::new()
                .op(Op::UpdateTicket {
                    ticket: n,
                    expected_version: t.version,
                })
                .op(Op::InsertRecord(record(K_EMERGENCY, e.id, &t, None, "open", Some(&coordinator), &e, now)?))
                .audit(
                    AuditDraft::new(p.username(), "ticket.declare_emergency", "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({"from": t.criticality, "to": "emergency", "reason": reason, "emergency": e.id})),
                )
                .audit(
                    AuditDraft::new(p.username(), "emergency.coordinator_assigned", "emergency", e.id)
                        .ticket(t.id)
                        .details(json!({"coordinator": coordinator, "reason": why})),
                );
            let title = format!("Emergency declared on {}: {reason}", e.ticket_number);
            let (notes, told) = self
                .tell(&t, Some(e.id), PlanEvent::EmergencyDeclared, &title)
                .await?;
            cs.ops.extend(notes.ops);
            cs.audit.extend(notes.audit);
            if !told.contains(&coordinator) {
                cs = cs.op(Op::InsertRecord(self.notification(
                    &t,
                    Some(e.id),
                    &coordinator,
                    &format!("You coordinate the emergency on {}", e.ticket_number),
                )?));
            }
            match self.commit(cs).await {
                Ok(_) => return self.emergency_view(&t, e).await,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(
            "concurrent_update",
            "the ticket keeps changing concurrently; retry",
        ))
    }

    /// Whether an emergency on `t` is still open.
    pub(crate) async fn has_open_emergency(&self, t: &Ticket) -> AppResult<bool> {
        Ok(!self
            .store
            .list_records(&RecordFilter {
                kind: K_EMERGENCY.into(),
                ticket_id: Some(t.id),
                status: Some("open".into()),
                limit: 1,
                ..Default::default()
            })
            .await?
            .is_empty())
    }

    /// Whether `username` coordinates or is on the team of an open emergency on `t`.
    /// The tickets of the open emergencies whose team (or coordinator) includes `username`:
    /// they may read those tickets while the emergency lasts.
    pub(crate) async fn open_emergency_team_tickets(
        &self,
        username: &str,
    ) -> AppResult<Vec<firebreak_domain::ids::TicketId>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_EMERGENCY.into(),
                status: Some("open".into()),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        for r in recs {
            let e: Emergency = parse(&r)?;
            if (e.coordinator.as_deref() == Some(username) || e.team.iter().any(|m| m == username))
                && let Some(t) = r.ticket_id
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    pub(crate) async fn on_open_emergency_team(
        &self,
        username: &str,
        t: &Ticket,
    ) -> AppResult<bool> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_EMERGENCY.into(),
                ticket_id: Some(t.id),
                status: Some("open".into()),
                ..Default::default()
            })
            .await?;
        for r in recs {
            let e: Emergency = parse(&r)?;
            if e.coordinator.as_deref() == Some(username) || e.team.iter().any(|m| m == username) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Loads an emergency the principal may see (the team, management, auditors, admins).
    async fn find_emergency(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<(WorkflowRecord, Emergency, Ticket)> {
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let rec = match self.store.get_record(id).await {
            Ok(r) if r.kind == K_EMERGENCY => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let e: Emergency = parse(&rec)?;
        let ticket_id = rec.ticket_id.ok_or(AppError::NotFound)?;
        let t = self.store.get_ticket(ticket_id).await?;
        let on_team = e.team.iter().any(|m| m == p.username())
            || e.coordinator.as_deref() == Some(p.username())
            || e.declared_by == p.username();
        let reader = p.has_any(&[Role::Manager, Role::Auditor, Role::Admin]);
        if !p.can_read() || !(on_team || reader) {
            return Err(AppError::NotFound);
        }
        // the ticket's usual visibility applies; beyond it, the team may read the emergency of
        // a restricted ticket while it lasts (logged by can_see)
        if !self.can_see(p, &t).await? {
            return Err(AppError::NotFound);
        }
        Ok((rec, e, t))
    }

    async fn emergency_view(&self, t: &Ticket, mut e: Emergency) -> AppResult<Emergency> {
        let meetings = self.meetings_of(e.id).await?;
        let now = self.now();
        let mut open = Vec::new();
        match e.course_of_action {
            None => open.push("choose a course of action".to_string()),
            Some(Course::LockdownRepair) => {
                let changes = self.change_controls_of(t).await?;
                if !changes.iter().any(|c| {
                    c.kind == ChangeKind::Lockdown
                        && matches!(
                            c.status,
                            ChangeStatus::Approved
                                | ChangeStatus::Implemented
                                | ChangeStatus::Verified
                        )
                }) {
                    open.push("an approved lock-down change control".into());
                }
                let docs = self.store.list_documents(t.id).await?;
                if !docs.iter().any(|d| d.added_at >= e.declared_at) {
                    open.push("containment evidence preserved in the document store".into());
                }
                let tasks: Vec<Task> = self
                    .store
                    .list_records(&RecordFilter {
                        kind: K_TASK.into(),
                        ticket_id: Some(t.id),
                        ..Default::default()
                    })
                    .await?
                    .iter()
                    .map(parse)
                    .collect::<AppResult<_>>()?;
                let repair: Vec<&Task> = tasks
                    .iter()
                    .filter(|x| x.created_at >= e.declared_at)
                    .collect();
                if repair.is_empty() || repair.iter().any(|x| !x.done) {
                    open.push("repair tasks on the ticket, all done".into());
                }
                let tests: Vec<TestReport> = self.records_of(K_TEST_REPORT, e.id).await?;
                if !tests.iter().any(|r| r.body.all_pass()) {
                    open.push("repair, then a Test Report whose compliance tests all pass".into());
                }
            }
            Some(Course::FalsePositive) => {
                let smr: Vec<SeniorManagementReport> = self.records_of(K_SMR, e.id).await?;
                if smr.is_empty() {
                    open.push("a Report to Senior Management".into());
                }
            }
            Some(Course::MonitorCapture) => {
                let reports = self
                    .store
                    .list_records(&RecordFilter {
                        kind: K_STATUS_REPORT.into(),
                        parent_id: Some(e.id),
                        ..Default::default()
                    })
                    .await?;
                let since = e.course_chosen_at.unwrap_or(e.declared_at);
                if !reports.iter().any(|r| r.created_at >= since) {
                    open.push("an Investigation Status Report on the investigation".into());
                }
                let last = reports
                    .last()
                    .map(|r| r.created_at)
                    .unwrap_or(e.declared_at);
                let every = i64::from(self.current_plan().await?.status_report_every_hours);
                let due = last + time::Duration::hours(every);
                if due <= now {
                    open.push(format!(
                        "Investigation Status Report overdue since {}",
                        due.format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ));
                }
            }
        }
        for m in &meetings {
            if m.minutes.is_some() && !m.finalized {
                open.push(format!("finalize the minutes of meeting {}", m.id));
            }
        }
        e.open_obligations = open;
        let plan = self.current_plan().await?;
        e.deadlines = if e.status == EmergencyStatus::Open {
            plan.legal_obligations
                .iter()
                .map(|o| {
                    let due_at = e.declared_at + time::Duration::hours(i64::from(o.deadline_hours));
                    Deadline {
                        name: o.name.clone(),
                        due_at,
                        overdue: due_at <= now,
                    }
                })
                .collect()
        } else {
            vec![]
        };
        e.contacts = if e.course_of_action == Some(Course::MonitorCapture) {
            plan.legal_contacts
                .into_iter()
                .chain(plan.law_enforcement_contacts)
                .collect()
        } else {
            vec![]
        };
        e.next_meeting = meetings
            .iter()
            .filter(|m| m.scheduled_at >= now && !m.finalized)
            .min_by_key(|m| m.scheduled_at)
            .map(|m| MeetingSummary {
                id: m.id,
                scheduled_at: m.scheduled_at,
                war_room: m.war_room.clone(),
            });
        Ok(e)
    }

    pub async fn get_emergency(&self, p: &Principal, id: &str) -> AppResult<Emergency> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.emergency_view(&t, e).await
    }

    /// Open and closed emergencies the principal may see, oldest first.
    pub async fn list_emergencies(&self, p: &Principal) -> AppResult<Vec<Emergency>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_EMERGENCY.into(),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        for r in recs {
            match self.find_emergency(p, &r.id.to_string()).await {
                Ok((_, e, t)) => out.push(self.emergency_view(&t, e).await?),
                Err(AppError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Saves a changed emergency with its audit entry (optimistic on the record's version).
    /// The op that replaces an emergency's record if nobody changed it meanwhile.
    fn emergency_update(&self, rec: &WorkflowRecord, e: &Emergency) -> AppResult<Op> {
        let mut updated = rec.clone();
        updated.data = serde_json::to_string(e).map_err(|x| anyhow::anyhow!("{x}"))?;
        updated.principal = e.coordinator.clone();
        updated.status = e.status.as_str().into();
        updated.updated_at = self.now();
        Ok(Op::UpdateRecord {
            record: updated,
            expected_version: rec.version,
        })
    }

    async fn save_emergency(
        &self,
        rec: &WorkflowRecord,
        e: &Emergency,
        extra: ChangeSet,
        entry: AuditDraft,
    ) -> AppResult<()> {
        let cs = extra.op(self.emergency_update(rec, e)?).audit(entry);
        match self.commit(cs).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(conflict(
                "concurrent_update",
                "the emergency changed meanwhile; retry",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn require_coordinator(
        &self,
        p: &Principal,
        e: &Emergency,
        t: &Ticket,
        action: &str,
    ) -> AppResult<()> {
        if p.can_write() && e.coordinator.as_deref() == Some(p.username()) {
            if e.status == EmergencyStatus::Closed {
                return Err(conflict("emergency_closed", "the emergency is closed"));
            }
            return Ok(());
        }
        Err(self
            .deny(
                p,
                action,
                Some(t),
                format!(
                    "{action} is for the emergency's coordinator ({})",
                    e.coordinator.as_deref().unwrap_or("none")
                ),
            )
            .await)
    }

    async fn check_users(&self, field: &str, names: &[String]) -> AppResult<()> {
        for (i, n) in names.iter().enumerate() {
            self.check_active_user(&format!("{field}[{i}]"), n).await?;
        }
        Ok(())
    }

    /// Reassigns the coordinator (management), with the reason on the record.
    pub async fn set_coordinator(
        &self,
        p: &Principal,
        id: &str,
        body: &CoordinatorBody,
    ) -> AppResult<Emergency> {
        let (rec, mut e, t) = self.find_emergency(p, id).await?;
        if e.status == EmergencyStatus::Closed {
            return Err(conflict("emergency_closed", "the emergency is closed"));
        }
        if !p.can_write() || !p.has_any(&[Role::Manager]) {
            return Err(self
                .deny(
                    p,
                    "emergency.coordinator",
                    Some(&t),
                    "reassigning the coordinator is for managers".into(),
                )
                .await);
        }
        let reason = ReasonBody {
            reason: body.reason.clone(),
        }
        .validate()?;
        self.check_active_user("username", &body.username).await?;
        let from = e.coordinator.clone();
        e.coordinator = Some(body.username.clone());
        e.coordinator_reason = Some(reason.clone());
        if !e.team.contains(&body.username) {
            e.team.push(body.username.clone());
        }
        let entry = AuditDraft::new(
            p.username(),
            "emergency.coordinator_assigned",
            "emergency",
            e.id,
        )
        .ticket(t.id)
        .details(json!({"from": from, "coordinator": body.username, "reason": reason}));
        let note = ChangeSet::new().op(Op::InsertRecord(self.notification(
            &t,
            Some(e.id),
            &body.username,
            &format!("You coordinate the emergency on {}", e.ticket_number),
        )?));
        self.save_emergency(&rec, &e, note, entry).await?;
        self.emergency_view(&t, e).await
    }

    /// The coordinator assembles the team.
    pub async fn set_team(&self, p: &Principal, id: &str, body: &TeamBody) -> AppResult<Emergency> {
        let (rec, mut e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "emergency.team")
            .await?;
        self.check_users("members", &body.members).await?;
        let mut team = body.members.clone();
        if let Some(c) = &e.coordinator
            && !team.contains(c)
        {
            team.insert(0, c.clone());
        }
        team.dedup();
        let entry = AuditDraft::new(p.username(), "emergency.team_set", "emergency", e.id)
            .ticket(t.id)
            .details(json!({"from": e.team, "to": team}));
        e.team = team;
        self.save_emergency(&rec, &e, ChangeSet::new(), entry)
            .await?;
        self.emergency_view(&t, e).await
    }

    async fn meetings_of(&self, emergency: Uuid) -> AppResult<Vec<Meeting>> {
        self.records_of(K_MEETING, emergency).await
    }

    pub async fn list_meetings(&self, p: &Principal, id: &str) -> AppResult<Vec<Meeting>> {
        let (_, e, _) = self.find_emergency(p, id).await?;
        self.meetings_of(e.id).await
    }

    pub async fn schedule_meeting(
        &self,
        p: &Principal,
        id: &str,
        body: &ScheduleMeeting,
    ) -> AppResult<Meeting> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "meeting.schedule")
            .await?;
        let war_room = match body.war_room.as_deref().map(str::trim) {
            Some(w) if !w.is_empty() => {
                if w.chars().count() > 200 || w.chars().any(char::is_control) {
                    return Err(AppError::field(
                        "war_room",
                        "must be at most 200 characters, without control characters",
                    ));
                }
                w.to_string()
            }
            _ => e
                .war_room
                .clone()
                .unwrap_or_else(|| DEFAULT_WAR_ROOM.into()),
        };
        let m = Meeting {
            id: Uuid::now_v7(),
            emergency_id: e.id,
            scheduled_at: firebreak_store::truncate_millis(body.scheduled_at),
            war_room,
            minutes: None,
            finalized: false,
            finalized_by: None,
            finalized_at: None,
        };
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(record(K_MEETING, m.id, &t, Some(e.id), "scheduled", None, &m, self.now())?))
            .audit(
                AuditDraft::new(p.username(), "meeting.scheduled", "meeting", m.id)
                    .ticket(t.id)
                    .details(json!({"emergency": e.id, "scheduled_at": m.scheduled_at.unix_timestamp(), "war_room": m.war_room})),
            );
        self.commit(cs).await?;
        Ok(m)
    }

    async fn find_meeting(&self, e: &Emergency, mid: &str) -> AppResult<(WorkflowRecord, Meeting)> {
        let mid: Uuid = mid.parse().map_err(|_| AppError::NotFound)?;
        match self.store.get_record(mid).await {
            Ok(r) if r.kind == K_MEETING && r.parent_id == Some(e.id) => {
                let m = parse(&r)?;
                Ok((r, m))
            }
            Ok(_) | Err(StoreError::NotFound) => Err(AppError::NotFound),
            Err(x) => Err(x.into()),
        }
    }

    async fn save_meeting(
        &self,
        rec: &WorkflowRecord,
        m: &Meeting,
        extra: ChangeSet,
        entry: AuditDraft,
    ) -> AppResult<()> {
        let mut updated = rec.clone();
        updated.data = serde_json::to_string(m).map_err(|x| anyhow::anyhow!("{x}"))?;
        updated.status = if m.finalized {
            "final".into()
        } else if m.minutes.is_some() {
            "minuted".into()
        } else {
            "scheduled".into()
        };
        updated.updated_at = self.now();
        let cs = extra
            .op(Op::UpdateRecord {
                record: updated,
                expected_version: rec.version,
            })
            .audit(entry);
        match self.commit(cs).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(conflict(
                "concurrent_update",
                "the meeting changed meanwhile; retry",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Records (or replaces) a meeting's minutes; attendees join the team. Final minutes are
    /// immutable.
    pub async fn record_minutes(
        &self,
        p: &Principal,
        id: &str,
        mid: &str,
        body: &MinutesBody,
    ) -> AppResult<Meeting> {
        let (erec, mut e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "meeting.minutes")
            .await?;
        let (rec, mut m) = self.find_meeting(&e, mid).await?;
        if m.finalized {
            return Err(conflict(
                "minutes_final",
                "the minutes are final and cannot be changed",
            ));
        }
        body.validate()?;
        self.check_users("attendees", &body.attendees).await?;
        for (i, a) in body.actions.iter().enumerate() {
            self.check_active_user(&format!("actions[{i}].owner"), &a.owner)
                .await?;
        }
        m.minutes = Some(body.clone());
        let entry = AuditDraft::new(p.username(), "meeting.minutes_recorded", "meeting", m.id)
            .ticket(t.id)
            .details(json!({"emergency": e.id, "minutes": body}));
        // attending adds to the team, in the same commit as the minutes
        let new: Vec<String> = body
            .attendees
            .iter()
            .filter(|a| !e.team.contains(a))
            .cloned()
            .collect();
        let mut extra = ChangeSet::new();
        if !new.is_empty() {
            extra = extra.audit(
                AuditDraft::new(p.username(), "emergency.team_joined", "emergency", e.id)
                    .ticket(t.id)
                    .details(json!({"added": new, "meeting": m.id})),
            );
            e.team.extend(new);
            extra = extra.op(self.emergency_update(&erec, &e)?);
        }
        self.save_meeting(&rec, &m, extra, entry).await?;
        Ok(m)
    }

    /// Finalizes a meeting's minutes: only when a manager (CIO, CSO, Director of IT) attended.
    pub async fn finalize_minutes(&self, p: &Principal, id: &str, mid: &str) -> AppResult<Meeting> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "meeting.finalize")
            .await?;
        let (rec, mut m) = self.find_meeting(&e, mid).await?;
        if m.finalized {
            return Err(conflict("minutes_final", "the minutes are already final"));
        }
        let Some(minutes) = &m.minutes else {
            return Err(conflict(
                "minutes_missing",
                "record the minutes (PUT .../minutes) before finalizing",
            ));
        };
        let users = self.active_users().await?;
        let manager_present = minutes
            .attendees
            .iter()
            .any(|a| users.iter().any(|u| &u.username == a && is_management(u)));
        if !manager_present {
            return Err(conflict(
                "manager_attendance_required",
                "minutes cannot be finalized unless a manager (CIO, CSO or Director of IT) attended",
            ));
        }
        m.finalized = true;
        m.finalized_by = Some(p.username().into());
        m.finalized_at = Some(self.now());
        let entry = AuditDraft::new(p.username(), "meeting.minutes_finalized", "meeting", m.id)
            .ticket(t.id)
            .details(json!({"emergency": e.id, "attendees": minutes.attendees}));
        self.save_meeting(&rec, &m, ChangeSet::new(), entry).await?;
        Ok(m)
    }

    pub async fn file_status_report(
        &self,
        p: &Principal,
        id: &str,
        body: &StatusReportBody,
    ) -> AppResult<StatusReport> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "status_report.file")
            .await?;
        body.validate()?;
        let r = StatusReport {
            id: Uuid::now_v7(),
            emergency_id: e.id,
            body: body.clone(),
            filed_by: p.username().into(),
            filed_at: self.now(),
        };
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(record(
                K_STATUS_REPORT,
                r.id,
                &t,
                Some(e.id),
                "filed",
                Some(p.username()),
                &r,
                self.now(),
            )?))
            .audit(
                AuditDraft::new(
                    p.username(),
                    "emergency.status_report",
                    "status_report",
                    r.id,
                )
                .ticket(t.id)
                .details(json!({"emergency": e.id, "report": body})),
            );
        self.commit(cs).await?;
        Ok(r)
    }

    pub async fn list_status_reports(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<Vec<StatusReport>> {
        let (_, e, _) = self.find_emergency(p, id).await?;
        self.records_of(K_STATUS_REPORT, e.id).await
    }

    /// The coordinator chooses the course of action; Monitor & Capture tells the CEO, CFO,
    /// corporate attorney and PR at once.
    pub async fn choose_course(
        &self,
        p: &Principal,
        id: &str,
        body: &CourseBody,
    ) -> AppResult<Emergency> {
        let (rec, mut e, t) = self.find_emergency(p, id).await?;
        if !p.has_any(&[Role::Manager]) || !p.can_write() {
            self.require_coordinator(p, &e, &t, "emergency.course_of_action")
                .await?;
        } else if e.status == EmergencyStatus::Closed {
            return Err(conflict("emergency_closed", "the emergency is closed"));
        }
        let rationale = ReasonBody {
            reason: body.rationale.clone(),
        }
        .validate()
        .map_err(|_| AppError::field("rationale", "is required and must not be blank"))?;
        let from = e.course_of_action;
        // once chosen, only management redirects the response (its obligations stay visible
        // on the record either way)
        if from.is_some_and(|c| c != body.course) && !p.has_any(&[Role::Manager]) {
            return Err(conflict(
                "course_already_chosen",
                "the course of action is chosen; a manager may change it",
            ));
        }
        e.course_of_action = Some(body.course);
        e.course_rationale = Some(rationale.clone());
        e.course_chosen_at = Some(self.now());
        let mut extra = ChangeSet::new();
        let mut told = Vec::new();
        if body.course == Course::MonitorCapture {
            let title = format!("Monitor & Capture on {}: {rationale}", e.ticket_number);
            let (notes, who) = self
                .tell(&t, Some(e.id), PlanEvent::MonitorCapture, &title)
                .await?;
            extra.ops.extend(notes.ops);
            extra.audit.extend(notes.audit);
            told = who;
        }
        let entry = AuditDraft::new(
            p.username(),
            "emergency.course_of_action",
            "emergency",
            e.id,
        )
        .ticket(t.id)
        .details(
            json!({"from": from, "to": body.course, "rationale": rationale, "notified": told}),
        );
        self.save_emergency(&rec, &e, extra, entry).await?;
        self.emergency_view(&t, e).await
    }

    pub async fn list_notifications(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<Vec<Notification>> {
        let (_, e, _) = self.find_emergency(p, id).await?;
        self.records_of(K_NOTIFICATION, e.id).await
    }

    async fn change_controls_of(&self, t: &Ticket) -> AppResult<Vec<ChangeControl>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_CHANGE.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?;
        recs.iter().map(parse).collect()
    }

    pub async fn list_change_controls(
        &self,
        p: &Principal,
        reference: &str,
    ) -> AppResult<Vec<ChangeControl>> {
        let t = self.find_ticket(p, reference).await?;
        self.change_controls_of(&t).await
    }

    /// Raises a change control on a ticket (tier 2 and management); a normal ticket becomes an
    /// escalation.
    pub async fn create_change_control(
        &self,
        p: &Principal,
        reference: &str,
        body: &CreateChangeControl,
    ) -> AppResult<ChangeControl> {
        body.validate()?;
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write() || !p.has_any(&[Role::SeniorResponder, Role::Manager]) {
                return Err(self
                    .deny(
                        p,
                        "change_control.create",
                        Some(&t),
                        "change controls are raised by senior responders and managers".into(),
                    )
                    .await);
            }
            if t.status == TicketStatus::Closed {
                return Err(conflict(
                    "invalid_transition",
                    "the ticket is closed; reopen it first",
                ));
            }
            let now = self.now();
            let c = ChangeControl {
                id: Uuid::now_v7(),
                ticket_number: self.number(&t),
                kind: body.kind,
                description: body.description.trim().into(),
                systems: body.systems.clone(),
                status: ChangeStatus::Requested,
                requested_by: p.username().into(),
                requested_at: now,
                decided_by: None,
                decided_at: None,
                decision_comment: None,
                needs_manager_approval: body.kind != ChangeKind::Normal,
            };
            let mut cs = ChangeSet::new()
                .op(Op::InsertRecord(record(
                    K_CHANGE,
                    c.id,
                    &t,
                    None,
                    "requested",
                    Some(p.username()),
                    &c,
                    now,
                )?))
                .audit(
                    AuditDraft::new(
                        p.username(),
                        "change_control.requested",
                        "change_control",
                        c.id,
                    )
                    .ticket(t.id)
                    .details(
                        json!({"kind": c.kind, "description": c.description, "systems": c.systems}),
                    ),
                );
            if t.criticality == Criticality::Normal {
                let mut n = t.clone();
                n.criticality = Criticality::Escalation;
                n.tier = 2;
                n.escalation_reason = Some(format!(
                    "involves change control ({} change)",
                    c.kind.as_str()
                ));
                n.updated_at = now;
                cs = cs
                    .op(Op::UpdateTicket {
                        ticket: n,
                        expected_version: t.version,
                    })
                    .audit(
                        AuditDraft::new(p.username(), "ticket.classified", "ticket", t.id)
                            .ticket(t.id)
                            .details(json!({"from": "normal", "to": "escalation", "reason": "linked to a change control"})),
                    );
            }
            match self.commit(cs).await {
                Ok(_) => return Ok(c),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(
            "concurrent_update",
            "the ticket keeps changing concurrently; retry",
        ))
    }

    async fn find_change(
        &self,
        p: &Principal,
        id: &str,
    ) -> AppResult<(WorkflowRecord, ChangeControl, Ticket)> {
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let rec = match self.store.get_record(id).await {
            Ok(r) if r.kind == K_CHANGE => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let t = self
            .store
            .get_ticket(rec.ticket_id.ok_or(AppError::NotFound)?)
            .await?;
        if !p.can_read() || !self.can_see(p, &t).await? {
            return Err(AppError::NotFound);
        }
        let c = parse(&rec)?;
        Ok((rec, c, t))
    }

    pub async fn get_change_control(&self, p: &Principal, id: &str) -> AppResult<ChangeControl> {
        Ok(self.find_change(p, id).await?.1)
    }

    /// Moves a change control on: approve / reject (a manager for emergency and lock-down
    /// changes, tier 2 or a manager for normal ones; never the requester), then implemented and
    /// verified by tier 2.
    pub async fn change_control_action(
        &self,
        p: &Principal,
        id: &str,
        action: ChangeStatus,
        comment: Option<&str>,
    ) -> AppResult<ChangeControl> {
        let (rec, mut c, t) = self.find_change(p, id).await?;
        let (from, allowed, who): (ChangeStatus, &[Role], &str) = match action {
            ChangeStatus::Approved | ChangeStatus::Rejected => (
                ChangeStatus::Requested,
                &[Role::Manager],
                "a manager (never the requester)",
            ),
            ChangeStatus::Implemented => (
                ChangeStatus::Approved,
                &[Role::SeniorResponder, Role::Manager],
                "tier 2",
            ),
            ChangeStatus::Verified => (
                ChangeStatus::Implemented,
                &[Role::SeniorResponder, Role::Manager],
                "tier 2",
            ),
            ChangeStatus::Requested => {
                return Err(conflict(
                    "invalid_transition",
                    "a change control cannot go back to requested",
                ));
            }
        };
        let name = format!("change_control.{}", action.as_str());
        if !p.can_write() || !p.has_any(allowed) {
            return Err(self
                .deny(p, &name, Some(&t), format!("this step is for {who}"))
                .await);
        }
        if matches!(action, ChangeStatus::Approved | ChangeStatus::Rejected)
            && c.requested_by == p.username()
        {
            return Err(self
                .deny(
                    p,
                    &name,
                    Some(&t),
                    "two-person rule: the requester cannot approve or reject their own change"
                        .into(),
                )
                .await);
        }
        if t.status == TicketStatus::Closed {
            return Err(conflict(
                "invalid_transition",
                "the ticket is closed; reopen it first",
            ));
        }
        if c.status != from {
            return Err(conflict(
                "invalid_transition",
                format!(
                    "the change control is {}; this step needs it {}",
                    c.status.as_str(),
                    from.as_str()
                ),
            ));
        }
        let comment = match comment {
            Some(cm) => Some(
                DecisionBody { comment: cm.into() }
                    .validate()
                    .map(|()| cm.trim().to_string())?,
            ),
            None => None,
        };
        c.status = action;
        if matches!(action, ChangeStatus::Approved | ChangeStatus::Rejected) {
            c.decided_by = Some(p.username().into());
            c.decided_at = Some(self.now());
            c.decision_comment = comment.clone();
        }
        let mut updated = rec.clone();
        updated.data = serde_json::to_string(&c).map_err(|x| anyhow::anyhow!("{x}"))?;
        updated.status = action.as_str().into();
        updated.updated_at = self.now();
        let cs = ChangeSet::new()
            .op(Op::UpdateRecord {
                record: updated,
                expected_version: rec.version,
            })
            .audit(
                AuditDraft::new(p.username(), &name, "change_control", c.id)
                    .ticket(t.id)
                    .details(json!({"from": from, "to": action, "comment": comment, "requested_by": c.requested_by})),
            );
        match self.commit(cs).await {
            Ok(_) => Ok(c),
            Err(StoreError::Conflict(_)) => Err(conflict(
                "concurrent_update",
                "the change control changed meanwhile; retry",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn records_of<T: DeserializeOwned>(
        &self,
        kind: &str,
        emergency: Uuid,
    ) -> AppResult<Vec<T>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: kind.into(),
                parent_id: Some(emergency),
                ..Default::default()
            })
            .await?;
        recs.iter().map(parse).collect()
    }

    /// Files a Test Report (Lock-down & Repair): the repair and its compliance tests.
    pub async fn file_test_report(
        &self,
        p: &Principal,
        id: &str,
        body: &TestReportBody,
    ) -> AppResult<TestReport> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "test_report.file")
            .await?;
        body.validate()?;
        let r = TestReport {
            id: Uuid::now_v7(),
            emergency_id: e.id,
            body: body.clone(),
            filed_by: p.username().into(),
            filed_at: self.now(),
        };
        let status = if body.all_pass() { "pass" } else { "fail" };
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(record(
                K_TEST_REPORT,
                r.id,
                &t,
                Some(e.id),
                status,
                Some(p.username()),
                &r,
                self.now(),
            )?))
            .audit(
                AuditDraft::new(p.username(), "emergency.test_report", "test_report", r.id)
                    .ticket(t.id)
                    .details(json!({"emergency": e.id, "report": body})),
            );
        self.commit(cs).await?;
        Ok(r)
    }

    /// Files the Report to Senior Management (False Positive).
    pub async fn file_senior_management_report(
        &self,
        p: &Principal,
        id: &str,
        body: &SeniorManagementReportBody,
    ) -> AppResult<SeniorManagementReport> {
        let (_, e, t) = self.find_emergency(p, id).await?;
        self.require_coordinator(p, &e, &t, "senior_management_report.file")
            .await?;
        body.validate()?;
        if e.course_of_action != Some(Course::FalsePositive) {
            return Err(conflict(
                "wrong_course",
                "a Report to Senior Management belongs to the False Positive course of action; choose it first",
            ));
        }
        let r = SeniorManagementReport {
            id: Uuid::now_v7(),
            emergency_id: e.id,
            body: body.clone(),
            filed_by: p.username().into(),
            filed_at: self.now(),
        };
        let mut cs = ChangeSet::new()
            .op(Op::InsertRecord(record(
                K_SMR,
                r.id,
                &t,
                Some(e.id),
                "filed",
                Some(p.username()),
                &r,
                self.now(),
            )?))
            .audit(
                AuditDraft::new(
                    p.username(),
                    "emergency.senior_management_report",
                    "senior_management_report",
                    r.id,
                )
                .ticket(t.id)
                .details(json!({"emergency": e.id, "report": body})),
            );
        for m in self
            .active_users()
            .await?
            .iter()
            .filter(|u| u.has_role(Role::Manager))
        {
            cs = cs.op(Op::InsertRecord(self.notification(
                &t,
                Some(e.id),
                &m.username,
                &format!("Report to Senior Management on {}", e.ticket_number),
            )?));
        }
        self.commit(cs).await?;
        Ok(r)
    }

    /// Closes an emergency once its course of action's obligations are met (409 listing them
    /// otherwise). False Positive then returns the ticket to the normal path or closes it, as
    /// the Report to Senior Management says.
    pub async fn close_emergency(
        &self,
        p: &Principal,
        id: &str,
        body: &CloseEmergencyBody,
    ) -> AppResult<Emergency> {
        let (rec, e, t) = self.find_emergency(p, id).await?;
        let coordinator = e.coordinator.as_deref() == Some(p.username());
        if !p.can_write() || !(coordinator || p.has_any(&[Role::Manager])) {
            return Err(self
                .deny(
                    p,
                    "emergency.close",
                    Some(&t),
                    "closing an emergency is for its coordinator and managers".into(),
                )
                .await);
        }
        if e.status == EmergencyStatus::Closed {
            return Err(conflict(
                "emergency_closed",
                "the emergency is already closed",
            ));
        }
        let view = self.emergency_view(&t, e.clone()).await?;
        if !view.open_obligations.is_empty() {
            return Err(conflict(
                "obligations_open",
                format!(
                    "the emergency cannot close yet: {}",
                    view.open_obligations.join("; ")
                ),
            ));
        }
        let summary = match &body.summary {
            Some(sm) => Some(
                ReasonBody { reason: sm.clone() }
                    .validate()
                    .map_err(|_| AppError::field("summary", "must not be blank"))?,
            ),
            None => None,
        };
        let mut closed = e.clone();
        closed.status = EmergencyStatus::Closed;
        let mut extra = ChangeSet::new();
        let mut disposition = None;
        if e.course_of_action == Some(Course::FalsePositive) {
            let smr: Vec<SeniorManagementReport> = self.records_of(K_SMR, e.id).await?;
            if let Some(last) = smr.last() {
                let now = self.now();
                let mut n = t.clone();
                match last.body.disposition {
                    Disposition::ReturnToNormal => {
                        n.criticality = Criticality::Normal;
                        n.tier = 1;
                        n.escalation_reason = None;
                    }
                    Disposition::Close => {
                        n.status = TicketStatus::Closed;
                        n.false_positive = true;
                        n.resolution = Some(last.body.summary.clone());
                        n.problem_category = Some("false positive".into());
                    }
                }
                n.updated_at = now;
                disposition = Some(last.body.disposition);
                extra = extra.op(Op::UpdateTicket {
                    ticket: n,
                    expected_version: t.version,
                });
            }
        }
        let (notes, _) = self
            .tell(
                &t,
                Some(e.id),
                PlanEvent::EmergencyClosed,
                &format!("Emergency on {} closed", e.ticket_number),
            )
            .await?;
        extra.ops.extend(notes.ops);
        extra.audit.extend(notes.audit);
        let entry = AuditDraft::new(p.username(), "emergency.closed", "emergency", e.id)
            .ticket(t.id)
            .details(json!({"summary": summary, "course": e.course_of_action, "disposition": disposition}));
        self.save_emergency(&rec, &closed, extra, entry).await?;
        let t = self.store.get_ticket(t.id).await?;
        self.emergency_view(&t, closed).await
    }

    /// Moves the ticket to an incident-handling phase (forward only), on the record.
    pub async fn set_phase(
        &self,
        p: &Principal,
        reference: &str,
        body: &PhaseBody,
    ) -> AppResult<serde_json::Value> {
        let t = self.find_ticket(p, reference).await?;
        if !p.can_write() || !p.has_any(&[Role::Responder, Role::SeniorResponder, Role::Manager]) {
            return Err(self
                .deny(
                    p,
                    "ticket.phase",
                    Some(&t),
                    "phases are set by responders and managers".into(),
                )
                .await);
        }
        if let Some(n) = &body.note {
            ReasonBody { reason: n.clone() }
                .validate()
                .map_err(|_| AppError::field("note", "must not be blank"))?;
        }
        if t.status == TicketStatus::Closed {
            return Err(conflict(
                "invalid_transition",
                "the ticket is closed; reopen it first",
            ));
        }
        let current = self.current_phase(&t).await?;
        if let Some(c) = current
            && body.phase.index() < c.index()
        {
            return Err(conflict(
                "invalid_transition",
                format!("the ticket is in {}; phases only move forward", c.as_str()),
            ));
        }
        let now = self.now();
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(record(
                K_PHASE,
                Uuid::now_v7(),
                &t,
                None,
                body.phase.as_str(),
                Some(p.username()),
                &json!({"phase": body.phase, "note": body.note, "set_by": p.username()}),
                now,
            )?))
            .audit(
                AuditDraft::new(p.username(), "ticket.phase", "ticket", t.id)
                    .ticket(t.id)
                    .details(json!({"from": current, "to": body.phase, "note": body.note})),
            );
        self.commit(cs).await?;
        Ok(json!({"ticket_number": self.number(&t), "phase": body.phase, "previous": current}))
    }

    async fn current_phase(&self, t: &Ticket) -> AppResult<Option<Phase>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_PHASE.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?;
        Ok(recs
            .last()
            .and_then(|r| Phase::ORDER.into_iter().find(|ph| ph.as_str() == r.status)))
    }

    /// The Post-Incident Review: lessons learned, and the ticket closes (its `incident` flag
    /// says whether the root cause was human). Open emergencies on it must be closed first.
    pub async fn post_incident_review(
        &self,
        p: &Principal,
        reference: &str,
        body: &PostIncidentReviewBody,
    ) -> AppResult<TicketView> {
        let mut checked = false;
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write()
                || !p.has_any(&[Role::Responder, Role::SeniorResponder, Role::Manager])
            {
                return Err(self
                    .deny(
                        p,
                        "ticket.post_incident_review",
                        Some(&t),
                        "the post-incident review is written by responders and managers".into(),
                    )
                    .await);
            }
            if !checked {
                // validated only once the caller may write it (no username probing)
                body.validate()?;
                for (i, a) in body.action_items.iter().enumerate() {
                    self.check_active_user(&format!("action_items[{i}].owner"), &a.owner)
                        .await?;
                }
                checked = true;
            }
            if t.status == TicketStatus::Closed {
                return Err(conflict(
                    "invalid_transition",
                    "the ticket is already closed",
                ));
            }
            if t.criticality == Criticality::Normal {
                return Err(conflict(
                    "invalid_transition",
                    "a normal ticket closes through resolve and the owner's acceptance; the post-incident review is for escalations and emergencies",
                ));
            }
            let open = self
                .store
                .list_records(&RecordFilter {
                    kind: K_EMERGENCY.into(),
                    ticket_id: Some(t.id),
                    status: Some("open".into()),
                    ..Default::default()
                })
                .await?;
            if !open.is_empty() {
                return Err(conflict(
                    "emergency_open",
                    "close the ticket's emergency first",
                ));
            }
            let now = self.now();
            let mut n = t.clone();
            n.status = TicketStatus::Closed;
            n.incident = body.human_root_cause;
            n.resolution = n.resolution.or_else(|| Some(body.root_cause.clone()));
            n.problem_category = n.problem_category.or_else(|| {
                Some(if body.human_root_cause {
                    "security incident".into()
                } else {
                    "security event".into()
                })
            });
            n.updated_at = now;
            let id = Uuid::now_v7();
            let cs = ChangeSet::new()
                .op(Op::UpdateTicket {
                    ticket: n.clone(),
                    expected_version: t.version,
                })
                .op(Op::InsertRecord(record(
                    K_PIR,
                    id,
                    &t,
                    None,
                    "final",
                    Some(p.username()),
                    &json!({"review": body, "by": p.username(), "at": now.unix_timestamp()}),
                    now,
                )?))
                .op(Op::InsertRecord(record(
                    K_PHASE,
                    Uuid::now_v7(),
                    &t,
                    None,
                    Phase::LessonsLearned.as_str(),
                    Some(p.username()),
                    &json!({"phase": Phase::LessonsLearned, "set_by": p.username()}),
                    now,
                )?))
                .audit(
                    AuditDraft::new(p.username(), "ticket.post_incident_review", "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({"review": body, "from": t.status, "to": "closed"})),
                );
            if let Some(view) = self.commit_ticket_change(cs, &t, n).await? {
                return Ok(view);
            }
        }
        Err(conflict(
            "concurrent_update",
            "the ticket keeps changing concurrently; retry",
        ))
    }

    /// Tier 2 re-evaluates an escalation and returns it to the normal path.
    pub async fn de_escalate(
        &self,
        p: &Principal,
        reference: &str,
        req: &ReasonBody,
    ) -> AppResult<TicketView> {
        let reason = req.validate()?;
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write() || !p.has_any(&[Role::SeniorResponder, Role::Manager]) {
                return Err(self
                    .deny(
                        p,
                        "de_escalate",
                        Some(&t),
                        "tier 2 (senior responders) and managers re-evaluate escalations".into(),
                    )
                    .await);
            }
            if t.criticality != Criticality::Escalation {
                return Err(conflict(
                    "invalid_transition",
                    format!(
                        "only an escalation returns to normal; the ticket is {}",
                        t.criticality.as_str()
                    ),
                ));
            }
            if self.has_open_emergency(&t).await? {
                return Err(conflict(
                    "emergency_open",
                    "close the ticket's emergency first",
                ));
            }
            let now = self.now();
            let mut n = t.clone();
            n.criticality = Criticality::Normal;
            n.tier = 1;
            n.escalation_reason = None;
            n.updated_at = now;
            let cs = ChangeSet::new()
                .op(Op::UpdateTicket {
                    ticket: n.clone(),
                    expected_version: t.version,
                })
                .audit(
                    AuditDraft::new(p.username(), "ticket.de_escalate", "ticket", t.id)
                        .ticket(t.id)
                        .details(json!({"from": "escalation", "to": "normal", "reason": reason})),
                );
            if let Some(view) = self.commit_ticket_change(cs, &t, n).await? {
                return Ok(view);
            }
        }
        Err(conflict(
            "concurrent_update",
            "the ticket keeps changing concurrently; retry",
        ))
    }

    /// Adds a task to a ticket (the team).
    pub async fn create_task(
        &self,
        p: &Principal,
        reference: &str,
        body: &CreateTask,
    ) -> AppResult<Task> {
        let t = self.find_ticket(p, reference).await?;
        if !p.can_write() || !p.has_any(firebreak_domain::role::groups::TEAM) {
            return Err(self
                .deny(
                    p,
                    "task.create",
                    Some(&t),
                    "tasks are added by the help desk, responders and managers".into(),
                )
                .await);
        }
        body.validate()?;
        if let Some(o) = &body.owner {
            self.check_active_user("owner", o).await?;
        }
        if t.status == TicketStatus::Closed {
            return Err(conflict(
                "invalid_transition",
                "the ticket is closed; reopen it first",
            ));
        }
        let now = self.now();
        let task = Task {
            id: Uuid::now_v7(),
            ticket_number: self.number(&t),
            title: body.title.trim().into(),
            owner: body.owner.clone(),
            due: body.due.clone(),
            done: false,
            created_by: p.username().into(),
            created_at: now,
            done_by: None,
            done_at: None,
        };
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(record(
                K_TASK,
                task.id,
                &t,
                None,
                "open",
                task.owner.as_deref(),
                &task,
                now,
            )?))
            .audit(
                AuditDraft::new(p.username(), "task.created", "task", task.id)
                    .ticket(t.id)
                    .details(json!({"title": task.title, "owner": task.owner, "due": task.due})),
            );
        self.commit(cs).await?;
        Ok(task)
    }

    pub async fn list_tasks(&self, p: &Principal, reference: &str) -> AppResult<Vec<Task>> {
        let t = self.find_ticket(p, reference).await?;
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_TASK.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?;
        recs.iter().map(parse).collect()
    }

    /// Marks a task done (the team).
    pub async fn complete_task(&self, p: &Principal, id: &str) -> AppResult<Task> {
        let id: Uuid = id.parse().map_err(|_| AppError::NotFound)?;
        let rec = match self.store.get_record(id).await {
            Ok(r) if r.kind == K_TASK => r,
            Ok(_) | Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let t = self
            .store
            .get_ticket(rec.ticket_id.ok_or(AppError::NotFound)?)
            .await?;
        if !p.can_read() || !self.can_see(p, &t).await? {
            return Err(AppError::NotFound);
        }
        if !p.can_write() || !p.has_any(firebreak_domain::role::groups::TEAM) {
            return Err(self
                .deny(
                    p,
                    "task.done",
                    Some(&t),
                    "tasks are completed by the help desk, responders and managers".into(),
                )
                .await);
        }
        let mut task: Task = parse(&rec)?;
        if task.done {
            return Err(conflict("invalid_transition", "the task is already done"));
        }
        task.done = true;
        task.done_by = Some(p.username().into());
        task.done_at = Some(self.now());
        let mut updated = rec.clone();
        updated.status = "done".into();
        updated.data = serde_json::to_string(&task).map_err(|e| anyhow::anyhow!("{e}"))?;
        updated.updated_at = self.now();
        let cs = ChangeSet::new()
            .op(Op::UpdateRecord {
                record: updated,
                expected_version: rec.version,
            })
            .audit(
                AuditDraft::new(p.username(), "task.done", "task", task.id)
                    .ticket(t.id)
                    .details(json!({"title": task.title})),
            );
        match self.commit(cs).await {
            Ok(_) => Ok(task),
            Err(StoreError::Conflict(_)) => Err(conflict(
                "concurrent_update",
                "the task changed meanwhile; retry",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Every notification about a ticket (escalations, emergencies), oldest first.
    pub async fn list_ticket_notifications(
        &self,
        p: &Principal,
        reference: &str,
    ) -> AppResult<Vec<Notification>> {
        let t = self.find_ticket(p, reference).await?;
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_NOTIFICATION.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?;
        recs.iter().map(parse).collect()
    }
}
