//! TheHive 5's query API, `POST /api/v1/query`, as thehive4py's `alert.find`/`alert.count`
//! and `case.find`/`case.count` send it: `{"query": [{"_name": "listAlert" | "listCase"},
//! {"_name": "filter", ...}, {"_name": "sort", "_fields": [...]}, {"_name": "page", "from",
//! "to"}, {"_name": "count"}]}`.
//!
//! The query is read into [`Query`] (refused naming the unknown step, operator or field, or
//! the value of the wrong type), then run over what the caller may see, read through the app's
//! listings (never a store here) and put in TheHive's shapes; filters and sorts apply to those
//! shapes. A listing is read newest first up to [`MAX_SCAN`] items (`X-Firebreak-Scan-Limit`
//! says when it stopped there).

use super::{case_body, stored_alert, thehive_app_error, thehive_error, thehive_principal};
use crate::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;

/// Items of a listing a query reads at most.
pub(super) const MAX_SCAN: usize = 10_000;

/// What a listing's items are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alert,
    Case,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldType {
    Text,
    Number,
    /// A list of strings (`tags`): a value matches when one of them does.
    List,
    Bool,
}

const ALERT_FIELDS: &[(&str, FieldType)] = &[
    ("_id", FieldType::Text),
    ("_createdAt", FieldType::Number),
    ("_createdBy", FieldType::Text),
    ("type", FieldType::Text),
    ("source", FieldType::Text),
    ("sourceRef", FieldType::Text),
    ("title", FieldType::Text),
    ("description", FieldType::Text),
    ("severity", FieldType::Number),
    ("date", FieldType::Number),
    ("tags", FieldType::List),
    ("tlp", FieldType::Number),
    ("pap", FieldType::Number),
    ("status", FieldType::Text),
    ("stage", FieldType::Text),
    ("caseId", FieldType::Text),
    ("assignee", FieldType::Text),
    ("summary", FieldType::Text),
    ("externalLink", FieldType::Text),
    ("observableCount", FieldType::Number),
    ("follow", FieldType::Bool),
];

const CASE_FIELDS: &[(&str, FieldType)] = &[
    ("_id", FieldType::Text),
    ("_createdAt", FieldType::Number),
    ("_createdBy", FieldType::Text),
    ("_updatedAt", FieldType::Number),
    ("number", FieldType::Number),
    ("caseId", FieldType::Number),
    ("title", FieldType::Text),
    ("description", FieldType::Text),
    ("severity", FieldType::Number),
    ("startDate", FieldType::Number),
    ("endDate", FieldType::Number),
    ("tags", FieldType::List),
    ("flag", FieldType::Bool),
    ("tlp", FieldType::Number),
    ("pap", FieldType::Number),
    ("status", FieldType::Text),
    ("stage", FieldType::Text),
    ("summary", FieldType::Text),
    ("assignee", FieldType::Text),
];

