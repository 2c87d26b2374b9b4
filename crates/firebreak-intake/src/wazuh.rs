//! Wazuh alerts, one JSON object per line, as wazuh-manager writes them to
//! `/var/ossec/logs/alerts/alerts.json` (and as the Wazuh integrations post them).
//!
//! Read with typed, borrowing deserialization like EVE. Wazuh 4 puts decoded fields under
//! `data`; older managers (3.x) put `srcip`, `srcuser`... at the top: both are read.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jsonutil::{
    Scalar, ScalarList, Text, domain_observable, hash_observable, ip_observable, parse_timestamp,
    push_observable, push_tag, url_observable,
};
use crate::{
    Level, NormalizedEvent, Observable, ObservableKind, ParseError, ParseResult, clean_title,
};

#[derive(Deserialize)]
struct Alert<'a> {
    #[serde(borrow, default)]
    timestamp: Text<'a>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Text<'a>,
    #[serde(borrow, default)]
    rule: Option<Rule<'a>>,
    #[serde(borrow, default)]
    agent: Option<Agent<'a>>,
    #[serde(borrow, default)]
    manager: Option<Manager<'a>>,
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    full_log: Text<'a>,
    #[serde(borrow, default)]
    decoder: Option<Decoder<'a>>,
    #[serde(borrow, default)]
    location: Text<'a>,
    #[serde(borrow, default)]
    predecoder: Option<Predecoder<'a>>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
    #[serde(borrow, default)]
    syscheck: Option<Syscheck<'a>>,
    // Wazuh 3.x / OSSEC-style top-level fields.
    #[serde(borrow, default)]
    srcip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dstip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    srcuser: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dstuser: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct Rule<'a> {
    #[serde(borrow, default)]
    level: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    description: Text<'a>,
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    mitre: Option<Mitre<'a>>,
    #[serde(borrow, default)]
    groups: ScalarList<'a>,
    #[serde(borrow, default)]
    firedtimes: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct Mitre<'a> {
    #[serde(borrow, default)]
    id: ScalarList<'a>,
    #[serde(borrow, default)]
    tactic: ScalarList<'a>,
    #[serde(borrow, default)]
    technique: ScalarList<'a>,
}

#[derive(Deserialize)]
struct Agent<'a> {
    #[serde(borrow, default)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    name: Text<'a>,
    #[serde(borrow, default)]
    ip: Text<'a>,
}

#[derive(Deserialize)]
struct Manager<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
}

/// What the manager read from a syslog header before decoding (`predecoder.hostname` is the
/// device that sent the line, when the manager itself, agent `000`, received it).
#[derive(Deserialize)]
struct Predecoder<'a> {
    #[serde(borrow, default)]
    hostname: Text<'a>,
}

#[derive(Deserialize)]
struct Decoder<'a> {
    #[serde(borrow, default)]
    name: Text<'a>,
}

/// The decoded fields Firebreak reads; the rest stays in `raw`.
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    srcip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dstip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    srcport: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dstport: Option<Scalar<'a>>,
    // the Suricata integration (rules 86600-86699) passes EVE's own names through
    #[serde(borrow, default)]
    src_ip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dest_ip: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    src_port: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dest_port: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    proto: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    alert: Option<SuricataAlert<'a>>,
    #[serde(borrow, default)]
    http: Option<SuricataHttp<'a>>,
    #[serde(borrow, default)]
    tls: Option<SuricataTls<'a>>,
    #[serde(borrow, default)]
    srcuser: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    dstuser: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    url: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    protocol: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    virustotal: Option<VirusTotal<'a>>,
    #[serde(borrow, default)]
    win: Option<Win<'a>>,
}

/// A Suricata alert passed through by Wazuh's Suricata rules (`data.alert`, EVE's `alert`).
#[derive(Deserialize)]
struct SuricataAlert<'a> {
    #[serde(borrow, default)]
    signature: Text<'a>,
    #[serde(borrow, default)]
    signature_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    category: Text<'a>,
    #[serde(borrow, default)]
    severity: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct SuricataHttp<'a> {
    #[serde(borrow, default)]
    hostname: Text<'a>,
    #[serde(borrow, default)]
    url: Text<'a>,
}

#[derive(Deserialize)]
struct SuricataTls<'a> {
    #[serde(borrow, default)]
    sni: Text<'a>,
}

/// Windows event channel records (`data.win`), as the `windows_eventchannel` decoder writes
/// them.
#[derive(Deserialize)]
struct Win<'a> {
    #[serde(borrow, default)]
    system: Option<WinSystem<'a>>,
    #[serde(borrow, default)]
    eventdata: Option<WinEventData<'a>>,
}

