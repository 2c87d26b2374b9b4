//! Indicator feeds: STIX 2.1, MISP and CSV documents to normalized [`Indicator`]s.
//!
//! A feed is read item by item. An item that cannot be used (a value that is not valid for its
//! type, a malformed pattern, a bad date) becomes a [`FeedError`] naming its position, and the
//! rest of the document is kept; only a document that cannot be read at all (not JSON, no CSV
//! header) is an `Err`. Items that are well formed but deliberately not taken (revoked or expired
//! indicators, operators other than equality, network ranges, attribute types that are not
//! observables, MISP attributes without `to_ids` when `ids_only` is set) are counted in
//! [`FeedReport::skipped`].
//!
//! Every value goes through [`normalize_indicator`], which uses
//! `firebreak_intake::observables::classify`, so indicators compare equal to the observables
//! intake extracts. Duplicates (same kind, value and source) collapse into the one with the
//! highest confidence (the first of equals).

mod csv_feed;
mod misp;
pub(crate) mod pattern;
mod stix;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use firebreak_intake::ObservableKind;
use firebreak_intake::observables::classify;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Confidence given to indicators whose feed states none.
pub const DEFAULT_CONFIDENCE: i32 = 50;

/// At most this many [`FeedError`]s are listed; one more entry counts the rest.
pub const MAX_ERRORS: usize = 1000;

/// One normalized indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    /// An observable kind name (`ip`, `domain`, `url`, `email`, `md5`, `sha1`, `sha256`, `cve`,
    /// `filename`, `hostname`, `user`, `other`), as `ObservableKind::as_str` spells it.
    pub kind: String,
    /// Canonical, as `classify` gives it.
    pub value: String,
    /// 0-100.
    pub confidence: i32,
    /// The organization or feed it came from.
    pub source: String,
    pub description: Option<String>,
    /// Not matched after this.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
}

/// The feed formats [`parse_feed`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// A STIX 2.1 bundle, a bare STIX object, or an array of them.
    Stix,
    /// A MISP event (`{"Event": ...}`), a `restSearch` answer, or an array of attributes.
    Misp,
    /// CSV with a header row: `type,value[,confidence][,source][,expiry][,description]`.
    Csv,
}

