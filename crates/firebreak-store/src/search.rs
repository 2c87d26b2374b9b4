//! The search contract: one read over tickets (title, description, number, incident-log text),
//! events (title, host, source) and observables (value), in one stable order with a keyset
//! position. Says what matches and in which order; who may see a hit is the application's
//! business (it passes the visibility it has decided). No SQL here.

use crate::{StoreResult, Visibility};
use async_trait::async_trait;
use firebreak_domain::ids::TicketId;

/// What a search looks for and where it resumes.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Matched literally (`%`, `_` and `\` are not wildcards), case-insensitively (ASCII on
    /// SQLite, Unicode on PostgreSQL), as a substring.
    pub text: String,
    /// Also tickets with exactly this number (the text was `SEC-000012` or `12`).
    pub number: Option<i64>,
    /// Search tickets, limited to what this visibility allows; `None`: no tickets.
    pub tickets: Option<SearchTickets>,
    /// Search events; `None`: no events.
    pub events: Option<SearchEvents>,
    /// Search observables.
    pub observables: bool,
    /// Resume strictly after this position.
    pub after: Option<SearchPosition>,
    /// At most this many hits (0 is taken as 1).
    pub limit: u32,
}

/// Which tickets a search may return.
#[derive(Debug, Clone, Default)]
pub struct SearchTickets {
    /// The same rule as [`crate::TicketFilter::visible_to`]; `None`: every ticket.
    pub visible_to: Option<Visibility>,
    /// Tickets visible besides (an open emergency's team reads its ticket).
    pub also: Vec<TicketId>,
}

/// Which events a search may return.
#[derive(Debug, Clone, Default)]
pub struct SearchEvents {
    /// Only events this user submitted (reporters see their own).
    pub reported_by: Option<String>,
}

/// A place in the search order: tickets first, newest number first; then events, newest
/// first (arrival order); then observables by value and id. Every key is immutable, so a page
/// boundary never moves under a cursor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SearchPosition {
    /// After the ticket with this number.
    Ticket(i64),
    /// After the event at this position (`seq`).
    Event(i64),
    /// After this observable.
    Observable { value: String, id: uuid::Uuid },
}

/// The field a hit matched first (title before description before number before log for
/// tickets; title, host, source for events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    Title,
    Description,
    Number,
    Log,
    Host,
    Source,
    Value,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// Also says the hit's kind.
    pub position: SearchPosition,
    /// The ticket's, event's or observable's id.
    pub id: uuid::Uuid,
    /// Ticket title, event title or observable value.
    pub title: String,
    pub field: SearchField,
    /// The text of the matched field (for a log match: the entry's text; for a number match:
    /// the title).
    pub text: String,
    /// Events: who submitted it and the ticket it went into (their visibility depends on both).
    pub reported_by: Option<String>,
    pub ticket_id: Option<TicketId>,
    /// Observables: their kind.
    pub kind: Option<String>,
}

#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Hits in the order of [`SearchPosition`], after `filter.after`, at most `filter.limit`.
    async fn search(&self, filter: &SearchFilter) -> StoreResult<Vec<SearchHit>>;
}

impl SearchFilter {
    /// The `LIKE`/`ILIKE` pattern of the text (with `ESCAPE '\'`).
    pub fn pattern(&self) -> String {
        format!("%{}%", crate::like_escape(&self.text))
    }

    /// How many more hits fit after `found`.
    pub fn room(&self, found: usize) -> u32 {
        (self.limit.max(1) as usize).saturating_sub(found) as u32
    }

    /// The number to resume tickets below, whether to search tickets at all.
    pub fn tickets_after(&self) -> Option<Option<i64>> {
        match &self.after {
            None => Some(None),
            Some(SearchPosition::Ticket(n)) => Some(Some(*n)),
            Some(_) => None,
        }
    }

    /// The `seq` to resume events below, whether to search events at all.
    pub fn events_after(&self) -> Option<Option<i64>> {
        match &self.after {
            None | Some(SearchPosition::Ticket(_)) => Some(None),
            Some(SearchPosition::Event(s)) => Some(Some(*s)),
            Some(SearchPosition::Observable { .. }) => None,
        }
    }

    /// The observable to resume after.
    pub fn observables_after(&self) -> Option<(&str, uuid::Uuid)> {
        match &self.after {
            Some(SearchPosition::Observable { value, id }) => Some((value, *id)),
            _ => None,
        }
    }
}

impl SearchField {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchField::Title => "title",
            SearchField::Description => "description",
            SearchField::Number => "number",
            SearchField::Log => "log",
            SearchField::Host => "host",
            SearchField::Source => "source",
            SearchField::Value => "value",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            SearchField::Title,
            SearchField::Description,
            SearchField::Number,
            SearchField::Log,
            SearchField::Host,
            SearchField::Source,
            SearchField::Value,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}
