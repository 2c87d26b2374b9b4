//! Suricata EVE JSON (`eve.json`, one JSON object per line), as documented in Suricata's
//! "Eve JSON Format" (<https://docs.suricata.io/en/latest/output/eve/eve-json-format.html>).
//!
//! This is the hot path of bulk intake, so records are read with typed, borrowing
//! deserialization (strings borrow from the line unless they hold escapes), and lines whose
//! `event_type` is not wanted are skipped before the JSON is parsed at all: see
//! [`parse_line`].

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::jsonutil::{
    Scalar, ScalarList, Text, domain_observable, hash_observable, ip_observable, parse_timestamp,
    push_observable, push_tag,
};
use crate::{
    Level, NormalizedEvent, Observable, ObservableKind, ParseError, ParseResult, clean_title,
};

/// Which EVE `event_type`s become events; the others are skipped (`Ok(vec![])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EveTypes {
    types: Vec<String>,
    all: bool,
}

impl Default for EveTypes {
    /// `alert` and `anomaly`: what a person should look at. Protocol records (`flow`, `dns`,
    /// `tls`, `http`, `fileinfo`, `stats`...) are context, skipped unless named.
    fn default() -> Self {
        Self {
            types: vec!["alert".into(), "anomaly".into()],
            all: false,
        }
    }
}

/// The `event_type`s Suricata (7 and 8) writes to EVE.
pub const KNOWN_TYPES: &[&str] = &[
    "alert",
    "anomaly",
    "arp",
    "bittorrent_dht",
    "dcerpc",
    "dhcp",
    "dnp3",
    "dns",
    "doh2",
    "drop",
    "enip",
    "fileinfo",
    "flow",
    "frame",
    "ftp",
    "ftp_data",
    "http",
    "http2",
    "ike",
    "ikev2",
    "krb5",
    "ldap",
    "mdns",
    "modbus",
    "mqtt",
    "netflow",
    "nfs",
    "pgsql",
    "pop3",
    "quic",
    "rdp",
    "rfb",
    "sip",
    "smb",
    "smtp",
    "snmp",
    "ssh",
    "stats",
    "tftp",
    "tls",
    "websocket",
];

impl EveTypes {
    /// A comma-separated list of event types (`alert,anomaly,fileinfo`), or `*` for all.
    /// Names are case-insensitive; each is letters, digits and `_` (as Suricata names them).
    pub fn parse(list: &str) -> Result<EveTypes, ParseError> {
        let mut types: Vec<String> = Vec::new();
        let mut all = false;
        for part in list.split(',') {
            let t = part.trim().to_ascii_lowercase();
            if t.is_empty() {
                continue;
            }
            if t == "*" || t == "all" {
                all = true;
                continue;
            }
            if t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ParseError::new(
                    "event_types",
                    format!(
                        "`{}` is not an EVE event type",
                        crate::jsonutil::truncate_chars(part.trim(), 64)
                    ),
                ));
            }
            if !KNOWN_TYPES.contains(&t.as_str()) {
                return Err(ParseError::new(
                    "event_types",
                    format!(
                        "`{t}` is not an event type Suricata writes; known: {}",
                        KNOWN_TYPES.join(", ")
                    ),
                ));
            }
            if !types.contains(&t) {
                types.push(t);
            }
        }
        if types.is_empty() && !all {
            return Err(ParseError::new("event_types", "no event type named"));
        }
        Ok(EveTypes { types, all })
    }

    /// Every event type.
    pub fn all() -> EveTypes {
        EveTypes {
            types: Vec::new(),
            all: true,
        }
    }

    /// Whether records of this `event_type` become events.
    pub fn contains(&self, event_type: &str) -> bool {
        self.all
            || self
                .types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(event_type))
    }

    /// The named types (empty when all are wanted).
    pub fn names(&self) -> &[String] {
        &self.types
    }
}