#[derive(Deserialize)]
struct WinSystem<'a> {
    #[serde(borrow, default, rename = "eventID")]
    event_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    computer: Text<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WinEventData<'a> {
    #[serde(borrow, default)]
    target_user_name: Text<'a>,
    #[serde(borrow, default)]
    target_domain_name: Text<'a>,
    #[serde(borrow, default)]
    ip_address: Text<'a>,
}

/// The VirusTotal integration's result (`data.virustotal`).
#[derive(Deserialize)]
struct VirusTotal<'a> {
    #[serde(borrow, default)]
    source: Option<VirusTotalSource<'a>>,
    #[serde(borrow, default)]
    permalink: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct VirusTotalSource<'a> {
    #[serde(borrow, default)]
    file: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    md5: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    sha1: Option<Scalar<'a>>,
}

#[derive(Deserialize)]
struct Syscheck<'a> {
    #[serde(borrow, default)]
    path: Text<'a>,
    #[serde(borrow, default)]
    event: Text<'a>,
    #[serde(borrow, default)]
    md5_after: Text<'a>,
    #[serde(borrow, default)]
    sha1_after: Text<'a>,
    #[serde(borrow, default)]
    sha256_after: Text<'a>,
}

/// Wazuh rule levels (0-15) on the four-level scale, in the Wazuh dashboard's own bands (its
/// overview's "Low severity: rule level 0 to 6", "Medium: 7 to 11", "High: 12 to 14",
/// "Critical: 15 or higher"), so an analyst sees the severity Wazuh shows.
pub fn level_from_rule_level(level: i64) -> Level {
    match level {
        i64::MIN..=6 => Level::Low,
        7..=11 => Level::Medium,
        12..=14 => Level::High,
        _ => Level::Critical,
    }
}

/// One `alerts.json` line to an event (a blank line to none). `raw` is the line exactly as
/// given.
pub fn parse_line(line: &str) -> ParseResult {
    if line.trim().is_empty() {
        return Ok(Vec::new());
    }
    if !line.trim_start().starts_with('{') {
        return Err(ParseError::new("line", "not a JSON object"));
    }
    let alert: Alert<'_> = serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| ParseError::new("line", format!("not a Wazuh alert: {e}")))?;
    let Some(rule) = &alert.rule else {
        return Err(ParseError::new("rule", "missing"));
    };
    Ok(vec![to_event(&alert, rule, line)])
}

