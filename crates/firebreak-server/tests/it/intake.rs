//! Event intake through the real router: every channel, the help desk's actions on the queue,
//! dedup, suppression, observables, assets and classification.

use super::{Backend, Resp, TestApp, assert_error};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use firebreak_domain::role::Role;
use serde_json::{Value, json};

const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../firebreak-intake/tests/samples"
);

fn sample(path: &str) -> Vec<u8> {
    std::fs::read(format!("{SAMPLES}/{path}")).unwrap()
}

impl TestApp {
    async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.raw(b.body(Body::from(body)).unwrap()).await
    }

    async fn ndjson(&self, token: &str, query: &str, body: Vec<u8>) -> Resp {
        self.send(
            "POST",
            &format!("/api/v1/ingest/ndjson?{query}"),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/x-ndjson"),
            ],
            body,
        )
        .await
    }

    async fn events(&self, token: &str, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/events?{query}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }
}

fn eve_alert(sig_id: u64, src: &str, dest: &str, host: &str) -> String {
    json!({
        "timestamp": "2026-11-20T10:15:02.123456+0000", "flow_id": 1_234_567_890u64 + sig_id,
        "in_iface": "eth0", "event_type": "alert", "src_ip": src, "src_port": 51234,
        "dest_ip": dest, "dest_port": 80, "proto": "TCP", "host": host,
        "alert": {"action": "allowed", "gid": 1, "signature_id": sig_id, "rev": 3,
                  "signature": format!("ET POLICY test signature {sig_id}"), "category": "Potentially Bad Traffic", "severity": 2}
    })
    .to_string()
}

