use firebreak_intel::connectors::{
    ConnectorKind, ConnectorSpec, HttpMapping, LookupRequest, Verdict, build_request, map_response,
    supports,
};
use serde_json::{Value, json};

use crate::{check_golden, sample};

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn spec(kind: ConnectorKind) -> ConnectorSpec {
    ConnectorSpec::new(kind)
}

fn misp_spec() -> ConnectorSpec {
    ConnectorSpec {
        base_url: Some("https://misp.corp.example/".into()),
        ..spec(ConnectorKind::Misp)
    }
}

fn http_spec() -> ConnectorSpec {
    ConnectorSpec {
        http: Some(HttpMapping {
            method: "post".into(),
            url_template: "https://intel.example/api/{kind}/{value}?raw={value_raw}".into(),
            auth_header: Some("X-Api-Key".into()),
            body_template: Some(r#"{"ioc": "{value}", "type": "{kind}"}"#.into()),
            verdict_path: "/data/verdict".into(),
            score_path: Some("/data/risk/score".into()),
            malicious_values: vec!["malicious".into(), "true".into()],
            suspicious_values: vec!["suspicious".into()],
            malicious_score: Some(90.0),
            suspicious_score: Some(50.0),
        }),
        ..spec(ConnectorKind::Http)
    }
}

fn header<'a>(r: &'a LookupRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn supported_kinds_per_connector() {
    let vt = spec(ConnectorKind::VirusTotal);
    for k in ["md5", "sha1", "sha256", "url", "domain", "ip"] {
        assert!(supports(&vt, k), "{k}");
    }
    assert!(!supports(&vt, "email") && !supports(&vt, "cve"));
    let abuse = spec(ConnectorKind::AbuseIpDb);
    assert!(supports(&abuse, "ip") && !supports(&abuse, "domain"));
    let urlscan = spec(ConnectorKind::UrlScan);
    assert!(supports(&urlscan, "url") && supports(&urlscan, "domain") && supports(&urlscan, "ip"));
    assert!(!supports(&urlscan, "sha256"));
    assert!(supports(&misp_spec(), "filename") && supports(&http_spec(), "user"));
}

#[test]
fn virustotal_requests() {
    let vt = spec(ConnectorKind::VirusTotal);
    let r = build_request(
        &vt,
        Some(KEY),
        "sha256",
        "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa",
    )
    .unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.url,
        "https://www.virustotal.com/api/v3/files/ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"
    );
    assert_eq!(header(&r, "x-apikey"), Some(KEY));
    assert_eq!(r.body, None);
    // The URL identifier is the unpadded base64url of the URL (VirusTotal's documented form).
    let r = build_request(
        &vt,
        Some(KEY),
        "url",
        "http://www.somedomain.com/this/is/my/url",
    )
    .unwrap();
    assert_eq!(
        r.url,
        "https://www.virustotal.com/api/v3/urls/aHR0cDovL3d3dy5zb21lZG9tYWluLmNvbS90aGlzL2lzL215L3VybA"
    );
    let r = build_request(&vt, Some(KEY), "url", "https://x.example/?a=1>").unwrap();
    assert!(
        !r.url.contains('=') && !r.url.contains('+') && !r.url.contains("/?"),
        "{}",
        r.url
    );
    let r = build_request(&vt, Some(KEY), "domain", "evil.example").unwrap();
    assert_eq!(
        r.url,
        "https://www.virustotal.com/api/v3/domains/evil.example"
    );
    let r = build_request(&vt, Some(KEY), "ip", "2001:db8::1").unwrap();
    assert_eq!(
        r.url,
        "https://www.virustotal.com/api/v3/ip_addresses/2001%3Adb8%3A%3A1"
    );
    // A custom base URL (a proxy), trailing slash dropped.
    let proxy = ConnectorSpec {
        base_url: Some("https://vt-proxy.corp.example/api/v3/".into()),
        ..vt.clone()
    };
    let r = build_request(&proxy, Some(KEY), "md5", "84c82835a5d21bbcf75a61706d8ab549").unwrap();
    assert_eq!(
        r.url,
        "https://vt-proxy.corp.example/api/v3/files/84c82835a5d21bbcf75a61706d8ab549"
    );
    // Refusals.
    assert_eq!(
        build_request(&vt, None, "ip", "192.0.2.1").unwrap_err(),
        "virustotal needs an API key"
    );
    assert!(build_request(&vt, Some(KEY), "email", "a@b.example").is_err());
    let err = build_request(&vt, Some("abc\r\nX-Evil: 1"), "ip", "192.0.2.1").unwrap_err();
    assert!(!err.contains("abc"), "{err}");
}

