//! Firebreak's threat-intel logic, as pure functions the application layer calls: no network,
//! no database, no async runtime.
//!
//! - [`feeds`]: indicator feeds (STIX 2.1 bundles, MISP events and attribute lists, CSV) to
//!   normalized [`feeds::Indicator`]s, with per-item errors instead of all-or-nothing.
//! - [`matcher`]: [`matcher::IndicatorSet`], a compact in-memory set of (kind, value) keys that
//!   every observable at intake is checked against.
//! - [`connectors`]: the HTTP request for an intel lookup (VirusTotal, AbuseIPDB, urlscan.io,
//!   MISP, a generic HTTP mapping) and the mapping of the answer to a [`connectors::Verdict`]; the
//!   caller does the HTTP.
//! - [`outbound`]: Slack and Teams webhook payloads, and indicator exports (plain-text
//!   blocklists, STIX 2.1 bundles).
//!
//! Indicator values are normalized with `firebreak_intake::observables::classify`, the function
//! intake uses for observables, so an indicator and an observable of the same thing have the
//! same (kind, value).

#![forbid(unsafe_code)]

pub mod connectors;
pub mod feeds;
pub mod matcher;
pub mod outbound;
