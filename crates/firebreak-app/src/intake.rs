//! Intake: normalized events from every channel become stored events. Per event: observables
//! (given by the source and found in its text), assets matched by host and address, a
//! fingerprint, suppression rules (CEL), the plan's classification; then one commit per batch
//! deduplicates against the stored events (one atomic upsert per key), with one audit entry
//! that covers the batch by digest. Events the plan says to ticket at once get their ticket
//! right after. A 2xx from a channel means this commit has returned.

use crate::expr::{CelEvent, CelObservable, Condition, Input};
use crate::{App, AppError, AppResult, Principal, SYSTEM_ACTOR};
use firebreak_domain::asset::Asset;
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::event::{
    Classification, Event, EventAsset, IngestSummary, ObservableRef, Reporter, SuppressionRule,
};
use firebreak_domain::plan::{ClassificationRule, IntakePolicy, Thresholds};
use firebreak_domain::role::Role;
use firebreak_domain::ticket::{EventStatus, Priority, Severity, SourceKind};
use firebreak_intake::{Action, NormalizedEvent};
use firebreak_store::{ChangeSet, NewEvent, Op, RecordsMarker};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a node uses its intake snapshot (assets, rules, plan) before reading it again;
/// changes made on this node apply at once.
pub const INTAKE_TTL: Duration = Duration::from_secs(5);
/// Events per commit at most; larger inputs are committed in several batches. A bulk intake
/// has up to four batches alive (read, prepared, committing, being freed): with 4,096 per
/// batch `firebreak ingest` of a million Suricata alerts peaked at 417 MiB of RSS, with
/// 10,000 at 553 MiB, at the same rate.
pub const BATCH: usize = 4_096;
/// Observables kept per event at most.
const MAX_OBSERVABLES: usize = 200;
/// Event ids listed in a summary at most.
const MAX_LISTED: usize = 1000;

/// Lets the runtime's other tasks run every [`YIELD_EVERY`] records: preparing a batch is
/// CPU work of up to a few hundred milliseconds that would otherwise hold a worker thread (of
/// two, on a small machine) while health checks and pages wait behind it.
async fn yield_every(i: usize) {
    if i % YIELD_EVERY == YIELD_EVERY - 1 {
        tokio::task::yield_now().await;
    }
}

/// Records prepared between two yields (a few milliseconds of work).
const YIELD_EVERY: usize = 256;

/// What intake needs to know, read once and shared by every batch until it expires.
pub struct IntakeState {
    by_name: HashMap<String, Arc<Asset>>,
    by_address: HashMap<String, Arc<Asset>>,
    suppression: Vec<(SuppressionRule, Condition)>,
    /// What the suppression rules read of the event (attributes, keys of `event.fields`).
    suppression_needs: crate::expr::FieldNeeds,
    rules: Vec<(ClassificationRule, Condition)>,
    /// What the classification rules read of the event (attributes, keys of `event.fields`).
    rules_needs: crate::expr::FieldNeeds,
    policy: IntakePolicy,
    thresholds: Thresholds,
}

/// The intake snapshot, when its records were last found unchanged, and their marker then.
#[derive(Default)]
pub struct IntakeCache(RwLock<Option<(Arc<IntakeState>, Instant, RecordsMarker)>>);

/// The records an intake snapshot is made of: a change to any of them (here or on another node)
/// makes the next check after [`INTAKE_TTL`] read them again.
const INTAKE_KINDS: [&str; 3] = [
    crate::assets::K_ASSET,
    crate::helpdesk::K_SUPPRESSION,
    crate::plan::K_PLAN,
];

