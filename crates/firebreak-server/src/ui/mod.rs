//! The web UI: server-rendered pages (askama templates in `templates/`, autoescaped) with htmx
//! for live parts, assets embedded in the binary. Pages call the same application layer as the
//! API, with the signed-in user's principal; every form carries the session's CSRF token and is
//! checked like an API call made with the cookie. User text is only ever escaped, never trusted.

mod admin;
mod assets;
mod automation;
pub mod charts;
mod emergency;
mod events;
mod live;
mod search;
mod tickets;

pub use assets::asset;

use crate::AppState;
use crate::error::ApiError;
use crate::web::{check_csrf, session_cookie};
use askama::Template;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use firebreak_app::{AppError, Principal};
use firebreak_domain::role::{Role, groups};

/// Pages get a stricter policy than the API: no inline style either.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Largest form body a page accepts.
const FORM_LIMIT: usize = 256 * 1024;

/// The UI's routes (the sign-in pages live in `routes::auth`).
pub fn routes(max_document_bytes: u64) -> axum::Router<AppState> {
    let upload_limit = usize::try_from(max_document_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1024 * 1024);
    axum::Router::new()
        .route(
            "/tickets/{number}/documents",
            post(tickets::upload).layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route("/assets/{file}", get(assets::serve))
        .route("/report", get(events::report_form).post(events::report))
        .route("/live", get(live::stream))
        .route("/events", get(events::queue))
        .route("/events/rows", get(events::rows))
        .route("/events/counts", get(events::counts))
        .route("/events/bulk", post(events::bulk))
        .route("/events/{id}", get(events::detail))
        .route(
            "/suppression-rules",
            get(events::rules).post(events::create_rule),
        )
        .route("/suppression-rules/{id}/toggle", post(events::toggle_rule))
        .route("/search", get(search::page))
        .route("/observables/{id}", get(search::observable))
        .route("/tickets", get(tickets::list))
        .route("/tickets/rows", get(tickets::rows))
        .route("/tickets/new", get(tickets::new_form).post(tickets::create))
        .route("/tickets/{number}", get(tickets::page))
        .route("/tickets/{number}/timeline", get(tickets::timeline))
        .route("/tickets/{number}/log", post(tickets::add_log))
        .route("/tickets/{number}/do/{action}", post(tickets::act))
        .route("/tasks/{id}/done", post(tickets::task_done))
        .route(
            "/change-controls/{id}/{action}",
            post(tickets::change_action),
        )
        .route("/emergencies/{id}", get(emergency::page))
        .route("/emergencies/{id}/{action}", post(emergency::act))
        .route("/account", get(account))
        .route("/account/password", post(change_password))
        .route("/account/tokens", post(admin::create_own_token))
        .route("/account/tokens/{id}/revoke", post(admin::revoke_own_token))
        .route("/admin", get(admin::users))
        .route("/admin/users", get(admin::users).post(admin::create_user))
        .route("/admin/users/{name}/roles", post(admin::set_roles))
        .route("/admin/users/{name}/tokens", post(admin::create_user_token))
        .route("/admin/plan", get(admin::plan).post(admin::save_plan))
        .route(
            "/admin/assets",
            get(admin::assets).post(admin::import_assets),
        )
        .route("/admin/intake", get(admin::intake))
        .route("/admin/automation", get(automation::page))
        .route(
            "/admin/automation/playbooks",
            post(automation::save_playbook),
        )
        .route(
            "/admin/automation/playbooks/{name}/{action}",
            post(automation::toggle_playbook),
        )
        .route(
            "/admin/automation/connectors",
            post(automation::save_connector),
        )
        .route(
            "/admin/automation/indicators",
            post(automation::import_indicators),
        )
}

/// What every page's frame shows: who is signed in, the CSRF token, the current section and
/// which parts of the navigation apply to the user.
pub struct Layout {
    pub user: String,
    pub csrf: String,
    pub section: &'static str,
    pub notice: Option<String>,
    pub asset_version: &'static str,
    /// May see the event queue and suppression rules.
    pub sees_events: bool,
    /// May dismiss, merge and ticket events, and manage suppression rules.
    pub triages: bool,
    pub opens_tickets: bool,
    pub writes_log: bool,
    /// May report an event through the form.
    pub reports: bool,
    pub admin: bool,
    /// Where the live announcements stood before the page read anything (`GET /live?since=`).
    pub live_mark: String,
}

/// A signed-in browser: the principal, its session's CSRF token, and the live mark taken
/// before the request read anything.
pub struct Ui {
    pub p: Principal,
    pub csrf: String,
    pub live_mark: String,
}

impl Ui {
    pub fn layout(&self, section: &'static str) -> Layout {
        let p = &self.p;
        let team = p.has_any(groups::TEAM);
        Layout {
            user: p.username().to_string(),
            csrf: self.csrf.clone(),
            section,
            notice: None,
            asset_version: assets::version(),
            sees_events: team || p.user.has_role(Role::Auditor) || p.user.has_role(Role::Admin),
            triages: p.can_write() && team,
            opens_tickets: p.can_write() && p.has_any(groups::TICKET_OPENERS),
            writes_log: p.can_write() && team,
            reports: firebreak_app::App::may_report(p),
            admin: p.is_admin(),
            live_mark: self.live_mark.clone(),
        }
    }
}

/// The signed-in user behind the session cookie, or a redirect to the sign-in page.
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Ui, Response> {
    let live_mark = state.app.live_mark();
    let Some(secret) = session_cookie(headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    match state.app.authenticate_session(&secret, false).await {
        Ok((p, s)) => Ok(Ui {
            p,
            csrf: s.csrf_token,
            live_mark,
        }),
        Err(AppError::Unavailable(_)) => Err(unavailable()),
        Err(_) => Err(Redirect::to("/login").into_response()),
    }
}

/// The signed-in user for a request the page makes by itself (the live refresh): it does not
/// count as activity, and when the session has ended htmx is told to go to the sign-in page
/// (`HX-Redirect`) instead of swapping it into the page.
pub async fn signed_in_passive(state: &AppState, headers: &HeaderMap) -> Result<Ui, Response> {
    let gone = || {
        let mut r = (StatusCode::UNAUTHORIZED, "signed out").into_response();
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static("/login"));
        r
    };
    let live_mark = state.app.live_mark();
    let Some(secret) = session_cookie(headers) else {
        return Err(gone());
    };
    match state.app.authenticate_session_passive(&secret).await {
        Ok((p, s)) => Ok(Ui {
            p,
            csrf: s.csrf_token,
            live_mark,
        }),
        Err(AppError::Unavailable(_)) => Err(unavailable()),
        Err(_) => Err(gone()),
    }
}

fn unavailable() -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        "The service is unavailable; try again shortly.",
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// A form's fields as typed, in order.
pub type Fields = Vec<(String, String)>;

/// Why a form was refused, to show with the page again: the status, the message, the form
/// (action) it came from and what was typed.
pub struct Failed {
    pub status: StatusCode,
    pub message: String,
    pub action: Option<String>,
    pub typed: Fields,
}

impl Failed {
    pub fn new(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message,
            action: None,
            typed: vec![],
        }
    }
}