impl Kind {
    fn fields(self) -> &'static [(&'static str, FieldType)] {
        match self {
            Kind::Alert => ALERT_FIELDS,
            Kind::Case => CASE_FIELDS,
        }
    }

    fn step(self) -> &'static str {
        match self {
            Kind::Alert => "listAlert",
            Kind::Case => "listCase",
        }
    }

    fn field(self, name: &str) -> Result<(String, FieldType), String> {
        self.fields()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, t)| ((*n).to_string(), *t))
            .ok_or_else(|| {
                let known: Vec<&str> = self.fields().iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown field `{name}` for {} (known: {})",
                    self.step(),
                    known.join(", ")
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Gt,
    Lte,
    Gte,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextMatch {
    /// `_like` and `_match`: contains, case-insensitive; `*` is any run of characters.
    Like,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Cmp(Cmp, String, Value),
    In(String, Vec<Value>),
    Text(TextMatch, String, String),
    /// `_from` inclusive, `_to` exclusive.
    Between(String, f64, f64),
    Id(String),
    /// The field has a value (`_has`, thehive4py's deprecated `_contains` with a field name).
    Has(String),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// A query as read: what to list, its filter, sort keys (field, ascending), page, count.
#[derive(Debug, Clone, PartialEq)]
struct Query {
    kind: Kind,
    filter: Option<Filter>,
    sort: Vec<(String, bool)>,
    page: Option<(usize, usize)>,
    count: bool,
}

fn name_of(step: &Map<String, Value>) -> Result<&str, String> {
    match step.get("_name") {
        Some(Value::String(n)) => Ok(n),
        Some(_) => Err("query: `_name` must be a string".into()),
        None => Err("query: each step needs a `_name`".into()),
    }
}

fn parse_query(body: &Value) -> Result<Query, String> {
    let Some(obj) = body.as_object() else {
        return Err("body: not a JSON object".into());
    };
    let steps = match obj.get("query") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        Some(Value::Array(_)) => return Err("query: empty".into()),
        Some(_) => return Err("query: must be a list of steps".into()),
        None => return Err("query: missing".into()),
    };
    let mut it = steps.iter();
    let first = it
        .next()
        .and_then(Value::as_object)
        .ok_or("query[0]: must be an object")?;
    let kind = match name_of(first)? {
        "listAlert" => Kind::Alert,
        "listCase" => Kind::Case,
        other => {
            return Err(format!(
                "query[0]: unsupported first step `{other}` (supported: listAlert, listCase)"
            ));
        }
    };
    let mut q = Query {
        kind,
        filter: None,
        sort: Vec::new(),
        page: None,
        count: false,
    };
    let mut filters = Vec::new();
    for (i, step) in it.enumerate() {
        let i = i + 1;
        let step = step
            .as_object()
            .ok_or_else(|| format!("query[{i}]: must be an object"))?;
        if q.count {
            return Err(format!("query[{i}]: nothing may follow `count`"));
        }
        match name_of(step)? {
            "filter" => {
                let mut rest = step.clone();
                rest.remove("_name");
                filters.push(parse_filter(
                    kind,
                    &Value::Object(rest),
                    &format!("query[{i}]"),
                )?);
            }
            "sort" => {
                let Some(Value::Array(fields)) = step.get("_fields") else {
                    return Err(format!("query[{i}]._fields: must be a list"));
                };
                for f in fields {
                    let one = f.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                        format!(
                            "query[{i}]._fields: each item is {{\"field\": \"asc\" | \"desc\"}}"
                        )
                    })?;
                    for (name, dir) in one {
                        let (field, _) =
                            kind.field(name).map_err(|m| format!("query[{i}]: {m}"))?;
                        let asc = match dir.as_str() {
                            Some("asc") => true,
                            Some("desc") => false,
                            _ => {
                                return Err(format!(
                                    "query[{i}]._fields.{name}: expected \"asc\" or \"desc\", found {dir}"
                                ));
                            }
                        };
                        q.sort.push((field, asc));
                    }
                }
            }
            "page" => {
                let num =
                    |k: &str| -> Result<usize, String> {
                        match step.get(k) {
                            Some(v) => v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(
                                || {
                                    format!(
                                        "query[{i}].{k}: must be a non-negative integer, found {v}"
                                    )
                                },
                            ),
                            None => Err(format!("query[{i}].{k}: missing")),
                        }
                    };
                let (from, to) = (num("from")?, num("to")?);
                if to < from {
                    return Err(format!("query[{i}].to: {to} is before from ({from})"));
                }
                q.page = Some((from, to));
            }
            "count" => q.count = true,
            other => {
                return Err(format!(
                    "query[{i}]: unsupported step `{other}` (supported after {}: filter, sort, page, count)",
                    kind.step()
                ));
            }
        }
    }
    q.filter = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(Filter::And(filters)),
    };
    Ok(q)
}

/// A value for a field of `ty`, refused when of another type.
fn typed_value(field: &str, ty: FieldType, v: &Value, at: &str) -> Result<Value, String> {
    let bad = |what: &str| Err(format!("{at}: `{field}` takes {what}, found {v}"));
    match (ty, v) {
        (FieldType::Number, Value::Number(_)) => Ok(v.clone()),
        (FieldType::Number, Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(n) => Ok(json!(n)),
            Err(_) => bad("a number"),
        },
        (FieldType::Number, _) => bad("a number"),
        (FieldType::Text | FieldType::List, Value::String(_)) => Ok(v.clone()),
        (FieldType::Text | FieldType::List, Value::Number(n)) => Ok(json!(n.to_string())),
        (FieldType::Text | FieldType::List, _) => bad("a string"),
        (FieldType::Bool, Value::Bool(_)) => Ok(v.clone()),
        (FieldType::Bool, _) => bad("true or false"),
    }
}

