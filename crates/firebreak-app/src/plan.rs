//! The response plan as versioned data: every version is kept (a workflow record of kind
//! `plan`) and audited; the newest one is in force. Without any, the built-in plan applies.
//! Reads go through a short cache (several nodes see a new plan within `PLAN_TTL`).

use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::plan::{Plan, PlanVersion};
use firebreak_domain::role::groups;
use firebreak_store::{ChangeSet, Op, RecordFilter, WorkflowRecord};
use serde_json::json;
use std::time::{Duration, Instant};

pub(crate) const K_PLAN: &str = "plan";
/// How long a node may use a plan it read before reading again.
pub const PLAN_TTL: Duration = Duration::from_secs(5);

/// The cached plan of one node.
#[derive(Default)]
pub struct PlanCache(pub(crate) std::sync::RwLock<Option<(Instant, PlanVersion)>>);

impl App {
    async fn plan_records(&self) -> AppResult<Vec<WorkflowRecord>> {
        Ok(self
            .store
            .list_records(&RecordFilter {
                kind: K_PLAN.into(),
                limit: 100_000,
                ..Default::default()
            })
            .await?)
    }

    fn version_of(r: &WorkflowRecord, n: i64) -> AppResult<PlanVersion> {
        let plan: Plan = serde_json::from_str(&r.data)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("stored plan unreadable: {e}")))?;
        Ok(PlanVersion {
            version: n,
            updated_by: r.principal.clone(),
            updated_at: Some(r.created_at),
            plan,
        })
    }

    /// The plan in force, read fresh from the database.
    pub async fn current_plan_fresh(&self) -> AppResult<PlanVersion> {
        let recs = self.plan_records().await?;
        let v = match recs.last() {
            Some(r) => Self::version_of(r, recs.len() as i64)?,
            None => PlanVersion {
                version: 0,
                updated_by: None,
                updated_at: None,
                plan: Plan::default(),
            },
        };
        if let Ok(mut c) = self.plan_cache.0.write() {
            *c = Some((Instant::now(), v.clone()));
        }
        Ok(v)
    }

    /// The plan in force (cached for `PLAN_TTL`).
    pub async fn current_plan(&self) -> AppResult<Plan> {
        if let Ok(c) = self.plan_cache.0.read()
            && let Some((at, v)) = c.as_ref()
            && at.elapsed() < PLAN_TTL
        {
            return Ok(v.plan.clone());
        }
        Ok(self.current_plan_fresh().await?.plan)
    }

    /// `GET /plan`: for the team, management, auditors and admins.
    pub async fn get_plan(&self, p: &Principal) -> AppResult<PlanVersion> {
        if !p.can_read() || !p.has_any(groups::READERS) {
            return Err(AppError::Forbidden(
                "the response plan is for the response team, management, auditors and admins"
                    .into(),
            ));
        }
        self.current_plan_fresh().await
    }

    /// Every version, oldest first (without their bodies).
    pub async fn plan_versions(&self, p: &Principal) -> AppResult<Vec<serde_json::Value>> {
        self.get_plan(p).await?;
        let recs = self.plan_records().await?;
        Ok(recs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name = serde_json::from_str::<serde_json::Value>(&r.data)
                    .ok()
                    .and_then(|v| v.get("name").cloned())
                    .unwrap_or_default();
                json!({"version": i + 1, "name": name, "updated_by": r.principal,
                       "updated_at": r.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()})
            })
            .collect())
    }

    /// Whether the principal may replace the plan (admins); a refusal is audited.
    pub async fn may_change_plan(&self, p: &Principal) -> AppResult<()> {
        if p.is_admin() && p.can_write() {
            return Ok(());
        }
        let entry = AuditDraft::new(p.username(), "authz.denied", "plan", "").details(
            json!({"attempted": "plan.update", "reason": "changing the response plan is for admins"}),
        );
        if let Err(e) = self.commit(ChangeSet::new().audit(entry)).await {
            tracing::warn!(error = %e, "could not audit a denial");
        }
        Err(AppError::Forbidden(
            "changing the response plan is for admins".into(),
        ))
    }

    /// `PUT /plan`: a new version (admins). Every problem is reported by its path.
    pub async fn put_plan(&self, p: &Principal, plan: &Plan) -> AppResult<PlanVersion> {
        self.may_change_plan(p).await?;
        self.save_plan(p.username(), plan).await
    }

    /// Saves a new plan version on behalf of `actor` (an admin, or the CLI's `plan import`).
    pub async fn save_plan(&self, actor: &str, plan: &Plan) -> AppResult<PlanVersion> {
        let users: Vec<String> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| !u.disabled)
            .map(|u| u.username)
            .collect();
        let mut problems = plan.problems(&|u| users.iter().any(|x| x == u));
        for (i, r) in plan.intake.rules.iter().enumerate() {
            if r.when.trim().is_empty() {
                continue; // reported above
            }
            if let Err(e) = crate::expr::Condition::compile(&r.when) {
                problems.push(firebreak_domain::FieldError::new(
                    format!("intake.rules[{i}].when"),
                    format!("not a valid CEL condition: {e}"),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(AppError::Validation(problems));
        }
        let before = self.plan_records().await?.len() as i64;
        let now = self.now();
        let rec = WorkflowRecord {
            id: uuid::Uuid::now_v7(),
            kind: K_PLAN.into(),
            ticket_id: None,
            parent_id: None,
            status: format!("v{}", before + 1),
            principal: Some(actor.into()),
            data: serde_json::to_string(plan).map_err(|e| anyhow::anyhow!("{e}"))?,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let cs = ChangeSet::new().op(Op::InsertRecord(rec)).audit(
            AuditDraft::new(actor, "plan.updated", "plan", "")
                .details(json!({"version": before + 1, "plan": plan})),
        );
        self.commit(cs).await?;
        self.invalidate_intake();
        self.current_plan_fresh().await
    }
}