impl IntakeCache {
    pub fn invalidate(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

/// The first 32 hex digits (128 bits) of a SHA-256 digest.
fn hex32(digest: &[u8]) -> String {
    let mut buf = [0u8; 32];
    // 16 bytes always fill the 32 digits
    let _ = hex::encode_to_slice(&digest[..16], &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// [`hex32`] of the SHA-256 of `parts`, each followed by 0x1f.
fn sha256_hex32(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex32(&h.finalize())
}

fn field_text(e: &Event, name: &str) -> String {
    match name {
        "host" => e.host.clone().unwrap_or_default(),
        "title" => e.title.clone(),
        "source_ref" => e.source_ref.clone().unwrap_or_default(),
        "rule_id" => e.rule_id.clone().unwrap_or_default(),
        "severity" => e.severity.as_str().into(),
        other => match e.fields.get(other) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        },
    }
}

/// Source + rule (or title) + the key fields, hashed. The key fields are the plan's for the
/// source; by default the host and the event's IP addresses (whatever the format calls them).
pub fn fingerprint(e: &Event, policy: &IntakePolicy) -> String {
    use std::fmt::Write;
    // the parts, each followed by 0x1f (as `sha256_hex32` hashes them)
    let mut text = String::with_capacity(128);
    let _ = write!(text, "{}\x1f", e.source);
    let _ = match &e.rule_id {
        Some(r) => write!(text, "rule={r}\x1f"),
        None => write!(text, "title={}\x1f", e.title),
    };
    match policy.dedup_fields.get(&e.source) {
        Some(names) => {
            for n in names {
                let _ = write!(text, "{n}={}\x1f", field_text(e, n));
            }
        }
        None => {
            // the title too: a rule whose text names what it saw (Wazuh's "Suricata: Alert -
            // $(alert.signature)", a webhook's "Disk full on /var") fires for different things
            // under one rule id, and those are not repeats of each other
            if e.rule_id.is_some() {
                let _ = write!(text, "title={}\x1f", e.title);
            }
            let _ = write!(text, "host={}\x1f", e.host.as_deref().unwrap_or(""));
            let mut ips: Vec<&str> = e
                .observables
                .iter()
                .filter(|o| o.kind == "ip")
                .map(|o| o.value.as_str())
                .collect();
            ips.sort_unstable();
            ips.dedup();
            let _ = write!(text, "ips={}\x1f", ips.join(","));
        }
    }
    hex32(&Sha256::digest(text.as_bytes()))
}

fn mentions_change_control(e: &Event) -> bool {
    // "change control", "change-control" or "change request", in any ASCII case, looked for
    // without a lowercased copy of each text
    let hit = |s: &str| {
        let b = s.as_bytes();
        (0..b.len().saturating_sub(13)).any(|i| {
            b[i] | 0x20 == b'c'
                && b[i..i + 6].eq_ignore_ascii_case(b"change")
                && [&b" control"[..], b"-control", b" request"]
                    .iter()
                    .any(|t| b[i + 6..i + 14].eq_ignore_ascii_case(t))
        })
    };
    hit(&e.title)
        || e.description.as_deref().is_some_and(hit)
        || e.tags
            .iter()
            .any(|t| hit(t) || t.eq_ignore_ascii_case("change_control"))
}

impl IntakeState {
    fn match_assets(&self, e: &Event) -> Vec<EventAsset> {
        let mut out: Vec<EventAsset> = Vec::new();
        let mut push = |a: &Arc<Asset>, on: &str| {
            if !out.iter().any(|x| x.id == a.id) {
                out.push(EventAsset {
                    id: a.id,
                    name: a.name.clone(),
                    critical_production: a.critical_production,
                    matched_on: on.to_string(),
                });
            }
        };
        if let Some(h) = &e.host {
            let h = h.trim().to_ascii_lowercase();
            let short = h.split('.').next().unwrap_or(&h).to_string();
            for key in [&h, &short] {
                if let Some(a) = self.by_name.get(key).or_else(|| self.by_address.get(key)) {
                    push(a, &h);
                    break;
                }
            }
        }
        for o in &e.observables {
            if matches!(o.kind.as_str(), "ip" | "hostname" | "domain")
                && let Some(a) = self
                    .by_address
                    .get(&o.value)
                    .or_else(|| self.by_name.get(&o.value))
            {
                push(a, &o.value);
            }
        }
        out
    }

    fn classify(&self, e: &mut Event) -> Result<Option<&ClassificationRule>, String> {
        let mut matched = None;
        let mut err = None;
        {
            let cel = cel_event(e);
            let input = Input::for_needs(&cel, &self.rules_needs);
            for (rule, cond) in &self.rules {
                match cond.matches(&input) {
                    Ok(true) => {
                        matched = Some(rule);
                        break;
                    }
                    Ok(false) => {}
                    Err(x) => err = Some(format!("rule {:?}: {x}", rule.name)),
                }
            }
        }
        if let Some(r) = matched
            && let Some(s) = r.severity
            && s != e.severity
        {
            if e.original_severity.is_none() {
                e.original_severity = Some(e.severity.as_str().into());
            }
            e.severity = s;
        }
        let priority = matched
            .and_then(|r| r.priority)
            .or_else(|| {
                self.thresholds
                    .priority_by_severity
                    .get(&e.severity)
                    .copied()
            })
            .unwrap_or_else(|| e.severity.default_priority());
        let critical = e.assets.iter().find(|a| a.critical_production);
        let escalation_reason = if let Some(r) = matched.filter(|r| r.escalate) {
            Some(format!(
                "the response plan's rule {:?} escalates it",
                r.name
            ))
        } else if let Some(a) = critical {
            Some(format!("affects the critical production asset {}", a.name))
        } else if self.thresholds.escalate_severities.contains(&e.severity) {
            Some(format!(
                "the response plan escalates {} severity",
                e.severity.as_str()
            ))
        } else if mentions_change_control(e) {
            Some("involves change control".to_string())
        } else {
            None
        };
        e.classification = Some(Classification {
            rule: matched.map(|r| r.name.clone()),
            open_ticket: matched.is_some_and(|r| r.open_ticket),
            priority,
            escalation_reason,
        });
        match err {
            Some(x) if matched.is_none() => Err(x),
            _ => Ok(matched),
        }
    }

    fn suppress(&self, e: &Event, now: time::OffsetDateTime) -> (Option<Uuid>, Option<String>) {
        let cel = cel_event(e);
        let input = Input::for_needs(&cel, &self.suppression_needs);
        let mut err = None;
        for (rule, cond) in &self.suppression {
            if !rule.active_at(now) {
                continue;
            }
            match cond.matches(&input) {
                Ok(true) => return (Some(rule.id), None),
                Ok(false) => {}
                Err(x) => err = Some(format!("suppression rule {:?}: {x}", rule.name)),
            }
        }
        (None, err)
    }
}

pub fn cel_event(e: &Event) -> CelEvent<'_> {
    CelEvent {
        source: &e.source,
        source_kind: e.source_kind.as_str(),
        source_ref: e.source_ref.as_deref(),
        rule_id: e.rule_id.as_deref(),
        title: &e.title,
        description: e.description.as_deref(),
        severity: e.severity.as_str(),
        original_severity: e.original_severity.as_deref(),
        host: e.host.as_deref(),
        status: e.status.as_str(),
        tags: &e.tags,
        fields: &e.fields,
        observables: e
            .observables
            .iter()
            .map(|o| CelObservable {
                kind: &o.kind,
                value: &o.value,
            })
            .collect(),
        assets: e.assets.iter().map(|a| a.name.as_str()).collect(),
        critical_asset: e.assets.iter().any(|a| a.critical_production),
        reporter_kind: e.reporter.as_ref().map(|r| r.kind.as_str()),
    }
}

/// Observables of an event or a ticket text: the given ones, then those in the text; canonical
/// and without repeats.
pub fn observables_of(given: Vec<ObservableRef>, texts: &[&str]) -> Vec<ObservableRef> {
    observables_found(
        given,
        texts
            .iter()
            .map(|t| firebreak_intake::observables::extract(t)),
    )
}

/// [`observables_of`] for an intake event: its title is one of a sensor's few thousand and is
/// looked through once per thread ([`firebreak_intake::observables::extract_repeated`]).
fn event_observables(
    given: Vec<ObservableRef>,
    title: &str,
    description: &str,
) -> Vec<ObservableRef> {
    // lazily: a title that fills the list spares the description
    observables_found(
        given,
        std::iter::once(title)
            .map(firebreak_intake::observables::extract_repeated)
            .chain(std::iter::once(description).map(firebreak_intake::observables::extract)),
    )
}

fn observables_found(
    given: Vec<ObservableRef>,
    found: impl IntoIterator<Item = Vec<firebreak_intake::Observable>>,
) -> Vec<ObservableRef> {
    let mut out: Vec<ObservableRef> = Vec::new();
    // an event has a handful: a look through the list, no copies of the strings
    let absent = |out: &[ObservableRef], kind: &str, value: &str| {
        !out.iter().any(|o| o.kind == kind && o.value == value)
    };
    for o in given {
        if out.len() >= MAX_OBSERVABLES {
            break;
        }
        if absent(&out, &o.kind, &o.value) {
            out.push(o);
        }
    }
    for list in found {
        for o in list {
            if out.len() >= MAX_OBSERVABLES {
                return out;
            }
            let kind = o.kind.as_str();
            if absent(&out, kind, &o.value) {
                out.push(ObservableRef {
                    kind: kind.into(),
                    value: o.value,
                });
            }
        }
    }
    out
}

fn severity_of(l: firebreak_intake::Level) -> Severity {
    match l {
        firebreak_intake::Level::Low => Severity::Low,
        firebreak_intake::Level::Medium => Severity::Medium,
        firebreak_intake::Level::High => Severity::High,
        firebreak_intake::Level::Critical => Severity::Critical,
    }
}

/// Text as the databases keep it: no NUL (PostgreSQL refuses it in text), at most `max`
/// characters (`None` when blank).
fn clean(s: Option<String>, max: usize) -> Option<String> {
    let s = s?;
    let s = if s.as_bytes().contains(&0) {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    };
    if s.trim().is_empty() {
        return None;
    }
    // no more bytes than `max` is no more characters
    Some(if s.len() > max && s.chars().count() > max {
        s.chars().take(max).collect()
    } else {
        s
    })
}

/// Strips NUL from JSON string values (kept as U+FFFD).
fn clean_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.as_bytes().contains(&0) => {
            *s = s.replace('\0', "\u{FFFD}")
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(o) => o.values_mut().for_each(clean_json),
        _ => {}
    }
}

/// The stored event for one normalized one (before suppression, classification and dedup).
pub fn to_event(
    mut ne: NormalizedEvent,
    reported_by: &str,
    now: time::OffsetDateTime,
) -> (Event, Option<String>, bool) {
    // bounded, NUL-free text: one odd record must not fail its whole batch
    ne.source_name = clean(Some(ne.source_name), 200).unwrap_or_else(|| "unknown".into());
    ne.source_ref = clean(ne.source_ref, 500);
    ne.rule_id = clean(ne.rule_id, 200);
    ne.host = clean(ne.host, 255);
    ne.title = clean(Some(ne.title), 1000).unwrap_or_default();
    ne.description = clean(ne.description, 65_536);
    ne.original_severity = clean(ne.original_severity, 100);
    ne.tags = ne
        .tags
        .into_iter()
        .filter_map(|t| clean(Some(t), 100))
        .take(100)
        .collect();
    if ne.raw.as_bytes().contains(&0) {
        ne.raw = ne.raw.replace('\0', "\u{FFFD}");
    }
    for v in ne.fields.values_mut() {
        clean_json(v);
    }
    if let Some(r) = &mut ne.reporter {
        r.name = clean(r.name.take(), 200);
        r.contact = clean(r.contact.take(), 320);
    }
    ne.observables
        .retain(|o| !o.value.contains('\0') && o.value.len() <= 2048);
    let given: Vec<ObservableRef> = std::mem::take(&mut ne.observables)
        .into_iter()
        .map(|o| ObservableRef {
            kind: o.kind.as_str().into(),
            value: o.value,
        })
        .collect();
    let description = ne
        .description
        .as_deref()
        .and_then(|d| d.get(ne.description_scan_from..))
        .unwrap_or("");
    let observables = event_observables(given, &ne.title, description);
    let reporter = ne.reporter.map(|r| Reporter {
        kind: SourceKind::parse(&r.kind).unwrap_or(SourceKind::Employee),
        name: r.name,
        contact: r.contact,
    });
    let resolve = ne.action == Action::Resolve;
    let e = Event {
        id: Uuid::now_v7(),
        status: if resolve {
            EventStatus::Resolved
        } else {
            EventStatus::New
        },
        source: ne.source_name,
        source_kind: SourceKind::parse(&ne.source_kind).unwrap_or(SourceKind::Sensor),
        source_ref: ne.source_ref,
        rule_id: ne.rule_id,
        title: firebreak_intake::clean_title(&ne.title),
        description: ne.description,
        severity: severity_of(ne.severity),
        original_severity: ne.original_severity,
        occurred_at: ne
            .occurred_at
            .map(firebreak_store::truncate_millis)
            .unwrap_or(now),
        received_at: now,
        last_seen: now,
        occurrences: 1,
        host: ne.host,
        observables,
        assets: vec![],
        tags: ne.tags,
        fingerprint: String::new(),
        fields: ne.fields,
        reporter,
        reported_by: reported_by.to_string(),
        ticket_id: None,
        suppressed_by: None,
        classification: None,
        intel: vec![],
        disposition: None,
        // the source's end time when it gives one (never after the receipt)
        resolved_at: resolve.then(|| {
            ne.resolved_at
                .map(firebreak_store::truncate_millis)
                .filter(|t| *t <= now)
                .unwrap_or(now)
        }),
        raw: ne.raw,
        version: 1,
    };
    (e, ne.dedup_key, resolve)
}

impl App {
    /// May submit events: reporter, help desk, responders, managers and admins, with a token
    /// scoped for intake or writing.
    pub fn may_report(p: &Principal) -> bool {
        let scoped = p.scopes.is_empty()
            || p.scopes.contains(&firebreak_domain::role::Scope::Intake)
            || p.scopes.contains(&firebreak_domain::role::Scope::Write);
        scoped
            && p.has_any(&[
                Role::Reporter,
                Role::Helpdesk,
                Role::Responder,
                Role::SeniorResponder,
                Role::Manager,
                Role::Admin,
            ])
    }