fn to_event(alert: &Alert<'_>, rule: &Rule<'_>, line: &str) -> NormalizedEvent {
    let rule_id = rule.id.as_ref().and_then(Scalar::non_empty);
    let title = match rule.description.as_deref().map(str::trim) {
        Some(d) if !d.is_empty() => clean_title(d),
        _ => clean_title(&format!(
            "Wazuh rule {}",
            rule_id.as_deref().unwrap_or("(unknown)")
        )),
    };
    let mut ev = NormalizedEvent::new("sensor", "wazuh", title);
    ev.raw = line.to_string();
    ev.rule_id = rule_id;
    let level = rule.level.as_ref().and_then(Scalar::as_i64);
    ev.severity = level.map_or(Level::Medium, level_from_rule_level);
    // a Suricata alert passed through keeps Suricata's own severity when it is the higher
    // (Wazuh's rule 86601 gives every Suricata alert level 3, whatever the signature)
    let suricata = alert.data.as_ref().and_then(|d| d.alert.as_ref());
    if let Some(n) = suricata
        .and_then(|a| a.severity.as_ref())
        .and_then(Scalar::as_i64)
        .filter(|n| (1..=255).contains(n))
    {
        let s = match n {
            1 => Level::High,
            2 => Level::Medium,
            _ => Level::Low,
        };
        ev.severity = ev.severity.max(s);
    }
    ev.original_severity = rule.level.as_ref().and_then(Scalar::non_empty);
    ev.occurred_at = alert
        .timestamp
        .as_deref()
        .and_then(parse_timestamp)
        .or_else(|| alert.at_timestamp.as_deref().and_then(parse_timestamp));
    ev.source_ref = alert.id.as_ref().and_then(Scalar::non_empty);
    ev.description = alert
        .full_log
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);

    let agent_name = alert
        .agent
        .as_ref()
        .and_then(|a| nonempty(a.name.as_deref()));
    let agent_ip = alert.agent.as_ref().and_then(|a| nonempty(a.ip.as_deref()));
    let agent_id = alert
        .agent
        .as_ref()
        .and_then(|a| a.id.as_ref())
        .and_then(Scalar::non_empty);
    // agent 000 is the manager: a line it received by syslog is about the device that sent
    // it (the syslog header's host name, else the sender's address in `location`)
    let sender = match agent_id.as_deref() {
        Some("000") => alert
            .predecoder
            .as_ref()
            .and_then(|p| nonempty(p.hostname.as_deref()))
            .or_else(|| {
                nonempty(alert.location.as_deref())
                    .filter(|l| l.parse::<std::net::IpAddr>().is_ok())
            }),
        _ => None,
    };
    ev.host = sender.clone().or_else(|| agent_name.clone());

    let groups = rule.groups.texts();
    for g in &groups {
        push_tag(&mut ev.tags, g);
    }
    let (techniques, tactics, technique_names) = match &rule.mitre {
        Some(m) => (m.id.texts(), m.tactic.texts(), m.technique.texts()),
        None => Default::default(),
    };
    for t in &techniques {
        push_tag(&mut ev.tags, t);
    }

    let data = alert.data.as_ref();
    let text = |s: Option<&Scalar<'_>>| s.and_then(Scalar::non_empty);
    let srcip = text(data.and_then(|d| d.srcip.as_ref()))
        .or_else(|| text(data.and_then(|d| d.src_ip.as_ref())))
        .or_else(|| text(alert.srcip.as_ref()));
    let dstip = text(data.and_then(|d| d.dstip.as_ref()))
        .or_else(|| text(data.and_then(|d| d.dest_ip.as_ref())))
        .or_else(|| text(alert.dstip.as_ref()));
    let srcuser =
        text(data.and_then(|d| d.srcuser.as_ref())).or_else(|| text(alert.srcuser.as_ref()));
    let dstuser =
        text(data.and_then(|d| d.dstuser.as_ref())).or_else(|| text(alert.dstuser.as_ref()));
    let url = text(data.and_then(|d| d.url.as_ref()));

    let mut obs: Vec<Observable> = Vec::new();
    push_observable(&mut obs, srcip.as_deref().and_then(ip_observable));
    push_observable(&mut obs, dstip.as_deref().and_then(ip_observable));
    for user in [&srcuser, &dstuser].into_iter().flatten() {
        push_observable(
            &mut obs,
            Some(Observable::new(ObservableKind::User, user.clone())),
        );
    }
    push_observable(&mut obs, url.as_deref().and_then(url_observable));
    let http = data.and_then(|d| d.http.as_ref());
    let http_host = http.and_then(|h| nonempty(h.hostname.as_deref()));
    push_observable(&mut obs, http_host.as_deref().and_then(domain_observable));
    if let (Some(h), Some(u)) = (&http_host, http.and_then(|h| nonempty(h.url.as_deref()))) {
        let full = if u.starts_with('/') {
            format!("http://{h}{u}")
        } else {
            u
        };
        push_observable(&mut obs, url_observable(&full));
    }
    let sni = data
        .and_then(|d| d.tls.as_ref())
        .and_then(|t| nonempty(t.sni.as_deref()));
    push_observable(&mut obs, sni.as_deref().and_then(domain_observable));
    if let Some(sc) = &alert.syscheck {
        push_observable(
            &mut obs,
            nonempty(sc.path.as_deref()).map(|p| Observable::new(ObservableKind::Filename, p)),
        );
        push_observable(
            &mut obs,
            sc.md5_after
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Md5, h)),
        );
        push_observable(
            &mut obs,
            sc.sha1_after
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Sha1, h)),
        );
        push_observable(
            &mut obs,
            sc.sha256_after
                .as_deref()
                .and_then(|h| hash_observable(ObservableKind::Sha256, h)),
        );
    }
    let vt = data.and_then(|d| d.virustotal.as_ref());
    if let Some(src) = vt.and_then(|v| v.source.as_ref()) {
        push_observable(
            &mut obs,
            text(src.file.as_ref()).map(|f| Observable::new(ObservableKind::Filename, f)),
        );
        push_observable(
            &mut obs,
            text(src.md5.as_ref()).and_then(|h| hash_observable(ObservableKind::Md5, &h)),
        );
        push_observable(
            &mut obs,
            text(src.sha1.as_ref()).and_then(|h| hash_observable(ObservableKind::Sha1, &h)),
        );
    }
    let win = data.and_then(|d| d.win.as_ref());
    let win_data = win.and_then(|w| w.eventdata.as_ref());
    let win_user = win_data
        .and_then(|e| nonempty(e.target_user_name.as_deref()))
        .filter(|u| u != "-");
    let win_ip = win_data
        .and_then(|e| e.ip_address.as_deref())
        .and_then(ip_observable);
    push_observable(&mut obs, win_ip.clone());
    if let Some(u) = &win_user {
        push_observable(
            &mut obs,
            Some(Observable::new(ObservableKind::User, u.clone())),
        );
    }
    push_observable(&mut obs, agent_ip.as_deref().and_then(ip_observable));
    ev.observables = obs;

    let mut f = Map::new();
    put(&mut f, "agent_id", agent_id);
    put(&mut f, "agent_name", agent_name);
    put(&mut f, "sender", sender);
    put(&mut f, "agent_ip", agent_ip);
    put(
        &mut f,
        "manager",
        alert
            .manager
            .as_ref()
            .and_then(|m| nonempty(m.name.as_deref())),
    );
    if let Some(l) = level {
        f.insert("rule_level".into(), Value::from(l));
    }
    if let Some(n) = rule.firedtimes.as_ref().and_then(Scalar::as_i64) {
        f.insert("firedtimes".into(), Value::from(n));
    }
    put_list(&mut f, "groups", groups);
    put_list(&mut f, "mitre_technique", techniques);
    put_list(&mut f, "mitre_tactic", tactics);
    put_list(&mut f, "mitre_technique_name", technique_names);
    put(
        &mut f,
        "decoder",
        alert
            .decoder
            .as_ref()
            .and_then(|d| nonempty(d.name.as_deref())),
    );
    put(&mut f, "location", nonempty(alert.location.as_deref()));
    put(&mut f, "srcip", srcip);
    put(&mut f, "dstip", dstip);
    if let Some(d) = data {
        if let Some(p) = d.srcport.as_ref().or(d.src_port.as_ref()) {
            put_json(&mut f, "srcport", p.to_json_number_if_int());
        }
        if let Some(p) = d.dstport.as_ref().or(d.dest_port.as_ref()) {
            put_json(&mut f, "dstport", p.to_json_number_if_int());
        }
        put(
            &mut f,
            "protocol",
            text(d.protocol.as_ref()).or_else(|| text(d.proto.as_ref())),
        );
    }
    if let Some(a) = suricata {
        put(&mut f, "signature", nonempty(a.signature.as_deref()));
        put(&mut f, "signature_id", text(a.signature_id.as_ref()));
        put(&mut f, "category", nonempty(a.category.as_deref()));
        put(&mut f, "suricata_severity", text(a.severity.as_ref()));
    }
    put(&mut f, "http_hostname", http_host);
    put(&mut f, "tls_sni", sni);
    put(&mut f, "srcuser", srcuser);
    put(&mut f, "dstuser", dstuser);
    put(&mut f, "url", url);
    if let Some(sc) = &alert.syscheck {
        put(&mut f, "syscheck_path", nonempty(sc.path.as_deref()));
        put(&mut f, "syscheck_event", nonempty(sc.event.as_deref()));
    }
    if let Some(w) = win {
        let system = w.system.as_ref();
        put(
            &mut f,
            "win_event_id",
            system.and_then(|s| text(s.event_id.as_ref())),
        );
        put(
            &mut f,
            "win_computer",
            system.and_then(|s| nonempty(s.computer.as_deref())),
        );
    }
    put(&mut f, "win_target_user", win_user);
    put(
        &mut f,
        "win_target_domain",
        win_data
            .and_then(|e| nonempty(e.target_domain_name.as_deref()))
            .filter(|d| d != "-"),
    );
    put(&mut f, "win_ip_address", win_ip.map(|o| o.value));
    put(
        &mut f,
        "virustotal_permalink",
        vt.and_then(|v| text(v.permalink.as_ref())),
    );
    ev.fields = f;
    ev
}

fn nonempty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn put(f: &mut Map<String, Value>, key: &str, v: Option<String>) {
    if let Some(v) = v {
        f.insert(key.to_string(), Value::String(v));
    }
}

fn put_json(f: &mut Map<String, Value>, key: &str, v: Value) {
    if !v.is_null() {
        f.insert(key.to_string(), v);
    }
}

fn put_list(f: &mut Map<String, Value>, key: &str, v: Vec<String>) {
    if !v.is_empty() {
        f.insert(
            key.to_string(),
            Value::Array(v.into_iter().map(Value::String).collect()),
        );
    }
}
