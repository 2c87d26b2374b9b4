//! `GET /api/v1/search`: one search over the tickets, events and observables the caller may
//! see. Extracts the query and calls `App::search`; decides nothing.

use crate::AppState;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiQuery, Auth};
use axum::Json;
use axum::extract::State;
use firebreak_app::search::SearchQuery;
use firebreak_domain::api::{Page, SearchItem};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text to find (2 to 256 characters after trimming), case-insensitively, as a substring:
    /// in tickets' titles, descriptions, numbers (`SEC-000012` or `12`) and incident-log
    /// entries; events' titles, hosts and sources; observables' values. `%`, `_` and `\` are
    /// plain characters.
    pub q: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Search tickets, events and observables. Tickets come first (newest number first), then
/// events (newest first), then observables (by value); only what the caller may see, under the
/// same rules as the lists. A page may hold fewer than `limit` items while `next_cursor` is
/// not null.
#[utoipa::path(get, path = "/search", tag = "search", params(SearchParams),
    responses((status = 200, body = Page<SearchItem>),
        (status = 400, description = "A query string that does not parse (a `limit` that is not a number, an unknown parameter)", body = ErrorEnvelope),
        (status = 422, description = "`q`, `limit` or `cursor` missing, out of bounds or invalid (named in `details`)", body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
async fn search(
    State(s): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<SearchParams>,
) -> ApiResult<Json<Page<SearchItem>>> {
    let q = SearchQuery {
        q: q.q,
        limit: q.limit,
        cursor: q.cursor,
    };
    match s.app.search(&p, &q).await {
        Ok(page) => Ok(Json(page)),
        Err(e) => Err(e.into()),
    }
}