    /// Refuses (403, audited) a principal that may not submit events.
    pub async fn check_reporter(&self, p: &Principal) -> AppResult<()> {
        if Self::may_report(p) {
            return Ok(());
        }
        Err(self
            .deny(
                p,
                "event.report",
                None,
                "submitting events requires the reporter, helpdesk, responder or admin role and a token allowed to write or to report".into(),
            )
            .await)
    }

    pub(crate) fn invalidate_intake(&self) {
        self.intake_cache.invalidate();
    }

    /// The intake snapshot. Past [`INTAKE_TTL`] its records' marker is read (one aggregate
    /// query): the snapshot is read again only if they changed. Reading ten thousand assets
    /// every 5 s was a few percent of a bulk intake's CPU, and grew with the inventory.
    pub async fn intake_state(&self) -> AppResult<Arc<IntakeState>> {
        let cached = match self.intake_cache.0.read() {
            Ok(g) => g.clone(),
            Err(_) => None,
        };
        if let Some((state, checked, _)) = &cached
            && checked.elapsed() < INTAKE_TTL
        {
            return Ok(state.clone());
        }
        // read before the records: a change made while they are read moves it again
        let marker = self.store.records_marker(&INTAKE_KINDS).await?;
        if let Some((state, _, seen)) = cached
            && seen == marker
        {
            if let Ok(mut g) = self.intake_cache.0.write()
                && let Some(entry) = g.as_mut()
                && Arc::ptr_eq(&entry.0, &state)
            {
                entry.1 = Instant::now();
            }
            return Ok(state);
        }
        let assets = self.all_assets().await?;
        let mut by_name = HashMap::new();
        let mut by_address = HashMap::new();
        for a in assets {
            let a = Arc::new(a);
            by_name.insert(a.name.to_ascii_lowercase(), a.clone());
            for addr in &a.addresses {
                let key = addr.to_ascii_lowercase();
                // an IP is stored canonically, as observables are
                let key = key
                    .parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .unwrap_or(key);
                by_address.insert(key, a.clone());
            }
        }
        let mut suppression = Vec::new();
        for r in self.suppression_rules_raw().await? {
            match Condition::compile(&r.condition) {
                Ok(c) => suppression.push((r, c)),
                Err(e) => {
                    tracing::warn!(rule = %r.id, error = %e, "stored suppression rule does not compile; skipped")
                }
            }
        }
        // the plan as stored now, not as cached: the marker says it may have changed
        let plan = self.current_plan_fresh().await?.plan;
        let mut rules = Vec::new();
        for r in &plan.intake.rules {
            match Condition::compile(&r.when) {
                Ok(c) => rules.push((r.clone(), c)),
                Err(e) => {
                    tracing::warn!(rule = %r.name, error = %e, "plan classification rule does not compile; skipped")
                }
            }
        }
        let mut suppression_needs = crate::expr::FieldNeeds::default();
        for (_, c) in &suppression {
            suppression_needs.union(c.needs());
        }
        let mut rules_needs = crate::expr::FieldNeeds::default();
        for (_, c) in &rules {
            rules_needs.union(c.needs());
        }
        let state = Arc::new(IntakeState {
            by_name,
            by_address,
            suppression,
            suppression_needs,
            rules,
            rules_needs,
            policy: plan.intake.clone(),
            thresholds: plan.thresholds,
        });
        if let Ok(mut g) = self.intake_cache.0.write() {
            *g = Some((state.clone(), Instant::now(), marker));
        }
        Ok(state)
    }

