//! Signing in and out (JSON API and HTML forms), the caller's own account: password change,
//! TOTP enrolment. Sessions are cookies (`__Host-firebreak_session`); tokens stay for programs.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, Auth};
use crate::web::{
    check_csrf, check_same_origin, clear_session_cookie, client_info, login_page,
    second_factor_page, session_cookie, set_session_cookie,
};
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use firebreak_app::AppError;
use firebreak_app::auth::NewSession;
use firebreak_domain::user::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    /// A 6-digit TOTP code, or a recovery code (`xxxxx-xxxxx`).
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    pub current_password: String,
    /// At least 12 characters, not the username.
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpDisableRequest {
    pub password: String,
}

/// A sign-in session (the secret itself is only in the cookie).
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub user: User,
    /// Send back as `X-CSRF-Token` on every state-changing request made with the cookie.
    pub csrf_token: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: time::OffsetDateTime,
    /// The password was accepted; `POST /api/v1/auth/second-factor` completes the sign-in.
    pub mfa_required: bool,
}

/// Whether the caller has a second factor.
#[derive(Serialize, ToSchema)]
pub struct TotpStatusView {
    pub enabled: bool,
    pub recovery_codes_left: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnrollmentView {
    /// Base32 secret for manual entry.
    pub secret: String,
    /// `otpauth://` URI for authenticator apps.
    pub otpauth_uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesView {
    /// Each works once in place of a TOTP code; shown only now.
    pub recovery_codes: Vec<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(second_factor))
        .routes(routes!(logout))
        .routes(routes!(current_session))
        .routes(routes!(change_password))
        .routes(routes!(totp_status, totp_begin))
        .routes(routes!(totp_confirm))
        .routes(routes!(totp_disable))
}

fn with_cookie(mut res: Response, s: &NewSession, now: time::OffsetDateTime) -> Response {
    let max_age = (s.expires_at - now).whole_seconds();
    res.headers_mut()
        .append(header::SET_COOKIE, set_session_cookie(&s.secret, max_age));
    res
}

fn session_view(s: NewSession) -> SessionView {
    SessionView {
        user: s.user,
        csrf_token: s.csrf_token,
        expires_at: s.expires_at,
        mfa_required: s.mfa_required,
    }
}

/// Sign in with a username and password; sets the session cookie. After 5 failures for the
/// account or the address: 429 with `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn login(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    check_same_origin(&parts.headers, s.web())?;
    let client = client_info(&parts, s.web());
    let ApiJson(body) =
        ApiJson::<LoginRequest>::from_request(Request::from_parts(parts, body), &s).await?;
    let now = s.app.now_utc();
    let session = s.app.login(&body.username, &body.password, &client).await?;
    Ok(with_cookie(
        Json(session_view(session.clone())).into_response(),
        &session,
        now,
    ))
}

/// Completes a sign-in that owes its second factor (TOTP or recovery code); rotates the session.
#[utoipa::path(post, path = "/auth/second-factor", tag = "auth", request_body = SecondFactorRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn second_factor(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let client = client_info(&parts, s.web());
    let secret = session_cookie(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
    // the pending session's CSRF token (from the login answer) must come back
    let (_, pending) = s.app.authenticate_session(&secret, true).await?;
    check_csrf(&parts.headers, s.web(), &pending.csrf_token, None)?;
    let ApiJson(b) =
        ApiJson::<SecondFactorRequest>::from_request(Request::from_parts(parts, body), &s).await?;
    let now = s.app.now_utc();
    let session = s.app.login_second_factor(&secret, &b.code, &client).await?;
    Ok(with_cookie(
        Json(session_view(session.clone())).into_response(),
        &session,
        now,
    ))
}

/// Ends the current session and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Response> {
    s.app.logout(&p).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, clear_session_cookie());
    Ok(res)
}