async fn queue_flow(backend: Backend) {
    let t = TestApp::on(backend).await;
    let sensor = t.user("suricata", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let mut body = sample("eve/alerts.ndjson");
    body.extend_from_slice(b"this is not json\n");
    let r = t.ndjson(&sensor, "format=eve", body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = &r.body;
    let created = s["created"].as_u64().unwrap();
    assert!(created >= 3, "{s}");
    assert!(
        s["skipped"].as_u64().unwrap() >= 1,
        "flow/dns/stats records are skipped: {s}"
    );
    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{s}");
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    assert_eq!(
        errors[0]["line"], lines,
        "the bad line is named by its number: {s}"
    );

    // the same file again: every alert is a repeat inside the window
    let r = t
        .ndjson(&sensor, "format=eve", sample("eve/alerts.ndjson"))
        .await;
    assert_eq!(r.body["created"], 0, "{}", r.body);
    assert_eq!(
        r.body["duplicates"].as_u64().unwrap(),
        created,
        "{}",
        r.body
    );
    let queue = t.events(&desk, "status=new").await;
    assert_eq!(queue.len() as u64, created);
    assert!(queue.iter().all(|e| e["occurrences"] == 2), "{queue:?}");
    let e = &queue[0];
    assert_eq!(e["source"], "suricata");
    assert_eq!(e["source_kind"], "sensor");
    assert!(
        e["raw"]
            .as_str()
            .unwrap()
            .contains("\"event_type\":\"alert\"")
    );
    assert!(
        e["observables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "ip")
    );

    // the reporter sees its own events; another reporter sees none
    assert_eq!(t.events(&sensor, "").await.len() as u64, created);
    let other = t.user("other-sensor", &[Role::Reporter]).await;
    assert!(t.events(&other, "").await.is_empty());
    let id = e["id"].as_str().unwrap().to_string();
    let r = t.get(&format!("/api/v1/events/{id}"), &other).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");

    // dismiss one (reason required), ticket two, merge one into the ticket
    let ids: Vec<String> = queue
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let r = t
        .post(
            &format!("/api/v1/events/{}/dismiss", ids[0]),
            &desk,
            json!({"reason": ""}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("reason")
    );
    let r = t
        .post(
            &format!("/api/v1/events/{}/dismiss", ids[0]),
            &desk,
            json!({"reason": "scanner of the red team"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .post(
            &format!("/api/v1/events/{}/dismiss", ids[0]),
            &desk,
            json!({"reason": "again"}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "event_not_in_queue");
    let r = t
        .post(
            &format!("/api/v1/events/{}/dismiss", ids[0]),
            &sensor,
            json!({"reason": "me"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a reporter does not triage: {}",
        r.body
    );

    let r = t
        .post(
            "/api/v1/events/ticket",
            &desk,
            json!({"events": [ids[1], ids[2]], "priority": "p2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let number = r.body["number"].as_str().unwrap().to_string();
    assert_eq!(r.body["priority"], "p2");
    assert_eq!(r.body["source"]["kind"], "sensor");
    let linked = t
        .get(&format!("/api/v1/tickets/{number}/events"), &desk)
        .await;
    assert_eq!(
        linked.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        linked.body
    );
    assert!(
        linked.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "ticketed")
    );
    let obs = t
        .get(&format!("/api/v1/tickets/{number}/observables"), &desk)
        .await;
    assert!(
        !obs.body["items"].as_array().unwrap().is_empty(),
        "{}",
        obs.body
    );
    let log = t.get(&format!("/api/v1/tickets/{number}/log"), &desk).await;
    let actions: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"event.ticketed"), "{actions:?}");
    // a ticketed event cannot be ticketed again
    let r = t
        .post(
            &format!("/api/v1/events/{}/ticket", ids[1]),
            &desk,
            json!({}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "event_not_in_queue");
    if ids.len() > 3 {
        let r = t
            .post(
                &format!("/api/v1/events/{}/merge", ids[3]),
                &desk,
                json!({"ticket": number}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let e = t.get(&format!("/api/v1/events/{}", ids[3]), &desk).await;
        assert_eq!(e.body["status"], "merged");
        assert_eq!(e.body["disposition"]["by"], "hd");
    }
    let r = t
        .post(
            &format!("/api/v1/events/{}/merge", ids[0]),
            &desk,
            json!({"ticket": "SEC-999999"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("ticket")
    );
    let counts = t.get("/api/v1/events/counts", &desk).await;
    assert_eq!(counts.body["dismissed"], 1, "{}", counts.body);
    assert_eq!(counts.body["ticketed"], 2, "{}", counts.body);
}

#[tokio::test]
async fn eve_ndjson_queue_and_help_desk_actions_sqlite() {
    queue_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn eve_ndjson_queue_and_help_desk_actions_postgres() {
    queue_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn suppression_rules_keep_events_out_of_the_queue_and_count_hits() {
    let t = TestApp::new().await;
    let sensor = t.user("ids", &[Role::Reporter]).await;
    let helpdesk_only = t.user("hd-only", &[Role::Helpdesk]).await;
    let r = t
        .post(
            "/api/v1/suppression-rules",
            &helpdesk_only,
            json!({"name": "forever", "condition": "true", "reason": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("expires_at"),
        "the help desk's rules must end"
    );
    let desk = t.user("hd", &[Role::Helpdesk, Role::Responder]).await;
    let r = t
        .post(
            "/api/v1/suppression-rules",
            &desk,
            json!({"name": "bad", "condition": "event.source ==", "reason": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("condition")
    );
    let r = t
        .post(
            "/api/v1/suppression-rules",
            &desk,
            json!({"name": "typo", "condition": "evnt.source == \"x\"", "reason": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("condition")
    );
    let r = t
        .post(
            "/api/v1/suppression-rules",
            &desk,
            json!({"name": "known scanner", "condition": "event.source == \"suricata\" && event.rule_id == \"2100498\"",
                   "reason": "vulnerability scanner of IT", "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rule_id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["owner"], "hd");
    let body = [
        eve_alert(2100498, "10.0.0.5", "10.0.0.9", "s1"),
        eve_alert(2100498, "10.0.0.5", "10.0.0.9", "s1"),
        eve_alert(2100498, "10.0.0.6", "10.0.0.9", "s1"),
        eve_alert(2200001, "10.0.0.5", "10.0.0.9", "s1"),
    ]
    .join("\n");
    let r = t.ndjson(&sensor, "format=eve", body.into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["created"], 3, "{}", r.body);
    assert_eq!(r.body["duplicates"], 1, "{}", r.body);
    assert_eq!(r.body["suppressed"], 3, "{}", r.body);
    let queue = t.events(&desk, "status=new").await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["rule_id"], "2200001");
    let kept = t.events(&desk, "status=suppressed").await;
    assert_eq!(kept.len(), 2, "suppressed events are kept");
    assert!(kept.iter().all(|e| e["suppressed_by"] == rule_id.as_str()));
    let rules = t.get("/api/v1/suppression-rules", &desk).await;
    let rule = &rules.body["items"][0];
    assert_eq!(rule["hits"], 2, "{rule}");
    assert_eq!(rule["hit_occurrences"], 3, "{rule}");
    assert!(rule["last_hit"].is_string());
    // deleting the rule lets the next ones through
    let r = t
        .call(
            "DELETE",
            &format!("/api/v1/suppression-rules/{rule_id}"),
            Some(&desk),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = t
        .ndjson(
            &sensor,
            "format=eve",
            eve_alert(2100498, "10.0.0.7", "10.0.0.9", "s1").into_bytes(),
        )
        .await;
    assert_eq!(r.body["suppressed"], 0, "{}", r.body);
}

#[tokio::test]
async fn alertmanager_firing_then_resolved_closes_the_event() {
    let t = TestApp::new().await;
    let am = t.user("alertmanager", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let firing = sample("alertmanager/firing.json");
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[
                ("authorization", &format!("Bearer {am}")),
                ("content-type", "application/json"),
            ],
            firing.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let created = r.body["created"].as_u64().unwrap();
    assert!(created >= 1);
    // the same notification again (Alertmanager repeats) counts, it does not add
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            firing.clone(),
        )
        .await;
    assert_eq!(r.body["created"], 0, "{}", r.body);
    let mut resolved: Value = serde_json::from_slice(&firing).unwrap();
    resolved["status"] = json!("resolved");
    for a in resolved["alerts"].as_array_mut().unwrap() {
        a["status"] = json!("resolved");
        a["endsAt"] = json!("2026-11-20T11:00:00Z");
    }
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            resolved.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resolved"].as_u64().unwrap(), created, "{}", r.body);
    let all = t.events(&desk, "source=alertmanager").await;
    assert_eq!(all.len() as u64, created);
    assert!(
        all.iter()
            .all(|e| e["status"] == "resolved" && e["resolved_at"] == "2026-11-20T11:00:00Z"),
        "resolved at the alerts' endsAt: {all:?}"
    );
    // the same alerts fire again (a new startsAt): a new episode, new events; a late or
    // retried `resolved` of the first episode does not close them
    let mut refire: Value = serde_json::from_slice(&firing).unwrap();
    for a in refire["alerts"].as_array_mut().unwrap() {
        a["startsAt"] = json!("2026-11-20T12:00:00Z");
    }
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            refire.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.body["created"].as_u64().unwrap(), created, "{}", r.body);
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            resolved.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = t.events(&desk, "source=alertmanager").await;
    let firing_now = again.iter().filter(|e| e["status"] == "new").count() as u64;
    assert_eq!(
        firing_now, created,
        "the refired episode stays open: {again:?}"
    );
    // wrong version is a 422 naming the field
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            sample("alertmanager/wrong-version.json"),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("version")
    );
}

#[tokio::test]
async fn thehive_alert_api_answers_in_thehive_shapes() {
    let t = TestApp::new().await;
    let tok = t.user("elastalert", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let auth = format!("Bearer {tok}");
    let body = sample("thehive/v5-alert.json");
    let r = t
        .send(
            "POST",
            "/api/v1/alert",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["_type"], "Alert");
    assert_eq!(r.body["status"], "New");
    let e = t.get(&format!("/api/v1/events/{id}"), &desk).await;
    assert_eq!(e.status, StatusCode::OK, "the _id is the event: {}", e.body);
    // the answer is the alert as stored: a GET gives the same
    let read = t
        .send(
            "GET",
            &format!("/api/v1/alert/{id}"),
            &[("authorization", &auth)],
            vec![],
        )
        .await;
    assert_eq!(read.body, r.body, "create and read agree");
    // (type, source, sourceRef) is the dedup key: as TheHive does, the same triple again is
    // refused (400 CreateError) naming the alert that holds it; the repeat is counted on it
    let mut changed: Value = serde_json::from_slice(&body).unwrap();
    changed["title"] = json!("a different title");
    changed["severity"] = json!(4);
    let r = t
        .send(
            "POST",
            "/api/v1/alert",
            &[("authorization", &auth)],
            serde_json::to_vec(&changed).unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["type"], "CreateError", "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    assert_eq!(r.body["object"]["_id"], id.as_str());
    assert_eq!(
        r.body["object"]["title"], read.body["title"],
        "the stored alert, not the refused one"
    );
    let stored = t.get(&format!("/api/v1/events/{id}"), &desk).await.body;
    assert_eq!(stored["occurrences"], 2);
    assert_ne!(stored["title"], "a different title");
    // TheHive 4 path with artifacts
    let r = t
        .send(
            "POST",
            "/api/alert",
            &[("authorization", &auth)],
            sample("thehive/v4-artifacts.json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // errors in TheHive's shape
    let r = t
        .send(
            "POST",
            "/api/v1/alert",
            &[("authorization", &auth)],
            sample("thehive/missing-sourceref.json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["type"], "AttributeCheckingError", "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("sourceRef"));
    let r = t
        .send(
            "POST",
            "/api/v1/alert",
            &[],
            sample("thehive/v5-alert.json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["type"], "AuthenticationError");
}

#[tokio::test]
async fn splunk_hec_takes_concatenated_events_and_answers_with_splunk_codes() {
    let t = TestApp::new().await;
    let tok = t.user("fluentbit", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let splunk = format!("Splunk {tok}");
    let body = br#"{"time": 1732000000.5, "host": "web-01", "sourcetype": "nginx", "event": {"message": "blocked request from 203.0.113.9", "severity": "high"}}{"event": "plain text event", "host": "web-02"}"#.to_vec();
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &splunk)],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    let evs = t.events(&desk, "").await;
    assert_eq!(evs.len(), 2);
    assert!(
        evs.iter()
            .any(|e| e["host"] == "web-01" && e["severity"] == "high")
    );
    let r = t
        .send(
            "POST",
            "/services/collector",
            &[("authorization", &format!("Bearer {tok}"))],
            sample("hec/batch.json"),
        )
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.body);
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[],
            b"{\"event\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(2))
    );
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", "Splunk nope")],
            b"{\"event\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (StatusCode::FORBIDDEN, json!(4))
    );
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &splunk)],
            b"{\"host\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(12)),
        "{}",
        r.body
    );
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &splunk)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.body["code"], 5, "{}", r.body);
    let r = t
        .send(
            "POST",
            "/services/collector/raw?host=fw1&sourcetype=syslog",
            &[("authorization", &splunk)],
            b"line one\nline two\n".to_vec(),
        )
        .await;
    assert_eq!(r.body["code"], 0, "{}", r.body);
    let r = t
        .send("GET", "/services/collector/health", &[], Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["code"], 17);
}

/// `?token=` (Splunk's query-string token) is refused with Splunk's 400 code 16 unless the
/// operator allowed it (`[intake] hec_query_token = true`); the header always works.
#[tokio::test]
async fn hec_query_string_token_needs_the_operators_opt_in() {
    let t = TestApp::new().await;
    let tok = t.user("vector", &[Role::Reporter]).await;
    let uri = format!("/services/collector/event?token={tok}");
    let r = t
        .send(
            "POST",
            &uri,
            &[],
            b"{\"event\":\"from the query\"}".to_vec(),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"text": "Query string authorization is not enabled", "code": 16})
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let mut web = firebreak_server::web::WebConfig::default();
    web.intake.hec_query_token = true;
    let t = TestApp::with_config(firebreak_app::AppConfig::default(), web).await;
    let tok = t.user("vector", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let uri = format!("/services/collector/event?token={tok}");
    let r = t
        .send(
            "POST",
            &uri,
            &[],
            b"{\"event\":\"from the query\"}".to_vec(),
        )
        .await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    let r = t
        .send(
            "POST",
            "/services/collector/event?token=wrong",
            &[],
            b"{\"event\":\"x\"}".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (StatusCode::FORBIDDEN, json!(4))
    );
    assert_eq!(t.events(&desk, "").await.len(), 1);
}

/// HEC indexed `fields` give observables and a severity; a nested object in them is Splunk's
/// code 15; non-alert EVE records sent with a Suricata sourcetype are stored as low events
/// (or, with `?eve_types=`, left out), counted in `firebreak_hec_eve_records_total` either way.
#[tokio::test]
async fn hec_fields_and_eve_records_that_are_not_alerts() {
    firebreak_server::metrics::install();
    let t = TestApp::new().await;
    let tok = t.user("otel", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let splunk = format!("Splunk {tok}");
    let post = |uri: &'static str, body: &'static [u8]| {
        let t = &t;
        let splunk = splunk.clone();
        async move {
            t.send("POST", uri, &[("authorization", &splunk)], body.to_vec())
                .await
        }
    };
    let r = post(
        "/services/collector/event",
        br#"{"event":"Hola Mundo!","host":"h2","fields":{"src_ip":"192.0.2.31","severity":"critical","device":"macbook","users":["joe","jane"]}}"#,
    )
    .await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    let evs = t.events(&desk, "").await;
    let e = evs.iter().find(|e| e["title"] == "Hola Mundo!").unwrap();
    assert_eq!(e["severity"], "critical", "{e}");
    let id = e["id"].as_str().unwrap();
    let r = t.get(&format!("/api/v1/events/{id}"), &desk).await;
    assert!(
        r.body.to_string().contains("192.0.2.31")
            && r.body["observables"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["value"] == "192.0.2.31")),
        "{}",
        r.body
    );

    let r = post(
        "/services/collector/event",
        br#"{"event":"fine"}{"event":"nested","fields":{"geo":{"country":"NL"}}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        json!({"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": 1})
    );
    let r = post(
        "/services/collector/event",
        br#"{"event":"x","fields":{"list":[{"a":1}]}}"#,
    )
    .await;
    assert_eq!(r.body["code"], 15, "{}", r.body);
    let titles: Vec<Value> = t
        .events(&desk, "")
        .await
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert!(
        titles.contains(&json!("fine")) && !titles.contains(&json!("nested")),
        "{titles:?}"
    );

    let flow: &[u8] = br#"{"sourcetype":"suricata","event":{"timestamp":"2024-01-01T00:00:00Z","event_type":"flow","src_ip":"10.0.0.1","src_port":1234,"dest_ip":"10.0.0.2","dest_port":80,"proto":"TCP"}}"#;
    // by default, as on the NDJSON endpoint, alerts and anomalies only: a flow is left out
    // (and counted, below), not stored as a queue event
    let before = t.events(&desk, "").await.len();
    let r = post("/services/collector/event", flow).await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    assert_eq!(t.events(&desk, "").await.len(), before, "a flow by default");
    // asked for, it is an event
    let r = post("/services/collector/event?eve_types=alert,flow", flow).await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    let evs = t.events(&desk, "").await;
    let e = evs
        .iter()
        .find(|e| {
            e["source_name"] == "suricata"
                || e["title"].as_str().is_some_and(|t| t.contains("flow"))
        })
        .unwrap_or_else(|| panic!("the flow record was not stored: {evs:?}"));
    assert_eq!(
        e["title"], "Suricata flow: TCP 10.0.0.1:1234 -> 10.0.0.2:80",
        "{e}"
    );
    assert_eq!(e["severity"], "low", "{e}");
    let before = evs.len();
    let r = post("/services/collector/event?eve_types=alert,anomaly", flow).await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    let r = post(
        "/services/collector/raw?sourcetype=suricata&eve_types=alert",
        br#"{"timestamp":"2024-01-01T00:00:01Z","event_type":"dns","src_ip":"10.0.0.1","dest_ip":"10.0.0.53"}"#,
    )
    .await;
    assert_eq!(r.body, json!({"text": "Success", "code": 0}));
    assert_eq!(
        t.events(&desk, "").await.len(),
        before,
        "left out by eve_types"
    );
    let r = post("/services/collector/event?eve_types=bogus", flow).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!(6))
    );

    let text = t
        .send(
            "GET",
            "/metrics",
            &[("x-test-peer", "127.0.0.1:5000")],
            Vec::new(),
        )
        .await
        .body
        .as_str()
        .unwrap()
        .to_string();
    let line = |outcome: &str, ty: &str| {
        text.lines().any(|l| {
            l.starts_with("firebreak_hec_eve_records_total")
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains(&format!("event_type=\"{ty}\""))
        })
    };
    assert!(
        line("stored", "flow") && line("skipped", "flow") && line("skipped", "dns"),
        "{text}"
    );
}

#[tokio::test]
async fn webhook_sources_map_fields_and_check_signatures() {
    use hmac::Mac;
    let mut web = firebreak_server::web::WebConfig::default();
    let mapping: firebreak_intake::webhook::Mapping = toml::from_str(
        "title = \"$.rule\"\nseverity = \"$.level\"\nhost = \"$.hostname\"\nrule_id = \"$.rule_id\"\nobservables = [{ path = \"$.source_ip\", kind = \"ip\" }]\n",
    )
    .unwrap();
    let mut sources = std::collections::BTreeMap::new();
    sources.insert(
        "crowdsec".to_string(),
        firebreak_server::intake::WebhookSource {
            mapping: mapping.compile().unwrap(),
            secret: Some(b"0123456789abcdef0123".to_vec()),
            signature_header: "x-signature-256".into(),
            user: Some("crowdsec-bot".into()),
        },
    );
    web.intake = firebreak_server::intake::IntakeSettings::new(sources, 4);
    let t = TestApp::with_config(firebreak_app::AppConfig::default(), web).await;
    t.user("crowdsec-bot", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let body = br#"{"rule": "crowdsecurity/ssh-bf", "level": "high", "hostname": "bastion", "rule_id": "ssh-bf", "source_ip": "198.51.100.7"}"#.to_vec();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef0123").unwrap();
    mac.update(&body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/crowdsec",
            &[("x-signature-256", "sha256=00")],
            body.clone(),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "bad_signature");
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/crowdsec",
            &[("x-signature-256", &sig)],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = &t.events(&desk, "source=crowdsec").await[0];
    assert_eq!(e["title"], "crowdsecurity/ssh-bf");
    assert_eq!(e["severity"], "high");
    assert_eq!(e["host"], "bastion");
    assert_eq!(e["reported_by"], "crowdsec-bot");
    assert!(
        e["observables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == "198.51.100.7"),
        "{e}"
    );
    // a JSON array: a bad record is reported by its number, the others go in
    let arr = br#"[{"rule": "r1", "level": "low", "hostname": "h1"}, 7, {"rule": "r3", "level": "low", "hostname": "h3"}]"#.to_vec();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"0123456789abcdef0123").unwrap();
    mac.update(&arr);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/crowdsec",
            &[("x-signature-256", &sig)],
            arr,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["created"], 2, "{}", r.body);
    assert_eq!(r.body["refused"], 1, "{}", r.body);
    assert_eq!(r.body["errors"][0]["line"], 2, "{}", r.body);
    // an unconfigured source takes a token and the generic mapping
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/grafana",
            &[],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/grafana",
            &[("authorization", &format!("Bearer {desk}"))],
            sample("webhook/generic.json"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/webhook/bad%20name",
            &[("authorization", &format!("Bearer {desk}"))],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[tokio::test]
async fn email_reports_become_events_and_replies_go_on_their_ticket() {
    let t = TestApp::new().await;
    let mailbox = t.user("mailbox", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/eml",
            &[
                ("authorization", &format!("Bearer {mailbox}")),
                ("content-type", "message/rfc822"),
            ],
            sample("eml/phishing_report.eml"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["outcome"], "event");
    let e = &t.events(&desk, "source=email").await[0];
    assert_eq!(e["reporter"]["kind"], "employee");
    assert!(e["reporter"]["contact"].as_str().unwrap().contains('@'));
    assert!(!e["observables"].as_array().unwrap().is_empty(), "{e}");
    // a reply naming a ticket is a communication on it, with the message kept as a document
    let tk = t
        .post("/api/v1/tickets", &desk, json!({"title": "phishing wave"}))
        .await;
    assert_eq!(tk.body["number"], "SEC-000001");
    let (ct, body) = super::multipart(&[], Some(("reply.eml", &sample("eml/ticket_reply.eml"))));
    let reply = String::from_utf8(sample("eml/ticket_reply.eml")).unwrap_or_default();
    assert!(reply.contains("SEC-000042"), "the sample names SEC-000042");
    let body = String::from_utf8_lossy(&body)
        .replace("SEC-000042", "SEC-000001")
        .into_bytes();
    // a reporter's upload naming a ticket it cannot work is a new report, not a note on it
    let send = |tok: String, body: Vec<u8>| {
        let ct = ct.clone();
        let t = &t;
        async move {
            t.send(
                "POST",
                "/api/v1/ingest/eml",
                &[
                    ("authorization", &format!("Bearer {tok}")),
                    ("content-type", &ct),
                ],
                body,
            )
            .await
        }
    };
    let r = send(mailbox.clone(), body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["outcome"], "event", "{}", r.body);
    let r = send(desk.clone(), body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["outcome"], "communication", "{}", r.body);
    let first = r.body["communication"].clone();
    // the same message again is the same communication
    let again = send(desk.clone(), body).await;
    assert_eq!(again.body["communication"], first, "{}", again.body);
    assert_eq!(r.body["ticket"], "SEC-000001");
    let comms = t
        .get("/api/v1/tickets/SEC-000001/communications", &desk)
        .await;
    let c = &comms.body["items"][0];
    assert_eq!(c["channel"], "email");
    assert_eq!(c["direction"], "inbound");
    assert!(
        !c["attachments"].as_array().unwrap().is_empty(),
        "the message is kept: {c}"
    );
    let docs = t.get("/api/v1/tickets/SEC-000001/documents", &desk).await;
    assert!(
        docs.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["filename"].as_str().unwrap().ends_with(".eml")),
        "{}",
        docs.body
    );
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/eml",
            &[("authorization", &format!("Bearer {mailbox}"))],
            b"\x00\x01 not a mail".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
}

#[tokio::test]
async fn people_report_events_and_communications_are_captured() {
    let t = TestApp::new().await;
    let emp = t.user("erin", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let r = t
        .post(
            "/api/v1/events",
            &emp,
            json!({"title": "Strange mail asking for my password", "description": "link hxxps://login-micros0ft[.]com/reset and sender it@evil-mail.com",
                   "severity": "high", "reporter": {"kind": "employee", "name": "Erin", "contact": "erin@example.org"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let obs: Vec<(String, String)> = r.body["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        obs.contains(&("url".into(), "https://login-micros0ft.com/reset".into())),
        "defanged URLs are refanged: {obs:?}"
    );
    assert!(
        obs.contains(&("email".into(), "it@evil-mail.com".into())),
        "{obs:?}"
    );
    let r = t
        .post("/api/v1/events", &emp, json!({"title": " ", "bogus": 1}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = t
        .post(
            "/api/v1/events",
            &emp,
            json!({"title": "x", "observables": [{"kind": "ip", "value": "999.1.1.1"}]}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("observables[0].value")
    );
    // communications on a ticket
    let tk = t
        .post(
            "/api/v1/tickets",
            &desk,
            json!({"title": "call from vendor about 192.0.2.44"}),
        )
        .await;
    let n = tk.body["number"].as_str().unwrap().to_string();
    let r = t
        .post(&format!("/api/v1/tickets/{n}/communications"), &desk, json!({"channel": "phone", "from": "Vendor NOC", "to": ["soc@corp.example", "cfo@corp.example"], "body": "they saw traffic to evil-cdn.net", "occurred_at": "2026-11-20T09:00:00Z"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // the incident log names who spoke to whom, and when, as a time
    let log = t.get(&format!("/api/v1/tickets/{n}/log"), &desk).await;
    let entry = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "communication.recorded")
        .cloned()
        .unwrap();
    assert_eq!(
        entry["text"],
        "inbound phone recorded: from Vendor NOC to soc@corp.example, cfo@corp.example",
        "{entry}"
    );
    assert_eq!(
        entry["details"]["occurred_at"], "2026-11-20T09:00:00Z",
        "{entry}"
    );
    let r = t
        .post(
            &format!("/api/v1/tickets/{n}/communications"),
            &desk,
            json!({"channel": "pigeon", "body": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("channel")
    );
    let obs = t
        .get(&format!("/api/v1/tickets/{n}/observables"), &desk)
        .await;
    let values: Vec<&str> = obs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert!(
        values.contains(&"192.0.2.44") && values.contains(&"evil-cdn.net"),
        "{values:?}"
    );
    // the observable knows its ticket
    let ip = obs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["value"] == "192.0.2.44")
        .unwrap();
    let d = t
        .get(
            &format!("/api/v1/observables/{}", ip["id"].as_str().unwrap()),
            &desk,
        )
        .await;
    assert_eq!(d.body["ticket_numbers"], json!([n]));
    let r = t
        .post(
            &format!("/api/v1/tickets/{n}/observables"),
            &desk,
            json!({"value": "44d88612fea8a8f36de82e1278abb02f"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["kind"], "md5");
    let list = t.get("/api/v1/observables?kind=md5", &desk).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn assets_and_the_plan_classify_events_and_open_tickets() {
    let t = TestApp::new().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let sensor = t.user("ids", &[Role::Reporter]).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let r = t
        .post("/api/v1/assets", &admin, json!({"name": "db-prod-1", "addresses": ["10.1.1.10"], "critical_production": true, "owner": "hd"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut plan = t.get("/api/v1/plan", &admin).await.body["plan"].clone();
    plan["intake"] = json!({
        "dedup_window_minutes": 30,
        "rules": [{"name": "ransomware", "when": "event.title.contains(\"ransom\")", "open_ticket": true, "priority": "p1", "severity": "critical", "escalate": true}]
    });
    let r = t
        .call("PUT", "/api/v1/plan", Some(&admin), Some(plan.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut bad = plan.clone();
    bad["intake"]["rules"][0]["when"] = json!("event.title.contains(");
    let r = t.call("PUT", "/api/v1/plan", Some(&admin), Some(bad)).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("intake.rules[0].when")
    );

    // an alert on the critical asset: escalation, with the reason
    let r = t
        .ndjson(
            &sensor,
            "format=eve",
            eve_alert(2300001, "198.51.100.20", "10.1.1.10", "sensor-1").into_bytes(),
        )
        .await;
    assert_eq!(r.body["created"], 1, "{}", r.body);
    let e = t.events(&desk, "status=new").await[0].clone();
    assert_eq!(e["assets"][0]["name"], "db-prod-1", "{e}");
    assert!(
        e["classification"]["escalation_reason"]
            .as_str()
            .unwrap()
            .contains("db-prod-1"),
        "{e}"
    );
    let r = t
        .post(
            &format!("/api/v1/events/{}/ticket", e["id"].as_str().unwrap()),
            &desk,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["criticality"], "escalation");
    assert_eq!(r.body["tier"], 2);
    assert!(
        r.body["escalation_reason"]
            .as_str()
            .unwrap()
            .contains("critical production asset db-prod-1"),
        "the reason is on the ticket: {}",
        r.body
    );
    let n = r.body["number"].as_str().unwrap();
    let assets = t.get(&format!("/api/v1/tickets/{n}/assets"), &desk).await;
    assert_eq!(
        assets.body["items"][0]["name"], "db-prod-1",
        "{}",
        assets.body
    );
    let log = t.get(&format!("/api/v1/tickets/{n}/log"), &desk).await;
    assert!(
        log.body
            .to_string()
            .contains("critical production asset db-prod-1"),
        "the reason is on the ticket"
    );

    // the plan's rule opens a ticket at once
    let r = t
        .post(
            "/api/v1/events",
            &sensor,
            json!({"title": "Files encrypted, ransom note on FS01", "severity": "high"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let e = t
        .get(
            &format!("/api/v1/events/{}", r.body["id"].as_str().unwrap()),
            &desk,
        )
        .await
        .body;
    assert_eq!(e["status"], "ticketed", "{e}");
    assert_eq!(e["severity"], "critical");
    assert_eq!(e["classification"]["rule"], "ransomware");
    let tickets = t.get("/api/v1/tickets?criticality=escalation", &desk).await;
    let auto = tickets.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["title"].as_str().unwrap().contains("ransom"))
        .cloned()
        .unwrap();
    assert_eq!(auto["priority"], "p1");
    assert_eq!(auto["created_by"], "system");
}

#[tokio::test]
async fn syslog_listener_takes_udp_and_tcp_with_cef() {
    let t = TestApp::new().await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let (udp, tcp) = firebreak_server::syslog::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let principal = firebreak_app::App::service_principal("syslog");
    let (addrs, stats) =
        firebreak_server::syslog::start(t.app.clone(), principal, udp, tcp).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"<34>1 2026-11-20T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8", addrs.udp)
        .await
        .unwrap();
    let cef = "<134>Nov 20 10:00:00 fw01 CEF:0|Check Point|VPN-1 & FireWall-1|R81|drop|Drop|7|src=203.0.113.50 dst=10.0.0.8 spt=4444 dpt=3389 proto=TCP";
    let leef = "LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5^cat=anomaly";
    let framed = format!("{} {cef}{leef}\n", cef.len());
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addrs.tcp).await.unwrap();
    s.write_all(framed.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    // Cisco ASA's default: no timestamp, no hostname; two messages batched in one datagram;
    // an RFC 5424 message with broken structured data
    sock.send_to(
        b"<166>%ASA-6-302013: Built outbound TCP connection 1 for outside:198.51.100.7/443",
        addrs.udp,
    )
    .await
    .unwrap();
    sock.send_to(
        b"<13>Nov 20 10:00:01 h1 app: first\n<13>Nov 20 10:00:02 h2 app: second\n",
        addrs.udp,
    )
    .await
    .unwrap();
    sock.send_to(
        b"<34>1 2026-11-20T22:14:16Z host5 app - - [unterminated sd broken",
        addrs.udp,
    )
    .await
    .unwrap();
    let mut evs = Vec::new();
    for _ in 0..100 {
        evs = t.events(&desk, "").await;
        if evs.len() >= 7 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(evs.len(), 7, "{evs:?}");
    // the sender's address on every event, and as the host of a message that names none
    assert!(
        evs.iter().all(|e| e["fields"]["sender_ip"] == "127.0.0.1"),
        "{evs:?}"
    );
    let asa = evs
        .iter()
        .find(|e| e["title"].as_str().unwrap_or("").contains("Built outbound"))
        .expect("the ASA message");
    assert_eq!(asa["host"], "127.0.0.1", "{asa}");
    assert!(evs.iter().any(|e| e["host"] == "h1") && evs.iter().any(|e| e["host"] == "h2"));
    let broken = evs
        .iter()
        .find(|e| e["fields"]["header_error"].is_string())
        .expect("the message with a broken header is kept");
    assert!(
        broken["title"].as_str().unwrap().contains("unterminated"),
        "{broken}"
    );
    assert_eq!(
        stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "a broken header is still counted as malformed"
    );
    assert!(
        evs.iter()
            .any(|e| e["source"] == "Check Point VPN-1 & FireWall-1"
                && e["severity"] == "high"
                && e["host"] == "fw01"),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|e| e["source_kind"] == "device" && e["reported_by"] == "syslog")
    );
    assert_eq!(stats.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test]
async fn intake_sheds_load_with_retry_after_when_saturated() {
    let settings = firebreak_server::intake::IntakeSettings::new(Default::default(), 1);
    let mut s = settings.clone();
    s.wait = std::time::Duration::from_millis(50);
    let none = HeaderMap::new();
    let held = s.admit(&none, Body::empty()).await.unwrap();
    let err = s.admit(&none, Body::empty()).await.unwrap_err();
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.retry_after, Some(1));
    drop(held);
    assert!(s.admit(&none, Body::empty()).await.is_ok());
}

#[tokio::test]
async fn intake_refuses_at_once_beyond_its_waiting_room() {
    use firebreak_server::intake::{IntakeSettings, WAITING_PER_SLOT};
    let mut s = IntakeSettings::new(Default::default(), 1);
    s.wait = std::time::Duration::from_secs(30);
    let s = std::sync::Arc::new(s);
    let none = HeaderMap::new();
    let held = s.admit(&none, Body::empty()).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..WAITING_PER_SLOT {
        let s = s.clone();
        waiters.push(tokio::spawn(async move {
            s.admit(&HeaderMap::new(), Body::empty()).await.map(|_| ())
        }));
    }
    // the waiters are in the room once each has been polled
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let err = s.admit(&none, Body::empty()).await.unwrap_err();
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.retry_after, Some(1));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused after {:?}, not at once",
        started.elapsed()
    );
    // the slot goes to the waiters, one after the other
    drop(held);
    for w in waiters {
        w.await.unwrap().unwrap();
    }
}

/// A body whose chunks count themselves as they are read.
fn counted_body(chunks: usize, read: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Body {
    let stream = futures::stream::iter((0..chunks).map(move |_| {
        read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 1024]))
    }));
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_refused_body_is_read_first_unless_the_client_waits_for_100_continue() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut s = firebreak_server::intake::IntakeSettings::new(Default::default(), 1);
    s.wait = std::time::Duration::from_millis(20);
    let held = s.admit(&HeaderMap::new(), Body::empty()).await.unwrap();
    // refused: its 100 KiB body was read to the end, so the client gets the 503 in full
    let read = std::sync::Arc::new(AtomicUsize::new(0));
    let err = s
        .admit(&HeaderMap::new(), counted_body(100, read.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(read.load(Ordering::SeqCst), 100);
    // a body larger than the bound is read up to it only (the connection is then closed)
    let read = std::sync::Arc::new(AtomicUsize::new(0));
    let chunks = firebreak_server::intake::DRAIN_BYTES / 1024 + 1000;
    s.admit(&HeaderMap::new(), counted_body(chunks, read.clone()))
        .await
        .unwrap_err();
    let n = read.load(Ordering::SeqCst);
    assert!(
        n > firebreak_server::intake::DRAIN_BYTES / 1024 && n < chunks,
        "{n} of {chunks} chunks read"
    );
    // a client waiting for 100 Continue has sent nothing: nothing is read
    let mut expect = HeaderMap::new();
    expect.insert("expect", "100-continue".parse().unwrap());
    let read = std::sync::Arc::new(AtomicUsize::new(0));
    s.admit(&expect, counted_body(100, read.clone()))
        .await
        .unwrap_err();
    assert_eq!(read.load(Ordering::SeqCst), 0);
    // nor is a body announced larger than the bound (it would be cut and the connection closed)
    let mut large = HeaderMap::new();
    let announced = (firebreak_server::intake::DRAIN_BYTES + 1).to_string();
    large.insert("content-length", announced.parse().unwrap());
    let read = std::sync::Arc::new(AtomicUsize::new(0));
    s.admit(&large, counted_body(100, read.clone()))
        .await
        .unwrap_err();
    assert_eq!(read.load(Ordering::SeqCst), 0);
    drop(held);
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_is_answered_before_it_gives_up() {
    let mut s = firebreak_server::intake::IntakeSettings::new(Default::default(), 1);
    s.wait = std::time::Duration::from_secs(30);
    let held = s.admit(&HeaderMap::new(), Body::empty()).await.unwrap();
    // curl sends its body anyway after a second without `100 Continue`: the 503 comes first,
    // whatever the case and however many `Expect` headers (hyper takes the last)
    for values in [&["100-continue"][..], &["foo", " 100-Continue "]] {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("expect", v.parse().unwrap());
        }
        let started = std::time::Instant::now();
        let err = s.admit(&h, Body::empty()).await.unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(900),
            "{values:?}: refused after {:?}",
            started.elapsed()
        );
    }
    drop(held);
}

#[tokio::test]
async fn event_routes_permissions_per_role() {
    const ROLES: [(&str, Option<Role>); 9] = [
        ("anonymous", None),
        ("reporter", Some(Role::Reporter)),
        ("helpdesk", Some(Role::Helpdesk)),
        ("responder", Some(Role::Responder)),
        ("senior_responder", Some(Role::SeniorResponder)),
        ("manager", Some(Role::Manager)),
        ("executive", Some(Role::Executive)),
        ("auditor", Some(Role::Auditor)),
        ("admin", Some(Role::Admin)),
    ];
    let t = TestApp::new().await;
    let sensor = t.user("the-sensor", &[Role::Reporter]).await;
    let mut tokens = Vec::new();
    for (name, role) in ROLES {
        tokens.push(match role {
            Some(r) => Some(t.user(name, &[r]).await),
            None => None,
        });
    }
    let mut n = 0u64;
    let mut fresh_event = async || {
        n += 1;
        let r = t
            .post(
                "/api/v1/events",
                &sensor,
                json!({"title": format!("event {n}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    };
    // (method, path with {id}, body, expected per role)
    #[rustfmt::skip]
    let rows: &[(&str, &str, &str, [u16; 9])] = &[
        ("GET",  "/api/v1/events",                 "",                          [401, 200, 200, 200, 200, 200, 200, 200, 200]),
        ("GET",  "/api/v1/events/{id}",            "",                          [401, 404, 200, 200, 200, 200, 404, 200, 200]),
        ("POST", "/api/v1/events/{id}/dismiss",    r#"{"reason":"fp"}"#,        [401, 404, 200, 200, 200, 200, 404, 403, 403]),
        ("POST", "/api/v1/events/{id}/ticket",     "{}",                        [401, 404, 201, 201, 201, 201, 404, 403, 403]),
        ("GET",  "/api/v1/events/{id}/observables", "",                        [401, 404, 200, 200, 200, 200, 404, 200, 200]),
        ("GET",  "/api/v1/events/counts",          "",                          [401, 403, 200, 200, 200, 200, 403, 200, 200]),
        ("POST", "/api/v1/events",                 r#"{"title":"seen"}"#,       [401, 201, 201, 201, 201, 201, 403, 403, 201]),
        ("POST", "/api/v1/suppression-rules",      r#"{"name":"r","condition":"event.source == \"x\"","reason":"test","expires_at":"{exp}"}"#, [401, 403, 201, 201, 201, 201, 403, 403, 201]),
        ("GET",  "/api/v1/suppression-rules",      "",                          [401, 403, 200, 200, 200, 200, 403, 200, 200]),
        ("GET",  "/api/v1/observables",            "",                          [401, 403, 200, 200, 200, 200, 403, 200, 200]),
        ("POST", "/api/v1/ingest/alertmanager",    r#"{"version":"4","status":"firing","alerts":[]}"#, [401, 200, 200, 200, 200, 200, 403, 403, 200]),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in rows {
        for (i, (name, _)) in ROLES.iter().enumerate() {
            let uri = if path.contains("{id}") {
                path.replace("{id}", &fresh_event().await)
            } else {
                path.to_string()
            };
            let exp = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let body = (!body.is_empty())
                .then(|| serde_json::from_str::<Value>(&body.replace("{exp}", &exp)).unwrap());
            let r = t.call(method, &uri, tokens[i].as_deref(), body).await;
            if r.status.as_u16() != expected[i] {
                failures.push(format!(
                    "{method} {path} as {name}: {} (expected {}) {}",
                    r.status, expected[i], r.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Runs `script` with the real thehive4py (2.1.0, from PyPI) against `t` served on a real
/// listener (`sys.argv[1]` the URL, `sys.argv[2]` the token); its stdout as JSON.
async fn run_thehive4py(t: &TestApp, tok: &str, script: &'static str) -> Value {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = t.router.clone();
    let server = tokio::spawn(async move {
        firebreak_server::serve(
            listener,
            router,
            firebreak_server::HttpLimits::default(),
            std::future::pending(),
        )
        .await
    });
    let present = std::process::Command::new("python3")
        .args(["-c", "import thehive4py"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let _ = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "-q", "thehive4py==2.1.0"])
            .status();
    }
    let tok = tok.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &format!("http://{addr}"), &tok])
            .output()
            .expect("python3 with thehive4py==2.1.0 is required for this test")
    })
    .await
    .unwrap();
    server.abort();
    assert!(
        out.status.success(),
        "thehive4py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The real thehive4py client (PyPI, installed by `.ci/run`; fetched here when missing)
/// creating and reading alerts against a real listening server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thehive4py_creates_and_reads_alerts_unchanged() {
    let t = TestApp::new().await;
    let tok = t
        .user("velociraptor", &[Role::Reporter, Role::Helpdesk])
        .await;
    let script = r#"
import json, sys
from thehive4py import TheHiveApi
from thehive4py.errors import TheHiveError
hive = TheHiveApi(url=sys.argv[1], apikey=sys.argv[2], max_retries=0)
alert = hive.alert.create(alert={
    "type": "velociraptor", "source": "Velociraptor", "sourceRef": "F.C2ABC123",
    "title": "Suspicious PowerShell on WS-042", "description": "Encoded command; beacon to 203.0.113.77",
    "severity": 3, "tags": ["hunt", "T1059.001"], "tlp": 2, "pap": 2,
    "observables": [{"dataType": "ip", "data": "203.0.113.77"}, {"dataType": "hostname", "data": "WS-042"}],
})
again = hive.alert.get(alert["_id"])
try:
    hive.alert.create(alert={"type": "x", "source": "y", "title": "no sourceRef", "description": ""})
    err = None
except TheHiveError as e:
    err = str(e)
try:
    hive.alert.create(alert={"type": "velociraptor", "source": "Velociraptor", "sourceRef": "F.C2ABC123",
        "title": "the same triple again", "description": "x"})
    dup = None
except TheHiveError as e:
    dup = str(e)
import tempfile, os
with tempfile.NamedTemporaryFile("wb", suffix="-invoice.exe", delete=False) as f:
    f.write(b"MZ not really a program")
with_file = hive.alert.create(alert={"type": "phish", "source": "Mailbox", "sourceRef": "M-77",
    "title": "Attachment from a phishing mail", "description": "see the file",
    "observables": [{"dataType": "file", "attachment": "att-key-1"}]},
    attachment_map={"att-key-1": f.name})
os.unlink(f.name)
# observables added to the stored alert: a value, then a file
added = hive.alert.create_observable(alert["_id"], observable={"dataType": "domain",
    "data": "c2.evil.example", "message": "beacon target", "ioc": True, "tags": ["c2"]})
with tempfile.NamedTemporaryFile("wb", suffix="-dropper.bin", delete=False) as f2:
    f2.write(b"second stage")
added_file = hive.alert.create_observable(alert["_id"], observable={"dataType": "file",
    "message": "dropped by the loader"}, observable_path=f2.name)
os.unlink(f2.name)
after = hive.alert.get(alert["_id"])
# the query API
from thehive4py.query.filters import Eq, Gte, Like
from thehive4py.query.sort import Asc, Desc
from thehive4py.query.page import Paginate
hive.alert.create(alert={"type": "velociraptor", "source": "Velociraptor", "sourceRef": "F.LOW1",
    "title": "Low noise", "description": "", "severity": 1})
first_page = hive.alert.find(filters=Eq("source", "Velociraptor") & Gte("severity", 1),
    sortby=Asc("severity"), paginate=Paginate(start=0, end=1))
by_severity = hive.alert.find(filters=Eq("source", "Velociraptor"), sortby=Desc("severity"))
count_all = hive.alert.count()
count_high = hive.alert.count(filters=Gte("severity", 3) & Like("title", "powershell"))
print(json.dumps({"created": alert, "read": again, "error": err, "duplicate": dup,
    "with_file": with_file, "file_name": os.path.basename(f.name),
    "added": added, "added_file": added_file, "dropper_name": os.path.basename(f2.name),
    "after": after, "first_page": first_page, "by_severity": by_severity,
    "count_all": count_all, "count_high": count_high}))
"#;
    let v = run_thehive4py(&t, &tok, script).await;
    let id = v["created"]["_id"].as_str().unwrap();
    assert_eq!(v["read"]["_id"], id);
    assert_eq!(v["read"]["sourceRef"], "F.C2ABC123");
    assert_eq!(v["read"]["status"], "New");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("AttributeCheckingError"),
        "{v}"
    );
    assert!(
        v["duplicate"].as_str().unwrap().contains("already exists"),
        "thehive4py raises on a second alert with the same triple: {v}"
    );
    // a file observable's attachment: its name and SHA-256 are observables of the event
    let desk0 = t.user("hd0", &[Role::Helpdesk]).await;
    let fid = v["with_file"]["_id"].as_str().unwrap();
    let fe = t.get(&format!("/api/v1/events/{fid}"), &desk0).await.body;
    let obs = fe["observables"].as_array().unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"MZ not really a program"))
    };
    assert!(
        obs.iter()
            .any(|o| o["kind"] == "sha256" && o["value"] == sha.as_str()),
        "{fe}"
    );
    assert!(
        obs.iter()
            .any(|o| o["kind"] == "filename" && o["value"] == v["file_name"]),
        "{fe}"
    );
    // observables added to the stored alert: answered as TheHive's list of observables, and
    // the event's from then on (its list, the observable's links)
    assert_eq!(v["added"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["added"][0]["_type"], "Observable");
    assert_eq!(v["added"][0]["data"], "c2.evil.example");
    assert_eq!(v["added"][0]["dataType"], "domain");
    assert_eq!(v["added"][0]["ioc"], true);
    assert_eq!(v["added"][0]["message"], "beacon target");
    let dropper_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"second stage"))
    };
    let added_files: Vec<&str> = v["added_file"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["data"].as_str())
        .collect();
    assert!(
        added_files.contains(&dropper_sha.as_str())
            && added_files.contains(&v["dropper_name"].as_str().unwrap()),
        "{v}"
    );
    assert!(
        v["after"]["observableCount"].as_u64().unwrap() >= 5,
        "{}",
        v["after"]
    );
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let e = t.get(&format!("/api/v1/events/{id}"), &desk).await.body;
    let kinds_values: Vec<(String, String)> = e["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (k, val) in [
        ("domain", "c2.evil.example"),
        ("sha256", dropper_sha.as_str()),
        ("filename", v["dropper_name"].as_str().unwrap()),
    ] {
        assert!(
            kinds_values.contains(&(k.to_string(), val.to_string())),
            "{k} {val}: {e}"
        );
    }
    let oid = v["added"][0]["_id"].as_str().unwrap();
    let detail = t.get(&format!("/api/v1/observables/{oid}"), &desk).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["event_ids"], json!([id]), "{}", detail.body);
    let listed = t.get("/api/v1/observables?q=c2.evil", &desk).await.body;
    assert_eq!(listed["items"][0]["id"], oid, "{listed}");
    // the query API: filters, sort, page and count over the alerts
    let titles = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| a["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(titles(&v["first_page"]), ["Low noise"], "{v}");
    assert_eq!(
        titles(&v["by_severity"]),
        ["Suspicious PowerShell on WS-042", "Low noise"],
        "{v}"
    );
    assert_eq!(v["count_all"], 3, "{v}");
    assert_eq!(v["count_high"], 1, "{v}");
    assert_eq!(e["source"], "Velociraptor");
    assert_eq!(e["severity"], "high");
    assert!(
        e["observables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["value"] == "203.0.113.77"),
        "{e}"
    );
}

#[tokio::test]
async fn metrics_count_intake_and_http_and_are_not_public() {
    firebreak_server::metrics::install();
    let t = TestApp::new().await;
    let sensor = t.user("ids", &[Role::Reporter]).await;
    let r = t
        .ndjson(
            &sensor,
            "format=eve",
            eve_alert(1, "10.9.0.1", "10.9.0.2", "m").into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let local = t
        .send(
            "GET",
            "/metrics",
            &[("x-test-peer", "127.0.0.1:5000")],
            Vec::new(),
        )
        .await;
    assert_eq!(local.status, StatusCode::OK);
    let text = local.body.as_str().unwrap().to_string();
    assert!(text.contains("firebreak_events_received_total"), "{text}");
    assert!(text.contains("firebreak_http_requests_total"), "{text}");
    assert!(
        text.contains("route=\"/api/v1/ingest/ndjson\""),
        "route templates, not raw paths"
    );
    let remote = t
        .send(
            "GET",
            "/metrics",
            &[("x-test-peer", "198.51.100.1:5000")],
            Vec::new(),
        )
        .await;
    assert_eq!(remote.status, StatusCode::UNAUTHORIZED);
    let r = t
        .send(
            "GET",
            "/metrics",
            &[
                ("x-test-peer", "198.51.100.1:5000"),
                ("authorization", &format!("Bearer {sensor}")),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let aud = t.user("aud", &[Role::Auditor]).await;
    let r = t
        .send(
            "GET",
            "/metrics",
            &[
                ("x-test-peer", "198.51.100.1:5000"),
                ("authorization", &format!("Bearer {aud}")),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_intake_token_reports_but_reads_only_its_own_events() {
    use firebreak_domain::role::Scope;
    let t = TestApp::on(Backend::Postgres).await;
    let desk = t.user("hd", &[Role::Helpdesk]).await;
    let other = t.user("other", &[Role::Reporter]).await;
    let intake_only = t.token("hd", &[Scope::Intake]).await;
    let r = t
        .post("/api/v1/events", &other, json!({"title": "someone else's"}))
        .await;
    let foreign = r.body["id"].as_str().unwrap().to_string();
    // NUL in the text does not fail the batch, on PostgreSQL either
    let line = r#"{"timestamp": "2026-11-20T10:15:02.123456+0000", "event_type": "alert", "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "host": "h\u0000x", "alert": {"signature_id": 7, "signature": "nul \u0000 inside", "severity": 1}}"#;
    let r = t
        .ndjson(&intake_only, "format=eve", line.as_bytes().to_vec())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["created"], 1, "{}", r.body);
    let mine = t.events(&intake_only, "").await;
    assert_eq!(
        mine.len(),
        1,
        "an intake-scoped token sees only what it reported: {mine:?}"
    );
    let r = t
        .get(&format!("/api/v1/events/{foreign}"), &intake_only)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.events(&desk, "").await.len(),
        2,
        "the full token sees the queue"
    );
}

#[tokio::test]
async fn a_firing_and_its_resolution_in_one_batch_apply_in_order() {
    let t = TestApp::new().await;
    let am = t.user("am", &[Role::Reporter, Role::Helpdesk]).await;
    let alert = |status: &str| {
        json!({"status": status, "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
               "annotations": {"summary": "disk full"}, "startsAt": "2026-11-20T10:00:00Z", "fingerprint": "abc123"})
    };
    let body = json!({"version": "4", "status": "firing", "receiver": "fb", "groupKey": "{}:{}",
                      "alerts": [alert("firing"), alert("resolved"), alert("firing")]});
    let r = t
        .send(
            "POST",
            "/api/v1/ingest/alertmanager",
            &[("authorization", &format!("Bearer {am}"))],
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["resolved"], 1, "{}", r.body);
    assert_eq!(
        r.body["created"], 2,
        "fired again after the resolution: a new event: {}",
        r.body
    );
    let evs = t.events(&am, "source=alertmanager").await;
    let statuses: Vec<&str> = evs.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["new", "resolved"], "newest first: {evs:?}");
}

#[tokio::test]
async fn a_byte_order_mark_and_event_type_typos_are_handled() {
    let t = TestApp::new().await;
    let tok = t.user("win", &[Role::Reporter]).await;
    // a Windows tool's file: a BOM before line 1
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(
        br#"{"timestamp":"2025-03-01T12:00:00.000+0000","rule":{"level":10,"description":"sshd: brute force","id":"5712"},"agent":{"id":"001","name":"web-01","ip":"10.0.0.5"},"data":{"srcip":"203.0.113.9"},"id":"1.1","full_log":"x"}"#,
    );
    let r = t.ndjson(&tok, "format=wazuh", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["created"], 1, "{}", r.body);
    assert_eq!(r.body["errors"], json!([]), "{}", r.body);
    // a typo in eve_types is named, not taken as a type no line has
    let r = t
        .ndjson(&tok, "format=eve&eve_types=alerts", b"{}".to_vec())
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query").as_deref(),
        Some("eve_types"),
        "{}",
        r.body
    );
    // an unknown format is a query error as a missing one is
    for q in ["format=xml", ""] {
        let r = t.ndjson(&tok, q, b"{}".to_vec()).await;
        assert_eq!(
            assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query").as_deref(),
            Some("format"),
            "{q}: {}",
            r.body
        );
    }
}

#[tokio::test]
async fn hec_errors_before_the_handler_are_in_splunk_shape() {
    let t = TestApp::new().await;
    let tok = t.user("fb", &[Role::Reporter]).await;
    let splunk = format!("Splunk {tok}");
    // a body that is not gzip, declared as gzip (in capitals: codings are case-insensitive)
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &splunk), ("content-encoding", "GZIP")],
            b"not gzip at all".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["code"], 6, "{}", r.body);
    // real gzip with a capitalized coding goes in
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(br#"{"event":{"message":"gzipped"}}"#).unwrap();
        e.finish().unwrap()
    };
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &splunk), ("content-encoding", "GZIP")],
            gz,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["code"], 0, "{}", r.body);
    // acknowledgement is not offered: Splunk's code 14
    let r = t
        .send(
            "POST",
            "/services/collector/ack",
            &[("authorization", &splunk)],
            br#"{"acks":[0]}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["code"], 14, "{}", r.body);
    // an unknown HEC path: Splunk's 404
    let r = t
        .send(
            "GET",
            "/services/collector/nope",
            &[("authorization", &splunk)],
            vec![],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.body["code"], 404, "{}", r.body);
    // basic authentication with the token as password (curl -u x:TOKEN)
    let basic = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x:{tok}"))
        )
    };
    let r = t
        .send(
            "POST",
            "/services/collector/event",
            &[("authorization", &basic)],
            br#"{"event":"basic auth"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // a data channel must be a GUID
    let r = t
        .send(
            "POST",
            "/services/collector/event?channel=notauuid",
            &[("authorization", &splunk)],
            br#"{"event":"x"}"#.to_vec(),
        )
        .await;
    assert_eq!(r.body["code"], 11, "{}", r.body);
}

/// TheHive cases are tickets: Kibana's connector in case mode (create, read, update, comment),
/// Velociraptor's `Server.Alerts.TheHive.Case` (TheHive 4's `/api/case` and `/artifact`), each
/// as those clients send them; errors, also from other layers, in TheHive's shape.
#[tokio::test]
async fn thehive_cases_are_tickets() {
    let t = TestApp::new().await;
    let kibana = t.user("kibana", &[Role::Helpdesk]).await;
    let reporter = t.user("elastalert", &[Role::Reporter]).await;
    let bearer = format!("Bearer {kibana}");
    let h = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        ("x-organisation", "SOC"),
    ];
    // Kibana: createIncident
    let r = t
        .send(
            "POST",
            "/api/v1/case",
            &h,
            json!({"title": "Malware on WS-042", "description": "Beacon to 203.0.113.77 every 60 s",
                   "severity": 3, "tlp": 3, "tags": ["kibana", "T1071"]})
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for k in [
        "_id",
        "_type",
        "_createdBy",
        "_createdAt",
        "number",
        "title",
        "description",
        "severity",
        "severityLabel",
        "startDate",
        "flag",
        "tlp",
        "tlpLabel",
        "pap",
        "papLabel",
        "status",
        "stage",
        "extraData",
        "newDate",
        "timeToDetect",
    ] {
        assert!(r.body.get(k).is_some(), "{k} in {}", r.body);
    }
    assert_eq!(r.body["_type"], "Case");
    assert_eq!(r.body["severity"], 3);
    assert_eq!(r.body["tlp"], 3);
    assert_eq!(r.body["tlpLabel"], "AMBER+STRICT");
    assert_eq!(r.body["status"], "New");
    let id = r.body["_id"].as_str().unwrap().to_string();
    let number = r.body["number"].as_i64().unwrap();
    // the ticket: severity high, TLP as a tag, the IP in the text an observable
    let ticket = t.get(&format!("/api/v1/tickets/{id}"), &kibana).await;
    assert_eq!(ticket.status, StatusCode::OK, "{}", ticket.body);
    assert_eq!(ticket.body["severity"], "high");
    assert_eq!(ticket.body["number"], format!("SEC-{number:06}"));
    let tags = ticket.body["tags"].as_array().unwrap();
    assert!(
        tags.contains(&json!("kibana")) && tags.contains(&json!("tlp:amber+strict")),
        "{tags:?}"
    );
    // getIncident, by id and by number
    let g = t
        .send("GET", &format!("/api/v1/case/{id}"), &h, vec![])
        .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["title"], "Malware on WS-042");
    let g = t
        .send("GET", &format!("/api/v1/case/SEC-{number:06}"), &h, vec![])
        .await;
    assert_eq!(g.body["_id"], id.as_str());
    // TheHive's own form: the case's number alone (and `~` before an id)
    for r in [format!("{number}"), format!("~{id}")] {
        let g = t
            .send("GET", &format!("/api/v1/case/{r}"), &h, vec![])
            .await;
        assert_eq!(g.body["_id"], id.as_str(), "{r}: {}", g.body);
    }
    // a status change is the ticket workflow's: refused, not acknowledged and dropped
    let r = t
        .send(
            "PATCH",
            &format!("/api/v1/case/{number}"),
            &h,
            json!({"status": "TruePositive", "summary": "done"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().starts_with("status: "),
        "{}",
        r.body
    );
    // the same status is no change; a summary is a note in the log
    let r = t
        .send(
            "PATCH",
            &format!("/api/v1/case/{id}"),
            &h,
            json!({"status": "New", "summary": "two hosts affected"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // updateIncident: 204, nulls leave fields alone
    let r = t
        .send(
            "PATCH",
            &format!("/api/v1/case/{id}"),
            &h,
            json!({"title": "Malware on WS-042 (contained)", "description": null, "severity": 4, "tlp": null, "tags": null})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let g = t
        .send("GET", &format!("/api/v1/case/{id}"), &h, vec![])
        .await;
    assert_eq!(g.body["title"], "Malware on WS-042 (contained)");
    assert_eq!(g.body["severity"], 4);
    assert_eq!(g.body["description"], "Beacon to 203.0.113.77 every 60 s");
    assert_eq!(g.body["tlp"], 3, "TLP kept: {}", g.body);
    // addComment: a note in the incident log
    let r = t
        .send(
            "POST",
            &format!("/api/v1/case/{id}/comment"),
            &h,
            json!({"message": "Isolated by EDR at 10:42"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["_type"], "Comment");
    assert_eq!(r.body["createdBy"], "kibana");
    let log = t.get(&format!("/api/v1/tickets/{id}/log"), &kibana).await;
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "Isolated by EDR at 10:42"),
        "{}",
        log.body
    );
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "Summary: two hosts affected"),
        "{}",
        log.body
    );
    // observables (TheHive 5): a list of values, answered as a list
    let r = t
        .send(
            "POST",
            &format!("/api/v1/case/{id}/observable"),
            &h,
            json!({"dataType": "domain", "data": ["evil.example.net", "c2[.]example.org"], "ioc": true, "message": "C2"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["data"], "c2.example.org");
    assert_eq!(list[0]["ioc"], true);
    let obs = t
        .get(&format!("/api/v1/tickets/{id}/observables"), &kibana)
        .await;
    let values: Vec<&str> = obs.body["items"]
        .as_array()
        .or(obs.body.as_array())
        .unwrap()
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert!(
        values.contains(&"evil.example.net") && values.contains(&"203.0.113.77"),
        "{values:?}"
    );
    // a URL given as one keeps every character
    let r = t
        .send(
            "POST",
            &format!("/api/v1/case/{id}/observable"),
            &h,
            json!({"dataType": "url", "data": "http://evil.example/dl.php?id=5;"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(
        r.body[0]["data"], "http://evil.example/dl.php?id=5;",
        "{}",
        r.body
    );
    // Velociraptor: TheHive 4's case, then an artifact with the client's FQDN (Basic auth
    // with the token as password, as thehive4py with a user and password sends)
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("velociraptor:{kibana}"))
    );
    let r = t
        .send(
            "POST",
            "/api/case",
            &[("authorization", &basic)],
            json!({"title": "Hunt hit on C.1234abcd", "description": "Flow F.ABC", "tlp": 3, "tags": ["C.1234abcd", "F.ABC", "ws-042.corp.example"]})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let vid = r.body["_id"].as_str().unwrap().to_string();
    // TheHive 4's TLP 3 is RED: kept as RED, read back as 3 on v0 and as 4 on v1
    assert_eq!(
        (r.body["tlp"].clone(), r.body["tlpLabel"].clone()),
        (json!(3), json!("RED"))
    );
    let g = t
        .send("GET", &format!("/api/v1/case/{vid}"), &h, vec![])
        .await;
    assert_eq!(
        (g.body["tlp"].clone(), g.body["tlpLabel"].clone()),
        (json!(4), json!("RED"))
    );
    let g = t.send("GET", &format!("/api/case/{vid}"), &h, vec![]).await;
    assert_eq!(g.body["tlp"], 3, "{}", g.body);
    // in TheHive 4's own words: an open case is `Open`, of type `case`, with an owner
    assert_eq!(
        (
            g.body["status"].clone(),
            g.body["_type"].clone(),
            g.body["resolutionStatus"].clone()
        ),
        (json!("Open"), json!("case"), json!(null)),
        "{}",
        g.body
    );
    assert!(g.body["owner"].is_string(), "{}", g.body);
    let r4 = t
        .send(
            "POST",
            "/api/alert",
            &h,
            json!({"type": "hunt", "source": "velociraptor", "sourceRef": "F.TLP", "title": "red alert", "description": "", "tlp": 3})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(
        (r4.status, r4.body["tlpLabel"].clone()),
        (StatusCode::CREATED, json!("RED")),
        "{}",
        r4.body
    );
    let aid = r4.body["_id"].as_str().unwrap();
    let g = t
        .send("GET", &format!("/api/v1/alert/{aid}"), &h, vec![])
        .await;
    assert_eq!(
        (g.body["tlp"].clone(), g.body["tlpLabel"].clone()),
        (json!(4), json!("RED"))
    );
    let g = t
        .send("GET", &format!("/api/alert/{aid}"), &h, vec![])
        .await;
    assert_eq!(
        (g.body["tlp"].clone(), g.body["tlpLabel"].clone()),
        (json!(3), json!("RED"))
    );
    let r = t
        .send(
            "POST",
            &format!("/api/case/{vid}/artifact"),
            &[("authorization", &basic)],
            json!({"data": "ws-042.corp.example", "dataType": "fqdn", "message": "ws-042.corp.example"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["data"], "ws-042.corp.example",
        "one artifact, one object: {}",
        r.body
    );
    // what the sender said of an observable stays with it, in the incident log
    let log = t.get(&format!("/api/v1/tickets/{vid}/log"), &kibana).await;
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"]
                == "observable added: domain ws-042.corp.example; ws-042.corp.example"),
        "{}",
        log.body
    );
    let log = t.get(&format!("/api/v1/tickets/{id}/log"), &kibana).await;
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"]
                == "observable added: domain evil.example.net (indicator of compromise); C2"),
        "{}",
        log.body
    );
    // errors: TheHive's shape everywhere under its paths
    let r = t
        .send(
            "POST",
            "/api/v1/case",
            &h,
            json!({"description": "no title"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["type"], "AttributeCheckingError", "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().starts_with("title"),
        "{}",
        r.body
    );
    let r = t
        .send(
            "POST",
            "/api/v1/case",
            &h,
            json!({"title": "x", "severity": 9})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert!(
        r.body["message"].as_str().unwrap().starts_with("severity"),
        "{}",
        r.body
    );
    let r = t.send("GET", "/api/v1/case/SEC-999999", &h, vec![]).await;
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (StatusCode::NOT_FOUND, json!("NotFoundError"))
    );
    let r = t.send("GET", "/api/v1/case/_search", &h, vec![]).await;
    assert_eq!(r.body["type"], "NotFoundError", "{}", r.body);
    let r = t
        .send("DELETE", &format!("/api/v1/case/{id}"), &h, vec![])
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["type"], "MethodNotAllowed", "{}", r.body);
    let r = t
        .send("POST", "/api/v1/alert/nope/observable", &h, b"{}".to_vec())
        .await;
    assert_eq!(r.body["type"], "NotFoundError", "{}", r.body);
    // a reporter may send alerts, not open tickets
    let r = t
        .send(
            "POST",
            "/api/v1/case",
            &[("authorization", &format!("Bearer {reporter}"))],
            json!({"title": "x"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (StatusCode::FORBIDDEN, json!("AuthorizationError")),
        "{}",
        r.body
    );
    let r = t
        .send(
            "GET",
            &format!("/api/v1/case/{id}"),
            &[("authorization", "Bearer nope")],
            vec![],
        )
        .await;
    assert_eq!(
        (r.status, r.body["type"].clone()),
        (StatusCode::UNAUTHORIZED, json!("AuthenticationError"))
    );
}

/// The real thehive4py (2.1.0) works cases unchanged: create, get, update, comment, an
/// observable and a file observable; its errors are raised as `TheHiveError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thehive4py_works_cases_unchanged() {
    let t = TestApp::new().await;
    let tok = t.user("soar", &[Role::Helpdesk, Role::Responder]).await;
    let script = r#"
import json, sys, tempfile, os
from thehive4py import TheHiveApi
from thehive4py.errors import TheHiveError
hive = TheHiveApi(url=sys.argv[1], apikey=sys.argv[2], max_retries=0)
case = hive.case.create(case={"title": "Phishing wave", "description": "Invoices from 198.51.100.23",
    "severity": 2, "tlp": 1, "pap": 1, "tags": ["phishing"]})
hive.case.update(case["_id"], fields={"severity": 3, "title": "Phishing wave (12 users)"})
again = hive.case.get(case["_id"])
comment = hive.comment.create_in_case(case["_id"], comment={"message": "Blocked the sender domain"})
obs = hive.case.create_observable(case["_id"], observable={"dataType": "mail", "data": "billing@evil.example", "ioc": True})
with tempfile.NamedTemporaryFile("wb", suffix="-invoice.pdf.exe", delete=False) as f:
    f.write(b"MZ payload")
files = hive.case.create_observable(case["_id"], observable={"dataType": "file", "message": "attachment"}, observable_path=f.name)
os.unlink(f.name)
from thehive4py.query.filters import Eq, Like
from thehive4py.query.sort import Desc
from thehive4py.query.page import Paginate
hive.case.update(case["_id"], fields={"assignee": "soar"})
assigned = hive.case.get(case["_id"])
hive.case.update(case["_id"], fields={"assignee": None})
unassigned = hive.case.get(case["_id"])
other = hive.case.create(case={"title": "Lost laptop", "description": "left on a train", "severity": 1})
cases = hive.case.find(filters=Like("title", "phishing"), sortby=Desc("_createdAt"), paginate=Paginate(start=0, end=10))
all_cases = hive.case.find(sortby=Desc("severity"))
case_count = hive.case.count()
low_count = hive.case.count(filters=Eq("severity", 1))
try:
    hive.case.get("SEC-999999")
    missing = None
except TheHiveError as e:
    missing = str(e)
try:
    hive.case.create(case={"description": "no title"})
    invalid = None
except TheHiveError as e:
    invalid = str(e)
print(json.dumps({"case": case, "again": again, "comment": comment, "obs": obs, "files": files,
    "missing": missing, "invalid": invalid, "file_name": os.path.basename(f.name),
    "assigned": assigned, "unassigned": unassigned, "other": other, "cases": cases,
    "all_cases": all_cases, "case_count": case_count, "low_count": low_count}))
"#;
    let v = run_thehive4py(&t, &tok, script).await;
    let id = v["case"]["_id"].as_str().unwrap();
    assert_eq!(v["again"]["_id"], id);
    assert_eq!(v["again"]["title"], "Phishing wave (12 users)");
    assert_eq!(v["again"]["severity"], 3);
    assert_eq!(
        (v["again"]["tlp"].clone(), v["again"]["pap"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(v["comment"]["message"], "Blocked the sender domain");
    assert_eq!(v["obs"][0]["data"], "billing@evil.example");
    let file_values: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["data"].as_str())
        .collect();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b"MZ payload"))
    };
    assert!(file_values.contains(&sha.as_str()), "{v}");
    assert!(
        file_values.contains(&v["file_name"].as_str().unwrap()),
        "{v}"
    );
    assert!(
        v["missing"].as_str().unwrap().contains("NotFoundError"),
        "{v}"
    );
    assert!(
        v["invalid"]
            .as_str()
            .unwrap()
            .contains("AttributeCheckingError"),
        "{v}"
    );
    // `"assignee": None` unassigns (TheHive's optional field)
    assert_eq!(v["assigned"]["assignee"], "soar", "{v}");
    assert!(v["unassigned"]["assignee"].is_null(), "{v}");
    // the query API over cases
    let case_ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(case_ids(&v["cases"]), [id], "{v}");
    assert_eq!(
        case_ids(&v["all_cases"]),
        [id, v["other"]["_id"].as_str().unwrap()],
        "{v}"
    );
    assert_eq!(v["case_count"], 2, "{v}");
    assert_eq!(v["low_count"], 1, "{v}");
    let ticket = t.get(&format!("/api/v1/tickets/{id}"), &tok).await.body;
    assert_eq!(ticket["severity"], "high");
    assert!(ticket["assignee"].is_null(), "{ticket}");
    let obs = t
        .get(&format!("/api/v1/tickets/{id}/observables"), &tok)
        .await
        .body;
    let text = obs.to_string();
    assert!(
        text.contains("billing@evil.example") && text.contains(&sha),
        "{obs}"
    );
}

/// `POST /api/v1/alert/{id}/observable` (and TheHive 4's `/api/alert/{id}/artifact`): for
/// those who may send alerts and can see the alert; audited; 404 for anything else.
#[tokio::test]
async fn thehive_alert_observables_are_added_to_the_event() {
    let t = TestApp::new().await;
    let sensor = t.user("sensor", &[Role::Reporter]).await;
    let other = t.user("other-sensor", &[Role::Reporter]).await;
    let auditor = t.user("aud", &[Role::Auditor]).await;
    let h = |tok: &str| format!("Bearer {tok}");
    let post = |path: String, tok: String, body: Value| {
        let t = &t;
        async move {
            let auth = format!("Bearer {tok}");
            t.send(
                "POST",
                &path,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body.to_string().into_bytes(),
            )
            .await
        }
    };
    let r = post(
        "/api/v1/alert".into(),
        sensor.clone(),
        json!({"type": "ids", "source": "Sensor", "sourceRef": "S-1", "title": "Scan", "description": "",
               "observables": [{"dataType": "ip", "data": "198.51.100.7"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["_id"].as_str().unwrap().to_string();
    // a list of values, answered as a list
    let r = post(
        format!("/api/v1/alert/{id}/observable"),
        sensor.clone(),
        json!({"dataType": "ip", "data": ["198.51.100.8", "198.51.100.7"], "message": "scanners"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", r.body);
    assert_eq!(list[0]["data"], "198.51.100.8");
    assert_eq!(list[0]["_type"], "Observable");
    assert_eq!(list[0]["message"], "scanners");
    // TheHive 4: one artifact, one object
    let r = post(
        format!("/api/alert/{id}/artifact"),
        sensor.clone(),
        json!({"dataType": "domain", "data": "scan.example", "message": "PTR"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"], "scan.example", "{}", r.body);
    let e = t.get(&format!("/api/v1/events/{id}"), &sensor).await.body;
    let values: Vec<&str> = e["observables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["value"].as_str())
        .collect();
    assert_eq!(
        values.iter().filter(|v| **v == "198.51.100.7").count(),
        1,
        "an observable the event had is not added twice: {e}"
    );
    assert!(
        values.contains(&"198.51.100.8") && values.contains(&"scan.example"),
        "{e}"
    );
    let g = t
        .send(
            "GET",
            &format!("/api/v1/alert/{id}"),
            &[("authorization", h(&sensor).as_str())],
            vec![],
        )
        .await;
    assert_eq!(g.body["observableCount"], 3, "{}", g.body);
    // audited, one entry per new observable, with the message
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    let added: Vec<_> = entries
        .iter()
        .filter(|a| a.action == "event.observable_added" && a.object_id == id)
        .collect();
    assert_eq!(added.len(), 2, "{added:?}");
    assert!(added.iter().all(|a| a.actor == "sensor"));
    assert!(added[0].details.contains("scanners"), "{:?}", added[0]);
    // another reporter cannot see it: 404; a reader who may not send alerts: 403
    let r = post(
        format!("/api/v1/alert/{id}/observable"),
        other.clone(),
        json!({"dataType": "ip", "data": "203.0.113.1"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.body["type"], "NotFoundError");
    let r = post(
        format!("/api/v1/alert/{id}/observable"),
        auditor.clone(),
        json!({"dataType": "ip", "data": "203.0.113.1"}),
    )
    .await;
    assert!(
        matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{}: {}",
        r.status,
        r.body
    );
    // bad bodies name the field; unknown alerts are 404
    let r = post(
        format!("/api/v1/alert/{id}/observable"),
        sensor.clone(),
        json!({"data": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains("dataType"));
    let r = post(
        format!("/api/v1/alert/{id}/observable"),
        sensor.clone(),
        json!({"dataType": "ip", "data": ""}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    for missing in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_string()] {
        let r = post(
            format!("/api/v1/alert/{missing}/observable"),
            sensor.clone(),
            json!({"dataType": "ip", "data": "203.0.113.1"}),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    }
    let doc = t.get("/api/v1/openapi.json", &sensor).await.body;
    for path in [
        "/api/v1/alert/{id}/observable",
        "/api/alert/{id}/artifact",
        "/api/v1/query",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
}

/// `POST /api/v1/query`: a body it cannot run is 400 in TheHive's shape naming what is wrong
/// (never 500); and a caller sees only what it may (a reporter: its own alerts).
#[tokio::test]
async fn thehive_query_refuses_bad_bodies_and_shows_only_what_the_caller_may_see() {
    let t = TestApp::new().await;
    let a = t.user("sensor-a", &[Role::Reporter]).await;
    let b = t.user("sensor-b", &[Role::Reporter]).await;
    let desk = t.user("desk", &[Role::Helpdesk]).await;
    let send = |tok: String, body: Vec<u8>, path: &'static str| {
        let t = &t;
        async move {
            let auth = format!("Bearer {tok}");
            t.send(
                "POST",
                path,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    for (tok, n) in [(&a, 1), (&a, 2), (&b, 3)] {
        let r = send(
            tok.clone(),
            json!({"type": "ids", "source": "Sensor", "sourceRef": format!("R-{n}"),
                   "title": format!("alert {n}"), "description": "", "severity": n})
            .to_string()
            .into_bytes(),
            "/api/v1/alert",
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let count = |tok: String| {
        let send = &send;
        async move {
            send(
                tok,
                json!({"query": [{"_name": "listAlert"}, {"_name": "count"}]})
                    .to_string()
                    .into_bytes(),
                "/api/v1/query",
            )
            .await
        }
    };
    assert_eq!(count(a.clone()).await.body, json!(2));
    assert_eq!(count(b.clone()).await.body, json!(1));
    assert_eq!(count(desk.clone()).await.body, json!(3));
    let r = send(
        a.clone(),
        json!({"query": [{"_name": "listAlert"},
            {"_name": "filter", "_or": [{"_eq": {"_field": "severity", "_value": 3}}, {"_lt": {"_field": "severity", "_value": 2}}]},
            {"_name": "sort", "_fields": [{"severity": "desc"}]}],
            "excludeFields": ["description"]})
        .to_string()
        .into_bytes(),
        "/api/v1/query",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body.as_array().unwrap();
    assert_eq!(items.len(), 1, "b's alert is not a's: {}", r.body);
    assert_eq!(items[0]["title"], "alert 1");
    assert!(items[0].get("description").is_none());
    // bad bodies: 400, TheHive-shaped, naming the operator, field, step or type
    for (body, says) in [
        (
            json!({"query": [{"_name": "listAlert"}, {"_name": "filter", "_regex": {"_field": "title", "_value": "x"}}]}),
            "_regex",
        ),
        (
            json!({"query": [{"_name": "listAlert"}, {"_name": "filter", "_eq": {"_field": "colour", "_value": "red"}}]}),
            "colour",
        ),
        (
            json!({"query": [{"_name": "listCase"}, {"_name": "filter", "_gt": {"_field": "severity", "_value": "very"}}]}),
            "severity",
        ),
        (
            json!({"query": [{"_name": "listCase"}, {"_name": "filter", "_in": {"_field": "status", "_values": "New"}}]}),
            "_values",
        ),
        (
            json!({"query": [{"_name": "listCase"}, {"_name": "sort", "_fields": [{"title": 1}]}]}),
            "asc",
        ),
        (
            json!({"query": [{"_name": "listCase"}, {"_name": "page", "from": "0", "to": 10}]}),
            "from",
        ),
        (json!({"query": [{"_name": "listTask"}]}), "listTask"),
        (json!({"query": "listAlert"}), "query"),
        (json!({"nothing": []}), "query"),
        (json!([1, 2]), "body"),
    ] {
        let r = send(desk.clone(), body.to_string().into_bytes(), "/api/v1/query").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.body["type"], "BadRequest", "{}", r.body);
        assert!(
            r.body["message"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.body
        );
    }
    let r = send(desk.clone(), b"{not json".to_vec(), "/api/v1/query").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = t
        .send(
            "POST",
            "/api/v1/query",
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["type"], "AuthenticationError");
}