    /// Ingests normalized events for `p` (authorized by the caller with [`Self::check_reporter`])
    /// in commits of at most [`BATCH`]; adds to `summary`.
    pub async fn ingest(
        &self,
        p: &Principal,
        events: Vec<NormalizedEvent>,
        summary: &mut IngestSummary,
    ) -> AppResult<()> {
        self.check_reporter(p).await?;
        let mut rest = events;
        while !rest.is_empty() {
            let tail = if rest.len() > BATCH {
                rest.split_off(BATCH)
            } else {
                Vec::new()
            };
            self.ingest_batch(p.username(), rest, summary, None).await?;
            rest = tail;
        }
        Ok(())
    }

    /// [`App::ingest`] of one batch (at most [`BATCH`] events) that commits only after `turn`
    /// (see [`App::ingest_batch`]).
    pub async fn ingest_after(
        &self,
        p: &Principal,
        events: Vec<NormalizedEvent>,
        summary: &mut IngestSummary,
        turn: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> AppResult<()> {
        self.check_reporter(p).await?;
        self.ingest_batch(p.username(), events, summary, turn).await
    }

    /// The indicators of a batch's candidate observables (the in-memory set can answer
    /// "maybe"), valid now, by (kind, value).
    async fn confirm_indicators(
        &self,
        mut candidates: Vec<(String, String)>,
        now: time::OffsetDateTime,
    ) -> AppResult<HashMap<(String, String), Vec<firebreak_store::IndicatorRecord>>> {
        let mut hits: HashMap<(String, String), Vec<firebreak_store::IndicatorRecord>> =
            HashMap::new();
        if candidates.is_empty() {
            return Ok(hits);
        }
        candidates.sort();
        candidates.dedup();
        for ind in self.store.find_indicators_any(&candidates).await? {
            if ind.valid_until.is_some_and(|t| t <= now) {
                continue;
            }
            hits.entry((ind.kind.clone(), ind.value.clone()))
                .or_default()
                .push(ind);
        }
        Ok(hits)
    }

    /// One commit: the events of one batch, deduplicated within it and against the store.
    /// With `turn`, the batch is prepared at once but committed only after the previous batch
    /// (whose end the receiver signals), so batches prepared in parallel commit in order.
    pub(crate) async fn ingest_batch(
        &self,
        reported_by: &str,
        events: Vec<NormalizedEvent>,
        summary: &mut IngestSummary,
        turn: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> AppResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let state = self.intake_state().await?;
        let now = self.now();
        let window_start =
            now - time::Duration::minutes(i64::from(state.policy.dedup_window_minutes));
        // first the events and the observables the in-memory indicator set may know; then one
        // query confirms every candidate of the batch. Without indicators to confirm, each
        // event goes through every step at once, while it is in the cache.
        let indicators = self
            .indicator_set()
            .filter(|s| self.config.match_indicators && !s.is_empty());
        let mut batch = BatchItems::new(events.len(), window_start);
        let mut prepared = Vec::with_capacity(if indicators.is_some() {
            events.len()
        } else {
            0
        });
        let mut candidates: Vec<(String, String)> = Vec::new();
        let no_hits = HashMap::new();
        for (i, ne) in events.into_iter().enumerate() {
            yield_every(i).await;
            summary.received += 1;
            let (mut e, source_key, resolve) = to_event(ne, reported_by, now);
            e.assets = state.match_assets(&e);
            match &indicators {
                Some(set) => {
                    for o in &e.observables {
                        if set.contains(&o.kind, &o.value) {
                            candidates.push((o.kind.clone(), o.value.clone()));
                        }
                    }
                    prepared.push((e, source_key, resolve));
                }
                None => batch.place(
                    self,
                    &state,
                    reported_by,
                    now,
                    &no_hits,
                    e,
                    source_key.as_deref(),
                    resolve,
                )?,
            }
        }
        if indicators.is_some() {
            let hits = self.confirm_indicators(candidates, now).await?;
            for (i, (e, source_key, resolve)) in prepared.into_iter().enumerate() {
                yield_every(i).await;
                batch.place(
                    self,
                    &state,
                    reported_by,
                    now,
                    &hits,
                    e,
                    source_key.as_deref(),
                    resolve,
                )?;
            }
        }
        let BatchItems {
            mut segments,
            input_slots,
            digest,
            sources,
            ..
        } = batch;
        segments.retain(|s| !s.is_empty());
        // what the summary needs of each item after the commit: its status and whether the
        // plan wants a ticket (the events themselves move into the change set)
        let kept: Vec<Vec<(EventStatus, bool, Uuid)>> = segments
            .iter()
            .map(|s| {
                s.iter()
                    .map(|it| {
                        let e = &it.event;
                        let ticket = e.classification.as_ref().is_some_and(|c| c.open_ticket);
                        (e.status, ticket, e.id)
                    })
                    .collect()
            })
            .collect();
        let n: usize = kept.iter().map(Vec::len).sum();
        let mut cs = ChangeSet::new();
        for seg in segments {
            cs = cs.op(Op::IngestEvents(seg));
        }
        let cs = cs.audit(
            AuditDraft::new(reported_by, "events.ingested", "events", "").details(json!({
                "records": input_slots.len(),
                "distinct": n,
                "sources": sources,
                "first_event": kept.first().and_then(|s| s.first()).map(|e| e.2),
                "digest": hex::encode(digest.finalize()),
            })),
        );
        if let Some(t) = turn {
            // the previous batch's sender is dropped when it is done, whatever its outcome
            let _ = t.await;
        }
        let out = self.commit(cs).await?;
        if out.ingested.len() != n {
            return Err(AppError::Unexpected(anyhow::anyhow!(
                "store answered {} results for {n} events",
                out.ingested.len()
            )));
        }
        // the store answers in op order, then item order
        let mut results: Vec<Vec<firebreak_store::Ingested>> = Vec::with_capacity(kept.len());
        let mut it = out.ingested.into_iter();
        for seg in &kept {
            results.push(it.by_ref().take(seg.len()).collect());
        }
        let mut to_ticket = Vec::new();
        let mut counted: Vec<Vec<bool>> = kept.iter().map(|s| vec![false; s.len()]).collect();
        let records = input_slots.len() as u64;
        for (seg, pos) in input_slots {
            let (Some(r), Some(e)) = (
                results.get(seg).and_then(|s| s.get(pos)),
                kept.get(seg).and_then(|s| s.get(pos)),
            ) else {
                continue;
            };
            let first = !counted[seg][pos];
            counted[seg][pos] = true;
            if r.resolved {
                summary.resolved += 1;
            } else if r.created && first {
                summary.created += 1;
                if e.0 == EventStatus::Suppressed {
                    summary.suppressed += 1;
                }
                if e.0 == EventStatus::New && e.1 {
                    to_ticket.push(r.event_id);
                }
            } else {
                summary.duplicates += 1;
                if e.0 == EventStatus::Suppressed {
                    summary.suppressed += 1;
                }
            }
            if first && summary.events.len() < MAX_LISTED {
                summary.events.push(r.event_id);
            }
        }
        metrics::counter!("firebreak_events_received_total").increment(records);
        for id in to_ticket {
            match self.auto_ticket(id).await {
                Ok(()) => summary.tickets_opened += 1,
                Err(e) => {
                    tracing::warn!(event = %id, error = %e, "the plan's classification could not open a ticket; the event waits in the queue")
                }
            }
        }
        Ok(())
    }

    /// Opens the ticket the plan's classification asked for (as the system).
    async fn auto_ticket(&self, id: Uuid) -> AppResult<()> {
        let e = self.store.get_event(id).await?;
        // taken out of the queue meanwhile (dismissed, merged, resolved): leave it
        if e.status != EventStatus::New {
            return Ok(());
        }
        let Some(c) = e.classification.clone() else {
            return Ok(());
        };
        let plan = self.current_plan().await?;
        let owner = c
            .rule
            .as_ref()
            .and_then(|name| plan.intake.rules.iter().find(|r| &r.name == name))
            .and_then(|r| r.owner.clone())
            .unwrap_or_else(|| SYSTEM_ACTOR.to_string());
        self.open_ticket_for_events(SYSTEM_ACTOR, &owner, &[e], None)
            .await
            .map(|_| ())
    }
}

/// A batch's items as they are placed: in segments (a key reported and resolved in one batch
/// is applied in arrival order, each segment an op of its own, a key once per segment), each
/// made ready for the store as it is placed.
struct BatchItems {
    segments: Vec<Vec<NewEvent>>,
    /// Per segment: key -> (item position in the segment, resolve?).
    index: HashMap<String, (usize, bool)>,
    /// Per input record: (segment, position).
    input_slots: Vec<(usize, usize)>,
    digest: Sha256,
    sources: std::collections::BTreeSet<String>,
    window_start: time::OffsetDateTime,
}

impl BatchItems {
    fn new(records: usize, window_start: time::OffsetDateTime) -> Self {
        Self {
            segments: vec![Vec::with_capacity(records)],
            index: HashMap::new(),
            input_slots: Vec::with_capacity(records),
            digest: Sha256::new(),
            sources: Default::default(),
            window_start,
        }
    }