/// A submitted form: its fields in order (names may repeat), after the session and CSRF checks.
pub struct Form {
    pub ui: Ui,
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The field, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A page handler's signed-in user; an anonymous browser is sent to the sign-in page.
impl axum::extract::FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        signed_in(state, &parts.headers).await
    }
}

/// A form posted by a page of this site, read after the session, same-origin and CSRF checks.
impl axum::extract::FromRequest<AppState> for Form {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        read_form(state, &parts.headers, body).await
    }
}

/// Reads a form posted by a page of this site: signed in, same origin, the session's CSRF token.
pub async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Form, Response> {
    let ui = signed_in(state, headers).await?;
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the form is too large",
        )
        .into_response()
    })?;
    let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let token = fields
        .iter()
        .find(|(k, _)| k == "csrf_token")
        .map(|(_, v)| v.as_str());
    check_csrf(headers, state.web(), &ui.csrf, token).map_err(IntoResponse::into_response)?;
    Ok(Form { ui, fields })
}

/// A rendered page with the UI's security headers.
pub fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the page could not be rendered",
            )
            .into_response()
        }
    }
}

/// What went wrong, for a person: the status and a sentence (with the fields it names).
pub fn describe(e: AppError) -> (StatusCode, String) {
    let api = ApiError::from(e);
    let mut msg = api.message.clone();
    if !api.details.is_empty() {
        let parts: Vec<String> = api
            .details
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        // the envelope's message may already list them
        if !parts.iter().all(|p| msg.contains(p.as_str())) {
            msg = format!("{msg} ({})", parts.join("; "));
        }
    }
    (api.status, msg)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    heading: String,
    message: String,
}