/// The current sign-in session (with its CSRF token).
#[utoipa::path(get, path = "/auth/session", tag = "auth",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorEnvelope)))]
pub async fn current_session(Auth(p): Auth) -> ApiResult<Json<SessionView>> {
    let Some(s) = p.session.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_session",
            "this request is authenticated by a token, not a session",
        ));
    };
    Ok(Json(SessionView {
        user: p.user,
        csrf_token: s.csrf_token,
        expires_at: s.expires_at,
        mfa_required: false,
    }))
}

/// Whether the caller has TOTP enabled, and how many recovery codes are left.
#[utoipa::path(get, path = "/users/me/totp", tag = "auth", responses((status = 200, body = TotpStatusView)))]
pub async fn totp_status(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<TotpStatusView>> {
    let (enabled, recovery_codes_left) = s.app.totp_status(p.user.id).await?;
    Ok(Json(TotpStatusView {
        enabled,
        recovery_codes_left,
    }))
}

/// Changes the caller's password; their other sessions end.
#[utoipa::path(post, path = "/users/me/password", tag = "auth", request_body = PasswordChangeRequest,
    responses((status = 204), (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
pub async fn change_password(State(s): State<AppState>, req: Request) -> ApiResult<StatusCode> {
    let (mut parts, body) = req.into_parts();
    let client = client_info(&parts, s.web());
    let Auth(p) = Auth::from_request_parts(&mut parts, &s).await?;
    let ApiJson(b) =
        ApiJson::<PasswordChangeRequest>::from_request(Request::from_parts(parts, body), &s)
            .await?;
    s.app
        .change_password(&p, &b.current_password, &b.new_password, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts TOTP enrolment: returns a new secret; confirm it with a first code.
#[utoipa::path(post, path = "/users/me/totp", tag = "auth",
    responses((status = 200, body = TotpEnrollmentView), (status = 409, body = ErrorEnvelope)))]
pub async fn totp_begin(
    State(s): State<AppState>,
    Auth(p): Auth,
) -> ApiResult<Json<TotpEnrollmentView>> {
    let e = s.app.totp_begin(&p).await?;
    Ok(Json(TotpEnrollmentView {
        secret: e.secret,
        otpauth_uri: e.otpauth_uri,
    }))
}

/// Enables TOTP with a first valid code; returns 10 one-time recovery codes.
#[utoipa::path(post, path = "/users/me/totp/confirm", tag = "auth", request_body = TotpConfirmRequest,
    responses((status = 200, body = RecoveryCodesView), (status = 422, body = ErrorEnvelope)))]
pub async fn totp_confirm(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(b): ApiJson<TotpConfirmRequest>,
) -> ApiResult<Json<RecoveryCodesView>> {
    let recovery_codes = s.app.totp_confirm(&p, &b.code).await?;
    Ok(Json(RecoveryCodesView { recovery_codes }))
}

/// Removes the caller's second factor (needs the current password).
#[utoipa::path(post, path = "/users/me/totp/disable", tag = "auth", request_body = TotpDisableRequest,
    responses((status = 204), (status = 422, body = ErrorEnvelope)))]
pub async fn totp_disable(State(s): State<AppState>, req: Request) -> ApiResult<StatusCode> {
    let (mut parts, body) = req.into_parts();
    let client = client_info(&parts, s.web());
    let Auth(p) = Auth::from_request_parts(&mut parts, &s).await?;
    let ApiJson(b) =
        ApiJson::<TotpDisableRequest>::from_request(Request::from_parts(parts, body), &s).await?;
    s.app.totp_disable(&p, &b.password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- HTML forms (no JavaScript needed) ----

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf_token: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

const FORM_LIMIT: usize = 16 * 1024;

async fn read_form<T: serde::de::DeserializeOwned>(body: axum::body::Body) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Html(login_page(Some("The form is too large."), "", "")),
        )
            .into_response()
    })?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            Html(login_page(Some("The form could not be read."), "", "")),
        )
            .into_response()
    })
}

fn html_error(status: StatusCode, html: String, retry_after: Option<u32>) -> Response {
    let mut res = (status, Html(html)).into_response();
    if let Some(s) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    res
}