    /// Fingerprint, suppression, classification and the key of one event; a repeat of a key
    /// placed before counts on it, a new one is made ready for the store (its details
    /// serialized, its stored form made) here, on the batch's task, not on the store's writer.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        app: &App,
        state: &IntakeState,
        reported_by: &str,
        now: time::OffsetDateTime,
        hits: &HashMap<(String, String), Vec<firebreak_store::IndicatorRecord>>,
        mut e: Event,
        source_key: Option<&str>,
        resolve: bool,
    ) -> AppResult<()> {
        if !hits.is_empty() {
            apply_indicator_hits(&mut e, hits, &state.policy.indicator_match);
        }
        // keys are the reporter's own: no one resolves or counts on another's events
        e.fingerprint = match source_key {
            Some(k) => sha256_hex32(&[reported_by, k]),
            None => fingerprint(&e, &state.policy),
        };
        // a resolution is matched as the firing was: as a new event
        let was = e.status;
        e.status = EventStatus::New;
        let (rule, err) = state.suppress(&e, now);
        e.status = was;
        if let Some(x) = err {
            tracing::debug!(error = %x, "suppression rule failed to evaluate");
        }
        if let Some(r) = rule {
            e.suppressed_by = Some(r);
            if !resolve {
                e.status = EventStatus::Suppressed;
            }
        }
        if let Err(x) = state.classify(&mut e) {
            tracing::debug!(error = %x, "classification rule failed to evaluate");
        }
        // the stored key: the reporter, the fingerprint and the suppression, hashed to 32
        // hex characters (a short key keeps the dedup index small and in cache)
        let key = match e.suppressed_by {
            Some(r) => sha256_hex32(&[reported_by, &e.fingerprint, &r.to_string()]),
            None => sha256_hex32(&[reported_by, &e.fingerprint]),
        };
        match self.index.get(&key) {
            Some(&(pos, was_resolve)) if was_resolve == resolve => {
                let seg = self.segments.len() - 1;
                self.segments[seg][pos].event.occurrences += 1;
                self.input_slots.push((seg, pos));
                return Ok(());
            }
            Some(_) => {
                // the other kind for this key: a new segment keeps the order
                self.segments.push(Vec::new());
                self.index.clear();
            }
            None => {}
        }
        self.digest.update(e.id.as_bytes());
        self.digest.update(key.as_bytes());
        self.digest.update(Sha256::digest(e.raw.as_bytes()));
        if !self.sources.contains(&e.source) {
            self.sources.insert(e.source.clone());
        }
        let mut item = NewEvent {
            event: e,
            dedup_key: key,
            window_start: self.window_start,
            resolve,
            details: None,
            packed: None,
        };
        app.store
            .prepare_event(&mut item)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("event details: {e}")))?;
        let seg = self.segments.len() - 1;
        let pos = self.segments[seg].len();
        self.index.insert(item.dedup_key.clone(), (pos, resolve));
        self.input_slots.push((seg, pos));
        self.segments[seg].push(item);
        Ok(())
    }
}