#[derive(Deserialize)]
struct Eve<'a> {
    #[serde(borrow, default)]
    timestamp: Text<'a>,
    #[serde(borrow, default)]
    flow_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    in_iface: Text<'a>,
    #[serde(borrow, default)]
    event_type: Text<'a>,
    #[serde(borrow, default)]
    src_ip: Text<'a>,
    #[serde(borrow, default)]
    src_port: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dest_ip: Text<'a>,
    #[serde(borrow, default)]
    dest_port: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    proto: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    app_proto: Text<'a>,
    #[serde(borrow, default)]
    host: Text<'a>,
    #[serde(borrow, default)]
    alert: Option<Alert<'a>>,
    #[serde(borrow, default)]
    anomaly: Option<Anomaly<'a>>,
    #[serde(borrow, default)]
    http: Option<Http<'a>>,
    #[serde(borrow, default)]
    tls: Option<Tls<'a>>,
    #[serde(borrow, default)]
    dns: Option<Dns<'a>>,
    #[serde(borrow, default)]
    fileinfo: Option<FileInfo<'a>>,
    #[serde(borrow, default)]
    files: Option<Vec<FileInfo<'a>>>,
}

#[derive(Deserialize)]
struct Alert<'a> {
    #[serde(borrow, default)]
    action: Text<'a>,
    #[serde(borrow, default)]
    gid: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    signature_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    rev: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    signature: Text<'a>,
    #[serde(borrow, default)]
    category: Text<'a>,
    #[serde(borrow, default)]
    severity: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    metadata: Option<AlertMetadata<'a>>,
}

/// The rule's `metadata` keyword, as EVE logs it: each key maps to an array of strings.
#[derive(Deserialize)]
struct AlertMetadata<'a> {
    #[serde(borrow, default)]
    signature_severity: ScalarList<'a>,
    #[serde(borrow, default)]
    mitre_technique_id: ScalarList<'a>,
    #[serde(borrow, default)]
    mitre_tactic_id: ScalarList<'a>,
    #[serde(borrow, default)]
    attack_target: ScalarList<'a>,
}

#[derive(Deserialize)]
struct Anomaly<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default)]
    event: Text<'a>,
    #[serde(borrow, default)]
    layer: Text<'a>,
    #[serde(borrow, default)]
    code: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct Http<'a> {
    #[serde(borrow, default)]
    hostname: Text<'a>,
    #[serde(borrow, default)]
    url: Text<'a>,
    #[serde(borrow, default)]
    http_port: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    http_method: Text<'a>,
    #[serde(borrow, default)]
    http_user_agent: Text<'a>,
    #[serde(borrow, default)]
    status: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct Tls<'a> {
    #[serde(borrow, default)]
    sni: Text<'a>,
}

#[derive(Deserialize)]
struct DnsQuery<'a> {
    #[serde(borrow, default)]
    rrname: Text<'a>,
}

/// One answer record (`answers: [{rrname, rrtype, ttl, rdata}]`).
#[derive(Deserialize)]
struct DnsAnswer<'a> {
    #[serde(borrow, default)]
    rrname: Text<'a>,
    #[serde(borrow, default)]
    rrtype: Text<'a>,
    #[serde(borrow, default)]
    rdata: Text<'a>,
}

/// DNS as EVE logs it in its versions: v1 answer records put `rrname`, `rrtype` and `rdata` at
/// the top, v2 puts `rrname` at the top and the answers in `answers` (detailed) or `grouped`
/// (by record type), alerts carry `query: [{rrname}]`, v3 (Suricata 8) `queries: [{rrname}]`
/// and `answers`.
#[derive(Deserialize)]
struct Dns<'a> {
    #[serde(borrow, default)]
    rrname: Text<'a>,
    #[serde(borrow, default)]
    rrtype: Text<'a>,
    #[serde(borrow, default)]
    rdata: Text<'a>,
    #[serde(borrow, default)]
    query: Option<Vec<DnsQuery<'a>>>,
    #[serde(borrow, default)]
    queries: Option<Vec<DnsQuery<'a>>>,
    #[serde(borrow, default)]
    answers: Option<Vec<DnsAnswer<'a>>>,
    #[serde(borrow, default)]
    grouped: Option<std::collections::BTreeMap<String, ScalarList<'a>>>,
    /// Alerts of Suricata 5-7 log the response as `answer: {rrname, answers, grouped...}`.
    #[serde(borrow, default)]
    answer: Option<Box<Dns<'a>>>,
}

