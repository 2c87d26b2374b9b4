//! `search`: one query over tickets, events and observables, under the listings' visibility
//! (tickets as `list_tickets` plus an open emergency's team, events as `list_events`,
//! observables as `list_observables`), with an opaque keyset cursor and snippets. Knows no SQL.

use crate::{App, AppError, AppResult, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firebreak_domain::api::{Page, SearchItem, SearchItemType, format_number, parse_number};
use firebreak_domain::ids::TicketId;
use firebreak_store::{
    SearchEvents, SearchFilter, SearchHit, SearchPosition, SearchTickets, StoreError, Visibility,
};
use std::collections::{HashMap, HashSet};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Shortest and longest text searched for, in characters (after trimming).
pub const MIN_QUERY: usize = 2;
pub const MAX_QUERY: usize = 256;
/// About how long a snippet is, in characters.
pub const SNIPPET: usize = 160;
/// How many times one page goes back to the store when hits were not visible to the caller.
const MAX_ROUNDS: usize = 5;

/// `GET /search` query, not yet checked.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Opaque cursor: base64url of `s:t:<number>`, `s:e:<seq>` or `s:o:<id>:<value>`.
pub fn encode_cursor(p: &SearchPosition) -> String {
    let raw = match p {
        SearchPosition::Ticket(n) => format!("s:t:{n}"),
        SearchPosition::Event(s) => format!("s:e:{s}"),
        SearchPosition::Observable { value, id } => format!("s:o:{id}:{value}"),
    };
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_cursor(cursor: &str) -> AppResult<SearchPosition> {
    let bad = || AppError::field("cursor", "not a cursor returned by this search");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let rest = text.strip_prefix("s:").ok_or_else(bad)?;
    let (kind, pos) = rest.split_once(':').ok_or_else(bad)?;
    match kind {
        "t" => pos.parse().map(SearchPosition::Ticket).map_err(|_| bad()),
        "e" => pos.parse().map(SearchPosition::Event).map_err(|_| bad()),
        "o" => {
            let (id, value) = pos.split_once(':').ok_or_else(bad)?;
            Ok(SearchPosition::Observable {
                id: id.parse().map_err(|_| bad())?,
                value: value.to_string(),
            })
        }
        _ => Err(bad()),
    }
}

/// The text to search for: trimmed, 2 to 256 characters, no control characters.
pub fn check_query(q: Option<&str>) -> AppResult<String> {
    let q = q.map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Err(AppError::field("q", "is required"));
    }
    if let Some(msg) = firebreak_domain::ticket::control_char(q) {
        return Err(AppError::field("q", msg));
    }
    let n = q.chars().count();
    if n < MIN_QUERY {
        return Err(AppError::field(
            "q",
            format!("must be at least {MIN_QUERY} characters"),
        ));
    }
    if n > MAX_QUERY {
        return Err(AppError::field(
            "q",
            format!("must be at most {MAX_QUERY} characters"),
        ));
    }
    Ok(q.to_string())
}

pub fn check_limit(limit: Option<u32>) -> AppResult<u32> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(AppError::field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

/// Whether a character is left out of snippets: controls (line breaks become spaces first)
/// and the bidirectional-text controls that could reorder what is shown around them.
fn hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// About [`SNIPPET`] characters of `text` around the first case-insensitive occurrence of
/// `needle` (its start when there is none), on one line, with `…` where it was cut.
pub fn snippet(text: &str, needle: &str) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(text.len().min(4 * SNIPPET));
    for c in text.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if hidden_char(c) || (c == ' ' && chars.last() == Some(&' ')) {
            continue;
        }
        chars.push(c);
    }
    let fold = |c: &char| c.to_lowercase().next().unwrap_or(*c);
    let hay: Vec<char> = chars.iter().map(fold).collect();
    let pin: Vec<char> = needle
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| fold(&c))
        .collect();
    let at = if pin.is_empty() {
        0
    } else {
        hay.windows(pin.len()).position(|w| w == pin).unwrap_or(0)
    };
    // the match a third of the way in, the window kept inside the text
    let len = chars.len();
    let mut start = at.saturating_sub(SNIPPET / 3);
    let end = (start + SNIPPET).min(len);
    start = start.min(end.saturating_sub(SNIPPET));
    let mut out: String = chars[start..end].iter().collect();
    out = out.trim().to_string();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < len {
        out.push('…');
    }
    out
}