fn login_error_message(e: &AppError) -> (StatusCode, &'static str, Option<u32>) {
    match e {
        AppError::TooManyAttempts { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts. Try again later.",
            Some(*retry_after),
        ),
        AppError::InvalidCredentials | AppError::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "The username or password is not valid.",
            None,
        ),
        AppError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is unavailable; try again shortly.",
            Some(5),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed; try again.",
            None,
        ),
    }
}

/// `GET /` and `GET /login`: the sign-in form, or the home page when signed in.
pub async fn index(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(secret) = session_cookie(&parts.headers)
        && s.app.authenticate_session(&secret, false).await.is_ok()
    {
        return crate::ui::charts::overview(&s, &parts.headers).await;
    }
    Html(login_page(
        None,
        "",
        &crate::oidc::button(s.web.oidc.as_ref()),
    ))
    .into_response()
}

/// `POST /login` (form fields `username`, `password`).
pub async fn login_form(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = check_same_origin(&parts.headers, s.web()) {
        return e.into_response();
    }
    let client = client_info(&parts, s.web());
    let form: LoginForm = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let now = s.app.now_utc();
    match s.app.login(&form.username, &form.password, &client).await {
        Ok(session) => {
            let to = if session.mfa_required {
                "/login/second-factor"
            } else {
                "/"
            };
            with_cookie(Redirect::to(to).into_response(), &session, now)
        }
        Err(e) => {
            let (status, msg, retry) = login_error_message(&e);
            if status.is_server_error() {
                tracing::error!(error = %e, "sign-in failed");
            }
            let sso = crate::oidc::button(s.web.oidc.as_ref());
            html_error(status, login_page(Some(msg), &form.username, &sso), retry)
        }
    }
}

/// `GET /login/second-factor`.
pub async fn second_factor_form_page(State(s): State<AppState>, req: Request) -> Response {
    let pending = match session_cookie(req.headers()) {
        Some(secret) => s.app.authenticate_session(&secret, true).await.ok(),
        None => None,
    };
    match pending {
        Some((_, p)) if p.mfa_pending => {
            Html(second_factor_page(None, &p.csrf_token)).into_response()
        }
        _ => Redirect::to("/login").into_response(),
    }
}

/// `POST /login/second-factor` (form field `code`).
pub async fn second_factor_form(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client = client_info(&parts, s.web());
    let Some(secret) = session_cookie(&parts.headers) else {
        return Redirect::to("/login").into_response();
    };
    let Ok((_, pending)) = s.app.authenticate_session(&secret, true).await else {
        return Redirect::to("/login").into_response();
    };
    let form: CodeForm = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(e) = check_csrf(
        &parts.headers,
        s.web(),
        &pending.csrf_token,
        Some(&form.csrf_token),
    ) {
        return e.into_response();
    }
    let now = s.app.now_utc();
    match s
        .app
        .login_second_factor(&secret, &form.code, &client)
        .await
    {
        Ok(session) => with_cookie(Redirect::to("/").into_response(), &session, now),
        Err(AppError::Unauthenticated) => Redirect::to("/login").into_response(),
        Err(e) => {
            let (status, _, retry) = login_error_message(&e);
            html_error(
                status,
                second_factor_page(Some("The code is not valid."), &pending.csrf_token),
                retry,
            )
        }
    }
}

/// `POST /logout` (form field `csrf_token`).
pub async fn logout_form(State(s): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(secret) = session_cookie(&parts.headers) else {
        return Redirect::to("/login").into_response();
    };
    let Ok((p, sess)) = s.app.authenticate_session(&secret, true).await else {
        let mut res = Redirect::to("/login").into_response();
        res.headers_mut()
            .insert(header::SET_COOKIE, clear_session_cookie());
        return res;
    };
    let form: CsrfForm = match read_form(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Err(e) = check_csrf(
        &parts.headers,
        s.web(),
        &sess.csrf_token,
        Some(&form.csrf_token),
    ) {
        return e.into_response();
    }
    if let Err(e) = s.app.logout(&p).await {
        return ApiError::from(e).into_response();
    }
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, clear_session_cookie());
    res
}
