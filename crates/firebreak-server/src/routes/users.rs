//! `/api/v1/users`: the caller, the user list, and user creation by admins.

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, Auth};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use firebreak_domain::api::{CreateUserRequest, Page};
use firebreak_domain::user::User;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(me))
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