fn field_and_value<'a>(
    kind: Kind,
    arg: &'a Value,
    op: &str,
    at: &str,
) -> Result<(String, FieldType, &'a Map<String, Value>), String> {
    let obj = arg
        .as_object()
        .ok_or_else(|| format!("{at}.{op}: must be an object with `_field`"))?;
    let name = match obj.get("_field") {
        Some(Value::String(f)) => f,
        Some(other) => return Err(format!("{at}.{op}._field: must be a string, found {other}")),
        None => return Err(format!("{at}.{op}._field: missing")),
    };
    let (field, ty) = kind.field(name).map_err(|m| format!("{at}.{op}: {m}"))?;
    Ok((field, ty, obj))
}

fn value_of<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    op: &str,
    at: &str,
) -> Result<&'a Value, String> {
    obj.get(key)
        .ok_or_else(|| format!("{at}.{op}.{key}: missing"))
}

fn parse_filter(kind: Kind, v: &Value, at: &str) -> Result<Filter, String> {
    let Some(obj) = v.as_object() else {
        return Err(format!("{at}: a filter must be an object, found {v}"));
    };
    if obj.is_empty() {
        return Err(format!("{at}: empty filter"));
    }
    let mut all = Vec::new();
    for (op, arg) in obj {
        all.push(parse_operator(kind, op, arg, at)?);
    }
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        Filter::And(all)
    })
}