impl FeedFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedFormat::Stix => "stix",
            FeedFormat::Misp => "misp",
            FeedFormat::Csv => "csv",
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feed format name that is not `stix`, `misp` or `csv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feed format {0:?} (expected stix, misp or csv)")]
pub struct UnknownFeedFormat(pub String);

impl FromStr for FeedFormat {
    type Err = UnknownFeedFormat;

    /// `stix` (also `stix2`, `stix2.1`), `misp`, `csv`; case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stix" | "stix2" | "stix2.1" | "stix-2.1" => Ok(FeedFormat::Stix),
            "misp" => Ok(FeedFormat::Misp),
            "csv" => Ok(FeedFormat::Csv),
            _ => Err(UnknownFeedFormat(s.to_string())),
        }
    }
}

/// What a feed gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedReport {
    /// In the order first seen, duplicates collapsed.
    pub indicators: Vec<Indicator>,
    /// Items that could not be used (at most [`MAX_ERRORS`] plus one summary entry).
    pub errors: Vec<FeedError>,
    /// Well-formed items deliberately not taken (revoked, expired, unsupported operator, type or
    /// network range, `to_ids` off with `ids_only`, deleted).
    pub skipped: usize,
    /// Indicators that repeated an earlier (kind, value, source).
    pub duplicates: usize,
}

/// One item of a feed that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedError {
    /// Where: `line 7` (CSV), `objects[3]` (STIX), `Event.Attribute[12]` (MISP).
    pub position: String,
    pub message: String,
}

/// How to read a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedOptions {
    /// The source of indicators whose feed names no organization.
    pub default_source: String,
    /// Indicators whose `valid_until` is at or before this are skipped.
    pub now: OffsetDateTime,
    /// MISP: take only attributes with `to_ids` set.
    pub ids_only: bool,
    /// Confidence of indicators whose feed states none (0-100).
    pub default_confidence: i32,
}

impl FeedOptions {
    /// `ids_only` off, confidence [`DEFAULT_CONFIDENCE`].
    pub fn new(default_source: impl Into<String>, now: OffsetDateTime) -> Self {
        Self {
            default_source: default_source.into(),
            now,
            ids_only: false,
            default_confidence: DEFAULT_CONFIDENCE,
        }
    }
}

/// Reads a feed with `ids_only` off and confidence [`DEFAULT_CONFIDENCE`] where none is stated.
pub fn parse_feed(
    format: FeedFormat,
    bytes: &[u8],
    default_source: &str,
    now: OffsetDateTime,
) -> Result<FeedReport, String> {
    parse_feed_with(format, bytes, &FeedOptions::new(default_source, now))
}

/// Reads a feed. `Err` only when the document as a whole is unreadable.
pub fn parse_feed_with(
    format: FeedFormat,
    bytes: &[u8],
    options: &FeedOptions,
) -> Result<FeedReport, String> {
    let mut out = Collector::new(options);
    match format {
        FeedFormat::Stix => stix::parse(bytes, &mut out)?,
        FeedFormat::Misp => misp::parse(bytes, &mut out)?,
        FeedFormat::Csv => csv_feed::parse(bytes, &mut out)?,
    }
    Ok(out.finish())
}

/// The observable kind a feed's type name stands for: the observable kind names themselves and
/// common spellings from feeds (`ipv4`, `ip-dst`, `domain-name`, `fqdn`, `sha-256`, `hash`...).
/// `hash` is given as [`ObservableKind::Md5`] and [`normalize_indicator`] then picks the hash
/// kind by length.
pub fn kind_from_name(name: &str) -> Option<ObservableKind> {
    let lower = name.trim().to_ascii_lowercase();
    if let Some(kind) = ObservableKind::parse(&lower) {
        return Some(kind);
    }
    Some(match lower.as_str() {
        "ipv4" | "ipv6" | "ip-addr" | "ip-address" | "ipv4-addr" | "ipv6-addr" | "ip-src"
        | "ip-dst" | "address" => ObservableKind::Ip,
        "domain-name" | "fqdn" => ObservableKind::Domain,
        "uri" | "link" => ObservableKind::Url,
        "email-addr" | "email-address" | "e-mail" | "mail" | "email-src" | "email-dst" => {
            ObservableKind::Email
        }
        "sha-1" => ObservableKind::Sha1,
        "sha-256" => ObservableKind::Sha256,
        "md-5" | "hash" | "filehash" | "file-hash" => ObservableKind::Md5,
        "vulnerability" | "cve-id" => ObservableKind::Cve,
        "file" | "file-name" | "file_name" => ObservableKind::Filename,
        "host" | "host-name" | "host_name" => ObservableKind::Hostname,
        "username" | "account" => ObservableKind::User,
        _ => return None,
    })
}

/// Normalizes one indicator value of a kind (a name [`kind_from_name`] knows) with
/// `firebreak_intake::observables::classify`, giving the (kind, value) an observable of the
/// same thing has. The kind may change the way `classify` changes it (an IP given as a domain
/// is an `ip`). An explicit hash kind must match the value's length; `hash` takes any. A
/// single-address CIDR (`/32`, `/128`) is taken as its address; a wider network is refused.
pub fn normalize_indicator(kind: &str, value: &str) -> Result<(String, String), String> {
    let hint = kind_from_name(kind).ok_or_else(|| format!("unknown type {:?}", kind.trim()))?;
    let explicit_hash = matches!(
        kind.trim().to_ascii_lowercase().as_str(),
        "md5" | "md-5" | "sha1" | "sha-1" | "sha256" | "sha-256"
    );
    match normalize(hint, value, explicit_hash) {
        Norm::Ok(kind, value) => Ok((kind, value)),
        Norm::Range => Err(format!(
            "{:?} is a network range; only single addresses are indicators",
            value.trim()
        )),
        Norm::Invalid(message) => Err(message),
    }
}

/// What [`normalize`] made of a value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Norm {
    Ok(String, String),
    /// A network wider than one address: skipped, not an error.
    Range,
    Invalid(String),
}

/// `strict_hash`: a hash kind hint must match the value's length.
pub(crate) fn normalize(hint: ObservableKind, value: &str, strict_hash: bool) -> Norm {
    let raw = value.trim();
    let mut v = raw;
    if hint == ObservableKind::Ip
        && let Some((addr, prefix)) = raw.split_once('/')
    {
        let bits: u8 = if addr.contains(':') { 128 } else { 32 };
        match prefix.trim().parse::<u8>() {
            Ok(p) if p == bits => v = addr.trim(),
            Ok(p) if p < bits && classify(Some(hint), addr).is_some() => return Norm::Range,
            _ => {}
        }
    }
    let Some(obs) = classify(Some(hint), v) else {
        return Norm::Invalid(format!("{raw:?} is not a valid {}", hint.as_str()));
    };
    let is_hash = |k| {
        matches!(
            k,
            ObservableKind::Md5 | ObservableKind::Sha1 | ObservableKind::Sha256
        )
    };
    if strict_hash && is_hash(hint) && obs.kind != hint {
        return Norm::Invalid(format!(
            "{raw:?} is not a valid {} (it has the length of a {})",
            hint.as_str(),
            obs.kind.as_str()
        ));
    }
    Norm::Ok(obs.kind.as_str().to_string(), obs.value)
}

pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

/// Non-empty trimmed text, or `None`.
pub(crate) fn text(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Gathers indicators, errors and counts while a feed is read.
pub(crate) struct Collector<'a> {
    pub(crate) options: &'a FeedOptions,
    indicators: Vec<Indicator>,
    seen: HashMap<(String, String, String), usize>,
    errors: Vec<FeedError>,
    more_errors: usize,
    skipped: usize,
    duplicates: usize,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(options: &'a FeedOptions) -> Self {
        Self {
            options,
            indicators: Vec::new(),
            seen: HashMap::new(),
            errors: Vec::new(),
            more_errors: 0,
            skipped: 0,
            duplicates: 0,
        }
    }

    pub(crate) fn error(&mut self, position: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(FeedError {
                position: position.into(),
                message: message.into(),
            });
        } else {
            self.more_errors += 1;
        }
    }

    pub(crate) fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Whether an indicator valid until `t` is no longer valid.
    pub(crate) fn expired(&self, t: Option<OffsetDateTime>) -> bool {
        t.is_some_and(|t| t <= self.options.now)
    }

    /// Normalizes and adds one value; errors and skips are recorded at `position`.
    pub(crate) fn add_value(
        &mut self,
        position: &str,
        hint: ObservableKind,
        value: &str,
        meta: &Meta,
        context: &str,
    ) {
        match normalize(hint, value, true) {
            Norm::Ok(kind, value) => self.add(Indicator {
                kind,
                value,
                confidence: meta.confidence,
                source: meta.source.clone(),
                description: meta.description.clone(),
                valid_until: meta.valid_until,
            }),
            Norm::Range => self.skip(),
            Norm::Invalid(message) => self.error(position, format!("{message}{context}")),
        }
    }

    pub(crate) fn add(&mut self, indicator: Indicator) {
        let key = (
            indicator.kind.clone(),
            indicator.value.clone(),
            indicator.source.clone(),
        );
        if let Some(&i) = self.seen.get(&key) {
            self.duplicates += 1;
            if indicator.confidence > self.indicators[i].confidence {
                self.indicators[i] = indicator;
            }
        } else {
            self.seen.insert(key, self.indicators.len());
            self.indicators.push(indicator);
        }
    }

    fn finish(mut self) -> FeedReport {
        if self.more_errors > 0 {
            self.errors.push(FeedError {
                position: "(more)".to_string(),
                message: format!("{} more errors not listed", self.more_errors),
            });
        }
        FeedReport {
            indicators: self.indicators,
            errors: self.errors,
            skipped: self.skipped,
            duplicates: self.duplicates,
        }
    }
}

/// What the indicators of one feed item share.
pub(crate) struct Meta {
    pub(crate) confidence: i32,
    pub(crate) source: String,
    pub(crate) description: Option<String>,
    pub(crate) valid_until: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_format_parses_its_names() {
        assert_eq!("stix".parse(), Ok(FeedFormat::Stix));
        assert_eq!(" MISP ".parse(), Ok(FeedFormat::Misp));
        assert_eq!("csv".parse(), Ok(FeedFormat::Csv));
        assert_eq!("stix2.1".parse(), Ok(FeedFormat::Stix));
        let err = "openioc".parse::<FeedFormat>().unwrap_err();
        assert!(err.to_string().contains("openioc"), "{err}");
        for f in [FeedFormat::Stix, FeedFormat::Misp, FeedFormat::Csv] {
            assert_eq!(f.as_str().parse(), Ok(f));
        }
    }

    #[test]
    fn normalize_indicator_uses_the_intake_canonical_forms() {
        let n = normalize_indicator;
        assert_eq!(
            n("ip", "010.1.1.1 "),
            Err("\"010.1.1.1\" is not a valid ip".into())
        );
        assert_eq!(
            n("ipv6", "2001:DB8:0:0::1"),
            Ok(("ip".into(), "2001:db8::1".into()))
        );
        assert_eq!(
            n("domain", "Evil.Example.COM."),
            Ok(("domain".into(), "evil.example.com".into()))
        );
        assert_eq!(n("domain", "8.8.8.8"), Ok(("ip".into(), "8.8.8.8".into())));
        assert_eq!(
            n("domain", "evil[.]example[.]com"),
            Ok(("domain".into(), "evil.example.com".into()))
        );
        assert_eq!(
            n("md5", "D41D8CD98F00B204E9800998ECF8427E"),
            Ok(("md5".into(), "d41d8cd98f00b204e9800998ecf8427e".into()))
        );
        assert!(n("md5", &"a".repeat(64)).unwrap_err().contains("sha256"));
        assert_eq!(
            n("hash", &"A".repeat(64)),
            Ok(("sha256".into(), "a".repeat(64)))
        );
        assert_eq!(
            n("cve", "cve-2021-44228"),
            Ok(("cve".into(), "CVE-2021-44228".into()))
        );
        assert_eq!(
            n("ip", "192.0.2.7/32"),
            Ok(("ip".into(), "192.0.2.7".into()))
        );
        assert!(
            n("ip", "192.0.2.0/24")
                .unwrap_err()
                .contains("network range")
        );
        assert_eq!(
            n("ip", "2001:db8::1/128"),
            Ok(("ip".into(), "2001:db8::1".into()))
        );
        assert!(n("ip", "-").is_err());
        assert!(
            n("ip", "192.0.2.0/33")
                .unwrap_err()
                .contains("not a valid ip")
        );
        assert!(
            n("ip", "300.0.2.0/24")
                .unwrap_err()
                .contains("not a valid ip")
        );
        assert!(
            n("ip", "2001:db8::/32")
                .unwrap_err()
                .contains("network range")
        );
        assert_eq!(n("yara", "rule x {}"), Err("unknown type \"yara\"".into()));
    }

    #[test]
    fn duplicates_keep_the_highest_confidence() {
        let options = FeedOptions::new("feed", OffsetDateTime::UNIX_EPOCH);
        let mut c = Collector::new(&options);
        for (confidence, description) in [(40, "a"), (80, "b"), (80, "c"), (10, "d")] {
            c.add(Indicator {
                kind: "ip".into(),
                value: "192.0.2.1".into(),
                confidence,
                source: "feed".into(),
                description: Some(description.into()),
                valid_until: None,
            });
        }
        let report = c.finish();
        assert_eq!(report.indicators.len(), 1);
        assert_eq!(report.indicators[0].confidence, 80);
        assert_eq!(report.indicators[0].description.as_deref(), Some("b"));
        assert_eq!(report.duplicates, 3);
    }

    #[test]
    fn errors_beyond_the_cap_are_counted() {
        let options = FeedOptions::new("feed", OffsetDateTime::UNIX_EPOCH);
        let mut c = Collector::new(&options);
        for i in 0..MAX_ERRORS + 5 {
            c.error(format!("line {i}"), "bad");
        }
        let report = c.finish();
        assert_eq!(report.errors.len(), MAX_ERRORS + 1);
        assert_eq!(
            report.errors[MAX_ERRORS].message,
            "5 more errors not listed"
        );
    }
}
