//! Automation through the API, on both backends: playbooks stored and versioned (invalid ones
//! refused with every YAML path), runs enqueued by the change that triggers them and executed
//! by the worker, intel lookups against a local mock of VirusTotal v3 (through the outbound
//! guard), the shipped phishing and critical-asset playbooks end to end, approvals by role,
//! retries that never repeat a completed step, the dead-letter state, the local indicator store
//! matched at intake, and exports.

use crate::*;
use axum::extract::State as AxState;
use axum::routing::{get, post};
use serde_json::json;
use std::sync::Mutex;

/// What the mock services saw and how they answer.
#[derive(Default)]
struct Mock {
    /// (path, x-apikey or webhook-id header)
    seen: Mutex<Vec<(String, String)>>,
    /// Failures to answer before succeeding, for the webhook receiver.
    webhook_failures: Mutex<u32>,
}

async fn vt_file(
    AxState(m): AxState<Arc<Mock>>,
    axum::extract::Path(hash): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let key = headers
        .get("x-apikey")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    m.seen.lock().unwrap().push((format!("/files/{hash}"), key));
    if hash.starts_with("bad") || hash == "44d88612fea8a8f36de82e1278abb02f" {
        Json(json!({"data": {"type": "file", "id": hash, "attributes": {"last_analysis_stats": {"malicious": 61, "suspicious": 0, "harmless": 0, "undetected": 9}}}})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "NotFoundError", "message": "not found"}})),
        )
            .into_response()
    }
}

async fn vt_any(
    AxState(m): AxState<Arc<Mock>>,
    axum::extract::Path((kind, id)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let key = headers
        .get("x-apikey")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    m.seen.lock().unwrap().push((format!("/{kind}/{id}"), key));
    // a URL id is the URL in unpadded base64url
    let text = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &id)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or(id.clone());
    let malicious = if text.contains("evil") { 12 } else { 0 };
    let harmless = if malicious > 0 { 0 } else { 70 };
    Json(json!({"data": {"type": kind, "id": id, "attributes": {"last_analysis_stats": {"malicious": malicious, "suspicious": 0, "harmless": harmless, "undetected": 3}}}})).into_response()
}

async fn hook(AxState(m): AxState<Arc<Mock>>, headers: axum::http::HeaderMap) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    m.seen.lock().unwrap().push(("/hook".into(), id));
    let mut f = m.webhook_failures.lock().unwrap();
    if *f > 0 {
        *f -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::NO_CONTENT
}

async fn slack(AxState(m): AxState<Arc<Mock>>, body: String) -> &'static str {
    m.seen.lock().unwrap().push(("/slack".into(), body));
    "ok"
}

async fn mock_server() -> (String, Arc<Mock>) {
    let m = Arc::new(Mock::default());
    let app = axum::Router::new()
        .route("/api/v3/files/{hash}", get(vt_file))
        .route("/api/v3/{kind}/{id}", get(vt_any))
        .route("/hook", post(hook))
        .route("/slack", post(slack))
        .with_state(m.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), m)
}

use axum::Json;

async fn automated(backend: Backend) -> TestApp {
    let mut t = TestApp::on(backend).await;
    let http = firebreak_server::outbound::GuardedClient::new(&Default::default()).unwrap();
    let sender =
        firebreak_server::webhook::WebhookSender::new(&firebreak_server::webhook::WebhookConfig {
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            allow_private_targets: true,
        })
        .unwrap();
    t.app = t
        .app
        .clone()
        .with_http(Arc::new(http))
        .with_secret_key(&[7u8; 32])
        .with_webhooks(Arc::new(sender));
    t.router = firebreak_server::router(t.app.clone());
    t
}

async fn put_yaml(t: &TestApp, token: &str, uri: &str, yaml: &str) -> Resp {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/yaml")
        .body(Body::from(yaml.to_string()))
        .unwrap();
    t.raw(req).await
}

