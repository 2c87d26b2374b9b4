//! The asset inventory (API and CSV import) and the assets a ticket affects. Linking a
//! critical-production asset makes the ticket an escalation (the reason on the record); owners
//! of a ticket's assets are told when it is escalated.

use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::api::TicketView;
use firebreak_domain::asset::{Asset, CreateAsset, LinkAsset, parse_csv};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::role::{Role, groups};
use firebreak_domain::ticket::{Criticality, Ticket, TicketStatus};
use firebreak_store::{ChangeSet, Op, RecordFilter, StoreError, WorkflowRecord};
use serde_json::json;
use uuid::Uuid;

pub(crate) const K_ASSET: &str = "asset";
const K_TICKET_ASSET: &str = "ticket_asset";

fn parse(r: &WorkflowRecord) -> AppResult<Asset> {
    serde_json::from_str(&r.data)
        .map_err(|e| AppError::Unexpected(anyhow::anyhow!("stored asset {} unreadable: {e}", r.id)))
}

/// The record that a ticket affects an asset.
pub(crate) fn asset_link(
    ticket: firebreak_domain::ids::TicketId,
    asset: Uuid,
    name: &str,
    now: time::OffsetDateTime,
) -> WorkflowRecord {
    WorkflowRecord {
        id: Uuid::now_v7(),
        kind: K_TICKET_ASSET.into(),
        ticket_id: Some(ticket),
        parent_id: Some(asset),
        status: "linked".into(),
        principal: Some(name.to_string()),
        data: json!({"asset": asset, "name": name}).to_string(),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

impl App {
    fn may_manage_assets(p: &Principal) -> bool {
        p.can_write() && (p.user.has_role(Role::Admin) || p.has_any(groups::TEAM))
    }

    pub(crate) async fn all_assets(&self) -> AppResult<Vec<Asset>> {
        let recs = self
            .store
            .list_records(&RecordFilter {
                kind: K_ASSET.into(),
                limit: 100_000,
                ..Default::default()
            })
            .await?;
        recs.iter().map(parse).collect()
    }

    fn asset_record(&self, a: &Asset) -> AppResult<WorkflowRecord> {
        Ok(WorkflowRecord {
            id: a.id,
            kind: K_ASSET.into(),
            ticket_id: None,
            parent_id: None,
            status: "active".into(),
            principal: a.owner.clone(),
            data: serde_json::to_string(a).map_err(|e| anyhow::anyhow!("{e}"))?,
            version: 1,
            created_at: a.created_at,
            updated_at: a.created_at,
        })
    }

    fn new_asset(&self, p: &Principal, b: &CreateAsset) -> Asset {
        Asset {
            id: Uuid::now_v7(),
            name: b.name.trim().into(),
            addresses: b.addresses.iter().map(|a| a.trim().to_string()).collect(),
            owner: b.owner.as_ref().map(|o| o.trim().to_string()),
            critical_production: b.critical_production,
            description: b.description.clone(),
            created_by: p.username().into(),
            created_at: self.now(),
        }
    }

    pub async fn create_asset(&self, p: &Principal, b: &CreateAsset) -> AppResult<Asset> {
        if !Self::may_manage_assets(p) {
            return Err(self
                .deny(
                    p,
                    "asset.create",
                    None,
                    "assets are managed by admins and the response team".into(),
                )
                .await);
        }
        b.check()?;
        let existing = self.all_assets().await?;
        if existing
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(b.name.trim()))
        {
            return Err(AppError::Conflict {
                code: "asset_exists",
                message: format!("an asset named {} exists", b.name.trim()),
            });
        }
        let a = self.new_asset(p, b);
        let cs = ChangeSet::new()
            .op(Op::InsertRecord(self.asset_record(&a)?))
            .audit(
                AuditDraft::new(p.username(), "asset.created", "asset", a.id).details(json!({
                    "name": a.name, "addresses": a.addresses, "owner": a.owner,
                    "critical_production": a.critical_production,
                })),
            );
        self.commit(cs).await?;
        self.invalidate_intake();
        Ok(a)
    }

    /// Imports a CSV inventory: good lines become assets (existing names are skipped and
    /// reported), bad lines are reported by their number.
    pub async fn import_assets(&self, p: &Principal, csv: &str) -> AppResult<serde_json::Value> {
        if !Self::may_manage_assets(p) {
            return Err(self
                .deny(
                    p,
                    "asset.import",
                    None,
                    "assets are managed by admins and the response team".into(),
                )
                .await);
        }
        let (rows, mut errs) = parse_csv(csv);
        // nothing usable: a 422 naming every bad line, nothing imported
        if rows.is_empty() {
            if errs.is_empty() {
                errs.push(firebreak_domain::FieldError::new(
                    "body",
                    "the CSV holds no asset (header: name,addresses,owner,critical_production)",
                ));
            }
            return Err(AppError::Validation(errs));
        }
        let mut names: Vec<String> = self
            .all_assets()
            .await?
            .into_iter()
            .map(|a| a.name.to_lowercase())
            .collect();
        let mut cs = ChangeSet::new();
        let mut imported = 0;
        for (i, r) in rows.iter().enumerate() {
            let key = r.name.trim().to_lowercase();
            if names.contains(&key) {
                errs.push(firebreak_domain::FieldError::new(
                    format!("row {}", i + 1),
                    format!("an asset named {} exists", r.name.trim()),
                ));
                continue;
            }
            names.push(key);
            let a = self.new_asset(p, r);
            cs = cs.op(Op::InsertRecord(self.asset_record(&a)?));
            imported += 1;
        }
        if imported > 0 {
            cs = cs.audit(
                AuditDraft::new(p.username(), "asset.imported", "asset", "")
                    .details(json!({"imported": imported, "problems": errs.len()})),
            );
            self.commit(cs).await?;
            self.invalidate_intake();
        }
        Ok(
            json!({"imported": imported, "errors": errs.iter().map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>()}),
        )
    }

    pub async fn list_assets(&self, p: &Principal) -> AppResult<Vec<Asset>> {
        if !p.can_read() || !p.has_any(groups::READERS) {
            return Err(AppError::Forbidden(
                "the asset inventory is for the response team, management, auditors and admins"
                    .into(),
            ));
        }
        self.all_assets().await
    }

    async fn find_asset(&self, key: &str) -> AppResult<Asset> {
        let all = self.all_assets().await?;
        all.into_iter()
            .find(|a| a.id.to_string() == key || a.name.eq_ignore_ascii_case(key.trim()))
            .ok_or(AppError::NotFound)
    }

    pub async fn get_asset(&self, p: &Principal, key: &str) -> AppResult<Asset> {
        self.list_assets(p).await?;
        self.find_asset(key).await
    }

    pub(crate) async fn ticket_assets(&self, t: &Ticket) -> AppResult<Vec<Asset>> {
        let links = self
            .store
            .list_records(&RecordFilter {
                kind: K_TICKET_ASSET.into(),
                ticket_id: Some(t.id),
                ..Default::default()
            })
            .await?;
        let all = self.all_assets().await?;
        Ok(links
            .iter()
            .filter_map(|l| l.parent_id)
            .filter_map(|id| all.iter().find(|a| a.id == id).cloned())
            .collect())
    }

    pub async fn list_ticket_assets(
        &self,
        p: &Principal,
        reference: &str,
    ) -> AppResult<Vec<Asset>> {
        let t = self.find_ticket(p, reference).await?;
        self.ticket_assets(&t).await
    }

    /// Records that the ticket affects an asset; a critical-production asset makes a normal
    /// ticket an escalation, with the reason on the record.
    pub async fn link_asset(
        &self,
        p: &Principal,
        reference: &str,
        b: &LinkAsset,
    ) -> AppResult<TicketView> {
        for _ in 0..5 {
            let t = self.find_ticket(p, reference).await?;
            if !p.can_write() || !p.has_any(groups::TEAM) {
                return Err(self
                    .deny(
                        p,
                        "ticket.asset",
                        Some(&t),
                        "affected assets are recorded by the help desk, responders and managers"
                            .into(),
                    )
                    .await);
            }
            if t.status == TicketStatus::Closed {
                return Err(AppError::Conflict {
                    code: "invalid_transition",
                    message: "the ticket is closed; reopen it first".into(),
                });
            }
            let a = self
                .find_asset(&b.asset)
                .await
                .map_err(|_| AppError::field("asset", format!("no asset named {:?}", b.asset)))?;
            if self.ticket_assets(&t).await?.iter().any(|x| x.id == a.id) {
                return Err(AppError::Conflict {
                    code: "already_linked",
                    message: format!("{} is already on the ticket", a.name),
                });
            }
            let now = self.now();
            let link = asset_link(t.id, a.id, &a.name, now);
            let mut cs = ChangeSet::new().op(Op::InsertRecord(link)).audit(
                AuditDraft::new(p.username(), "ticket.asset_linked", "ticket", t.id)
                    .ticket(t.id)
                    .details(
                        json!({"asset": a.name, "critical_production": a.critical_production}),
                    ),
            );
            let mut n = t.clone();
            if a.critical_production && t.criticality == Criticality::Normal {
                n.criticality = Criticality::Escalation;
                n.tier = 2;
                n.escalation_reason =
                    Some(format!("affects the critical production asset {}", a.name));
                n.updated_at = now;
                cs = cs
                    .op(Op::UpdateTicket { ticket: n.clone(), expected_version: t.version })
                    .audit(
                        AuditDraft::new(p.username(), "ticket.classified", "ticket", t.id)
                            .ticket(t.id)
                            .details(json!({"from": "normal", "to": "escalation", "reason": format!("affects the critical production asset {}", a.name)})),
                    );
            }
            match self.commit(cs).await {
                Ok(_) => {
                    if n.criticality != t.criticality {
                        n.version = t.version + 1;
                    }
                    return Ok(TicketView::new(n, &self.config.ticket_prefix));
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict {
            code: "concurrent_update",
            message: "the ticket keeps changing concurrently; retry".into(),
        })
    }
}