#[test]
fn abuseipdb_urlscan_and_misp_requests() {
    let r = build_request(
        &spec(ConnectorKind::AbuseIpDb),
        Some(KEY),
        "ip",
        "118.25.6.39",
    )
    .unwrap();
    assert_eq!(r.method, "GET");
    assert_eq!(
        r.url,
        "https://api.abuseipdb.com/api/v2/check?ipAddress=118.25.6.39&maxAgeInDays=90"
    );
    assert_eq!(header(&r, "Key"), Some(KEY));
    assert_eq!(header(&r, "Accept"), Some("application/json"));

    let urlscan = spec(ConnectorKind::UrlScan);
    let r = build_request(&urlscan, Some(KEY), "domain", "invoice-portal.example.com").unwrap();
    assert_eq!(
        r.url,
        "https://urlscan.io/api/v1/search/?q=page.domain%3Ainvoice-portal.example.com"
    );
    assert_eq!(header(&r, "API-Key"), Some(KEY));
    let r = build_request(&urlscan, None, "url", "https://x.example/a?b=\"c\"").unwrap();
    assert_eq!(
        r.url,
        "https://urlscan.io/api/v1/search/?q=page.url%3A%22https%3A%2F%2Fx.example%2Fa%3Fb%3D%5C%22c%5C%22%22"
    );
    assert_eq!(header(&r, "API-Key"), None, "searching needs no key");
    let r = build_request(&urlscan, None, "ip", "203.0.113.45").unwrap();
    assert_eq!(
        r.url,
        "https://urlscan.io/api/v1/search/?q=page.ip%3A203.0.113.45"
    );
    let r = build_request(&urlscan, None, "ip", "2001:db8::1").unwrap();
    assert_eq!(
        r.url,
        "https://urlscan.io/api/v1/search/?q=page.ip%3A%222001%3Adb8%3A%3A1%22"
    );

    let r = build_request(&misp_spec(), Some(KEY), "domain", "evil.example").unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(r.url, "https://misp.corp.example/attributes/restSearch");
    assert_eq!(header(&r, "Authorization"), Some(KEY));
    assert_eq!(header(&r, "Content-Type"), Some("application/json"));
    let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"returnFormat": "json", "value": "evil.example", "limit": 50})
    );
    assert_eq!(
        build_request(&spec(ConnectorKind::Misp), Some(KEY), "ip", "192.0.2.1").unwrap_err(),
        "misp needs a base_url"
    );
    let bad = ConnectorSpec {
        base_url: Some("ftp://misp.example".into()),
        ..spec(ConnectorKind::Misp)
    };
    assert!(build_request(&bad, Some(KEY), "ip", "192.0.2.1").is_err());
}

