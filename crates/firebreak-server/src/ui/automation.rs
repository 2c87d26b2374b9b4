//! `/admin/automation`: playbooks (store a new one or a new version from YAML, with every error
//! and its path; enable, disable), connectors (secrets write-only), the local indicators
//! (import, export) and the latest runs, dead-lettered ones first.

use super::{Form, Layout, Ui, describe, error_page, html};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use firebreak_app::AppError;
use firebreak_app::automation::{PlaybookView, RunView};
use firebreak_app::intel::{ConnectorInput, ConnectorView};

#[derive(Template)]
#[template(path = "admin_automation.html")]
struct AutomationPage {
    l: Layout,
    sub: &'static str,
    playbooks: Vec<PlaybookView>,
    connectors: Vec<ConnectorView>,
    runs: Vec<(RunView, String)>,
    indicators: i64,
    yaml: String,
    error: Option<String>,
    /// The form that failed (`playbook`, `connector`, `indicators`), opened again.
    failed: String,
    kinds: &'static [&'static str],
}

async fn page_with(
    s: &AppState,
    ui: &Ui,
    yaml: String,
    notice: Option<String>,
    error: Option<(StatusCode, String, &'static str)>,
) -> Response {
    if !ui.p.is_admin() {
        return error_page(
            ui,
            AppError::Forbidden("administration requires the admin role".into()),
        );
    }
    let playbooks = match s.app.list_playbooks(&ui.p).await {
        Ok(p) => p,
        Err(e) => return error_page(ui, e),
    };
    let connectors = s.app.list_connectors(&ui.p).await.unwrap_or_default();
    let mut runs: Vec<RunView> = s
        .app
        .list_runs(&ui.p, None, None, None, 30)
        .await
        .unwrap_or_default();
    let mut dead = s
        .app
        .list_runs(&ui.p, Some("dead"), None, None, 30)
        .await
        .unwrap_or_default();
    dead.retain(|d| !runs.iter().any(|r| r.id == d.id));
    dead.append(&mut runs);
    let now = s.app.now_utc();
    let runs = dead
        .into_iter()
        .map(|r| {
            let age = super::age(now - r.updated_at);
            (r, age)
        })
        .collect();
    let indicators = s.app.store().count_indicators().await.unwrap_or(0);
    let mut l = ui.layout("admin");
    l.notice = notice;
    let (code, error, failed) = match error {
        Some((c, m, f)) => (c, Some(m), f.to_string()),
        None => (StatusCode::OK, None, String::new()),
    };
    html(
        code,
        &AutomationPage {
            l,
            sub: "automation",
            playbooks,
            connectors,
            runs,
            indicators,
            yaml,
            error,
            failed,
            kinds: firebreak_app::intel::CONNECTOR_KINDS,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Notice {
    #[serde(default)]
    pub done: Option<String>,
}

/// `GET /admin/automation`.
pub async fn page(
    State(s): State<AppState>,
    ui: Ui,
    q: Result<axum::extract::Query<Notice>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = q.ok().and_then(|q| q.0.done).map(|d| match d.as_str() {
        "playbook" => "Playbook saved.".to_string(),
        "connector" => "Connector saved.".to_string(),
        "toggled" => "Playbook updated.".to_string(),
        other => format!(
            "{} indicator(s) imported.",
            other.trim_start_matches("imported-")
        ),
    });
    page_with(&s, &ui, String::new(), notice, None).await
}

/// `POST /admin/automation/playbooks` (`yaml`).
pub async fn save_playbook(State(s): State<AppState>, f: Form) -> Response {
    let yaml = f.get("yaml").unwrap_or("").to_string();
    match s.app.put_playbook(&f.ui.p, None, &yaml).await {
        Ok(_) => Redirect::to("/admin/automation?done=playbook").into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            page_with(&s, &f.ui, yaml, None, Some((c, m, "playbook"))).await
        }
    }
}

/// `POST /admin/automation/playbooks/{name}/{enable|disable}`.
pub async fn toggle_playbook(
    State(s): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    f: Form,
) -> Response {
    let on = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return error_page(&f.ui, AppError::NotFound),
    };
    match s.app.set_playbook_enabled(&f.ui.p, &name, on).await {
        Ok(_) => Redirect::to("/admin/automation?done=toggled").into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            page_with(&s, &f.ui, String::new(), None, Some((c, m, "playbook"))).await
        }
    }
}

/// `POST /admin/automation/connectors` (`name`, `kind`, `base_url`, `secret`, `allow_private`).
pub async fn save_connector(State(s): State<AppState>, f: Form) -> Response {
    let text = |n: &str| {
        f.get(n)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let input = ConnectorInput {
        kind: text("kind").unwrap_or_default(),
        base_url: text("base_url"),
        http: None,
        secret: text("secret"),
        cache_ttl_secs: None,
        rate_per_minute: text("rate_per_minute").and_then(|v| v.parse().ok()),
        allow_private: Some(f.get("allow_private") == Some("true")),
        enabled: Some(true),
        feed_format: text("feed_format"),
        feed_source: text("feed_source"),
        refresh_minutes: text("refresh_minutes").and_then(|v| v.parse().ok()),
    };
    let name = text("name").unwrap_or_default();
    match s.app.put_connector(&f.ui.p, &name, &input).await {
        Ok(_) => Redirect::to("/admin/automation?done=connector").into_response(),
        Err(e) => {
            let (c, m) = describe(e);
            page_with(&s, &f.ui, String::new(), None, Some((c, m, "connector"))).await
        }
    }
}

/// `POST /admin/automation/indicators` (`format`, `source`, `document`).
pub async fn import_indicators(State(s): State<AppState>, f: Form) -> Response {
    let doc = f.get("document").unwrap_or("");
    let source = f.get("source");
    match s
        .app
        .import_indicators(
            &f.ui.p,
            f.get("format").unwrap_or(""),
            doc.as_bytes(),
            source,
            false,
        )
        .await
    {
        Ok(r) if r.errors.is_empty() => {
            Redirect::to(&format!("/admin/automation?done=imported-{}", r.imported)).into_response()
        }
        Ok(r) => {
            let lines: Vec<String> = r
                .errors
                .iter()
                .take(20)
                .map(|e| format!("{}: {}", e.position, e.message))
                .collect();
            let msg = format!(
                "{} indicator(s) imported; these were not: {}",
                r.imported,
                lines.join("; ")
            );
            page_with(
                &s,
                &f.ui,
                String::new(),
                None,
                Some((StatusCode::UNPROCESSABLE_ENTITY, msg, "indicators")),
            )
            .await
        }
        Err(e) => {
            let (c, m) = describe(e);
            page_with(&s, &f.ui, String::new(), None, Some((c, m, "indicators"))).await
        }
    }
}
