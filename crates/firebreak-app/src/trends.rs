//! The overview's trends: tickets opened and closed per week, the mean times to acknowledge
//! (work started) and to resolve, the top
//! sources and problem categories. Aggregates only (no ticket content), for the response team,
//! management, auditors and admins; computed from the tickets' facts at most every 30 seconds
//! per node.

use crate::{App, AppError, AppResult, Principal};
use firebreak_domain::role::groups;
use firebreak_domain::ticket::TicketStatus;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a node reuses its trends.
pub const TRENDS_TTL: Duration = Duration::from_secs(30);
/// Weeks shown.
pub const WEEKS: i64 = 8;

/// Trends and when they were computed.
type Slot = Option<(Instant, Arc<Trends>)>;

/// One slot for those cleared for restricted tickets, one for the others; and whether a
/// refresh of each is under way.
#[derive(Default)]
pub struct TrendsCache {
    slots: Mutex<[Slot; 2]>,
    refreshing: [std::sync::atomic::AtomicBool; 2],
}

/// One week (Monday to Sunday, UTC) of tickets opened in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Week {
    pub start: time::Date,
    pub opened: i64,
    pub closed: i64,
    pub false_positives: i64,
    /// Mean hours from opening to the last change, over the week's closed tickets.
    pub mttr_hours: Option<f64>,
    /// Mean hours from opening to the start of work, over the week's started tickets.
    pub mtta_hours: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trends {
    pub weeks: Vec<Week>,
    /// Ticket sources (reporter kinds), most frequent first.
    pub sources: Vec<(String, i64)>,
    /// Problem categories of resolved tickets, most frequent first.
    pub categories: Vec<(String, i64)>,
    pub computed_at: time::OffsetDateTime,
}

fn top(m: BTreeMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

impl App {
    /// The trends of the last [`WEEKS`] weeks.
    pub async fn trends(&self, p: &Principal) -> AppResult<Arc<Trends>> {
        if !p.can_read() || !p.has_any(groups::READERS) {
            return Err(AppError::Forbidden(
                "trends are for the response team, management, auditors and admins".into(),
            ));
        }
        // restricted tickets count only for those cleared to see them
        let cleared = p.restricted_ok();
        let slot = usize::from(cleared);
        // fresh: as is; stale: as is, and refreshed in the background (a page never waits for
        // the aggregation, except the very first one of the process)
        let cached = self
            .trends_cache
            .slots
            .lock()
            .ok()
            .and_then(|g| g[slot].clone());
        if let Some((at, t)) = cached {
            if at.elapsed() >= TRENDS_TTL
                && !self.trends_cache.refreshing[slot]
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                let app = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = app.compute_trends(cleared).await {
                        tracing::warn!(error = %e, "could not refresh the overview's trends");
                    }
                    app.trends_cache.refreshing[slot]
                        .store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return Ok(t);
        }
        self.compute_trends(cleared).await
    }

    /// Aggregates the trends and caches them.
    async fn compute_trends(&self, cleared: bool) -> AppResult<Arc<Trends>> {
        let slot = usize::from(cleared);
        let now = self.now();
        let today = now.date();
        let monday =
            today - time::Duration::days(i64::from(today.weekday().number_days_from_monday()));
        let first = monday - time::Duration::weeks(WEEKS - 1);
        let since = first.midnight().assume_utc();
        let facts = self.store.ticket_facts(since).await?;
        let mut weeks: Vec<Week> = (0..WEEKS)
            .map(|i| Week {
                start: first + time::Duration::weeks(i),
                opened: 0,
                closed: 0,
                false_positives: 0,
                mttr_hours: None,
                mtta_hours: None,
            })
            .collect();
        let mut resolve_secs = vec![(0i64, 0i64); WEEKS as usize];
        let mut ack_secs = vec![(0i64, 0i64); WEEKS as usize];
        let mut sources = BTreeMap::new();
        let mut categories = BTreeMap::new();
        for f in facts.iter().filter(|f| cleared || !f.restricted) {
            let w = ((f.created_at.date() - first).whole_days() / 7).clamp(0, WEEKS - 1) as usize;
            weeks[w].opened += 1;
            *sources.entry(f.source_kind.clone()).or_insert(0) += 1;
            if let Some(c) = f
                .problem_category
                .as_deref()
                .filter(|c| !c.trim().is_empty())
            {
                *categories.entry(c.trim().to_lowercase()).or_insert(0) += 1;
            }
            if let Some(started) = f.started_at {
                ack_secs[w].0 += (started - f.created_at).whole_seconds().max(0);
                ack_secs[w].1 += 1;
            }
            if f.status == TicketStatus::Closed {
                weeks[w].closed += 1;
                if f.false_positive {
                    weeks[w].false_positives += 1;
                }
                resolve_secs[w].0 += (f.updated_at - f.created_at).whole_seconds().max(0);
                resolve_secs[w].1 += 1;
            }
        }
        for ((w, (secs, n)), (asecs, an)) in weeks.iter_mut().zip(resolve_secs).zip(ack_secs) {
            if n > 0 {
                w.mttr_hours = Some(secs as f64 / n as f64 / 3600.0);
            }
            if an > 0 {
                w.mtta_hours = Some(asecs as f64 / an as f64 / 3600.0);
            }
        }
        let t = Arc::new(Trends {
            weeks,
            sources: top(sources, 6),
            categories: top(categories, 6),
            computed_at: now,
        });
        if let Ok(mut g) = self.trends_cache.slots.lock() {
            g[slot] = Some((Instant::now(), t.clone()));
        }
        Ok(t)
    }
}