#[test]
fn http_mapping_requests() {
    let r = build_request(
        &http_spec(),
        Some(KEY),
        "url",
        "https://a.example/x?y=\"{kind}\"",
    )
    .unwrap();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "https://intel.example/api/url/https%3A%2F%2Fa.example%2Fx%3Fy%3D%22%7Bkind%7D%22?raw=https://a.example/x?y=\"{kind}\""
    );
    assert_eq!(header(&r, "X-Api-Key"), Some(KEY));
    let body: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"ioc": "https://a.example/x?y=\"{kind}\"", "type": "url"})
    );
    assert_eq!(header(&r, "Content-Type"), Some("application/json"));
    assert_eq!(
        build_request(&http_spec(), None, "ip", "192.0.2.1").unwrap_err(),
        "http needs an API key"
    );
    let mut no_mapping = http_spec();
    no_mapping.http = None;
    assert!(build_request(&no_mapping, Some(KEY), "ip", "192.0.2.1").is_err());
    let mut put = http_spec();
    put.http.as_mut().unwrap().method = "PUT".into();
    assert!(build_request(&put, Some(KEY), "ip", "192.0.2.1").is_err());
    let mut relative = http_spec();
    relative.http.as_mut().unwrap().url_template = "/api/{value}".into();
    assert!(build_request(&relative, Some(KEY), "ip", "192.0.2.1").is_err());
    // A mapping read from configuration, with defaults.
    let spec: ConnectorSpec = serde_json::from_value(json!({
        "kind": "http",
        "http": {"url_template": "https://intel.example/v1/lookup?q={value}", "verdict_path": "/verdict"}
    }))
    .unwrap();
    let r = build_request(&spec, None, "domain", "evil.example").unwrap();
    assert_eq!((r.method.as_str(), r.body.as_deref()), ("GET", None));
    assert_eq!(r.url, "https://intel.example/v1/lookup?q=evil.example");
}

/// (name of the golden, spec, kind, value, status, sample).
fn cases() -> Vec<(
    &'static str,
    ConnectorSpec,
    &'static str,
    &'static str,
    u16,
    &'static str,
)> {
    let vt = spec(ConnectorKind::VirusTotal);
    let abuse = spec(ConnectorKind::AbuseIpDb);
    let urlscan = spec(ConnectorKind::UrlScan);
    vec![
        (
            "virustotal-file",
            vt.clone(),
            "sha256",
            "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa",
            200,
            "connectors/virustotal-file.json",
        ),
        (
            "virustotal-url",
            vt.clone(),
            "url",
            "https://www.example.org/",
            200,
            "connectors/virustotal-url.json",
        ),
        (
            "virustotal-ip",
            vt.clone(),
            "ip",
            "203.0.113.45",
            200,
            "connectors/virustotal-ip.json",
        ),
        (
            "virustotal-not-found",
            vt,
            "md5",
            "0123456789abcdef0123456789abcdef",
            404,
            "connectors/virustotal-not-found.json",
        ),
        (
            "abuseipdb-check",
            abuse.clone(),
            "ip",
            "118.25.6.39",
            200,
            "connectors/abuseipdb-check.json",
        ),
        (
            "abuseipdb-check-clean",
            abuse,
            "ip",
            "8.8.8.8",
            200,
            "connectors/abuseipdb-check-clean.json",
        ),
        (
            "urlscan-search",
            urlscan.clone(),
            "domain",
            "invoice-portal.example.com",
            200,
            "connectors/urlscan-search.json",
        ),
        (
            "urlscan-search-empty",
            urlscan,
            "domain",
            "quiet.example",
            200,
            "connectors/urlscan-search-empty.json",
        ),
        (
            "misp-restsearch",
            misp_spec(),
            "ip",
            "203.0.113.7",
            200,
            "misp/restsearch-attributes.json",
        ),
        (
            "misp-restsearch-empty",
            misp_spec(),
            "ip",
            "192.0.2.99",
            200,
            "connectors/misp-restsearch-empty.json",
        ),
        (
            "http-verdict",
            http_spec(),
            "domain",
            "invoice-portal.example.com",
            200,
            "connectors/http-verdict.json",
        ),
    ]
}

#[test]
fn golden_responses() {
    for (name, spec, kind, value, status, file) in cases() {
        let result = map_response(&spec, kind, value, status, &sample(file))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let details = serde_json::to_string(&result.details).unwrap();
        assert!(
            details.len() < 2048,
            "{name}: details are {} bytes",
            details.len()
        );
        check_golden(
            &format!("connectors/{name}.golden.json"),
            &serde_json::to_value(&result).unwrap(),
        );
    }
}