impl<'a> Dns<'a> {
    /// (record type, data) of every answer logged, in order, this record's and its
    /// `answer`'s; the names answers are about go to `names`.
    fn records(&self, names: &mut Vec<Cow<'a, str>>, out: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>) {
        if let (Some(t), Some(d)) = (&self.rrtype.0, &self.rdata.0) {
            out.push((t.clone(), d.clone()));
        }
        for a in self.answers.iter().flatten() {
            if let (Some(t), Some(d)) = (&a.rrtype.0, &a.rdata.0) {
                out.push((t.clone(), d.clone()));
            }
            names.extend(a.rrname.0.clone());
        }
        for (rrtype, data) in self.grouped.iter().flatten() {
            out.extend(
                data.texts()
                    .into_iter()
                    .map(|d| (Cow::Owned(rrtype.clone()), Cow::Owned(d))),
            );
        }
        if let Some(inner) = &self.answer {
            names.extend(inner.rrname.0.clone());
            inner.records(names, out);
        }
    }
}

/// The observable an answer's `rdata` names: an address for `A`/`AAAA`, a name for the
/// records whose data is a domain name (`CNAME`, `NS`, `PTR`, `MX`, `DNAME`); the other
/// types (`TXT`, `SOA`...) carry no one observable.
fn rdata_observable(rrtype: &str, rdata: &str) -> Option<Observable> {
    match rrtype.to_ascii_uppercase().as_str() {
        "A" | "AAAA" => ip_observable(rdata),
        // older versions write MX data as `preference name`
        "CNAME" | "NS" | "PTR" | "MX" | "DNAME" => {
            domain_observable(rdata.split_whitespace().last()?)
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct FileInfo<'a> {
    #[serde(borrow, default)]
    filename: Text<'a>,
    #[serde(borrow, default)]
    md5: Text<'a>,
    #[serde(borrow, default)]
    sha1: Text<'a>,
    #[serde(borrow, default)]
    sha256: Text<'a>,
}

/// The compact key every EVE writer (Suricata, and the shippers that re-serialize it) emits.
const EVENT_TYPE_KEY: &str = "\"event_type\":\"";

/// The `event_type` of a compact EVE line, found without parsing the JSON: `None` when the
/// key is not there in compact form (then the line is parsed in full).
fn peek_event_type(line: &str) -> Option<&str> {
    let start = line.find(EVENT_TYPE_KEY)? + EVENT_TYPE_KEY.len();
    let rest = line.get(start..)?;
    let end = rest.find('"')?;
    let value = rest.get(..end)?;
    // An escape inside the value: let the parser decide.
    (!value.contains('\\')).then_some(value)
}

/// One EVE line to events. Records whose `event_type` is not in `types`, and blank lines,
/// give `Ok(vec![])`.
///
/// Skipped types are recognized before the JSON is parsed when the line has the compact
/// `"event_type":"…"` Suricata writes, so a malformed line of a skipped type is skipped rather
/// than refused. `raw` is the line exactly as given.
pub fn parse_line(line: &str, types: &EveTypes) -> ParseResult {
    if line.trim().is_empty() {
        return Ok(Vec::new());
    }
    if let Some(t) = peek_event_type(line)
        && !types.contains(t)
    {
        return Ok(Vec::new());
    }
    if !line.trim_start().starts_with('{') {
        return Err(ParseError::new("line", "not a JSON object"));
    }
    let eve: Eve<'_> = serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| ParseError::new("line", format!("not an EVE JSON record: {e}")))?;
    let event_type = match eve.event_type.as_deref() {
        Some(t) if !t.is_empty() => t,
        _ => return Err(ParseError::new("event_type", "missing")),
    };
    if !types.contains(event_type) {
        return Ok(Vec::new());
    }
    Ok(vec![to_event(&eve, event_type, line)])
}

fn to_event(eve: &Eve<'_>, event_type: &str, line: &str) -> NormalizedEvent {
    let mut ev = NormalizedEvent::new("sensor", "suricata", "");
    ev.raw = line.to_string();
    ev.occurred_at = eve.timestamp.as_deref().and_then(parse_timestamp);
    ev.host = nonempty(eve.host.as_deref());
    ev.source_ref = eve.flow_id.as_ref().and_then(Scalar::non_empty);

    let mut fields = Map::new();
    if let Some(t) = eve
        .timestamp
        .as_deref()
        .filter(|_| ev.occurred_at.is_none())
    {
        parse_warning(
            &mut fields,
            format!(
                "timestamp: {:?} is not an ISO 8601 time; the time it was received is used",
                crate::jsonutil::truncate_chars(t, 64)
            ),
        );
    }
    let proto = eve.proto.as_ref().and_then(Scalar::non_empty);
    put_str(&mut fields, "event_type", Some(event_type));
    // each address parsed once, for its field and its observable
    let src_ip = eve.src_ip.as_deref().map(|s| (s, ip_observable(s)));
    let dest_ip = eve.dest_ip.as_deref().map(|s| (s, ip_observable(s)));
    put_ip(&mut fields, "src_ip", src_ip.as_ref());
    put_scalar(&mut fields, "src_port", eve.src_port.as_ref());
    put_ip(&mut fields, "dest_ip", dest_ip.as_ref());
    put_scalar(&mut fields, "dest_port", eve.dest_port.as_ref());
    put_str(&mut fields, "proto", proto.as_deref());
    put_str(&mut fields, "app_proto", eve.app_proto.as_deref());
    put_scalar(&mut fields, "flow_id", eve.flow_id.as_ref());
    put_str(&mut fields, "in_iface", eve.in_iface.as_deref());

    let mut obs: Vec<Observable> = Vec::new();
    if let Some((_, ip)) = src_ip {
        push_observable(&mut obs, ip);
    }
    if let Some((_, ip)) = dest_ip {
        push_observable(&mut obs, ip);
    }
    let (http_host, http_url) = http_observables(eve, &mut obs, &mut fields);
    if let Some(sni) = eve.tls.as_ref().and_then(|t| t.sni.as_deref()) {
        push_observable(&mut obs, domain_observable(sni));
        put_str(&mut fields, "tls_sni", Some(sni));
    }
    let mut rrnames: Vec<&str> = Vec::new();
    if let Some(dns) = &eve.dns {
        rrnames.extend(dns.rrname.as_deref());
        for q in dns.query.iter().chain(dns.queries.iter()).flatten() {
            rrnames.extend(q.rrname.as_deref());
        }
    }
    for name in &rrnames {
        push_observable(&mut obs, domain_observable(name));
    }
    if let Some(first) = rrnames.first() {
        put_str(&mut fields, "dns_rrname", Some(first));
    }
    if let Some(dns) = &eve.dns {
        let mut names = Vec::new();
        let mut records = Vec::new();
        dns.records(&mut names, &mut records);
        // the names along a CNAME chain were asked about too
        for name in names {
            push_observable(&mut obs, domain_observable(&name));
        }
        let mut answers: Vec<String> = Vec::new();
        for (rrtype, rdata) in records {
            if let Some(o) = rdata_observable(&rrtype, &rdata) {
                if !answers.contains(&o.value) {
                    answers.push(o.value.clone());
                }
                push_observable(&mut obs, Some(o));
            }
        }
        put_list(&mut fields, "dns_answers", answers);
    }
    let mut filenames: Vec<&str> = Vec::new();
    for f in eve.fileinfo.iter().chain(eve.files.iter().flatten()) {
        push_observable(
            &mut obs,
            f.sha256
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Sha256, h)),
        );
        push_observable(
            &mut obs,
            f.md5
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Md5, h)),
        );
        push_observable(
            &mut obs,
            f.sha1
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Sha1, h)),
        );
        if let Some(name) = nonempty(f.filename.as_deref()) {
            push_observable(
                &mut obs,
                Some(Observable::new(ObservableKind::Filename, name)),
            );
            filenames.extend(f.filename.as_deref());
        }
    }
    if let Some(first) = filenames.first() {
        put_str(&mut fields, "filename", Some(first));
    }

    let flow = flow_text(eve, proto.as_deref());
    match (event_type, &eve.alert, &eve.anomaly) {
        ("alert", Some(alert), _) => {
            alert_event(&mut ev, alert, &mut fields, &flow, eve.app_proto.as_deref());
            // the lines so far are the flow, category, protocol and action: their observables
            // are `obs`; the URL or host line after them is the client's text, looked through
            ev.description_scan_from = ev.description.as_ref().map_or(0, String::len);
            if let Some(url) = &http_url {
                append_line(&mut ev.description, &format!("URL: {url}"));
            } else if let Some(host) = &http_host {
                append_line(&mut ev.description, &format!("HTTP host: {host}"));
            }
        }
        ("anomaly", _, Some(anomaly)) => {
            anomaly_event(&mut ev, anomaly, &mut fields, &flow);
            // the flow and Suricata's own names for the anomaly
            ev.description_scan_from = ev.description.as_ref().map_or(0, String::len);
        }
        _ => {
            // Another record type, asked for by name: a low-severity event describing it.
            let what = http_url
                .as_deref()
                .or(http_host.as_deref())
                .or(eve.tls.as_ref().and_then(|t| t.sni.as_deref()))
                .or(rrnames.first().copied())
                .or(filenames.first().copied());
            ev.title = clean_title(&match what {
                Some(w) => format!("Suricata {event_type}: {w}"),
                None => format!("Suricata {event_type}: {flow}"),
            });
            ev.description = Some(flow.clone());
            ev.description_scan_from = flow.len();
            ev.severity = Level::Low;
            ev.rule_id = Some(format!("eve:{event_type}"));
        }
    }
    ev.observables = obs;
    ev.fields = fields;
    ev
}