fn parse_operator(kind: Kind, op: &str, arg: &Value, at: &str) -> Result<Filter, String> {
    let cmp = match op {
        "_eq" => Some(Cmp::Eq),
        "_ne" => Some(Cmp::Ne),
        "_lt" => Some(Cmp::Lt),
        "_gt" => Some(Cmp::Gt),
        "_lte" => Some(Cmp::Lte),
        "_gte" => Some(Cmp::Gte),
        _ => None,
    };
    if let Some(c) = cmp {
        let (field, ty, obj) = field_and_value(kind, arg, op, at)?;
        let value = typed_value(
            &field,
            ty,
            value_of(obj, "_value", op, at)?,
            &format!("{at}.{op}"),
        )?;
        if ty == FieldType::Bool && !matches!(c, Cmp::Eq | Cmp::Ne) {
            return Err(format!(
                "{at}.{op}: `{field}` is true or false: use _eq or _ne"
            ));
        }
        return Ok(Filter::Cmp(c, field, value));
    }
    let text = match op {
        "_like" | "_match" => Some(TextMatch::Like),
        "_startsWith" => Some(TextMatch::StartsWith),
        "_endsWith" => Some(TextMatch::EndsWith),
        // `_contains` with `_field`/`_value`: as `_like` (with a field name: `_has`, below)
        "_contains" if arg.is_object() => Some(TextMatch::Like),
        _ => None,
    };
    if let Some(how) = text {
        let (field, ty, obj) = field_and_value(kind, arg, op, at)?;
        if !matches!(ty, FieldType::Text | FieldType::List) {
            return Err(format!("{at}.{op}: `{field}` is not text"));
        }
        let value = match value_of(obj, "_value", op, at)? {
            Value::String(s) => s.clone(),
            other => return Err(format!("{at}.{op}._value: must be a string, found {other}")),
        };
        return Ok(Filter::Text(how, field, value));
    }
    match op {
        "_and" | "_or" => {
            let items = arg
                .as_array()
                .ok_or_else(|| format!("{at}.{op}: must be a list of filters, found {arg}"))?;
            if items.is_empty() {
                return Err(format!("{at}.{op}: empty"));
            }
            let parsed = items
                .iter()
                .enumerate()
                .map(|(i, f)| parse_filter(kind, f, &format!("{at}.{op}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "_and" {
                Filter::And(parsed)
            } else {
                Filter::Or(parsed)
            })
        }
        "_not" => Ok(Filter::Not(Box::new(parse_filter(
            kind,
            arg,
            &format!("{at}._not"),
        )?))),
        "_in" => {
            let (field, ty, obj) = field_and_value(kind, arg, op, at)?;
            let values = match value_of(obj, "_values", op, at)? {
                Value::Array(v) => v,
                other => return Err(format!("{at}._in._values: must be a list, found {other}")),
            };
            let values = values
                .iter()
                .map(|v| typed_value(&field, ty, v, &format!("{at}._in")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Filter::In(field, values))
        }
        "_between" => {
            let (field, ty, obj) = field_and_value(kind, arg, op, at)?;
            if ty != FieldType::Number {
                return Err(format!(
                    "{at}._between: `{field}` is not a number or a date"
                ));
            }
            let bound = |k: &str| -> Result<f64, String> {
                let v = value_of(obj, k, op, at)?;
                typed_value(&field, ty, v, &format!("{at}._between.{k}"))?
                    .as_f64()
                    .ok_or_else(|| format!("{at}._between.{k}: must be a number, found {v}"))
            };
            let (from, to) = (bound("_from")?, bound("_to")?);
            Ok(Filter::Between(field, from, to))
        }
        "_id" => match arg {
            Value::String(id) => Ok(Filter::Id(id.trim().trim_start_matches('~').to_string())),
            other => Err(format!("{at}._id: must be a string, found {other}")),
        },
        "_has" | "_contains" => match arg {
            Value::String(f) => {
                let (field, _) = kind.field(f).map_err(|m| format!("{at}.{op}: {m}"))?;
                Ok(Filter::Has(field))
            }
            other => Err(format!("{at}.{op}: must be a field name, found {other}")),
        },
        // TheHive's shorthand `{"field": value}`: equality
        name if !name.starts_with('_') => {
            let (field, ty) = kind.field(name).map_err(|m| format!("{at}: {m}"))?;
            let value = typed_value(&field, ty, arg, at)?;
            Ok(Filter::Cmp(Cmp::Eq, field, value))
        }
        other => Err(format!(
            "{at}: unknown filter operator `{other}` (supported: _eq, _ne, _lt, _gt, _lte, _gte, _in, _like, _match, _contains, _startsWith, _endsWith, _between, _id, _has, _and, _or, _not)"
        )),
    }
}

/// Two scalars in order: numbers as numbers, strings as strings (case-insensitive, as
/// TheHive's index sorts text); `None` when they cannot be compared.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Equality: text exactly (TheHive's keyword fields), numbers as numbers.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        _ => compare(a, b) == Some(Ordering::Equal),
    }
}

/// The field's values in an item: one, or each of a list; none when null or absent.
fn values<'a>(item: &'a Value, field: &str) -> Vec<&'a Value> {
    match item.get(field) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    }
}

fn like(text: &str, pattern: &str, how: TextMatch) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    match how {
        TextMatch::StartsWith => text.starts_with(&pattern),
        TextMatch::EndsWith => text.ends_with(&pattern),
        TextMatch::Like => {
            // `*` is any run; without one, the value anywhere in the text
            let parts: Vec<&str> = pattern.split('*').collect();
            if parts.len() == 1 {
                return text.contains(&pattern);
            }
            let mut rest = text.as_str();
            for (i, part) in parts.iter().enumerate() {
                if part.is_empty() {
                    continue;
                }
                if i == 0 {
                    let Some(r) = rest.strip_prefix(part) else {
                        return false;
                    };
                    rest = r;
                } else if i == parts.len() - 1 {
                    return rest.ends_with(part);
                } else {
                    match rest.find(part) {
                        Some(at) => rest = &rest[at + part.len()..],
                        None => return false,
                    }
                }
            }
            true
        }
    }
}

