//! The background work of automation on every node: the job worker (woken by local
//! enqueues and, on PostgreSQL, by other nodes' `NOTIFY`; polling every second as a
//! fallback), the cross-node cache invalidation, schedules,
//! indicator feeds, and keeping the in-memory indicator matcher in step with the store.

use firebreak_app::App;
use std::time::Duration;

/// A worker name unique to this process.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Listens for every node's commits (PostgreSQL `LISTEN`) and applies them to this node's
/// caches, job worker and live pages (other nodes' only: this node told its pages of its own);
/// nothing to do with one writer (SQLite).
pub fn spawn_change_listener(app: App) {
    tokio::spawn(async move {
        let mut feed = loop {
            match app.change_feed().await {
                Ok(Some(f)) => break f,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for other nodes' changes; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        loop {
            let a = feed.next().await;
            metrics::counter!("firebreak_cluster_notifications_total").increment(1);
            app.apply_announcement(&a).await;
        }
    });
}

pub fn spawn_workers(app: App) {
    spawn_change_listener(app.clone());
    let worker = worker_id();
    let signal = app.job_signal();
    let a = app.clone();
    tokio::spawn(async move {
        loop {
            match a.run_due_jobs(&worker, 16).await {
                // more may be due: go again at once
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming playbook runs"),
            }
            tokio::select! {
                _ = signal.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
    let a = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(20));
        loop {
            tick.tick().await;
            if let Err(e) = a.fire_schedules().await {
                tracing::warn!(error = %e, "firing scheduled playbooks");
            }
        }
    });
    let a = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = a.refresh_feeds().await {
                tracing::warn!(error = %e, "refreshing indicator feeds");
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tick.tick().await;
            if let Err(e) = app.reload_indicators(false).await {
                tracing::warn!(error = %e, "reloading indicators");
            }
        }
    });
}