fn alert_event(
    ev: &mut NormalizedEvent,
    alert: &Alert<'_>,
    fields: &mut Map<String, Value>,
    flow: &str,
    app_proto: Option<&str>,
) {
    let sid = alert.signature_id.as_ref().and_then(Scalar::non_empty);
    ev.rule_id = sid.clone();
    ev.title = match alert.signature.as_deref() {
        Some(s) if !s.trim().is_empty() => clean_title(s),
        _ => clean_title(&format!(
            "Suricata alert {}",
            sid.as_deref().unwrap_or("(no signature)")
        )),
    };
    let sev_num = alert.severity.as_ref().and_then(Scalar::as_i64);
    ev.original_severity = alert.severity.as_ref().and_then(Scalar::non_empty);
    // Suricata's severity is the classification's priority: 1 (highest) to 255
    let mut level = match sev_num {
        Some(1) => Level::High,
        Some(2) => Level::Medium,
        Some(3..=255) => Level::Low,
        None => Level::Medium,
        Some(n) => {
            parse_warning(
                fields,
                format!(
                    "alert.severity: {n} is not a Suricata priority (1 to 255); read as medium"
                ),
            );
            Level::Medium
        }
    };
    let mut sig_sev: Vec<String> = Vec::new();
    if let Some(md) = &alert.metadata {
        sig_sev = md.signature_severity.texts();
        for s in &sig_sev {
            let raised = match s.to_ascii_lowercase().as_str() {
                "critical" => Some(Level::Critical),
                "major" => Some(Level::High),
                _ => None,
            };
            if let Some(r) = raised {
                level = level.max(r);
            }
        }
        let techniques = md.mitre_technique_id.texts();
        for t in &techniques {
            push_tag(&mut ev.tags, t);
        }
        put_list(fields, "mitre_technique", techniques);
        put_list(fields, "mitre_tactic", md.mitre_tactic_id.texts());
        put_list(fields, "attack_target", md.attack_target.texts());
    }
    ev.severity = level;
    if let Some(first) = sig_sev.first() {
        put_str(fields, "signature_severity", Some(first));
    }
    put_str(fields, "category", alert.category.as_deref());
    put_scalar(fields, "signature_id", alert.signature_id.as_ref());
    put_scalar(fields, "gid", alert.gid.as_ref());
    put_scalar(fields, "rev", alert.rev.as_ref());
    put_str(fields, "action", alert.action.as_deref());

    let mut desc = String::new();
    if let Some(c) = nonempty(alert.category.as_deref()) {
        desc.push_str(&format!("Category: {c}\n"));
    }
    desc.push_str(&format!("Flow: {flow}"));
    if let Some(a) = nonempty(app_proto) {
        desc.push_str(&format!("\nApp protocol: {a}"));
    }
    if let Some(a) = nonempty(alert.action.as_deref()) {
        desc.push_str(&format!("\nAction: {a}"));
    }
    ev.description = Some(desc);
}