#[test]
fn verdicts_from_the_samples() {
    let expected = [
        (
            "virustotal-file",
            Verdict::Malicious,
            "66/72 engines flag it malicious",
        ),
        (
            "virustotal-url",
            Verdict::Clean,
            "0/93 engines flag it malicious",
        ),
        (
            "virustotal-ip",
            Verdict::Suspicious,
            "1/94 engines flag it malicious, 1 suspicious",
        ),
        (
            "virustotal-not-found",
            Verdict::Unknown,
            "not found on VirusTotal",
        ),
        (
            "abuseipdb-check",
            Verdict::Malicious,
            "abuse confidence 100% from 1042 reports (CN, Tencent Cloud Computing (Beijing) Co. Ltd)",
        ),
        (
            "abuseipdb-check-clean",
            Verdict::Clean,
            "abuse confidence 0% from 57 reports (US, Google LLC)",
        ),
        (
            "urlscan-search",
            Verdict::Malicious,
            "2 urlscan.io scans, 1 flagged malicious",
        ),
        (
            "urlscan-search-empty",
            Verdict::Unknown,
            "no urlscan.io scans",
        ),
        (
            "misp-restsearch",
            Verdict::Malicious,
            "in 1 MISP event: \"Emotet C2 servers 2026-11-30\"",
        ),
        (
            "misp-restsearch-empty",
            Verdict::Unknown,
            "not found in MISP",
        ),
        (
            "http-verdict",
            Verdict::Malicious,
            "verdict MALICIOUS, score 87.5",
        ),
    ];
    for ((name, spec, kind, value, status, file), (n, verdict, summary)) in
        cases().into_iter().zip(expected)
    {
        assert_eq!(name, n);
        let r = map_response(&spec, kind, value, status, &sample(file)).unwrap();
        assert_eq!(
            (r.verdict, r.summary.as_str()),
            (verdict, summary),
            "{name}"
        );
    }
}

#[test]
fn links_point_at_the_sources_pages() {
    let vt = spec(ConnectorKind::VirusTotal);
    let file = map_response(
        &vt,
        "sha256",
        "ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa",
        200,
        &sample("connectors/virustotal-file.json"),
    )
    .unwrap();
    assert_eq!(
        file.link.as_deref(),
        Some(
            "https://www.virustotal.com/gui/file/ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"
        )
    );
    assert_eq!(file.score, Some(66.0));
    let ip = map_response(
        &vt,
        "ip",
        "203.0.113.45",
        200,
        &sample("connectors/virustotal-ip.json"),
    )
    .unwrap();
    assert_eq!(
        ip.link.as_deref(),
        Some("https://www.virustotal.com/gui/ip-address/203.0.113.45")
    );
    let misp = map_response(
        &misp_spec(),
        "ip",
        "203.0.113.7",
        200,
        &sample("misp/restsearch-attributes.json"),
    )
    .unwrap();
    assert_eq!(
        misp.link.as_deref(),
        Some("https://misp.corp.example/events/view/14035")
    );
    let scan = map_response(
        &spec(ConnectorKind::UrlScan),
        "domain",
        "invoice-portal.example.com",
        200,
        &sample("connectors/urlscan-search.json"),
    )
    .unwrap();
    assert_eq!(
        scan.link.as_deref(),
        Some("https://urlscan.io/result/68e4a2b6-7d1c-4f2a-9b3e-1c2d3e4f5a6b/")
    );
}