fn matches(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::Cmp(Cmp::Ne, field, v) => !values(item, field).iter().any(|x| equal(x, v)),
        Filter::Cmp(c, field, v) => values(item, field).iter().any(|x| match c {
            Cmp::Eq => equal(x, v),
            Cmp::Lt => compare(x, v) == Some(Ordering::Less),
            Cmp::Gt => compare(x, v) == Some(Ordering::Greater),
            Cmp::Lte => matches!(compare(x, v), Some(Ordering::Less | Ordering::Equal)),
            Cmp::Gte => matches!(compare(x, v), Some(Ordering::Greater | Ordering::Equal)),
            Cmp::Ne => false,
        }),
        Filter::In(field, vs) => values(item, field)
            .iter()
            .any(|x| vs.iter().any(|v| equal(x, v))),
        Filter::Text(how, field, p) => values(item, field)
            .iter()
            .any(|x| x.as_str().is_some_and(|t| like(t, p, *how))),
        Filter::Between(field, from, to) => values(item, field)
            .iter()
            .filter_map(|x| x.as_f64())
            .any(|n| n >= *from && n < *to),
        Filter::Id(id) => item.get("_id").and_then(Value::as_str) == Some(id.as_str()),
        Filter::Has(field) => !values(item, field).is_empty(),
        Filter::And(all) => all.iter().all(|f| matches(f, item)),
        Filter::Or(any) => any.iter().any(|f| matches(f, item)),
        Filter::Not(f) => !matches(f, item),
    }
}