impl App {
    /// Searches what the principal may see: tickets (title, description, number, incident-log
    /// text), events (title, host, source), observables (value), in the store's order, at most
    /// `limit` per page. Hits the caller may not see are skipped (the page may then be shorter,
    /// with a cursor that moves on).
    pub async fn search(&self, p: &Principal, q: &SearchQuery) -> AppResult<Page<SearchItem>> {
        if !p.can_read() && !Self::may_report(p) {
            return Err(AppError::Forbidden(
                "searching requires a token allowed to read".into(),
            ));
        }
        let text = check_query(q.q.as_deref())?;
        let limit = check_limit(q.limit)?;
        let mut after = q
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?;
        let reads_all = p.can_read() && Self::reads_all_events(p);
        let prefix = &self.config.ticket_prefix;
        let number = parse_number(prefix, &text).or_else(|| {
            (text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse().ok())
                .flatten()
                .filter(|n| *n > 0)
        });
        let team: Vec<TicketId> = if p.can_read() && (!p.restricted_ok() || p.only_own()) {
            self.open_emergency_team_tickets(p.username()).await?
        } else {
            vec![]
        };
        let team_set: HashSet<TicketId> = team.iter().copied().collect();
        let mut filter = SearchFilter {
            text: text.clone(),
            number,
            tickets: p.can_read().then(|| SearchTickets {
                visible_to: Some(Visibility {
                    username: p.username().to_string(),
                    restricted_ok: p.restricted_ok(),
                    only_own: p.only_own(),
                }),
                also: team,
            }),
            events: Some(SearchEvents {
                reported_by: (!reads_all).then(|| p.username().to_string()),
            }),
            observables: reads_all,
            after: None,
            limit: limit + 1,
        };
        let want = limit as usize;
        let mut items = Vec::with_capacity(want);
        let mut event_tickets = HashMap::new();
        let mut rounds = 0;
        let next = loop {
            rounds += 1;
            filter.after = after.clone();
            let hits = self.store.search(&filter).await?;
            let got = hits.len();
            let mut more = false;
            for h in hits {
                if items.len() == want {
                    more = true;
                    break;
                }
                after = Some(h.position.clone());
                if let Some(item) = self
                    .search_item(p, h, &text, &team_set, &mut event_tickets)
                    .await?
                {
                    items.push(item);
                }
            }
            if more {
                break after;
            }
            if got < filter.limit as usize {
                break None;
            }
            if items.len() == want || rounds == MAX_ROUNDS {
                break after;
            }
        };
        tracing::debug!(
            user = p.username(),
            search.items = items.len(),
            search.rounds = rounds,
            "search"
        );
        Ok(Page {
            items,
            next_cursor: next.as_ref().map(encode_cursor),
        })
    }

    /// A hit as the caller sees it, or `None` when they may not see it.
    async fn search_item(
        &self,
        p: &Principal,
        h: SearchHit,
        text: &str,
        team: &HashSet<TicketId>,
        event_tickets: &mut HashMap<TicketId, bool>,
    ) -> AppResult<Option<SearchItem>> {
        let (kind, number) = match h.position {
            SearchPosition::Ticket(n) => {
                // a ticket found only through an emergency's team: read as `get_ticket` does
                // (on the record)
                let id = TicketId(h.id);
                if team.contains(&id) {
                    let t = match self.store.get_ticket(id).await {
                        Ok(t) => t,
                        Err(StoreError::NotFound) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    };
                    if !self.can_see(p, &t).await? {
                        return Ok(None);
                    }
                }
                (
                    SearchItemType::Ticket,
                    Some(format_number(&self.config.ticket_prefix, n)),
                )
            }
            SearchPosition::Event(_) => {
                let by = h.reported_by.as_deref().unwrap_or_default();
                if !self
                    .event_visible_by(p, by, h.ticket_id, event_tickets)
                    .await?
                {
                    return Ok(None);
                }
                (SearchItemType::Event, None)
            }
            SearchPosition::Observable { .. } => {
                if !p.restricted_ok() {
                    let r = match self.store.get_observable(h.id).await {
                        Ok(r) => r,
                        Err(StoreError::NotFound) => return Ok(None),
                        Err(e) => return Err(e.into()),
                    };
                    if !self.observable_visible(p, &r).await? {
                        return Ok(None);
                    }
                }
                (SearchItemType::Observable, None)
            }
        };
        Ok(Some(SearchItem {
            kind,
            id: h.id,
            number,
            snippet: snippet(&h.text, text),
            title: h.title,
            field: h.field.as_str().to_string(),
            observable_kind: h.kind,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_name_the_field() {
        for p in [
            SearchPosition::Ticket(42),
            SearchPosition::Event(7),
            SearchPosition::Observable {
                value: "a:b:c".into(),
                id: uuid::Uuid::nil(),
            },
        ] {
            assert_eq!(decode_cursor(&encode_cursor(&p)).unwrap(), p);
        }
        for bad in ["", "!!", "czp0Ong", "dDo0Mg"] {
            match decode_cursor(bad) {
                Err(AppError::Validation(errs)) => assert_eq!(errs[0].field, "cursor"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn query_and_limit_are_checked() {
        assert_eq!(check_query(Some("  ab ")).unwrap(), "ab");
        for bad in [None, Some(""), Some("  "), Some("a"), Some("a\u{7}b")] {
            assert!(check_query(bad).is_err(), "{bad:?}");
        }
        assert!(check_query(Some(&"x".repeat(256))).is_ok());
        assert!(check_query(Some(&"x".repeat(257))).is_err());
        assert_eq!(check_limit(None).unwrap(), 20);
        assert!(check_limit(Some(0)).is_err());
        assert!(check_limit(Some(101)).is_err());
        assert_eq!(check_limit(Some(100)).unwrap(), 100);
    }

    #[test]
    fn snippets_center_the_match_on_one_line_without_controls() {
        assert_eq!(snippet("short text", "TEXT"), "short text");
        let long = format!("{}needle{}", "a".repeat(300), "b".repeat(300));
        let s = snippet(&long, "Needle");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.contains("needle"));
        assert!(s.chars().count() <= SNIPPET + 2);
        assert_eq!(
            snippet("line one\n\tline\u{1b}[31m two\u{202e}x", "two"),
            "line one line[31m twox"
        );
        // no match (a number hit): the start
        assert_eq!(snippet(&"z".repeat(200), "q").chars().count(), SNIPPET + 1);
    }
}
