//! `/api/v1/users`: the caller, the user list, and user creation by admins.

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, Auth};
use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use firebreak_domain::api::{CreateUserRequest, Page, UpdateUserRequest};
use firebreak_domain::user::User;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(me))
        .routes(routes!(get_user, update_user))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/users/me", tag = "users",
    responses((status = 200, body = User), (status = 401, body = ErrorEnvelope)), security(("bearer" = [])))]
async fn me(Auth(p): Auth) -> Json<User> {
    Json(p.user)
}

/// All users (team roles, auditors, admins).
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, body = Page<User>), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)), security(("bearer" = [])))]
async fn list_users(State(s): State<AppState>, Auth(p): Auth) -> ApiResult<Json<Page<User>>> {
    Ok(Json(Page {
        items: s.app.list_users(&p).await?,
        next_cursor: None,
    }))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn create_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.app.create_user_api(&p, &req).await?),
    ))
}

/// One user by username.
#[utoipa::path(get, path = "/users/{username}", tag = "users",
    params(("username" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)), security(("bearer" = [])))]
async fn get_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(username): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.app.get_user(&p, &username).await?))
}

/// Change a user's roles, title, seniority, on-duty state, email, clearances or disabled flag
/// (admin). Disabling revokes the user's tokens at once.
#[utoipa::path(patch, path = "/users/{username}", tag = "users", request_body = UpdateUserRequest,
    params(("username" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)),
    security(("bearer" = [])))]
async fn update_user(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<User>> {
    Ok(Json(s.app.update_user_api(&p, &username, &req).await?))
}
