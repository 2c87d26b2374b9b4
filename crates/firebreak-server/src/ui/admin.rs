//! Administration pages: users and roles (and their tokens), the response plan editor with
//! validation, the asset inventory and its CSV import, the intake sources; and the signed-in
//! user's own API tokens.

use super::{Form, Layout, Ui, describe, error_page, html};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use firebreak_app::AppError;
use firebreak_app::TokenSpec;
use firebreak_domain::api::{CreateUserRequest, UpdateUserRequest};
use firebreak_domain::asset::Asset;
use firebreak_domain::role::{Role, Scope};
use firebreak_domain::user::User;

/// The refusal page for a user who is not an admin, if they are not.
fn not_admin(ui: &Ui) -> Option<Response> {
    (!ui.p.is_admin()).then(|| {
        error_page(
            ui,
            AppError::Forbidden("administration requires the admin role".into()),
        )
    })
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    l: Layout,
    sub: &'static str,
    /// (user, its roles as text, active tokens)
    users: Vec<(User, Vec<&'static str>, usize)>,
    roles: Vec<&'static str>,
    new_token: Option<(String, String)>,
    error: Option<String>,
}

async fn users_page(
    s: &AppState,
    ui: &Ui,
    new_token: Option<(String, String)>,
    error: Option<(StatusCode, String)>,
) -> Response {
    if let Some(r) = not_admin(ui) {
        return r;
    }
    let list = match s.app.list_users(&ui.p).await {
        Ok(u) => u,
        Err(e) => return error_page(ui, e),
    };
    let now = s.app.now_utc();
    let mut users = Vec::with_capacity(list.len());
    for u in list {
        let active = s
            .app
            .list_tokens(&u.username)
            .await
            .unwrap_or_default()
            .iter()
            .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|x| x > now))
            .count();
        let roles = u.roles.iter().map(|r| r.as_str()).collect();
        users.push((u, roles, active));
    }
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    html(
        code,
        &UsersPage {
            l: ui.layout("admin"),
            sub: "users",
            users,
            roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
            new_token,
            error,
        },
    )
}

/// `GET /admin` and `GET /admin/users`.
pub async fn users(State(s): State<AppState>, ui: Ui) -> Response {
    users_page(&s, &ui, None, None).await
}

fn roles_of(f: &super::Form) -> Result<Vec<Role>, AppError> {
    f.all("roles")
        .into_iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| AppError::field("roles", format!("{r:?} is not a role")))
        })
        .collect()
}