/// Runs the worker until no run is due.
async fn drain(t: &TestApp) {
    for _ in 0..50 {
        if t.app.run_due_jobs("test-worker", 16).await.unwrap() == 0 {
            return;
        }
    }
    panic!("runs kept coming");
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../playbooks/examples/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[tokio::test]
async fn playbooks_are_validated_versioned_and_listed() {
    let t = automated(Backend::Sqlite).await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    // every error, each with its YAML path
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", "name: Bad\ntrigger: { on: nope }\nsteps:\n  - id: a\n    add_log: { text: '{{ x' }\n  - id: a\n    teleport: {}\n").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    for f in [
        "name",
        "trigger.on",
        "steps[0].add_log.text",
        "steps[1].id",
        "steps[1].teleport",
        "steps[1]",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    // not YAML at all
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", "steps: [unclosed").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // responders may read but not write
    let r = put_yaml(&t, &resp, "/api/v1/playbooks", &example("phishing-report")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    for name in [
        "phishing-report",
        "edr-malware-hash",
        "critical-asset-alert",
        "daily-open-tickets-digest",
    ] {
        let r = put_yaml(&t, &admin, "/api/v1/playbooks", &example(name)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.body);
        assert_eq!(r.body["version"], 1);
    }
    // a second store is version 2; both versions are kept
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", &example("phishing-report")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 2);
    let r = t
        .post(
            "/api/v1/playbooks/phishing-report/disable",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.body["enabled"], false, "{}", r.body);
    assert_eq!(r.body["version"], 3);
    let r = t
        .get("/api/v1/playbooks/phishing-report/versions", &resp)
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3, "{}", r.body);
    let r = t.get("/api/v1/playbooks", &resp).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 4);
    // the URL's name must be the YAML's
    let req = Request::builder()
        .method("PUT")
        .uri("/api/v1/playbooks/other-name")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/yaml")
        .body(Body::from(example("phishing-report")))
        .unwrap();
    let r = t.raw(req).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    // validation without storing
    let r = put_yaml(
        &t,
        &resp,
        "/api/v1/playbooks/validate",
        &example("edr-malware-hash"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["valid"], true);
}

async fn connectors(t: &TestApp, admin: &str, base: &str) {
    let r = t
        .call("PUT", "/api/v1/connectors/vt", Some(admin), Some(json!({
            "kind": "virustotal", "base_url": format!("{base}/api/v3"), "secret": "vt-secret-key-123",
            "allow_private": true, "rate_per_minute": 1000
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["has_secret"], true);
    assert!(
        !r.body.to_string().contains("vt-secret-key-123"),
        "the secret came back: {}",
        r.body
    );
}

#[tokio::test]
async fn phishing_report_playbook_on_sqlite() {
    phishing_report_playbook(automated(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn phishing_report_playbook_on_postgres() {
    phishing_report_playbook(automated(Backend::Postgres).await).await;
}

async fn phishing_report_playbook(t: TestApp) {
    let (base, mock) = mock_server().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    connectors(&t, &admin, &base).await;
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", &example("phishing-report")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    // a known-bad link: ticket opened and escalated, with the lookup on the timeline
    let r = t
        .post(
            "/api/v1/events",
            &hd,
            json!({
                "title": "Phishing mail: invoice overdue",
                "description": "Link in the mail: hxxps://evil-invoices[.]example/pay?id=7",
                "reporter": {"kind": "employee", "name": "Ann", "contact": "ann@example.com"}
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bad_event = r.body["id"].as_str().unwrap().to_string();
    let runs = t.get("/api/v1/playbook-runs?status=queued", &resp).await;
    assert_eq!(
        runs.body["items"].as_array().unwrap().len(),
        1,
        "enqueued with the event: {}",
        runs.body
    );
    drain(&t).await;
    let e = t.get(&format!("/api/v1/events/{bad_event}"), &resp).await;
    assert_eq!(e.body["status"], "ticketed", "{}", e.body);
    let ticket = e.body["ticket_id"].as_str().unwrap().to_string();
    let tk = t.get(&format!("/api/v1/tickets/{ticket}"), &resp).await;
    assert_eq!(tk.body["criticality"], "escalation", "{}", tk.body);
    assert!(
        mock.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(_, k)| k == "vt-secret-key-123"),
        "the API key went in x-apikey"
    );
    let runs = t
        .get(&format!("/api/v1/tickets/{ticket}/playbook-runs"), &resp)
        .await;
    let run = &runs.body["items"][0];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        run["steps"]["lookup"]["output"]["verdict"], "malicious",
        "{run}"
    );
    assert!(run["steps"]["lookup"]["duration_ms"].is_i64());
    assert_eq!(
        run["steps"]["dismiss"],
        Value::Null,
        "the clean path did not run"
    );
    // the run and each step are on the ticket's timeline, with inputs, outputs and duration
    let log = t
        .get(&format!("/api/v1/tickets/{ticket}/log?limit=200"), &resp)
        .await;
    let text = log.body.to_string();
    for needle in [
        "playbook.step",
        "playbook.completed",
        "intel_lookup",
        "duration_ms",
    ] {
        assert!(
            text.contains(needle),
            "{needle} not on the timeline: {text}"
        );
    }
    // the secret is nowhere in the record
    assert!(!text.contains("vt-secret-key-123"));

    // a known-clean link: dismissed as a false positive
    let r = t
        .post(
            "/api/v1/events",
            &hd,
            json!({
                "title": "Phishing? a newsletter link",
                "description": "It points to https://newsletter.example.org/read",
                "reporter": {"kind": "employee", "name": "Bob"}
            }),
        )
        .await;
    let clean_event = r.body["id"].as_str().unwrap().to_string();
    drain(&t).await;
    let e = t.get(&format!("/api/v1/events/{clean_event}"), &resp).await;
    assert_eq!(e.body["status"], "dismissed", "{}", e.body);

    // an event the condition does not hold for starts nothing
    let before = t.get("/api/v1/playbook-runs", &resp).await.body["items"]
        .as_array()
        .unwrap()
        .len();
    t.post(
        "/api/v1/events",
        &hd,
        json!({"title": "Printer on fire", "reporter": {"kind": "employee", "name": "Cy"}}),
    )
    .await;
    let after = t.get("/api/v1/playbook-runs", &resp).await.body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);

    // the cached verdict answers a second lookup without calling the service again
    let calls = mock.seen.lock().unwrap().len();
    let r = t
        .post(
            "/api/v1/lookup",
            &resp,
            json!({"kind": "url", "value": "https://evil-invoices.example/pay?id=7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["verdict"], "malicious", "{}", r.body);
    assert_eq!(
        mock.seen.lock().unwrap().len(),
        calls,
        "served from the cache"
    );
}

#[tokio::test]
async fn outbound_guard_refuses_internal_targets_unless_allowlisted() {
    let t = automated(Backend::Sqlite).await;
    let (base, mock) = mock_server().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    // the same mock, but not allowlisted: refused after resolution, nothing sent
    let r = t
        .call("PUT", "/api/v1/connectors/vt-internal", Some(&admin), Some(json!({
            "kind": "virustotal", "base_url": format!("{}/api/v3", base.replace("127.0.0.1", "localhost")), "secret": "k-123456"
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t
        .post(
            "/api/v1/lookup",
            &resp,
            json!({"kind": "sha256", "value": "a".repeat(64)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        r.body
    );
    assert!(!r.body.to_string().contains("k-123456"));
    assert!(mock.seen.lock().unwrap().is_empty());
    // the metadata address is refused too, whatever the scheme
    for url in [
        "https://169.254.169.254/latest",
        "http://[::1]:80/x",
        "https://10.1.2.3/",
    ] {
        let r = t
            .call(
                "PUT",
                "/api/v1/connectors/meta",
                Some(&admin),
                Some(json!({"kind": "misp", "base_url": url, "secret": "k-123456"})),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.body);
        let r = t
            .post(
                "/api/v1/lookup",
                &resp,
                json!({"kind": "ip", "value": "203.0.113.9", "connectors": ["meta"]}),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{url}: {}",
            r.body
        );
    }
    // bad connector definitions are refused by field
    let r = t
        .call(
            "PUT",
            "/api/v1/connectors/x",
            Some(&admin),
            Some(json!({"kind": "slack"})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("secret")
    );
    let r = t
        .call(
            "PUT",
            "/api/v1/connectors/x",
            Some(&admin),
            Some(json!({"kind": "carrier-pigeon"})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("kind")
    );
    let r = t
        .call(
            "PUT",
            "/api/v1/connectors/BadName",
            Some(&admin),
            Some(json!({"kind": "http"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // only admins manage connectors
    let r = t
        .call(
            "PUT",
            "/api/v1/connectors/y",
            Some(&resp),
            Some(json!({"kind": "virustotal", "secret": "s"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn retries_never_repeat_a_completed_step_and_end_dead() {
    let t = automated(Backend::Sqlite).await;
    let (base, mock) = mock_server().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let sr = t.user("sr", &[Role::SeniorResponder]).await;
    let yaml = format!(
        "name: notify-soc\ntrigger: manual\nmax_attempts: 3\nsteps:\n  - id: before\n    add_log: {{ text: 'step one ran' }}\n  - id: tell\n    webhook: {{ url: '{base}/hook' }}\n  - id: after\n    add_log: {{ text: 'step three ran' }}\n"
    );
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", &yaml).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let tk = t
        .post(
            "/api/v1/tickets",
            &resp,
            json!({"title": "webhook target test"}),
        )
        .await;
    let number = tk.body["number"].as_str().unwrap().to_string();
    *mock.webhook_failures.lock().unwrap() = 1;
    let r = t
        .post(
            "/api/v1/playbooks/notify-soc/run",
            &resp,
            json!({"ticket": number}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["id"].as_str().unwrap().to_string();
    drain(&t).await;
    let run = t
        .get(&format!("/api/v1/playbook-runs/{run_id}"), &resp)
        .await;
    assert_eq!(
        run.body["status"], "queued",
        "retry scheduled: {}",
        run.body
    );
    assert_eq!(run.body["attempts"], 1);
    assert!(
        run.body["last_error"].as_str().unwrap().contains("503"),
        "{}",
        run.body
    );
    // after the backoff the run resumes at the failed step
    t.clock.advance(time::Duration::minutes(5));
    drain(&t).await;
    let run = t
        .get(&format!("/api/v1/playbook-runs/{run_id}"), &resp)
        .await;
    assert_eq!(run.body["status"], "succeeded", "{}", run.body);
    let log = t
        .get(&format!("/api/v1/tickets/{number}/log?limit=200"), &resp)
        .await;
    let items = log.body["items"].as_array().unwrap();
    let count = |s: &str| items.iter().filter(|e| e["text"] == s).count();
    assert_eq!(
        count("step one ran"),
        1,
        "step one is not repeated: {}",
        log.body
    );
    assert_eq!(count("step three ran"), 1);
    // the webhook kept one id across attempts, for the receiver to deduplicate
    let ids: Vec<String> = mock
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/hook")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], format!("{run_id}.tell"));

    // a target that never answers well: dead after max_attempts, then retried by hand
    *mock.webhook_failures.lock().unwrap() = 100;
    let r = t
        .post(
            "/api/v1/playbooks/notify-soc/run",
            &resp,
            json!({"ticket": number}),
        )
        .await;
    let run_id = r.body["id"].as_str().unwrap().to_string();
    for _ in 0..4 {
        drain(&t).await;
        t.clock.advance(time::Duration::hours(1));
    }
    let run = t
        .get(&format!("/api/v1/playbook-runs/{run_id}"), &resp)
        .await;
    assert_eq!(run.body["status"], "dead", "{}", run.body);
    assert_eq!(run.body["attempts"], 3);
    let dead = t.get("/api/v1/playbook-runs?status=dead", &resp).await;
    assert_eq!(dead.body["items"].as_array().unwrap().len(), 1);
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/retry"),
            &resp,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "responders do not retry");
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/retry"),
            &sr,
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "queued", "{}", r.body);
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/cancel"),
            &resp,
            json!({"reason": "target is gone"}),
        )
        .await;
    assert_eq!(r.body["status"], "cancelled", "{}", r.body);
    drain(&t).await;
    let run = t
        .get(&format!("/api/v1/playbook-runs/{run_id}"), &resp)
        .await;
    assert_eq!(run.body["status"], "cancelled");
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/cancel"),
            &resp,
            json!({}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "run_ended");
}

#[tokio::test]
async fn critical_asset_playbook_waits_for_a_manager_on_sqlite() {
    critical_asset_playbook(automated(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn critical_asset_playbook_waits_for_a_manager_on_postgres() {
    critical_asset_playbook(automated(Backend::Postgres).await).await;
}

async fn critical_asset_playbook(t: TestApp) {
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let mgr = t.user("boss", &[Role::Manager]).await;
    let r = put_yaml(
        &t,
        &admin,
        "/api/v1/playbooks",
        &example("critical-asset-alert"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t
        .post("/api/v1/assets", &admin, json!({"name": "pay-db-01", "addresses": ["10.9.8.7"], "owner": "payments", "critical_production": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let eve = r#"{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"alert","src_ip":"203.0.113.50","src_port":4444,"dest_ip":"10.9.8.7","dest_port":5432,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2024217,"rev":3,"signature":"ET EXPLOIT PostgreSQL brute force","category":"Attempted Administrator Privilege Gain","severity":1}}"#;
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/ingest/ndjson?format=eve")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(format!("{eve}\n")))
        .unwrap();
    let r = t.raw(req).await;
    assert!(r.status.is_success(), "{}", r.body);
    drain(&t).await;
    let runs = t.get("/api/v1/playbook-runs?status=waiting", &resp).await;
    let run = runs.body["items"][0].clone();
    assert_eq!(
        run["waiting_for"]["approval"]["role"], "manager",
        "{}",
        runs.body
    );
    let run_id = run["id"].as_str().unwrap().to_string();
    let ticket = run["ticket_id"].as_str().unwrap().to_string();
    let tk = t.get(&format!("/api/v1/tickets/{ticket}"), &resp).await;
    assert_eq!(tk.body["criticality"], "escalation", "{}", tk.body);
    // management was told in-app
    let notes = t
        .get(&format!("/api/v1/tickets/{ticket}/notifications"), &mgr)
        .await;
    assert!(notes.body.to_string().contains("boss"), "{}", notes.body);
    // only a manager decides
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/approval"),
            &resp,
            json!({"approve": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/approval"),
            &mgr,
            json!({"approve": "yes"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/approval"),
            &mgr,
            json!({"approve": true, "comment": "go"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    drain(&t).await;
    let run = t
        .get(&format!("/api/v1/playbook-runs/{run_id}"), &resp)
        .await;
    assert_eq!(run.body["status"], "succeeded", "{}", run.body);
    let cc = t
        .get(&format!("/api/v1/tickets/{ticket}/change-controls"), &resp)
        .await;
    let first = &cc.body["items"][0];
    assert_eq!(first["kind"], "lockdown", "{}", cc.body);
    assert_eq!(
        first["requested_by"], "playbook:critical-asset-alert",
        "{}",
        cc.body
    );
    // a second decision is refused: the run no longer waits
    let r = t
        .post(
            &format!("/api/v1/playbook-runs/{run_id}/approval"),
            &mgr,
            json!({"approve": false}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "not_waiting");
}

#[tokio::test]
async fn an_approval_that_times_out_takes_the_timeout_path() {
    let t = automated(Backend::Sqlite).await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let yaml = "name: ask\ntrigger: ticket_created\nwhen: 'ticket.title.startsWith(\"ASK\")'\nsteps:\n  - id: ok\n    approval:\n      role: manager\n      prompt: proceed?\n      timeout: 1h\n      on_timeout:\n        - { id: late, add_log: { text: 'nobody answered' } }\n  - id: never\n    add_log: { text: 'approved path' }\n";
    let r = put_yaml(&t, &admin, "/api/v1/playbooks", yaml).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let tk = t
        .post("/api/v1/tickets", &resp, json!({"title": "ASK me"}))
        .await;
    let number = tk.body["number"].as_str().unwrap().to_string();
    t.post("/api/v1/tickets", &resp, json!({"title": "not this one"}))
        .await;
    drain(&t).await;
    let runs = t.get("/api/v1/playbook-runs", &resp).await;
    assert_eq!(
        runs.body["items"].as_array().unwrap().len(),
        1,
        "the condition picked one ticket: {}",
        runs.body
    );
    assert_eq!(runs.body["items"][0]["status"], "waiting");
    t.clock.advance(time::Duration::minutes(61));
    drain(&t).await;
    let runs = t.get("/api/v1/playbook-runs", &resp).await;
    assert_eq!(
        runs.body["items"][0]["status"], "succeeded",
        "{}",
        runs.body
    );
    assert_eq!(runs.body["items"][0]["outcome"], "approval timed out");
    let log = t
        .get(&format!("/api/v1/tickets/{number}/log?limit=200"), &resp)
        .await;
    let text = log.body.to_string();
    assert!(text.contains("nobody answered"), "{text}");
    assert!(!text.contains("approved path"));
}

#[tokio::test]
async fn indicators_are_imported_matched_at_intake_and_exported_on_sqlite() {
    indicators(automated(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn indicators_are_imported_matched_at_intake_and_exported_on_postgres() {
    indicators(automated(Backend::Postgres).await).await;
}

async fn indicators(t: TestApp) {
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let csv = "type,value,confidence,source,expiry\nip,198.51.100.66,95,abuse-feed,\ndomain,Bad-Domain.Example,60,,\nbanana,x,1,,\nip,203.0.113.77,80,old-feed,2020-01-01\n";
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/indicators/import?format=csv&source=local-list")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let r = t.raw(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["imported"], 2, "{}", r.body);
    assert_eq!(r.body["errors"][0]["position"], "line 4", "{}", r.body);
    let r = t.get("/api/v1/indicators?kind=domain", &resp).await;
    assert_eq!(
        r.body["items"][0]["value"], "bad-domain.example",
        "normalized like observables: {}",
        r.body
    );
    assert_eq!(r.body["items"][0]["source"], "local-list");
    // an EVE alert from the listed address is raised and shows the indicator's source
    let eve = r#"{"timestamp":"2026-12-06T05:00:00.000000+0000","event_type":"alert","src_ip":"198.51.100.66","src_port":51000,"dest_ip":"192.0.2.10","dest_port":443,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2100498,"rev":7,"signature":"GPL ATTACK_RESPONSE id check returned root","category":"Potentially Bad Traffic","severity":3}}"#;
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/ingest/ndjson?format=eve")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/x-ndjson")
        .body(Body::from(format!("{eve}\n")))
        .unwrap();
    assert!(t.raw(req).await.status.is_success());
    let events = t.get("/api/v1/events", &resp).await;
    let e = &events.body["items"][0];
    assert_eq!(
        e["severity"], "critical",
        "confidence 95 raises to critical: {e}"
    );
    assert_eq!(e["intel"][0]["source"], "abuse-feed", "{e}");
    assert!(
        e["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "indicator-match")
    );
    // exports: a blocklist and a STIX bundle
    let r = t
        .get("/api/v1/indicators/export?format=text&kind=ip", &resp)
        .await;
    assert_eq!(
        r.body,
        Value::String("198.51.100.66\n".into()),
        "expired ones are left out"
    );
    let r = t.get("/api/v1/indicators/export?format=stix", &resp).await;
    assert_eq!(r.body["type"], "bundle", "{}", r.body);
    assert!(
        r.body
            .to_string()
            .contains("[ipv4-addr:value = '198.51.100.66']"),
        "{}",
        r.body
    );
    // bad input is named
    let r = t
        .post("/api/v1/indicators/import?format=yaml", &admin, json!({}))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("format")
    );
    let r = t
        .post("/api/v1/indicators/import?format=csv", &resp, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // a source removed is no longer matched
    let r = t
        .call(
            "DELETE",
            "/api/v1/indicators?source=abuse-feed",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = t
        .get("/api/v1/indicators/export?format=text&kind=ip", &resp)
        .await;
    assert_eq!(r.body, Value::Null, "an empty list");
}

#[tokio::test]
async fn slack_notifications_go_to_the_connector_url() {
    let t = automated(Backend::Sqlite).await;
    let (base, mock) = mock_server().await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let r = t
        .call(
            "PUT",
            "/api/v1/connectors/soc-slack",
            Some(&admin),
            Some(
                json!({"kind": "slack", "secret": format!("{base}/slack"), "allow_private": true}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["base_url"],
        Value::Null,
        "the webhook URL is a secret"
    );
    let yaml = "name: tell-slack\ntrigger: ticket_created\nsteps:\n  - id: post\n    notify: { channel: slack, to: [soc-slack], title: 'New ticket {{ ticket.number }}', text: '{{ ticket.title }}' }\n";
    assert_eq!(
        put_yaml(&t, &admin, "/api/v1/playbooks", yaml).await.status,
        StatusCode::CREATED
    );
    let tk = t
        .post(
            "/api/v1/tickets",
            &resp,
            json!({"title": "<script>x</script> & more"}),
        )
        .await;
    drain(&t).await;
    let seen = mock.seen.lock().unwrap().clone();
    let (_, body) = seen
        .iter()
        .find(|(p, _)| p == "/slack")
        .expect("slack was called");
    let v: Value = serde_json::from_str(body).unwrap();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains(tk.body["number"].as_str().unwrap()),
        "{v}"
    );
    assert!(v["blocks"].is_array(), "{v}");
    assert!(
        body.contains("&lt;script&gt;"),
        "user text is escaped for Slack: {body}"
    );
}

/// AbuseIPDB, MISP, a generic HTTP connector and an indicator feed, each against a local mock
/// speaking the service's published shapes; keys arrive in the service's own header.
#[tokio::test]
async fn abuseipdb_misp_generic_http_and_feeds_against_mocks() {
    use axum::extract::Query;
    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, String)>>);
    let seen = Arc::new(Seen::default());
    let s1 = seen.clone();
    let s2 = seen.clone();
    let s3 = seen.clone();
    let s4 = seen.clone();
    let app = axum::Router::new()
        .route(
            "/api/v2/check",
            get(move |q: Query<std::collections::HashMap<String, String>>, h: axum::http::HeaderMap| {
                let s1 = s1.clone();
                async move {
                    s1.0.lock().unwrap().push(("abuseipdb".into(), h.get("key").and_then(|v| v.to_str().ok()).unwrap_or("").into()));
                    let ip = q.get("ipAddress").cloned().unwrap_or_default();
                    let score = if ip == "203.0.113.66" { 100 } else { 0 };
                    Json(json!({"data": {"ipAddress": ip, "isPublic": true, "abuseConfidenceScore": score, "countryCode": "NL", "isp": "Example Hosting", "totalReports": 42, "numDistinctUsers": 9, "lastReportedAt": "2026-12-05T10:00:00+00:00"}}))
                }
            }),
        )
        .route(
            "/misp/attributes/restSearch",
            post(move |h: axum::http::HeaderMap, body: String| {
                let s2 = s2.clone();
                async move {
                    s2.0.lock().unwrap().push(("misp".into(), h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").into()));
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let attrs = if v["value"] == "evil-c2.example" {
                        json!([{"id": "77", "event_id": "12", "type": "domain", "category": "Network activity", "to_ids": true, "value": "evil-c2.example", "Event": {"id": "12", "info": "Campaign X C2 infrastructure", "orgc_id": "1"}}])
                    } else {
                        json!([])
                    };
                    Json(json!({"response": {"Attribute": attrs}}))
                }
            }),
        )
        .route(
            "/intel/{kind}/{value}",
            get(move |axum::extract::Path((_k, v)): axum::extract::Path<(String, String)>, h: axum::http::HeaderMap| {
                let s3 = s3.clone();
                async move {
                    s3.0.lock().unwrap().push(("http".into(), h.get("x-token").and_then(|v| v.to_str().ok()).unwrap_or("").into()));
                    let verdict = if v.starts_with("bad") { "bad" } else { "good" };
                    Json(json!({"result": {"verdict": verdict, "score": if verdict == "bad" { 95 } else { 1 }}}))
                }
            }),
        )
        .route(
            "/feed.csv",
            get(move |h: axum::http::HeaderMap| {
                let s4 = s4.clone();
                async move {
                    s4.0.lock().unwrap().push(("feed".into(), h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").into()));
                    "type,value,confidence\nip,192.0.2.99,85\ndomain,feed-listed.example,70\n"
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    let t = automated(Backend::Sqlite).await;
    let admin = t.user("root", &[Role::Admin]).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    for (name, body) in [
        (
            "abuse",
            json!({"kind": "abuseipdb", "base_url": format!("{base}/api/v2"), "secret": "abuse-key-1", "allow_private": true}),
        ),
        (
            "misp",
            json!({"kind": "misp", "base_url": format!("{base}/misp"), "secret": "misp-key-1", "allow_private": true}),
        ),
        (
            "inhouse",
            json!({"kind": "http", "secret": "tok-1", "allow_private": true, "http": {"url_template": format!("{base}/intel/{{kind}}/{{value}}"), "auth_header": "X-Token", "verdict_path": "/result/verdict", "score_path": "/result/score", "malicious_values": ["bad"]}}),
        ),
        (
            "feed",
            json!({"kind": "feed", "base_url": format!("{base}/feed.csv"), "secret": "Bearer feed-1", "feed_format": "csv", "refresh_minutes": 60, "allow_private": true}),
        ),
    ] {
        let r = t
            .call(
                "PUT",
                &format!("/api/v1/connectors/{name}"),
                Some(&admin),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.body);
    }
    let look = |kind: &'static str, value: &'static str, c: &'static str| {
        let t = &t;
        let resp = resp.clone();
        async move {
            t.post(
                "/api/v1/lookup",
                &resp,
                json!({"kind": kind, "value": value, "connectors": [c]}),
            )
            .await
        }
    };
    let r = look("ip", "203.0.113.66", "abuse").await;
    assert_eq!(r.body["verdict"], "malicious", "{}", r.body);
    let r = look("ip", "203.0.113.7", "abuse").await;
    assert_eq!(r.body["verdict"], "clean", "{}", r.body);
    let r = look("domain", "evil-c2.example", "misp").await;
    assert_eq!(r.body["verdict"], "malicious", "{}", r.body);
    assert!(
        r.body["results"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("Campaign X"),
        "{}",
        r.body
    );
    let r = look("domain", "bad-thing.example", "inhouse").await;
    assert_eq!(r.body["verdict"], "malicious", "{}", r.body);
    let r = look("domain", "fine.example", "inhouse").await;
    assert_eq!(r.body["verdict"], "clean", "{}", r.body);
    // the feed is fetched when due and its indicators are matched like any other
    assert_eq!(t.app.refresh_feeds().await.unwrap(), 1);
    assert_eq!(
        t.app.refresh_feeds().await.unwrap(),
        0,
        "not due again for an hour"
    );
    let r = t.get("/api/v1/indicators?source=feed", &resp).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{}", r.body);
    let r = t.get("/api/v1/connectors/feed", &resp).await;
    assert!(
        r.body["last_result"]
            .as_str()
            .unwrap()
            .contains("imported 2"),
        "{}",
        r.body
    );
    let seen = seen.0.lock().unwrap().clone();
    for (svc, key) in [
        ("abuseipdb", "abuse-key-1"),
        ("misp", "misp-key-1"),
        ("http", "tok-1"),
        ("feed", "Bearer feed-1"),
    ] {
        assert!(
            seen.iter().any(|(s, k)| s == svc && k == key),
            "{svc} got its key: {seen:?}"
        );
    }
}

#[tokio::test]
async fn add_tags_keeps_the_tags_already_there() {
    let t = automated(Backend::Sqlite).await;
    let resp = t.user("resp", &[Role::Responder]).await;
    let tk = t
        .post(
            "/api/v1/tickets",
            &resp,
            json!({"title": "tags", "tags": ["phishing"]}),
        )
        .await;
    let n = tk.body["number"].as_str().unwrap().to_string();
    let r = t
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{n}"),
            Some(&resp),
            Some(json!({"add_tags": ["triaged", "phishing"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["tags"], json!(["phishing", "triaged"]), "{}", r.body);
    let r = t
        .call(
            "PATCH",
            &format!("/api/v1/tickets/{n}"),
            Some(&resp),
            Some(json!({"add_tags": [""]})),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("add_tags[0]")
    );
}