#[test]
fn misp_hits_without_to_ids_are_suspicious() {
    let body = json!({"response": {"Attribute": [
        {"event_id": "7", "category": "Network activity", "type": "domain", "to_ids": false, "value": "evil.example", "Event": {"id": "7", "info": "Phishing wave"}},
        {"event_id": "9", "category": "Network activity", "type": "domain", "to_ids": "0", "value": "evil.example", "Event": {"id": "9", "info": "Phishing wave, part 2"}}
    ]}});
    let r = map_response(
        &misp_spec(),
        "domain",
        "evil.example",
        200,
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.verdict, Verdict::Suspicious);
    assert_eq!(
        r.summary,
        "in 2 MISP events: \"Phishing wave\", \"Phishing wave, part 2\" (none marked for detection)"
    );
    // An older MISP answers an empty search with an empty list.
    let r = map_response(
        &misp_spec(),
        "domain",
        "x.example",
        200,
        br#"{"response": []}"#,
    )
    .unwrap();
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn http_mapping_verdicts() {
    let m = http_spec();
    let map = |body: Value| {
        map_response(&m, "ip", "192.0.2.1", 200, body.to_string().as_bytes()).unwrap()
    };
    assert_eq!(
        map(json!({"data": {"verdict": "Suspicious"}})).verdict,
        Verdict::Suspicious
    );
    assert_eq!(
        map(json!({"data": {"verdict": true}})).verdict,
        Verdict::Malicious
    );
    assert_eq!(
        map(json!({"data": {"verdict": "benign"}})).verdict,
        Verdict::Clean
    );
    assert_eq!(
        map(json!({"data": {"verdict": "benign", "risk": {"score": 95}}})).verdict,
        Verdict::Malicious
    );
    assert_eq!(
        map(json!({"data": {"risk": {"score": 60}}})).verdict,
        Verdict::Suspicious
    );
    assert_eq!(
        map(json!({"data": {"risk": {"score": 10}}})).verdict,
        Verdict::Clean
    );
    let r = map(json!({"data": {}}));
    assert_eq!(
        (r.verdict, r.summary.as_str()),
        (Verdict::Unknown, "no verdict in the answer")
    );
    let r = map_response(&m, "ip", "192.0.2.1", 404, b"").unwrap();
    assert_eq!(r.verdict, Verdict::Unknown);
    let mut bad = http_spec();
    bad.http.as_mut().unwrap().verdict_path = "data.verdict".into();
    assert!(map_response(&bad, "ip", "192.0.2.1", 200, b"{}").is_err());
}

#[test]
fn errors_name_the_status_never_the_key_or_the_body() {
    let vt = spec(ConnectorKind::VirusTotal);
    let err = map_response(
        &vt,
        "ip",
        "192.0.2.1",
        401,
        &sample("connectors/virustotal-wrong-key.json"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        "VirusTotal answered HTTP 401: authentication failed (check the API key and its permissions) (WrongCredentialsError)"
    );
    let err = map_response(
        &spec(ConnectorKind::AbuseIpDb),
        "ip",
        "192.0.2.1",
        401,
        &sample("connectors/abuseipdb-unauthorized.json"),
    )
    .unwrap_err();
    assert!(err.starts_with("AbuseIPDB answered HTTP 401"), "{err}");
    assert!(!err.contains("APIv2"), "{err}");
    // A body echoing the key is not repeated.
    let echo = format!(r#"{{"error": {{"code": "Bad {KEY}", "message": "key {KEY} is wrong"}}}}"#);
    for s in [
        ConnectorKind::VirusTotal,
        ConnectorKind::UrlScan,
        ConnectorKind::Http,
    ] {
        let mut sp = spec(s);
        if s == ConnectorKind::Http {
            sp = http_spec();
        }
        let err = map_response(&sp, "ip", "192.0.2.1", 403, echo.as_bytes()).unwrap_err();
        assert!(!err.contains(KEY), "{err}");
    }
    let err = map_response(&spec(ConnectorKind::UrlScan), "ip", "192.0.2.1", 429, b"").unwrap_err();
    assert_eq!(
        err,
        "urlscan.io answered HTTP 429: rate limited (quota exceeded)"
    );
    let err = map_response(&misp_spec(), "ip", "192.0.2.1", 404, b"").unwrap_err();
    assert!(err.contains("404"), "{err}");
    let err = map_response(
        &spec(ConnectorKind::AbuseIpDb),
        "ip",
        "192.0.2.1",
        200,
        b"<html>",
    )
    .unwrap_err();
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn damaged_answers_never_panic() {
    for (_, spec, kind, value, status, file) in cases() {
        let body = sample(file);
        for cut in (0..body.len()).step_by(5) {
            let _ = map_response(&spec, kind, value, status, &body[..cut]);
        }
        // The right shape with the wrong types.
        for junk in [
            json!(null),
            json!([]),
            json!({"data": 1, "results": {}, "response": "x"}),
        ] {
            let _ = map_response(&spec, kind, value, status, junk.to_string().as_bytes());
        }
    }
}
