//! The search page (`/search?q=`, the header's search box leads here) and the observable page
//! (`/observables/{id}`, where observable hits lead). They call `App::search` and
//! `App::get_observable` with the signed-in principal, as the API does; they decide nothing.

use super::{Layout, Ui, describe, error_page, html, when};
use crate::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use firebreak_app::search::SearchQuery;
use firebreak_domain::api::{SearchItem, SearchItemType};
use firebreak_domain::event::ObservableDetail;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub cursor: String,
}

/// One result as the page shows it.
pub struct Row {
    pub kind: &'static str,
    pub href: String,
    pub label: String,
    pub title: String,
    pub snippet: String,
    pub field: String,
}

fn row(i: SearchItem) -> Row {
    let (kind, href, label) = match i.kind {
        SearchItemType::Ticket => {
            let n = i.number.unwrap_or_default();
            ("Ticket", format!("/tickets/{n}"), n)
        }
        SearchItemType::Event => ("Event", format!("/events/{}", i.id), String::new()),
        SearchItemType::Observable => (
            "Observable",
            format!("/observables/{}", i.id),
            i.observable_kind.unwrap_or_default(),
        ),
    };
    Row {
        kind,
        href,
        label,
        title: i.title,
        snippet: i.snippet,
        field: i.field,
    }
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    l: Layout,
    q: String,
    rows: Vec<Row>,
    next: Option<String>,
    /// Whether a search ran (a query was given).
    searched: bool,
    error: Option<String>,
}

fn query_string(q: &str, cursor: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("q", q);
    if let Some(c) = cursor {
        s.append_pair("cursor", c);
    }
    s.finish()
}

/// `GET /search?q=&cursor=`.
pub async fn page(
    State(s): State<AppState>,
    ui: Ui,
    q: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let f = q.map(|Query(q)| q).unwrap_or_default();
    let mut rows = vec![];
    let mut next = None;
    let mut error = None;
    let mut code = StatusCode::OK;
    let searched = !f.q.trim().is_empty();
    if searched {
        let query = SearchQuery {
            q: Some(f.q.clone()),
            limit: None,
            cursor: Some(f.cursor.clone()).filter(|c| !c.is_empty()),
        };
        match s.app.search(&ui.p, &query).await {
            Ok(page) => {
                rows = page.items.into_iter().map(row).collect();
                next = page
                    .next_cursor
                    .map(|c| format!("/search?{}", query_string(&f.q, Some(&c))));
            }
            Err(e) => {
                let (c, m) = describe(e);
                code = c;
                error = Some(m);
            }
        }
    }
    html(
        code,
        &SearchPage {
            l: ui.layout("search"),
            q: f.q,
            rows,
            next,
            searched,
            error,
        },
    )
}

#[derive(Template)]
#[template(path = "observable.html")]
struct ObservablePage {
    l: Layout,
    o: ObservableDetail,
    first_seen: String,
    last_seen: String,
}

/// `GET /observables/{id}`: an observable with the events and tickets (visible to the user)
/// that mention it.
pub async fn observable(State(s): State<AppState>, ui: Ui, Path(id): Path<String>) -> Response {
    match s.app.get_observable(&ui.p, &id).await {
        Ok(o) => html(
            StatusCode::OK,
            &ObservablePage {
                l: ui.layout("search"),
                first_seen: when(o.observable.first_seen),
                last_seen: when(o.observable.last_seen),
                o,
            },
        ),
        Err(e) => error_page(&ui, e),
    }
}