fn anomaly_event(
    ev: &mut NormalizedEvent,
    anomaly: &Anomaly<'_>,
    fields: &mut Map<String, Value>,
    flow: &str,
) {
    let name = nonempty(anomaly.event.as_deref())
        .or_else(|| {
            anomaly
                .code
                .as_ref()
                .and_then(Scalar::non_empty)
                .map(|c| format!("{} code {c}", anomaly.kind.as_deref().unwrap_or("unknown")))
        })
        .or_else(|| nonempty(anomaly.kind.as_deref()))
        .unwrap_or_else(|| "unknown".to_string());
    ev.title = clean_title(&format!("Suricata anomaly: {name}"));
    ev.rule_id = Some(format!("anomaly:{name}"));
    ev.severity = Level::Low;
    put_str(fields, "anomaly_type", anomaly.kind.as_deref());
    put_str(fields, "anomaly_event", anomaly.event.as_deref());
    put_str(fields, "anomaly_layer", anomaly.layer.as_deref());
    put_scalar(fields, "anomaly_code", anomaly.code.as_ref());
    let mut desc = format!("Flow: {flow}");
    if let Some(k) = nonempty(anomaly.kind.as_deref()) {
        desc.push_str(&format!("\nAnomaly type: {k}"));
    }
    if let Some(l) = nonempty(anomaly.layer.as_deref()) {
        desc.push_str(&format!("\nLayer: {l}"));
    }
    ev.description = Some(desc);
}