/// Sorts by the keys in order (missing values last, whatever the direction); the listing's
/// own order (newest first) breaks ties.
fn sort(items: &mut [Value], keys: &[(String, bool)]) {
    items.sort_by(|a, b| {
        for (field, asc) in keys {
            let (x, y) = (a.get(field), b.get(field));
            let o = match (x.filter(|v| !v.is_null()), y.filter(|v| !v.is_null())) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => return Ordering::Greater,
                (Some(_), None) => return Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = compare(x, y).unwrap_or(Ordering::Equal);
                    if *asc { o } else { o.reverse() }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

/// A source named by the filter's top level (`_eq` on `source`, alone or in a top-level
/// `_and`): the listing reads only that source's events.
fn source_of(f: Option<&Filter>) -> Option<String> {
    match f? {
        Filter::Cmp(Cmp::Eq, field, Value::String(s)) if field == "source" => Some(s.clone()),
        Filter::And(all) => all.iter().find_map(|f| source_of(Some(f))),
        _ => None,
    }
}

fn bad_request(message: String) -> Response {
    thehive_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// The visible items a query reads (TheHive-shaped), newest first, and whether the listing
/// had more than [`MAX_SCAN`].
async fn read_items(
    s: &AppState,
    p: &firebreak_app::Principal,
    q: &Query,
) -> Result<(Vec<Value>, bool), Response> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0usize;
    loop {
        let next = match q.kind {
            Kind::Alert => {
                let page = s
                    .app
                    .list_events(
                        p,
                        &firebreak_app::helpdesk::ListEvents {
                            source: source_of(q.filter.as_ref()),
                            limit: Some(500),
                            cursor: cursor.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(thehive_app_error)?;
                scanned += page.items.len();
                out.extend(page.items.iter().filter_map(|e| stored_alert(e, false)));
                page.next_cursor
            }
            Kind::Case => {
                let page = s
                    .app
                    .list_tickets(
                        p,
                        &firebreak_app::tickets::ListTickets {
                            limit: Some(500),
                            cursor: cursor.clone(),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(thehive_app_error)?;
                scanned += page.items.len();
                out.extend(page.items.iter().map(|v| case_body(v, false)));
                page.next_cursor
            }
        };
        match next {
            Some(c) if scanned < MAX_SCAN => cursor = Some(c),
            Some(_) => return Ok((out, true)),
            None => return Ok((out, false)),
        }
    }
}

/// TheHive 5 `POST /api/v1/query`: `listAlert` (events that came through the alert API) or
/// `listCase` (tickets), then `filter`, `sort`, `page` and `count` steps, over what the
/// caller may see; answers the list TheHive-shaped, or the count as a number.
#[utoipa::path(post, path = "/query", tag = "intake",
    params(("name" = Option<String>, Query, description = "A label for the query (thehive4py: `alerts`, `alerts.count`...); ignored")),
    request_body(content = serde_json::Value, description = "`{\"query\": [{\"_name\": \"listAlert\" | \"listCase\"}, {\"_name\": \"filter\", \"_eq\": {\"_field\": \"severity\", \"_value\": 3}}, {\"_name\": \"sort\", \"_fields\": [{\"_createdAt\": \"desc\"}]}, {\"_name\": \"page\", \"from\": 0, \"to\": 10}, {\"_name\": \"count\"}], \"excludeFields\": [...]}`. Operators: _eq, _ne, _lt, _gt, _lte, _gte, _in, _like, _match, _contains, _startsWith, _endsWith, _between, _id, _has, _and, _or, _not"),
    responses((status = 200, body = serde_json::Value, description = "The alerts or cases, TheHive-shaped, or their count"), (status = 400, body = serde_json::Value, description = "TheHive's `{type, message}` naming the unknown step, operator or field, or the value of the wrong type")))]
pub(super) async fn thehive_query(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let p = match thehive_principal(&s, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (bytes, _) = match super::read_thehive_body(&s, &headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad_request(format!("body: not JSON: {e}")),
    };
    let q = match parse_query(&value) {
        Ok(q) => q,
        Err(m) => return bad_request(m),
    };
    let exclude: Vec<String> = match value.get("excludeFields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(f)) if f.iter().all(Value::is_string) => f
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            return bad_request(format!(
                "excludeFields: must be a list of field names, found {other}"
            ));
        }
    };
    let (items, truncated) = match read_items(&s, &p, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut items: Vec<Value> = match &q.filter {
        Some(f) => items.into_iter().filter(|i| matches(f, i)).collect(),
        None => items,
    };
    let mut res = if q.count {
        (StatusCode::OK, Json(json!(items.len()))).into_response()
    } else {
        sort(&mut items, &q.sort);
        if let Some((from, to)) = q.page {
            items = items.into_iter().skip(from).take(to - from).collect();
        }
        for item in &mut items {
            if let Value::Object(m) = item {
                for f in &exclude {
                    m.remove(f);
                }
            }
        }
        (StatusCode::OK, Json(Value::Array(items))).into_response()
    };
    if truncated {
        res.headers_mut().insert(
            "x-firebreak-scan-limit",
            HeaderValue::from_str(&MAX_SCAN.to_string()).unwrap_or(HeaderValue::from_static("")),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(clippy::needless_pass_by_value, reason = "called with json! literals")]
    fn parse(q: Value) -> Result<Query, String> {
        parse_query(&json!({ "query": q }))
    }

    #[test]
    fn thehive4py_queries_are_read() {
        let q = parse(json!([
            {"_name": "listAlert"},
            {"_name": "filter", "_and": [
                {"_eq": {"_field": "severity", "_value": 3}},
                {"_or": [{"_like": {"_field": "title", "_value": "beacon"}},
                         {"_not": {"_in": {"_field": "tags", "_values": ["noise", "test"]}}}]},
                {"_between": {"_field": "_createdAt", "_from": 0, "_to": 10}},
                {"_id": "~abc"},
                {"_contains": "sourceRef"}
            ]},
            {"_name": "sort", "_fields": [{"_createdAt": "desc"}, {"title": "asc"}]},
            {"_name": "page", "from": 0, "to": 5, "extraData": []}
        ]))
        .unwrap();
        assert_eq!(q.kind, Kind::Alert);
        assert_eq!(q.page, Some((0, 5)));
        assert_eq!(
            q.sort,
            vec![("_createdAt".into(), false), ("title".into(), true)]
        );
        let Some(Filter::And(all)) = &q.filter else {
            panic!("{q:?}")
        };
        assert_eq!(all.len(), 5);
        assert_eq!(all[3], Filter::Id("abc".into()));
        assert_eq!(all[4], Filter::Has("sourceRef".into()));
        let c = parse(json!([{"_name": "listCase"}, {"_name": "count"}])).unwrap();
        assert!(c.count && c.kind == Kind::Case && c.filter.is_none());
    }

    #[test]
    fn bad_queries_name_what_is_wrong() {
        for (q, says) in [
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_regex": {}}]),
                "`_regex`",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_eq": {"_field": "colour", "_value": 1}}]),
                "`colour`",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_eq": {"_field": "severity", "_value": "high"}}]),
                "a number",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_eq": {"_field": "title", "_value": [1]}}]),
                "a string",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_in": {"_field": "title", "_values": "x"}}]),
                "must be a list",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "filter", "_and": {}}]),
                "list of filters",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "sort", "_fields": [{"title": "up"}]}]),
                "\"asc\"",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "page", "from": -1, "to": 3}]),
                "from",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "page", "from": 5, "to": 3}]),
                "before",
            ),
            (
                json!([{"_name": "listAlert"}, {"_name": "observables"}]),
                "`observables`",
            ),
            (json!([{"_name": "getAlert"}]), "`getAlert`"),
            (
                json!([{"_name": "listCase"}, {"_name": "count"}, {"_name": "page", "from": 0, "to": 1}]),
                "count",
            ),
            (json!([]), "empty"),
        ] {
            let e = parse(q.clone()).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
        assert!(parse_query(&json!({"query": "listAlert"})).is_err());
        assert!(parse_query(&json!([1])).is_err());
    }

    #[test]
    fn filters_match_thehive_shapes() {
        let item = json!({"_id": "a1", "title": "Beacon to C2", "severity": 3, "tags": ["ids", "c2"],
            "source": "Velociraptor", "_createdAt": 5, "assignee": null});
        let f = |v: Value| parse_filter(Kind::Alert, &v, "f").unwrap();
        for (filter, expect) in [
            (json!({"_eq": {"_field": "severity", "_value": 3}}), true),
            (json!({"_eq": {"_field": "severity", "_value": "3"}}), true),
            (json!({"_ne": {"_field": "severity", "_value": 3}}), false),
            (json!({"_gt": {"_field": "severity", "_value": 2}}), true),
            (json!({"_lte": {"_field": "severity", "_value": 2}}), false),
            (json!({"_eq": {"_field": "tags", "_value": "c2"}}), true),
            (
                json!({"_in": {"_field": "source", "_values": ["Velociraptor", "Kibana"]}}),
                true,
            ),
            (
                json!({"_like": {"_field": "title", "_value": "beacon"}}),
                true,
            ),
            (
                json!({"_like": {"_field": "title", "_value": "b*c2"}}),
                true,
            ),
            (
                json!({"_like": {"_field": "title", "_value": "c2*beacon"}}),
                false,
            ),
            (
                json!({"_startsWith": {"_field": "title", "_value": "Beac"}}),
                true,
            ),
            (
                json!({"_endsWith": {"_field": "title", "_value": "C2"}}),
                true,
            ),
            (
                json!({"_between": {"_field": "_createdAt", "_from": 5, "_to": 6}}),
                true,
            ),
            (
                json!({"_between": {"_field": "_createdAt", "_from": 0, "_to": 5}}),
                false,
            ),
            (json!({"_id": "a1"}), true),
            (json!({"_has": "assignee"}), false),
            (json!({"_not": {"_has": "assignee"}}), true),
            (
                json!({"_or": [{"_id": "zz"}, {"title": "Beacon to C2"}]}),
                true,
            ),
            (
                json!({"_and": [{"_id": "a1"}, {"_eq": {"_field": "severity", "_value": 1}}]}),
                false,
            ),
        ] {
            assert_eq!(matches(&f(filter.clone()), &item), expect, "{filter}");
        }
    }

    #[test]
    fn sorts_by_keys_with_missing_values_last() {
        let mut items = vec![
            json!({"_id": "a", "severity": 2, "title": "b"}),
            json!({"_id": "b", "severity": 3, "title": "a"}),
            json!({"_id": "c", "title": "c"}),
            json!({"_id": "d", "severity": 2, "title": "a"}),
        ];
        sort(
            &mut items,
            &[("severity".into(), false), ("title".into(), true)],
        );
        let ids: Vec<&str> = items.iter().map(|i| i["_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["b", "d", "a", "c"]);
    }
}
