//! Intel connector answers (`firebreak_intel::connectors::map_response`) of VirusTotal,
//! AbuseIPDB, urlscan.io, MISP and a generic HTTP service, and the generic HTTP connector's
//! request templates (`build_request`). The first byte picks the connector (mod 6), the looked-up
//! kind and the HTTP status. For mode 5 the rest is `HTTP_MAPPING_JSON\0VALUE\0ANSWER`; otherwise
//! it is the answer body.
#![no_main]

use firebreak_intel::connectors::{
    ConnectorKind, ConnectorSpec, HttpMapping, build_request, map_response,
};
use libfuzzer_sys::fuzz_target;

const KINDS: [(&str, &str); 6] = [
    ("ip", "203.0.113.7"),
    ("domain", "evil.example"),
    ("url", "https://evil.example/a?b=c"),
    (
        "sha256",
        "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa",
    ),
    ("md5", "44d88612fea8a8f36de82e1278abb02f"),
    ("email", "a@evil.example"),
];

fn http_mapping() -> HttpMapping {
    HttpMapping {
        method: "GET".into(),
        url_template: "https://intel.example/api/{kind}/{value}".into(),
        auth_header: Some("X-Api-Key".into()),
        body_template: None,
        verdict_path: "/data/verdict".into(),
        score_path: Some("/data/risk/score".into()),
        malicious_values: vec!["malicious".into(), "true".into()],
        suspicious_values: vec!["suspicious".into()],
        malicious_score: Some(90.0),
        suspicious_score: Some(50.0),
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let (kind, value) = KINDS[usize::from(sel / 6) % KINDS.len()];
    let status = match sel / 36 {
        0..=4 => 200,
        5 => 404,
        _ => 429,
    };
    let spec = match sel % 6 {
        0 => ConnectorSpec::new(ConnectorKind::VirusTotal),
        1 => ConnectorSpec::new(ConnectorKind::AbuseIpDb),
        2 => ConnectorSpec::new(ConnectorKind::UrlScan),
        3 => ConnectorSpec {
            base_url: Some("https://misp.example".into()),
            ..ConnectorSpec::new(ConnectorKind::Misp)
        },
        4 => ConnectorSpec {
            http: Some(http_mapping()),
            ..ConnectorSpec::new(ConnectorKind::Http)
        },
        _ => {
            let mut parts = rest.splitn(3, |&b| b == 0);
            let (Some(mapping), Some(value), body) = (parts.next(), parts.next(), parts.next())
            else {
                return;
            };
            let Ok(mapping) = serde_json::from_slice::<HttpMapping>(mapping) else {
                return;
            };
            let spec = ConnectorSpec {
                http: Some(mapping),
                ..ConnectorSpec::new(ConnectorKind::Http)
            };
            let value = String::from_utf8_lossy(value);
            if let Ok(req) = build_request(&spec, Some("k3y"), kind, &value) {
                let _ = format!("{req:?}");
            }
            let _ = map_response(&spec, kind, &value, status, body.unwrap_or(b"{}"));
            return;
        }
    };
    let _ = build_request(&spec, Some("k3y"), kind, value);
    let _ = map_response(&spec, kind, value, status, rest);
});