/// HTTP observables: the host name (a domain, or an IP) and, with it, the URL.
fn http_observables(
    eve: &Eve<'_>,
    obs: &mut Vec<Observable>,
    fields: &mut Map<String, Value>,
) -> (Option<String>, Option<String>) {
    let Some(http) = &eve.http else {
        return (None, None);
    };
    let host = nonempty(http.hostname.as_deref());
    put_str(fields, "http_hostname", host.as_deref());
    put_str(fields, "http_url", http.url.as_deref());
    put_str(fields, "http_method", http.http_method.as_deref());
    put_str(fields, "http_user_agent", http.http_user_agent.as_deref());
    put_scalar(fields, "http_status", http.status.as_ref());
    let Some(host) = host else {
        return (None, None);
    };
    push_observable(obs, domain_observable(&host));
    let url = http
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let lower = u.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                u.to_string()
            } else {
                // Suricata sees HTTP in clear text: the scheme is http.
                let port = http
                    .http_port
                    .as_ref()
                    .and_then(Scalar::as_i64)
                    .filter(|p| *p != 80)
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default();
                let sep = if u.starts_with('/') { "" } else { "/" };
                format!("http://{host}{port}{sep}{u}")
            }
        });
    if let Some(u) = &url
        && !u.contains(char::is_whitespace)
    {
        push_observable(obs, Some(Observable::new(ObservableKind::Url, u.clone())));
    }
    (Some(host), url)
}

/// `TCP 192.0.2.1:1234 -> 198.51.100.2:80`, with what the record has.
fn flow_text(eve: &Eve<'_>, proto: Option<&str>) -> String {
    let end = |ip: Option<&str>, port: Option<&Scalar<'_>>| {
        let ip = ip.unwrap_or("?");
        let bracketed = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        match port.and_then(Scalar::non_empty) {
            Some(p) => format!("{bracketed}:{p}"),
            None => bracketed,
        }
    };
    let mut s = String::new();
    if let Some(p) = proto {
        s.push_str(p);
        s.push(' ');
    }
    s.push_str(&end(eve.src_ip.as_deref(), eve.src_port.as_ref()));
    s.push_str(" -> ");
    s.push_str(&end(eve.dest_ip.as_deref(), eve.dest_port.as_ref()));
    s
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn put_str(fields: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
        fields.insert(key.to_string(), Value::String(v.to_string()));
    }
}

/// An IP address in its canonical text form (what observables use), or as sent when it is
/// not one.
fn put_ip(fields: &mut Map<String, Value>, key: &str, v: Option<&(&str, Option<Observable>)>) {
    if let Some((text, ip)) = v {
        put_str(
            fields,
            key,
            Some(ip.as_ref().map_or(*text, |o| o.value.as_str())),
        );
    }
}

fn put_scalar(fields: &mut Map<String, Value>, key: &str, v: Option<&Scalar<'_>>) {
    if let Some(v) = v {
        let j = v.to_json_number_if_int();
        if !j.is_null() {
            fields.insert(key.to_string(), j);
        }
    }
}

fn put_list(fields: &mut Map<String, Value>, key: &str, v: Vec<String>) {
    if !v.is_empty() {
        fields.insert(
            key.to_string(),
            Value::Array(v.into_iter().map(Value::String).collect()),
        );
    }
}

fn append_line(desc: &mut Option<String>, line: &str) {
    match desc {
        Some(d) => {
            d.push('\n');
            d.push_str(line);
        }
        None => *desc = Some(line.to_string()),
    }
}

/// Notes a value the record carried but that could not be used as given, in
/// `fields.parse_warnings` (the event goes in; an analyst sees what was off).
fn parse_warning(fields: &mut Map<String, Value>, warning: String) {
    match fields
        .entry("parse_warnings")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(list) => list.push(Value::String(warning)),
        other => *other = Value::Array(vec![Value::String(warning)]),
    }
}