/// The priority a ticket opened from these events gets.
pub(crate) fn priority_of(events: &[Event], severity: Severity) -> Priority {
    events
        .iter()
        .filter_map(|e| e.classification.as_ref().map(|c| c.priority))
        .min()
        .unwrap_or_else(|| severity.default_priority())
}

/// The line-oriented formats of `POST /ingest/ndjson` and `firebreak ingest`.
#[derive(Debug, Clone)]
pub enum LineFormat {
    /// Suricata EVE JSON; `alert` and `anomaly` records become events unless other types are
    /// named.
    Eve(firebreak_intake::eve::EveTypes),
    /// Wazuh `alerts.json`.
    Wazuh,
    /// Any JSON object per line, mapped like a generic webhook; `source` names the source.
    Ndjson { source: String },
    /// CEF, bare or behind a syslog header.
    Cef,
    /// LEEF 1.0/2.0, bare or behind a syslog header.
    Leef,
    /// Syslog RFC 5424/3164, with CEF/LEEF payloads detected.
    Syslog,
}

impl LineFormat {
    pub const NAMES: &'static str = "eve, wazuh, ndjson, cef, leef, syslog";

    /// `name` as given by `--format` or `?format=`; `eve_types` only for `eve`.
    pub fn from_name(
        name: &str,
        eve_types: Option<&str>,
        source: Option<&str>,
    ) -> Result<LineFormat, String> {
        let f = match name {
            "eve" | "suricata" => LineFormat::Eve(match eve_types {
                Some(t) => firebreak_intake::eve::EveTypes::parse(t).map_err(|e| e.message)?,
                None => Default::default(),
            }),
            "wazuh" => LineFormat::Wazuh,
            "ndjson" | "json" => LineFormat::Ndjson {
                source: source.unwrap_or("ndjson").to_string(),
            },
            "cef" => LineFormat::Cef,
            "leef" => LineFormat::Leef,
            "syslog" => LineFormat::Syslog,
            other => {
                return Err(format!(
                    "unknown format {other:?}; expected one of: {}",
                    Self::NAMES
                ));
            }
        };
        if eve_types.is_some() && !matches!(f, LineFormat::Eve(_)) {
            return Err("eve_types applies to the eve format only".into());
        }
        Ok(f)
    }