/// `POST /admin/users` (`username`, `roles` repeated, `title`, `email`, `password`).
pub async fn create_user(State(s): State<AppState>, f: Form) -> Response {
    let result = match roles_of(&f) {
        Ok(roles) => {
            let req = CreateUserRequest {
                username: f.get("username").unwrap_or("").trim().to_string(),
                roles,
                title: f.text("title"),
                seniority: None,
                on_duty: None,
                email: f.text("email"),
                clearances: None,
                password: f
                    .get("password")
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            };
            s.app.create_user_api(&f.ui.p, &req).await.map(|_| ())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/admin/users").into_response(),
        Err(e) => users_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}

/// `POST /admin/users/{name}/roles` (`roles` repeated).
pub async fn set_roles(State(s): State<AppState>, Path(name): Path<String>, f: Form) -> Response {
    let result = match roles_of(&f) {
        Ok(roles) => {
            let req = UpdateUserRequest {
                roles: Some(roles),
                ..Default::default()
            };
            s.app
                .update_user_api(&f.ui.p, &name, &req)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Redirect::to("/admin/users").into_response(),
        Err(e) => users_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}

fn scopes_of(f: &super::Form) -> Result<Vec<Scope>, AppError> {
    f.all("scope")
        .into_iter()
        .map(|v| {
            Scope::ALL
                .iter()
                .copied()
                .find(|s| s.as_str() == v)
                .ok_or_else(|| AppError::field("scope", format!("{v:?} is not a scope")))
        })
        .collect()
}

/// `POST /admin/users/{name}/tokens` (`name`, `scope`): a token for any user (admins).
pub async fn create_user_token(
    State(s): State<AppState>,
    Path(user): Path<String>,
    f: Form,
) -> Response {
    if let Some(r) = not_admin(&f.ui) {
        return r;
    }
    let result = match scopes_of(&f) {
        Ok(scopes) => {
            let spec = TokenSpec {
                username: user.clone(),
                name: f.text("name"),
                scopes,
                expires_in: None,
            };
            s.app.create_token_as(&f.ui.p, &spec).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((_, secret)) => users_page(&s, &f.ui, Some((user, secret)), None).await,
        Err(e) => users_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}

#[derive(Template)]
#[template(path = "admin_plan.html")]
struct PlanPage {
    l: Layout,
    sub: &'static str,
    version: i64,
    updated_by: Option<String>,
    updated_at: Option<String>,
    yaml: String,
    editable: bool,
    problems: Vec<(String, String)>,
    error: Option<String>,
}

async fn plan_page(
    s: &AppState,
    ui: &Ui,
    typed: Option<String>,
    error: Option<(StatusCode, String, super::Fields)>,
) -> Response {
    let current = match s.app.get_plan(&ui.p).await {
        Ok(p) => p,
        Err(e) => return error_page(ui, e),
    };
    let yaml = match typed {
        Some(t) => t,
        None => match yaml_serde::to_string(&current.plan) {
            Ok(y) => y,
            Err(e) => {
                return error_page(
                    ui,
                    AppError::Unexpected(anyhow::anyhow!("plan as YAML: {e}")),
                );
            }
        },
    };
    let (code, error, problems) = match error {
        Some((c, m, p)) => (c, Some(m), p),
        None => (StatusCode::OK, None, vec![]),
    };
    html(
        code,
        &PlanPage {
            l: ui.layout("admin"),
            sub: "plan",
            version: current.version,
            updated_by: current.updated_by.clone(),
            updated_at: current.updated_at.map(super::when),
            yaml,
            editable: ui.p.is_admin(),
            problems,
            error,
        },
    )
}

/// `GET /admin/plan`.
pub async fn plan(State(s): State<AppState>, ui: Ui) -> Response {
    plan_page(&s, &ui, None, None).await
}

/// `POST /admin/plan` (`yaml`): validated, saved as a new version.
pub async fn save_plan(State(s): State<AppState>, f: Form) -> Response {
    let yaml = f.get("yaml").unwrap_or("").to_string();
    if let Err(e) = s.app.may_change_plan(&f.ui.p).await {
        let (c, m) = describe(e);
        return plan_page(&s, &f.ui, Some(yaml), Some((c, m, vec![]))).await;
    }
    let parsed = crate::routes::plan::parse_plan("application/yaml", yaml.as_bytes());
    let result = match parsed {
        Ok(plan) => s
            .app
            .put_plan(&f.ui.p, &plan)
            .await
            .map_err(crate::error::ApiError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Redirect::to("/admin/plan").into_response(),
        Err(api) => {
            let problems = api
                .details
                .iter()
                .map(|d| (d.field.clone(), d.message.clone()))
                .collect();
            let message = if api.details.is_empty() {
                api.message
            } else {
                format!("The plan was not saved: {} problem(s).", api.details.len())
            };
            plan_page(&s, &f.ui, Some(yaml), Some((api.status, message, problems))).await
        }
    }
}

#[derive(Template)]
#[template(path = "admin_assets.html")]
struct AssetsPage {
    l: Layout,
    sub: &'static str,
    assets: Vec<Asset>,
    csv: String,
    error: Option<String>,
}

async fn assets_page(
    s: &AppState,
    ui: &Ui,
    csv: String,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let assets = match s.app.list_assets(&ui.p).await {
        Ok(a) => a,
        Err(e) => return error_page(ui, e),
    };
    let mut l = ui.layout("admin");
    l.notice = notice;
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    html(
        code,
        &AssetsPage {
            l,
            sub: "assets",
            assets,
            csv,
            error,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AssetsQuery {
    /// After an import: how many assets it brought in.
    #[serde(default)]
    pub imported: Option<u64>,
}

/// `GET /admin/assets`.
pub async fn assets(
    State(s): State<AppState>,
    ui: Ui,
    q: Result<axum::extract::Query<AssetsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = q
        .ok()
        .and_then(|q| q.0.imported)
        .map(|n| format!("{n} asset(s) imported."));
    assets_page(&s, &ui, String::new(), notice, None).await
}

/// `POST /admin/assets` (`csv`): the CSV import.
pub async fn import_assets(State(s): State<AppState>, f: Form) -> Response {
    let csv = f.get("csv").unwrap_or("").to_string();
    match s.app.import_assets(&f.ui.p, &csv).await {
        Ok(summary) => {
            let imported = summary
                .get("imported")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0);
            let errors: Vec<String> = summary
                .get("errors")
                .and_then(serde_json::Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e.get("field").and_then(|v| v.as_str()).unwrap_or(""),
                                e.get("message").and_then(|v| v.as_str()).unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if errors.is_empty() {
                Redirect::to(&format!("/admin/assets?imported={imported}")).into_response()
            } else {
                let msg = format!(
                    "{imported} asset(s) imported; these lines were not: {}",
                    errors.join("; ")
                );
                assets_page(
                    &s,
                    &f.ui,
                    csv,
                    None,
                    Some((StatusCode::UNPROCESSABLE_ENTITY, msg)),
                )
                .await
            }
        }
        Err(e) => assets_page(&s, &f.ui, csv, None, Some(describe(e))).await,
    }
}

#[derive(Template)]
#[template(path = "admin_intake.html")]
struct IntakePage {
    l: Layout,
    sub: &'static str,
    /// (name, signature, user)
    sources: Vec<(String, String, String)>,
    endpoints: Vec<(&'static str, &'static str)>,
    counts: Vec<(String, i64)>,
}

const ENDPOINTS: &[(&str, &str)] = &[
    ("People (report form)", "POST /api/v1/events · /report"),
    (
        "Prometheus Alertmanager (webhook v4)",
        "POST /api/v1/ingest/alertmanager",
    ),
    (
        "TheHive clients (thehive4py, Elastalert2, Velociraptor)",
        "POST /api/v1/alert · /api/alert",
    ),
    (
        "Splunk HEC",
        "POST /services/collector/event · /services/collector/raw",
    ),
    (
        "Suricata EVE, Wazuh, CEF, LEEF, syslog lines",
        "POST /api/v1/ingest/ndjson?format=…",
    ),
    ("Email (.eml upload)", "POST /api/v1/ingest/eml"),
    ("Syslog RFC 5424/3164 (UDP, TCP)", "FIREBREAK_SYSLOG_LISTEN"),
];

/// `GET /admin/intake`.
pub async fn intake(State(s): State<AppState>, ui: Ui) -> Response {
    if let Some(r) = not_admin(&ui) {
        return r;
    }
    let sources = s
        .web()
        .intake
        .sources
        .iter()
        .map(|(name, src)| {
            let sig = if src.secret.is_some() {
                format!("HMAC-SHA256 in {}", src.signature_header)
            } else {
                "none (token only)".to_string()
            };
            let user = src
                .user
                .clone()
                .unwrap_or_else(|| "the token's user".into());
            (name.clone(), sig, user)
        })
        .collect();
    let counts = s
        .app
        .event_counts(&ui.p)
        .await
        .map(|m| m.into_iter().collect())
        .unwrap_or_default();
    html(
        StatusCode::OK,
        &IntakePage {
            l: ui.layout("admin"),
            sub: "intake",
            sources,
            endpoints: ENDPOINTS.to_vec(),
            counts,
        },
    )
}

/// A token of the signed-in user, as the account page lists it.
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scopes: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub active: bool,
}

/// The signed-in user's tokens.
pub async fn own_tokens(s: &AppState, ui: &Ui) -> Vec<TokenRow> {
    let now = s.app.now_utc();
    let mut rows: Vec<TokenRow> = s
        .app
        .list_tokens(ui.p.username())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            name: t.name.clone(),
            scopes: if t.scopes.is_empty() {
                "all of your rights".into()
            } else {
                t.scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            created: super::when(t.created_at),
            expires: t
                .expires_at
                .map(super::when)
                .unwrap_or_else(|| "never".into()),
            last_used: t
                .last_used_at
                .map(super::when)
                .unwrap_or_else(|| "never".into()),
            active: t.revoked_at.is_none() && t.expires_at.is_none_or(|x| x > now),
        })
        .collect();
    rows.sort_by(|a, b| b.active.cmp(&a.active).then(b.created.cmp(&a.created)));
    rows
}

/// `POST /account/tokens` (`name`, `scope` repeated, `expires_days`): a token for oneself,
/// within one's own rights; the secret is shown once.
pub async fn create_own_token(State(s): State<AppState>, f: Form) -> Response {
    let expires_in = match f.text("expires_days") {
        None => None,
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(time::Duration::days(n)),
            _ => {
                let e = AppError::field("expires_days", "a whole number of days from 1 to 3650");
                return super::account_page(&s, &f.ui, None, Some(describe(e))).await;
            }
        },
    };
    let result = match scopes_of(&f) {
        Ok(scopes) if scopes.contains(&Scope::Admin) && !f.ui.p.is_admin() => {
            Err(AppError::field("scope", "the admin scope is for admins"))
        }
        Ok(scopes) => {
            let spec = TokenSpec {
                username: f.ui.p.username().to_string(),
                name: f.text("name"),
                scopes,
                expires_in,
            };
            s.app.create_token(f.ui.p.username(), &spec).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((_, secret)) => super::account_page(&s, &f.ui, Some(secret), None).await,
        Err(e) => super::account_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke_own_token(
    State(s): State<AppState>,
    Path(id): Path<String>,
    f: Form,
) -> Response {
    let me = f.ui.p.username().to_string();
    match s.app.revoke_token(&me, &me, &id).await {
        Ok(()) => Redirect::to("/account").into_response(),
        Err(e) => super::account_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}