/// A full error page for a failed page load (404 for what the user may not see).
pub fn error_page(ui: &Ui, e: AppError) -> Response {
    let (status, message) = describe(e);
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found".to_string(),
        StatusCode::FORBIDDEN => "Not allowed".to_string(),
        s if s.is_client_error() => "Cannot do that".to_string(),
        _ => "Something went wrong".to_string(),
    };
    html(
        status,
        &ErrorPage {
            l: ui.layout(""),
            heading,
            message,
        },
    )
}

/// A time as people read it: `2026-11-27 08:15 UTC`.
pub fn when<T: std::borrow::Borrow<time::OffsetDateTime>>(t: T) -> String {
    let t = t.borrow().to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

pub use emergency::course_label;

/// The first 12 characters of a digest.
pub fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// A duration as people read it: `3 d 4 h`, `2 h 5 min`, `7 min`.
pub fn age(d: time::Duration) -> String {
    let m = d.whole_minutes().max(0);
    if m >= 24 * 60 {
        format!("{} d {} h", m / (24 * 60), (m / 60) % 24)
    } else if m >= 60 {
        format!("{} h {} min", m / 60, m % 60)
    } else {
        format!("{m} min")
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    roles: String,
    tokens: Vec<admin::TokenRow>,
    new_token: Option<String>,
    scopes: Vec<&'static str>,
    error: Option<String>,
}

fn roles_text(p: &Principal) -> String {
    p.user
        .roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account page: roles, password, the user's own tokens (a new one's secret shown once).
pub async fn account_page(
    s: &AppState,
    ui: &Ui,
    new_token: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    account_page_with(s, ui, ui.layout("account"), new_token, error).await
}

async fn account_page_with(
    s: &AppState,
    ui: &Ui,
    l: Layout,
    new_token: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let (code, error) = match error {
        Some((c, m)) => (c, Some(m)),
        None => (StatusCode::OK, None),
    };
    let scopes = firebreak_domain::role::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|x| *x != "admin" || ui.p.is_admin())
        .collect();
    html(
        code,
        &AccountPage {
            roles: roles_text(&ui.p),
            tokens: admin::own_tokens(s, ui).await,
            l,
            new_token,
            scopes,
            error,
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct AccountQuery {
    #[serde(default)]
    changed: Option<u8>,
}

async fn account(
    axum::extract::State(s): axum::extract::State<AppState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let ui = match signed_in(&s, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut l = ui.layout("account");
    if q.ok().and_then(|q| q.0.changed).is_some() {
        l.notice = Some("Your password was changed.".into());
    }
    account_page_with(&s, &ui, l, None, None).await
}

async fn change_password(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let f = match read_form(&s, &parts.headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let client = crate::web::client_info(&parts, s.web());
    let current = f.get("current").unwrap_or("");
    let new = f.get("new").unwrap_or("");
    match s.app.change_password(&f.ui.p, current, new, &client).await {
        Ok(()) => Redirect::to("/account?changed=1").into_response(),
        Err(e) => account_page(&s, &f.ui, None, Some(describe(e))).await,
    }
}