    /// One line (without its newline) to events.
    pub fn parse_line(
        &self,
        line: &str,
        now: time::OffsetDateTime,
    ) -> firebreak_intake::ParseResult {
        use firebreak_intake::{cef, eve, leef, syslog, wazuh, webhook};
        match self {
            LineFormat::Eve(types) => eve::parse_line(line, types),
            LineFormat::Wazuh => wazuh::parse_line(line),
            LineFormat::Ndjson { source } => {
                static GENERIC: std::sync::LazyLock<webhook::CompiledMapping> =
                    std::sync::LazyLock::new(webhook::CompiledMapping::generic);
                webhook::parse(line.as_bytes(), source, &GENERIC)
            }
            LineFormat::Cef | LineFormat::Leef => {
                let tag = if matches!(self, LineFormat::Cef) {
                    "CEF:"
                } else {
                    "LEEF:"
                };
                if line.trim_start().starts_with(tag) {
                    if matches!(self, LineFormat::Cef) {
                        cef::parse(line)
                    } else {
                        leef::parse(line)
                    }
                } else {
                    let msg = syslog::parse(line, now)?;
                    if !msg.message.trim_start().starts_with(tag) {
                        return Err(firebreak_intake::ParseError::new(
                            "line",
                            format!("no {tag} record in the line"),
                        ));
                    }
                    syslog::to_events(&msg, line)
                }
            }
            LineFormat::Syslog => {
                let msg = syslog::parse(line, now)?;
                syslog::to_events(&msg, line)
            }
        }
    }
}

/// Lines in, events committed in batches: shared by `POST /ingest/ndjson` and
/// `firebreak ingest`. A bad line is reported by number and the others go in. One batch is
/// committed in the background while the next is parsed (at most one in flight).
pub struct LineIngest<'a> {
    app: &'a App,
    principal: &'a Principal,
    format: LineFormat,
    pending: Vec<NormalizedEvent>,
    /// The number of the last line read.
    pub line: u64,
    /// Every line up to this one is committed (for `--resume`).
    pub committed_line: u64,
    pub summary: IngestSummary,
    /// All errors, also those beyond the listed ones.
    pub error_count: u64,
    inflight: std::collections::VecDeque<(u64, tokio::task::JoinHandle<AppResult<IngestSummary>>)>,
    /// Signals the end of the batch launched last (the next one commits after it).
    last_done: Option<tokio::sync::oneshot::Receiver<()>>,
    /// A batch failed: lines after it are not all committed, whatever later batches did.
    failed: bool,
}

/// Batches prepared ahead of the one committing (their commits stay in order).
const IN_FLIGHT: usize = 2;

/// Line errors listed in a summary at most.
pub const MAX_LISTED_ERRORS: usize = 1000;
/// Longest line accepted.
pub const MAX_LINE: usize = 1024 * 1024;

impl<'a> LineIngest<'a> {
    pub fn new(app: &'a App, principal: &'a Principal, format: LineFormat) -> Self {
        Self {
            app,
            principal,
            format,
            // grown as lines come: most bodies are far smaller than a batch
            pending: Vec::new(),
            line: 0,
            committed_line: 0,
            summary: IngestSummary::default(),
            error_count: 0,
            inflight: std::collections::VecDeque::new(),
            last_done: None,
            failed: false,
        }
    }

    fn error(&mut self, field: String, message: String) {
        self.error_count += 1;
        self.summary.refused += 1;
        if self.summary.errors.len() < MAX_LISTED_ERRORS {
            self.summary
                .errors
                .push(firebreak_domain::event::LineError {
                    line: self.line,
                    field,
                    message,
                });
        }
    }

    /// Takes one line (bytes without the newline); starts a commit when a batch is full.
    pub async fn push(&mut self, raw: &[u8]) -> AppResult<()> {
        self.line += 1;
        yield_every(self.line as usize).await;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // a UTF-8 byte order mark before the first line (Windows tools write one)
        let raw = match self.line {
            1 => raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw),
            _ => raw,
        };
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if raw.len() > MAX_LINE {
            self.error("line".into(), format!("longer than {MAX_LINE} bytes"));
            return Ok(());
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                self.error("line".into(), format!("not UTF-8: {e}"));
                return Ok(());
            }
        };
        match self.format.parse_line(text, self.app.now()) {
            Ok(evs) if evs.is_empty() => self.summary.skipped += 1,
            Ok(evs) => self.pending.extend(evs),
            Err(e) => self.error(e.field, e.message),
        }
        if self.pending.len() >= BATCH {
            self.launch().await?;
        }
        Ok(())
    }

    /// Waits for the oldest batch in flight, if any, and counts it.
    async fn wait(&mut self) -> AppResult<()> {
        if let Some((line, handle)) = self.inflight.pop_front() {
            let part = handle
                .await
                .map_err(|e| AppError::Unexpected(anyhow::anyhow!("intake task: {e}")))
                .and_then(|r| r);
            let part = match part {
                Ok(p) => p,
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            };
            let s = &mut self.summary;
            s.add_counts(&part);
            let room = MAX_LISTED.saturating_sub(s.events.len());
            s.events.extend(part.events.into_iter().take(room));
            if !self.failed {
                self.committed_line = line;
            }
        }
        Ok(())
    }

    /// Starts preparing what is pending; it commits after the batches before it.
    async fn launch(&mut self) -> AppResult<()> {
        while self.inflight.len() >= IN_FLIGHT {
            self.wait().await?;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        // a body that filled this batch is likely to fill the next
        let room = self.pending.len();
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(room));
        let app = self.app.clone();
        let principal = self.principal.clone();
        let turn = self.last_done.take();
        let (done, next) = tokio::sync::oneshot::channel::<()>();
        self.last_done = Some(next);
        let handle = tokio::spawn(async move {
            let _done = done; // dropped when this batch is over: the next may commit
            let mut part = IngestSummary::default();
            app.ingest_after(&principal, batch, &mut part, turn)
                .await
                .map(|()| part)
        });
        self.inflight.push_back((self.line, handle));
        Ok(())
    }

    /// Waits for the batch in flight (after an error elsewhere): `committed_line` is then
    /// exact. What is still pending is not committed.
    pub async fn settle(&mut self) -> AppResult<()> {
        let mut first_err = None;
        while !self.inflight.is_empty() {
            if let Err(e) = self.wait().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Commits everything read so far and waits for it.
    pub async fn flush(&mut self) -> AppResult<()> {
        self.launch().await?;
        self.settle().await?;
        if !self.failed {
            self.committed_line = self.line;
        }
        Ok(())
    }

    /// Events waiting for the next commit.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Records an event's confirmed indicator matches on it (`intel`, the `indicator-match` tag)
/// and raises its severity as the plan says for the best confidence.
fn apply_indicator_hits(
    e: &mut Event,
    hits: &HashMap<(String, String), Vec<firebreak_store::IndicatorRecord>>,
    policy: &firebreak_domain::plan::IndicatorMatchPolicy,
) {
    let mut best: Option<i32> = None;
    for o in &e.observables {
        let Some(found) = hits.get(&(o.kind.clone(), o.value.clone())) else {
            continue;
        };
        for ind in found {
            best = Some(best.map_or(ind.confidence, |b| b.max(ind.confidence)));
            e.intel.push(firebreak_domain::event::IndicatorHit {
                kind: ind.kind.clone(),
                value: ind.value.clone(),
                source: ind.source.clone(),
                confidence: ind.confidence,
                description: ind.description.clone(),
            });
        }
    }
    let Some(c) = best else { return };
    metrics::counter!("firebreak_indicator_matches_total").increment(1);
    if !e.tags.iter().any(|t| t == "indicator-match") {
        e.tags.push("indicator-match".into());
    }
    if c >= i32::from(policy.min_confidence) {
        let target = if c >= i32::from(policy.critical_from) {
            Severity::Critical
        } else {
            policy.raise_to
        };
        if target > e.severity {
            e.severity = target;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use firebreak_intake::{Observable, ObservableKind};

    fn sample() -> Event {
        let mut ne = NormalizedEvent::new("sensor", "suricata", "ET SCAN  Nmap\tscan");
        ne.rule_id = Some("2100498".into());
        ne.host = Some("sensor-1".into());
        ne.description = Some("seen from 10.0.0.9 and hxxp://evil[.]example/x".into());
        ne.observables = vec![
            Observable::new(ObservableKind::Ip, "10.0.0.2"),
            Observable::new(ObservableKind::Ip, "10.0.0.1"),
            Observable::new(ObservableKind::Ip, "10.0.0.2"),
        ];
        to_event(ne, "bench", time::OffsetDateTime::now_utc()).0
    }

    #[test]
    fn change_control_is_found_in_any_case_and_place() {
        let mut e = sample();
        assert!(!mentions_change_control(&e));
        for (title, hit) in [
            ("Change Control 42 broke the VPN", true),
            ("emergency CHANGE-CONTROL", true),
            ("per change request", true),
            ("change requests pile up", true),
            ("change contro", false),
            ("changed control plane", false),
            ("exchange controller down", true), // as a plain `contains` would say
            ("Änderung change control", true),
            ("changecontrol", false),
            ("", false),
        ] {
            e.title = title.into();
            assert_eq!(mentions_change_control(&e), hit, "{title:?}");
        }
        e.title = "nothing here".into();
        e.description = Some("see the Change Request in the ticket".into());
        assert!(mentions_change_control(&e));
        e.description = None;
        e.tags = vec!["Change_Control".into()];
        assert!(mentions_change_control(&e));
        e.tags = vec!["x change-control y".into()];
        assert!(mentions_change_control(&e));
    }

    /// Fingerprints and dedup keys are stored: they must stay what they were (the parts, each
    /// followed by 0x1f, hashed with SHA-256, the first 32 hex digits).
    #[test]
    fn fingerprints_and_keys_keep_their_form() {
        let e = sample();
        let policy = IntakePolicy::default();
        let mut h = Sha256::new();
        assert_eq!(e.title, "ET SCAN Nmap scan");
        for p in [
            "suricata",
            "rule=2100498",
            "title=ET SCAN Nmap scan",
            "host=sensor-1",
            "ips=10.0.0.1,10.0.0.2,10.0.0.9",
        ] {
            h.update(p.as_bytes());
            h.update([0x1f]);
        }
        let expected = hex::encode(h.finalize())[..32].to_string();
        assert_eq!(fingerprint(&e, &policy), expected);
        let mut h = Sha256::new();
        for p in ["bench", expected.as_str()] {
            h.update(p.as_bytes());
            h.update([0x1f]);
        }
        assert_eq!(
            sha256_hex32(&["bench", &expected]),
            hex::encode(h.finalize())[..32]
        );
    }

    #[test]
    fn observables_are_listed_once_in_order() {
        let e = sample();
        let got: Vec<(&str, &str)> = e
            .observables
            .iter()
            .map(|o| (o.kind.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("ip", "10.0.0.2"),
                ("ip", "10.0.0.1"),
                ("ip", "10.0.0.9"),
                ("url", "http://evil.example/x"),
                ("domain", "evil.example"),
            ]
        );
        assert_eq!(e.title, "ET SCAN Nmap scan");
        // a long list: each once, in order of first mention
        let given: Vec<ObservableRef> = (0..40)
            .map(|i| ObservableRef {
                kind: "ip".into(),
                value: format!("10.0.0.{}", i % 25),
            })
            .collect();
        let text: String = (0..60).map(|i| format!("10.0.1.{} ", i % 30)).collect();
        let all = observables_of(given, &[&text, "10.0.0.3 10.0.1.29 10.0.2.1"]);
        let values: Vec<String> = all.iter().map(|o| o.value.clone()).collect();
        let mut expected: Vec<String> = (0..25).map(|i| format!("10.0.0.{i}")).collect();
        expected.extend((0..30).map(|i| format!("10.0.1.{i}")));
        expected.push("10.0.2.1".into());
        assert_eq!(values, expected);
    }
}
