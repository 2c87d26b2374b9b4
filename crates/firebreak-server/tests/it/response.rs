//! The seeds' escalation and emergency path through the API, on both backends: escalation with
//! its report, the default tier-2 assignee and coordinator, reassignment, meetings and minutes
//! with the manager-attendance rule, status reports, the course of action and who is told,
//! change controls with the two-person rule, and who may see and do each of these.

use crate::*;
use serde_json::json;

async fn person(
    t: &TestApp,
    name: &str,
    roles: &[Role],
    title: Option<&str>,
    seniority: i32,
    on_duty: bool,
) -> String {
    t.app
        .add_user(
            "test",
            &NewUser {
                username: name.into(),
                roles: roles.to_vec(),
                title: title.map(str::to_string),
                seniority,
                on_duty,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    t.token(name, &[]).await
}

#[tokio::test]
async fn emergency_path_on_sqlite() {
    emergency_path(TestApp::on(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn emergency_path_on_postgres() {
    emergency_path(TestApp::on(Backend::Postgres).await).await;
}

async fn emergency_path(t: TestApp) {
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    let r1 = person(&t, "r1", &[Role::Responder], Some("Analyst"), 2, true).await;
    let sr = person(
        &t,
        "sr",
        &[Role::SeniorResponder],
        Some("Senior analyst"),
        5,
        true,
    )
    .await;
    let sr2 = person(
        &t,
        "sr2",
        &[Role::SeniorResponder],
        Some("Senior analyst"),
        5,
        true,
    )
    .await;
    person(&t, "veteran", &[Role::SeniorResponder], None, 9, false).await;
    let cio = person(&t, "cio", &[Role::Manager], Some("CIO"), 10, true).await;
    for (name, title) in [
        ("ceo", "CEO"),
        ("cfo", "CFO"),
        ("atty", "Corporate Attorney"),
        ("pr", "PR"),
    ] {
        person(&t, name, &[Role::Executive], Some(title), 0, true).await;
    }

    // 1. the help desk opens a ticket and escalates it: the report is required
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Ransom note on file server", "severity": "critical"}),
        )
        .await;
    let n = r.body["number"].as_str().unwrap().to_string();
    let u = format!("/api/v1/tickets/{n}");
    let r = t.post(&format!("{u}/escalate"), &hd, json!({})).await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("report")
    );
    let r = t
        .post(
            &format!("{u}/escalate"),
            &hd,
            json!({"report": {"reason": " ", "impact": "x", "systems": [], "actions_taken": "y"}}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("report.reason")
    );
    let report = json!({"report": {"reason": "encryption spreading", "impact": "file shares down", "systems": ["fs01", "fs02"], "actions_taken": "isolated fs01"}});
    let r = t.post(&format!("{u}/escalate"), &hd, report.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["criticality"], "escalation");
    assert_eq!(r.body["tier"], 2);
    assert_eq!(
        r.body["assignee"], "sr",
        "on-duty senior responder with the fewest open tier-2 tickets"
    );
    assert_error(
        &t.post(&format!("{u}/escalate"), &hd, report.clone()).await,
        StatusCode::CONFLICT,
        "already_escalated",
    );

    // 2. only tier 2 declares from an escalation
    let reason = json!({"reason": "critical systems down"});
    assert_error(
        &t.post(&format!("{u}/declare-emergency"), &r1, reason.clone())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t
        .post(&format!("{u}/declare-emergency"), &sr, reason.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = r.body.clone();
    let eid = e["id"].as_str().unwrap().to_string();
    assert_eq!(
        e["coordinator"], "sr",
        "most senior on duty; tie on seniority goes by open emergencies, then name"
    );
    assert!(
        e["coordinator_reason"]
            .as_str()
            .unwrap()
            .contains("most senior")
    );
    assert_eq!(e["war_room"], "War Room");
    assert_eq!(e["course_of_action"], serde_json::Value::Null);
    assert_eq!(e["open_obligations"], json!(["choose a course of action"]));
    assert_eq!(e["ticket_number"], n.as_str());
    assert_error(
        &t.post(&format!("{u}/declare-emergency"), &sr, reason.clone())
            .await,
        StatusCode::CONFLICT,
        "already_emergency",
    );
    let ticket = t.get(&u, &hd).await;
    assert_eq!(ticket.body["criticality"], "emergency");
    // the normal closing path cannot go around the emergency's obligations
    assert_error(
        &t.post(
            &format!("{u}/mark-false-positive"),
            &hd,
            json!({"reason": "nothing"}),
        )
        .await,
        StatusCode::CONFLICT,
        "emergency_open",
    );

    // 3. the dashboard: team and management see it, others do not
    let eu = format!("/api/v1/emergencies/{eid}");
    assert_eq!(t.get(&eu, &sr).await.status, StatusCode::OK);
    assert_eq!(t.get(&eu, &cio).await.status, StatusCode::OK);
    assert_error(&t.get(&eu, &hd).await, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &t.get("/api/v1/emergencies/not-an-id", &cio).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        t.get("/api/v1/emergencies", &cio).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        t.get("/api/v1/emergencies", &hd).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // 4. management reassigns the coordinator, with a reason
    let body = json!({"username": "sr2", "reason": "sr is on the other incident"});
    assert_error(
        &t.post(&format!("{eu}/coordinator"), &sr, body.clone())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t.post(&format!("{eu}/coordinator"), &cio, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["coordinator"], "sr2");
    assert_eq!(r.body["coordinator_reason"], "sr is on the other incident");

    // 5. meetings in the war room; minutes need a manager to be finalized
    assert_error(
        &t.post(
            &format!("{eu}/meetings"),
            &sr,
            json!({"scheduled_at": "2026-11-27T09:00:00Z"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t
        .post(
            &format!("{eu}/meetings"),
            &sr2,
            json!({"scheduled_at": "2026-11-27T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["war_room"], "War Room");
    let mid = r.body["id"].as_str().unwrap().to_string();
    let mu = format!("{eu}/meetings/{mid}");
    assert_error(
        &t.post(&format!("{mu}/finalize"), &sr2, json!({})).await,
        StatusCode::CONFLICT,
        "minutes_missing",
    );
    let minutes = |attendees: serde_json::Value| {
        json!({"attendees": attendees, "status": "fs01 isolated; fs02 encrypting",
               "actions": [{"text": "image fs02", "owner": "sr", "due": "2026-11-28"}],
               "resolutions": ["pull fs02 off the network"]})
    };
    let r = t
        .call(
            "PUT",
            &format!("{mu}/minutes"),
            Some(&sr2),
            Some(minutes(json!(["sr2", "sr"]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_error(
        &t.post(&format!("{mu}/finalize"), &sr2, json!({})).await,
        StatusCode::CONFLICT,
        "manager_attendance_required",
    );
    let r = t
        .call(
            "PUT",
            &format!("{mu}/minutes"),
            Some(&sr2),
            Some(minutes(json!(["sr2", "ghost"]))),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("attendees[1]")
    );
    let mut bad_due = minutes(json!(["sr2"]));
    bad_due["actions"][0]["due"] = json!("tomorrow");
    let r = t
        .call("PUT", &format!("{mu}/minutes"), Some(&sr2), Some(bad_due))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("actions[0].due")
    );
    let r = t
        .call(
            "PUT",
            &format!("{mu}/minutes"),
            Some(&sr2),
            Some(minutes(json!(["sr2", "sr", "cio"]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t.post(&format!("{mu}/finalize"), &sr2, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["finalized"], true);
    let r = t
        .call(
            "PUT",
            &format!("{mu}/minutes"),
            Some(&sr2),
            Some(minutes(json!(["sr2"]))),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "minutes_final");
    let team = t.get(&eu, &cio).await.body["team"].clone();
    for m in ["sr", "sr2", "cio"] {
        assert!(
            team.as_array().unwrap().iter().any(|x| x == m),
            "{m} joined the team: {team}"
        );
    }

    // 6. status reports by the coordinator
    let sr_body = json!({"cost": "12000 EUR", "exposure": "two file servers", "business_risk": "payroll delayed", "next_steps": "restore from backup"});
    assert_error(
        &t.post(&format!("{eu}/status-reports"), &sr, sr_body.clone())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t.post(&format!("{eu}/status-reports"), &sr2, sr_body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["business_risk"], "payroll delayed");

    // 7. Monitor & Capture: the CEO, CFO, corporate attorney and PR are told at once
    let r = t
        .post(
            &format!("{eu}/course-of-action"),
            &sr2,
            json!({"course": "monitor_capture", "rationale": "capture the attacker's C2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["course_of_action"], "monitor_capture");
    let notes = t.get(&format!("{eu}/notifications"), &cio).await;
    let items = notes.body["items"].as_array().unwrap();
    for who in ["ceo", "cfo", "atty", "pr"] {
        let n = items
            .iter()
            .find(|i| i["recipient"] == who)
            .unwrap_or_else(|| panic!("{who} not told: {items:?}"));
        assert_eq!(n["channel"], "in_app");
        assert_eq!(n["status"], "delivered");
        assert!(n["title"].as_str().unwrap().contains("Monitor & Capture"));
    }
    assert!(
        items.iter().any(|i| i["recipient"] == "cio"),
        "management was told of the declaration"
    );
    let r = t
        .post(
            &format!("{eu}/course-of-action"),
            &sr2,
            json!({"course": "false_positive", "rationale": "changed my mind"}),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "course_already_chosen");
    // the executives told under Monitor & Capture may read the ticket now
    let ceo = t.token("ceo", &[]).await;
    assert_eq!(t.get(&u, &ceo).await.status, StatusCode::OK);
    let r = t
        .post(
            &format!("{eu}/course-of-action"),
            &sr2,
            json!({"course": "shrug", "rationale": "x"}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("course")
    );

    // 8. a lock-down change control: a manager approves, never the requester
    let cc = json!({"kind": "lockdown", "description": "block SMB between segments", "systems": ["fw01"]});
    assert_error(
        &t.post(&format!("{u}/change-controls"), &r1, cc.clone())
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t
        .post(&format!("{u}/change-controls"), &cio, cc.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "requested");
    assert_eq!(r.body["needs_manager_approval"], true);
    let cid = r.body["id"].as_str().unwrap().to_string();
    let cu = format!("/api/v1/change-controls/{cid}");
    let ok = json!({"comment": "go"});
    let r = t.post(&format!("{cu}/approve"), &cio, ok.clone()).await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("two-person")
    );
    assert_error(
        &t.post(&format!("{cu}/approve"), &sr2, ok.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let cio2 = person(&t, "cso", &[Role::Manager], Some("CSO"), 9, true).await;
    assert_error(
        &t.post(&format!("{cu}/implement"), &sr2, json!({})).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    let r = t.post(&format!("{cu}/approve"), &cio2, ok.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["decided_by"], "cso");
    assert_error(
        &t.post(&format!("{cu}/reject"), &cio2, ok.clone()).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    assert_eq!(
        t.post(&format!("{cu}/implement"), &sr2, json!({}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        t.post(&format!("{cu}/verify"), &sr2, json!({"comment": "tested"}))
            .await
            .body["status"],
        "verified"
    );
    assert_eq!(
        t.get(&format!("{u}/change-controls"), &hd).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // 9. a change control on a normal ticket makes it an escalation; management declares directly
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Firewall rule change"}),
        )
        .await;
    let n2 = r.body["number"].as_str().unwrap().to_string();
    let r = t
        .post(
            &format!("/api/v1/tickets/{n2}/change-controls"),
            &sr,
            json!({"kind": "normal", "description": "open 443", "systems": ["fw02"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        t.get(&format!("/api/v1/tickets/{n2}"), &hd).await.body["criticality"],
        "escalation"
    );
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Data exfiltration alert"}),
        )
        .await;
    let n3 = r.body["number"].as_str().unwrap().to_string();
    assert_error(
        &t.post(
            &format!("/api/v1/tickets/{n3}/declare-emergency"),
            &sr,
            reason.clone(),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t
        .post(
            &format!("/api/v1/tickets/{n3}/request-escalation"),
            &cio,
            json!({"reason": "board asked"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["criticality"], "escalation");
    // tier 2 re-evaluates: back to normal (the help desk may not)
    let u3 = format!("/api/v1/tickets/{n3}/de-escalate");
    assert_error(
        &t.post(&u3, &hd, json!({"reason": "x"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t.post(&u3, &sr, json!({"reason": "a known scanner"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["criticality"], "normal");
    assert_eq!(r.body["tier"], 1);
    assert_error(
        &t.post(&u3, &sr, json!({"reason": "again"})).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Extortion email to CEO"}),
        )
        .await;
    let n4 = r.body["number"].as_str().unwrap().to_string();
    let r = t
        .post(
            &format!("/api/v1/tickets/{n4}/declare-emergency"),
            &cio,
            reason.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // sr has 1 open emergency as coordinator? no: sr2 took it over; sr and sr2 tie on
    // seniority; sr2 coordinates one, so sr is chosen
    assert_eq!(r.body["coordinator"], "sr");

    // management asks before any ticket exists: a ticket is opened and tier 2 tasked
    assert_error(
        &t.post("/api/v1/escalation-requests", &hd, json!({"reason": "x"}))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t
        .post(
            "/api/v1/escalation-requests",
            &cio,
            json!({"reason": "press is calling about a leak"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["criticality"], "escalation");
    assert_eq!(r.body["tier"], 2);
    assert_eq!(r.body["title"], "Escalation requested by cio");
    assert!(r.body["assignee"].is_string());

    // the incident-management report for a period
    let r = t
        .get("/api/v1/reports/period?from=2000-01-01&to=2100-01-01", &cio)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let text = r.body.as_str().unwrap().to_string();
    assert!(
        text.contains("Tickets opened:** 5") && text.contains("Emergencies:** 2"),
        "{text}"
    );
    assert_error(
        &t.get("/api/v1/reports/period?from=2026-13-01&to=2027-01-01", &cio)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &t.get("/api/v1/reports/period?from=2027-01-01&to=2026-01-01", &cio)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    // 10. everything is on the tamper-evident record
    let entries = t.app.store().audit_entries(0, 10_000).await.unwrap();
    for action in [
        "ticket.escalate",
        "ticket.declare_emergency",
        "emergency.coordinator_assigned",
        "meeting.scheduled",
        "meeting.minutes_recorded",
        "meeting.minutes_finalized",
        "emergency.status_report",
        "emergency.course_of_action",
        "change_control.requested",
        "change_control.approved",
        "change_control.implemented",
        "change_control.verified",
        "ticket.request_escalation",
        "ticket.classified",
    ] {
        assert!(
            entries.iter().any(|e| e.action == action),
            "{action} missing from the audit chain"
        );
    }
}

#[tokio::test]
async fn courses_obligations_closure_and_written_controls_on_sqlite() {
    courses_and_controls(TestApp::on(Backend::Sqlite).await).await;
}

#[tokio::test]
async fn courses_obligations_closure_and_written_controls_on_postgres() {
    courses_and_controls(TestApp::on(Backend::Postgres).await).await;
}

async fn courses_and_controls(t: TestApp) {
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    let sr = person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    let cio = person(&t, "cio", &[Role::Manager], Some("CIO"), 9, true).await;
    let cso = person(&t, "cso", &[Role::Manager], Some("CSO"), 9, true).await;
    let aud = person(&t, "aud", &[Role::Auditor], None, 0, true).await;
    let xss = "<img src=x onerror=alert(1)>";

    // Lock-down & Repair: change control, evidence and a passing Test Report before closing
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": format!("Worm {xss}"), "description": xss}),
        )
        .await;
    let n = r.body["number"].as_str().unwrap().to_string();
    let u = format!("/api/v1/tickets/{n}");
    let report = json!({"report": {"reason": xss, "impact": "lateral movement", "systems": ["ws-17"], "actions_taken": "none"}});
    assert_eq!(
        t.post(&format!("{u}/escalate"), &hd, report).await.status,
        StatusCode::OK
    );
    let e = t
        .post(
            &format!("{u}/declare-emergency"),
            &cio,
            json!({"reason": "spreading"}),
        )
        .await
        .body;
    assert_eq!(e["coordinator"], "sr");
    let eu = format!("/api/v1/emergencies/{}", e["id"].as_str().unwrap());
    assert_error(
        &t.post(&format!("{eu}/close"), &sr, json!({})).await,
        StatusCode::CONFLICT,
        "obligations_open",
    );
    let r = t
        .post(
            &format!("{eu}/course-of-action"),
            &sr,
            json!({"course": "lockdown_repair", "rationale": "contain first"}),
        )
        .await;
    let open = r.body["open_obligations"].as_array().unwrap().clone();
    assert_eq!(open.len(), 4, "{open:?}");
    let r = t.post(&format!("{eu}/close"), &cio, json!({})).await;
    assert_error(&r, StatusCode::CONFLICT, "obligations_open");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lock-down change control")
    );
    let cc = t
        .post(
            &format!("{u}/change-controls"),
            &sr,
            json!({"kind": "lockdown", "description": "isolate VLAN 17", "systems": ["sw-core"]}),
        )
        .await;
    let cu = format!(
        "/api/v1/change-controls/{}",
        cc.body["id"].as_str().unwrap()
    );
    assert_eq!(
        t.post(
            &format!("{cu}/approve"),
            &cso,
            json!({"comment": "approved by CSO"})
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        t.upload(
            &format!("{u}/documents"),
            &sr,
            "memdump.raw",
            b"memory image"
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let tr = json!({"summary": "rebuilt ws-17", "compliance_tests": [{"test": "EDR present", "result": "fail"}]});
    assert_eq!(
        t.post(&format!("{eu}/test-reports"), &sr, tr).await.status,
        StatusCode::CREATED
    );
    // repair tasks, done
    let task = t
        .post(
            &format!("{u}/tasks"),
            &sr,
            json!({"title": "reimage ws-17", "owner": "sr", "due": "2026-12-01"}),
        )
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    assert_error(
        &t.post(
            &format!("{u}/tasks"),
            &sr,
            json!({"title": "x", "due": "soon"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let tid = task.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        t.post(&format!("/api/v1/tasks/{tid}/done"), &sr, json!({}))
            .await
            .body["done"],
        true
    );
    assert_error(
        &t.post(&format!("/api/v1/tasks/{tid}/done"), &sr, json!({}))
            .await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    assert_eq!(
        t.get(&format!("{u}/tasks"), &aud).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let still = t.get(&eu, &sr).await.body["open_obligations"].clone();
    assert_eq!(
        still,
        json!(["repair, then a Test Report whose compliance tests all pass"])
    );
    let sr_body = json!({"cost": "3 days of two engineers", "exposure": "one workstation", "business_risk": "low", "next_steps": "rebuild"});
    assert_eq!(
        t.post(&format!("{eu}/status-reports"), &sr, sr_body)
            .await
            .status,
        StatusCode::CREATED
    );
    let tr = json!({"summary": "rebuilt ws-17 again", "compliance_tests": [{"test": "EDR present", "result": "pass", "notes": "v7.2"}, {"test": "CIS L1", "result": "pass"}]});
    assert_eq!(
        t.post(&format!("{eu}/test-reports"), &sr, tr).await.status,
        StatusCode::CREATED
    );
    let r = t
        .post(
            &format!("{eu}/close"),
            &sr,
            json!({"summary": "contained and repaired"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "closed");
    assert_error(
        &t.post(
            &format!("{eu}/status-reports"),
            &sr,
            json!({"cost": "1", "exposure": "x", "business_risk": "x", "next_steps": "x"}),
        )
        .await,
        StatusCode::CONFLICT,
        "emergency_closed",
    );

    // phases forward only, then the post-incident review closes the ticket
    for ph in ["containment", "eradication", "recovery"] {
        assert_eq!(
            t.post(&format!("{u}/phase"), &sr, json!({"phase": ph}))
                .await
                .status,
            StatusCode::OK,
            "{ph}"
        );
    }
    assert_error(
        &t.post(
            &format!("{u}/phase"),
            &sr,
            json!({"phase": "identification"}),
        )
        .await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    let pir = json!({"what_happened": xss, "timeline": "09:00 detection", "root_cause": "unpatched SMB", "human_root_cause": true,
                     "what_worked": "segmentation", "action_items": [{"text": "patch fleet", "owner": "sr", "due": "2026-12-15"}]});
    let r = t
        .post(&format!("{u}/post-incident-review"), &sr, pir.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "closed");
    assert_eq!(r.body["incident"], true);
    assert_error(
        &t.post(&format!("{u}/post-incident-review"), &sr, pir).await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );

    // the written controls, headed with the ticket number; user text is inert
    for kind in [
        "compliance-report",
        "help-desk-ticket",
        "escalation-report",
        "meeting-minutes",
        "lockdown-change-control",
        "test-report",
        "post-incident-review",
        "bundle",
    ] {
        for ext in ["md", "html", "pdf"] {
            let (status, h, body) = t
                .bytes(
                    Request::builder()
                        .uri(format!("{u}/reports/{kind}.{ext}"))
                        .header("authorization", format!("Bearer {aud}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            if kind == "meeting-minutes" {
                assert_eq!(
                    status,
                    StatusCode::CONFLICT,
                    "{kind}.{ext}: no meeting was held"
                );
                continue;
            }
            assert_eq!(
                status,
                StatusCode::OK,
                "{kind}.{ext}: {}",
                String::from_utf8_lossy(&body)
            );
            if let Some(dir) = std::env::var_os("FIREBREAK_REPORT_DIR") {
                // to look at them: FIREBREAK_REPORT_DIR=/tmp/reports cargo test courses_obligations
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(
                    std::path::Path::new(&dir).join(format!("{kind}.{ext}")),
                    &body,
                );
            }
            let text = String::from_utf8_lossy(&body).to_string();
            match ext {
                "md" => {
                    assert!(
                        h["content-type"]
                            .to_str()
                            .unwrap()
                            .starts_with("text/markdown")
                    );
                    assert!(
                        text.starts_with("# ") && text.lines().next().unwrap().contains(&n),
                        "{kind}: {text}"
                    );
                }
                "html" => {
                    assert!(text.contains(&n), "{kind}");
                    assert!(
                        !text.contains("<img src=x"),
                        "{kind}.html must escape user text"
                    );
                    assert!(
                        h["content-security-policy"]
                            .to_str()
                            .unwrap()
                            .contains("sandbox")
                    );
                }
                _ => {
                    assert_eq!(h["content-type"], "application/pdf");
                    assert!(
                        body.starts_with(b"%PDF-1.4") && text.trim_end().ends_with("%%EOF"),
                        "{kind}.pdf"
                    );
                    assert!(text.contains(&n));
                }
            }
        }
    }
    let md = t
        .get(&format!("{u}/reports/escalation-report.md"), &aud)
        .await;
    let md = md.body.as_str().unwrap().to_string();
    assert!(md.contains("\\<img src=x onerror=alert(1)\\>"), "{md}");
    let compliance = t
        .get(&format!("{u}/reports/compliance-report.md"), &aud)
        .await;
    let compliance = compliance.body.as_str().unwrap().to_string();
    assert!(
        compliance.contains("| Post\\-Incident Review | yes | present |")
            || compliance.contains("| Post-Incident Review | yes | present |"),
        "{compliance}"
    );
    assert!(!compliance.contains("MISSING"), "{compliance}");
    assert_error(
        &t.get(&format!("{u}/reports/nonsense.md"), &aud).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &t.get(&format!("{u}/reports/help-desk-ticket.docx"), &aud)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // False Positive: the Report to Senior Management, then back to the normal path
    let r = t
        .post("/api/v1/tickets", &hd, json!({"title": "Beaconing alert"}))
        .await;
    let n2 = r.body["number"].as_str().unwrap().to_string();
    let e = t
        .post(
            &format!("/api/v1/tickets/{n2}/declare-emergency"),
            &cio,
            json!({"reason": "possible C2"}),
        )
        .await
        .body;
    let eu = format!("/api/v1/emergencies/{}", e["id"].as_str().unwrap());
    let smr = json!({"summary": "a backup agent, not C2", "disposition": "return_to_normal"});
    assert_error(
        &t.post(&format!("{eu}/senior-management-report"), &sr, smr.clone())
            .await,
        StatusCode::CONFLICT,
        "wrong_course",
    );
    t.post(
        &format!("{eu}/course-of-action"),
        &sr,
        json!({"course": "false_positive", "rationale": "known agent"}),
    )
    .await;
    assert_eq!(
        t.post(&format!("{eu}/senior-management-report"), &sr, smr)
            .await
            .status,
        StatusCode::CREATED
    );
    let r = t.post(&format!("{eu}/close"), &sr, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tk = t.get(&format!("/api/v1/tickets/{n2}"), &hd).await.body;
    assert_eq!(tk["criticality"], "normal");
    assert_eq!(tk["tier"], 1);
    // a normal ticket does not close by post-incident review
    let r = t
        .post("/api/v1/tickets", &hd, json!({"title": "Plain ticket"}))
        .await;
    let n5 = r.body["number"].as_str().unwrap().to_string();
    let pir5 = json!({"what_happened": "x", "timeline": "x", "root_cause": "x", "human_root_cause": false, "what_worked": "x"});
    assert_error(
        &t.post(
            &format!("/api/v1/tickets/{n5}/post-incident-review"),
            &sr,
            pir5,
        )
        .await,
        StatusCode::CONFLICT,
        "invalid_transition",
    );
    let md = t
        .get(
            &format!("/api/v1/tickets/{n2}/reports/senior-management-report.md"),
            &cio,
        )
        .await;
    assert!(md.body.as_str().unwrap().contains("return to normal"));
}

#[tokio::test]
async fn the_response_plan_is_versioned_validated_and_drives_the_process() {
    let t = TestApp::new().await;
    let admin = person(&t, "root", &[Role::Admin], None, 0, true).await;
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    let cio = person(&t, "cio", &[Role::Manager], Some("CIO"), 9, true).await;
    person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    person(&t, "cso", &[Role::Manager], Some("CSO"), 9, true).await;

    let r = t.get("/api/v1/plan", &hd).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["version"], 0);
    assert_eq!(r.body["plan"]["war_rooms"][0]["name"], "War Room");
    assert_eq!(r.body["plan"]["status_report_every_hours"], 24);

    let put_yaml = |yaml: &str, token: &str| {
        Request::builder()
            .method("PUT")
            .uri("/api/v1/plan")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/yaml")
            .body(Body::from(yaml.to_string()))
            .unwrap()
    };
    // every problem, by path
    let bad = "name: ''\nwar_rooms: []\nroster:\n  - username: ghost\nstatus_report_every_hours: 0\nretention: {audit_days: 10, documents_days: 10}\n";
    let r = t.raw(put_yaml(bad, &admin)).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let fields: Vec<&str> = r.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "name",
            "roster[0].username",
            "war_rooms",
            "status_report_every_hours",
            "retention.audit_days"
        ]
    );
    let r = t
        .raw(put_yaml(
            "name: x\nwar_rooms: [{name: A, floor: 3}]\n",
            &admin,
        ))
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("war_rooms[0].floor")
    );
    assert_error(
        &t.raw(put_yaml("name: 'unterminated\n", &admin)).await,
        StatusCode::BAD_REQUEST,
        "malformed_yaml",
    );
    assert_error(
        &t.raw(put_yaml("name: x", &cio)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let plan = r#"
name: Acme SOC plan
responsibilities: ["The coordinator runs the war room"]
roster:
  - {username: sr, responsibility: tier 2 lead}
war_rooms:
  - {name: Crisis Room, location: "HQ 4th floor", bridge: "tel:+15550100"}
protocols:
  - {on: emergency_declared, users: [cso], channel: email}
  - {on: emergency_declared, roles: [manager], channel: in_app}
thresholds: {escalate_severities: [critical], priority_by_severity: {high: p1}}
emergency_criteria: ["patient safety"]
status_report_every_hours: 4
legal_contacts: [{name: Jo Counsel, organization: Acme Legal, phone: "+1 555 0101"}]
law_enforcement_contacts: [{name: FBI field office, phone: "+1 555 0199"}]
legal_obligations: [{name: Notify the data-protection authority, deadline_hours: 72}]
training: [{title: Tabletop exercise, date: "2026-10-01", attendees: [sr]}]
retention: {audit_days: 3650, documents_days: 2555}
"#;
    let r = t.raw(put_yaml(plan, &admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["updated_by"], "root");
    assert_eq!(
        t.get("/api/v1/plan/versions", &cio).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // thresholds: a critical ticket is an escalation from the start
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Ransomware", "severity": "critical"}),
        )
        .await;
    assert_eq!(r.body["criticality"], "escalation");
    assert_eq!(r.body["tier"], 2);
    let n = r.body["number"].as_str().unwrap().to_string();
    let log = t.get(&format!("/api/v1/tickets/{n}/log"), &hd).await;
    assert!(
        log.body["items"][0]["details"]["classification_reason"]
            .as_str()
            .unwrap()
            .contains("critical")
    );
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Phish", "severity": "high"}),
        )
        .await;
    assert_eq!(r.body["criticality"], "normal");
    assert_eq!(
        r.body["priority"], "p1",
        "the plan's priority for high severity"
    );

    // the war room, the criteria and the protocols come from the plan
    let e = t
        .post(
            &format!("/api/v1/tickets/{n}/declare-emergency"),
            &cio,
            json!({"reason": "spreading"}),
        )
        .await
        .body;
    assert_eq!(e["war_room"], "Crisis Room");
    assert_eq!(e["criteria"], json!(["patient safety"]));
    let notes = t
        .get(
            &format!(
                "/api/v1/emergencies/{}/notifications",
                e["id"].as_str().unwrap()
            ),
            &cio,
        )
        .await;
    let items = notes.body["items"].as_array().unwrap();
    let cso = items
        .iter()
        .find(|i| i["recipient"] == "cso" && i["channel"] == "email")
        .unwrap();
    assert_eq!(cso["status"], "failed");
    assert!(cso["detail"].as_str().unwrap().contains("SMTP"));
    assert!(items.iter().any(|i| i["recipient"] == "cio"
        && i["channel"] == "in_app"
        && i["status"] == "delivered"));
    // Monitor & Capture shows the plan's legal and law-enforcement contacts
    let sr = t.token("sr", &[]).await;
    let r = t
        .post(
            &format!(
                "/api/v1/emergencies/{}/course-of-action",
                e["id"].as_str().unwrap()
            ),
            &sr,
            json!({"course": "monitor_capture", "rationale": "watch"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let names: Vec<&str> = r.body["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Jo Counsel", "FBI field office"]);
    // legal obligations run as clocks on the emergency
    assert_eq!(
        r.body["deadlines"][0]["name"],
        "Notify the data-protection authority"
    );
    assert_eq!(r.body["deadlines"][0]["overdue"], false);
    t.clock.advance(time::Duration::hours(73));
    let later = t
        .get(
            &format!("/api/v1/emergencies/{}", e["id"].as_str().unwrap()),
            &cio,
        )
        .await;
    assert_eq!(
        later.body["deadlines"][0]["overdue"], true,
        "{}",
        later.body
    );
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "plan.updated" && e.actor == "root")
    );
}

#[tokio::test]
async fn the_emergency_team_reads_a_restricted_ticket_while_the_emergency_lasts() {
    let t = TestApp::new().await;
    let cio = person(&t, "cio", &[Role::Manager], Some("CIO"), 9, true).await;
    let sr = person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    let r = t
        .post(
            "/api/v1/tickets",
            &cio,
            json!({"title": "Insider case", "restricted": true}),
        )
        .await;
    let n = r.body["number"].as_str().unwrap().to_string();
    let u = format!("/api/v1/tickets/{n}");
    assert_error(&t.get(&u, &sr).await, StatusCode::NOT_FOUND, "not_found");
    let e = t
        .post(
            &format!("{u}/declare-emergency"),
            &cio,
            json!({"reason": "exfiltration"}),
        )
        .await
        .body;
    assert_eq!(e["coordinator"], "sr");
    assert_eq!(
        t.get(&u, &sr).await.status,
        StatusCode::OK,
        "the coordinator reads it"
    );
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert!(
        entries
            .iter()
            .any(|x| x.action == "ticket.read_by_emergency_team" && x.actor == "sr")
    );
    // closed: back to 404
    let eu = format!("/api/v1/emergencies/{}", e["id"].as_str().unwrap());
    t.post(
        &format!("{eu}/course-of-action"),
        &sr,
        json!({"course": "false_positive", "rationale": "HR matter"}),
    )
    .await;
    t.post(
        &format!("{eu}/senior-management-report"),
        &sr,
        json!({"summary": "not security", "disposition": "close"}),
    )
    .await;
    let r = t.post(&format!("{eu}/close"), &sr, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_error(&t.get(&u, &sr).await, StatusCode::NOT_FOUND, "not_found");
    let tk = t.get(&u, &cio).await.body;
    assert_eq!(tk["status"], "closed");
    assert_eq!(tk["false_positive"], true);
}

/// A real SMTP server (aiosmtpd from PyPI, installed by `.ci/run`) printing what it receives.
struct Smtpd {
    child: std::process::Child,
    out: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Smtpd {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mail.log");
        // the README's test command works on a fresh machine: fetch aiosmtpd from PyPI if needed
        let present = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            let _ = std::process::Command::new("python3")
                .args(["-m", "pip", "install", "-q", "aiosmtpd==1.4.6"])
                .status();
        }
        let mut child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd==1.4.6) is required for this test");
        let ready = (0..100).any(|_| {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !up {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            up
        });
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aiosmtpd did not start on port {port} (pip install aiosmtpd==1.4.6)");
        }
        Self {
            child,
            out,
            port,
            _dir: dir,
        }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn email_notifications_go_out_over_smtp_with_retries_and_delivery_status() {
    let mut smtpd = Smtpd::start();
    let mailer = firebreak_server::mail::SmtpMailer::new(&serde_json::from_value(json!({
        "host": "127.0.0.1", "port": smtpd.port, "security": "none", "from": "Firebreak <firebreak@example.org>",
    })).unwrap())
    .unwrap();
    let t = TestApp::with_mailer(Arc::new(mailer)).await;
    let admin = person(&t, "root", &[Role::Admin], None, 0, true).await;
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    for (name, email) in [
        ("cio", Some("cio@example.org")),
        ("cso", Some("cso@example.org")),
        ("nomail", None),
    ] {
        t.app
            .add_user(
                "test",
                &NewUser {
                    username: name.into(),
                    roles: vec![Role::Manager],
                    title: Some("CIO".into()),
                    email: email.map(str::to_string),
                    on_duty: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let cio = t.token("cio", &[]).await;
    person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    let plan = json!({"name": "mail plan", "war_rooms": [{"name": "WR"}], "status_report_every_hours": 24,
        "retention": {"audit_days": 400, "documents_days": 400},
        "protocols": [{"on": "emergency_declared", "roles": ["manager"], "channel": "email"}]});
    assert_eq!(
        t.call("PUT", "/api/v1/plan", Some(&admin), Some(plan))
            .await
            .status,
        StatusCode::OK
    );

    let n = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Wire fraud attempt"}),
        )
        .await
        .body["number"]
        .as_str()
        .unwrap()
        .to_string();
    let e = t
        .post(
            &format!("/api/v1/tickets/{n}/declare-emergency"),
            &cio,
            json!({"reason": "CFO mailbox compromised"}),
        )
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    let nu = format!(
        "/api/v1/emergencies/{}/notifications",
        e.body["id"].as_str().unwrap()
    );
    let items = t.get(&nu, &cio).await.body["items"].clone();
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["channel"] == "email")
            .all(|i| i["status"] == "pending"),
        "{items}"
    );
    // the response went on without waiting for the mail; now the background step sends it
    assert_eq!(t.app.deliver_pending().await.unwrap(), 3);
    let items = t.get(&nu, &cio).await.body["items"].clone();
    let by = |who: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["recipient"] == who && i["channel"] == "email")
            .unwrap()
            .clone()
    };
    assert_eq!(by("cio")["status"], "delivered", "{items}");
    assert_eq!(by("cso")["status"], "delivered");
    assert_eq!(by("nomail")["status"], "failed");
    assert!(
        by("nomail")["detail"]
            .as_str()
            .unwrap()
            .contains("no email address")
    );
    let mut mail = String::new();
    for _ in 0..50 {
        mail = smtpd.received();
        if mail.contains("cso@example.org") && mail.contains("cio@example.org") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        mail.contains(&format!(
            "Subject: [{n}] Emergency declared on {n}: CFO mailbox"
        )),
        "{mail}"
    );
    assert!(mail.contains("To: cso@example.org"), "{mail}");
    assert_eq!(
        t.app.deliver_pending().await.unwrap(),
        0,
        "nothing is sent twice"
    );
    // delivery status is on the ticket's record
    let log = t
        .get(&format!("/api/v1/tickets/{n}/log?limit=200"), &cio)
        .await
        .body["items"]
        .clone();
    assert_eq!(
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "notification.delivered")
            .count(),
        2
    );

    // the relay goes down: retried with backoff, then given up, never blocking anything
    smtpd.stop();
    let n2 = t
        .post("/api/v1/tickets", &hd, json!({"title": "Second case"}))
        .await
        .body["number"]
        .as_str()
        .unwrap()
        .to_string();
    let e2 = t
        .post(
            &format!("/api/v1/tickets/{n2}/declare-emergency"),
            &cio,
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(e2.status, StatusCode::OK);
    let nu2 = format!(
        "/api/v1/emergencies/{}/notifications",
        e2.body["id"].as_str().unwrap()
    );
    for attempt in 1..=5u32 {
        assert!(
            t.app.deliver_pending().await.unwrap() >= 2,
            "attempt {attempt}"
        );
        let items = t.get(&nu2, &cio).await.body["items"].clone();
        let cso = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["recipient"] == "cso" && i["channel"] == "email")
            .unwrap()
            .clone();
        assert_eq!(cso["attempts"], attempt);
        if attempt < 5 {
            assert_eq!(cso["status"], "pending", "{cso}");
            assert!(cso["detail"].as_str().unwrap().contains("will retry"));
            assert_eq!(
                t.app.deliver_pending().await.unwrap(),
                0,
                "not before the backoff"
            );
            t.clock.advance(time::Duration::hours(12));
        } else {
            assert_eq!(cso["status"], "failed", "{cso}");
        }
    }
}

#[tokio::test]
async fn webhook_notifications_are_signed_and_the_outbound_guard_refuses_internal_targets() {
    use axum::routing::post;
    // a receiver on loopback that records what it gets
    type Seen = Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let rec = seen.clone();
    let receiver = Router::new().route(
        "/hook",
        post(move |h: axum::http::HeaderMap, body: String| {
            let rec = rec.clone();
            async move {
                rec.lock().unwrap().push((h, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let sender = |allow: bool| {
        firebreak_server::webhook::WebhookSender::new(
            &serde_json::from_value(json!({"secret": secret, "allow_private_targets": allow}))
                .unwrap(),
        )
        .unwrap()
    };
    for allow in [true, false] {
        let s = sender(allow);
        let t = TestApp::adjusted(|app| app.with_webhooks(Arc::new(s))).await;
        let admin = person(&t, "root", &[Role::Admin], None, 0, true).await;
        let cio = person(&t, "cio", &[Role::Manager], Some("CIO"), 9, true).await;
        let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
        let plan = json!({"name": "hooks", "war_rooms": [{"name": "WR"}], "status_report_every_hours": 24,
            "retention": {"audit_days": 400, "documents_days": 400},
            "protocols": [{"on": "emergency_declared", "channel": "webhook", "url": url}]});
        assert_eq!(
            t.call("PUT", "/api/v1/plan", Some(&admin), Some(plan))
                .await
                .status,
            StatusCode::OK
        );
        let bad = json!({"name": "hooks", "war_rooms": [{"name": "WR"}], "status_report_every_hours": 24,
            "retention": {"audit_days": 400, "documents_days": 400},
            "protocols": [{"on": "emergency_declared", "channel": "webhook"}]});
        let r = t.call("PUT", "/api/v1/plan", Some(&admin), Some(bad)).await;
        assert_eq!(
            assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
            Some("protocols[0].url")
        );
        let n = t
            .post("/api/v1/tickets", &hd, json!({"title": "Webhook case"}))
            .await
            .body["number"]
            .as_str()
            .unwrap()
            .to_string();
        let e = t
            .post(
                &format!("/api/v1/tickets/{n}/declare-emergency"),
                &cio,
                json!({"reason": "hooked"}),
            )
            .await;
        assert_eq!(e.status, StatusCode::OK);
        assert_eq!(t.app.deliver_pending().await.unwrap(), 1);
        let nu = format!(
            "/api/v1/emergencies/{}/notifications",
            e.body["id"].as_str().unwrap()
        );
        let items = t.get(&nu, &cio).await.body["items"].clone();
        let hook = items
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["channel"] == "webhook")
            .unwrap()
            .clone();
        assert_eq!(hook["recipient"], url.as_str());
        if allow {
            assert_eq!(hook["status"], "delivered", "{hook}");
            let (h, body) = seen.lock().unwrap().last().cloned().unwrap();
            let id = h["webhook-id"].to_str().unwrap();
            let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
            let key = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            )
            .unwrap();
            assert_eq!(
                h["webhook-signature"].to_str().unwrap(),
                firebreak_server::webhook::sign(&key, id, ts, &body)
            );
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["ticket_number"], n.as_str());
            assert_eq!(id, hook["id"].as_str().unwrap());
        } else {
            // the guard refuses loopback without retrying, and nothing reached the receiver
            assert_eq!(hook["status"], "failed", "{hook}");
            assert!(
                hook["detail"].as_str().unwrap().contains("refused"),
                "{hook}"
            );
            assert_eq!(seen.lock().unwrap().len(), 1);
        }
    }
}

#[tokio::test]
async fn assets_drive_escalation_and_their_owners_are_told() {
    let t = TestApp::new().await;
    let admin = person(&t, "root", &[Role::Admin], None, 0, true).await;
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    let sr = person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    let rep = person(&t, "rep", &[Role::Reporter], None, 0, true).await;
    let r = t
        .post("/api/v1/assets", &admin, json!({"name": "fs01", "addresses": ["10.0.0.5"], "owner": "ops@example.org", "critical_production": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_error(
        &t.post("/api/v1/assets", &admin, json!({"name": "FS01"}))
            .await,
        StatusCode::CONFLICT,
        "asset_exists",
    );
    assert_error(
        &t.post("/api/v1/assets", &rep, json!({"name": "x"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(
        assert_error(
            &t.post(
                "/api/v1/assets",
                &admin,
                json!({"name": "y", "addresses": ["a b"]})
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed"
        )
        .as_deref(),
        Some("addresses[0]")
    );
    let csv = "name,addresses,owner,critical_production\ndc01,10.0.0.7;dc01.corp,sr,false\nbroken line\nfs01,1.1.1.1,x,true\n";
    let r = t
        .raw(
            Request::builder()
                .method("POST")
                .uri("/api/v1/assets/import")
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "text/csv")
                .body(Body::from(csv))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["imported"], 1);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["line 3", "row 2"]);
    let r = t
        .raw(
            Request::builder()
                .method("POST")
                .uri("/api/v1/assets/import")
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "text/csv")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("line 1")
    );
    assert_eq!(
        t.get("/api/v1/assets", &hd).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(t.get("/api/v1/assets/dc01", &hd).await.body["owner"], "sr");

    // a critical-production asset makes the ticket an escalation, with the reason on the record
    let n = t
        .post("/api/v1/tickets", &hd, json!({"title": "Disk filling"}))
        .await
        .body["number"]
        .as_str()
        .unwrap()
        .to_string();
    let u = format!("/api/v1/tickets/{n}");
    let r = t
        .post(&format!("{u}/assets"), &hd, json!({"asset": "dc01"}))
        .await;
    assert_eq!(r.body["criticality"], "normal");
    let r = t
        .post(&format!("{u}/assets"), &hd, json!({"asset": "fs01"}))
        .await;
    assert_eq!(r.body["criticality"], "escalation", "{}", r.body);
    assert_eq!(r.body["tier"], 2);
    assert_error(
        &t.post(&format!("{u}/assets"), &hd, json!({"asset": "fs01"}))
            .await,
        StatusCode::CONFLICT,
        "already_linked",
    );
    assert_eq!(
        assert_error(
            &t.post(&format!("{u}/assets"), &hd, json!({"asset": "nope"}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed"
        )
        .as_deref(),
        Some("asset")
    );
    let log = t.get(&format!("{u}/log"), &hd).await.body["items"].clone();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "ticket.classified"
                && e["text"]
                    .as_str()
                    .unwrap()
                    .contains("critical production asset fs01")),
        "{log}"
    );
    assert_eq!(
        t.get(&format!("{u}/assets"), &sr).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // escalating a ticket tells its assets' owners
    let n2 = t
        .post("/api/v1/tickets", &hd, json!({"title": "Odd logins"}))
        .await
        .body["number"]
        .as_str()
        .unwrap()
        .to_string();
    t.post(
        &format!("/api/v1/tickets/{n2}/assets"),
        &hd,
        json!({"asset": "dc01"}),
    )
    .await;
    let report = json!({"report": {"reason": "lateral movement", "impact": "domain controller", "systems": ["dc01"], "actions_taken": "none"}});
    assert_eq!(
        t.post(&format!("/api/v1/tickets/{n2}/escalate"), &hd, report)
            .await
            .status,
        StatusCode::OK
    );
    let notes = t
        .get(&format!("/api/v1/tickets/{n2}/notifications"), &sr)
        .await
        .body["items"]
        .clone();
    let to_owner = notes
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["recipient"] == "sr")
        .unwrap_or_else(|| panic!("{notes}"));
    assert!(
        to_owner["title"]
            .as_str()
            .unwrap()
            .contains("affects your asset dc01")
    );
    assert_eq!(to_owner["status"], "delivered");
}

#[tokio::test]
async fn the_owner_rejects_closure_and_escalates_in_one_step() {
    let t = TestApp::new().await;
    let hd = person(&t, "hd", &[Role::Helpdesk], None, 0, true).await;
    let r1 = person(&t, "r1", &[Role::Responder], None, 1, true).await;
    person(&t, "sr", &[Role::SeniorResponder], None, 5, true).await;
    let n = t
        .post("/api/v1/tickets", &hd, json!({"title": "Phish"}))
        .await
        .body["number"]
        .as_str()
        .unwrap()
        .to_string();
    let u = format!("/api/v1/tickets/{n}");
    t.post(&format!("{u}/start"), &r1, json!({})).await;
    t.post(
        &format!("{u}/resolve"),
        &r1,
        json!({"resolution": "blocked", "problem_category": "phishing"}),
    )
    .await;
    let r = t
        .post(
            &format!("{u}/reject-closure"),
            &hd,
            json!({"reason": "still arriving", "escalate": true}),
        )
        .await;
    assert_eq!(
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").as_deref(),
        Some("report")
    );
    assert_eq!(
        t.get(&u, &hd).await.body["status"],
        "pending_closure",
        "nothing half-happened"
    );
    let report = json!({"reason": "campaign continues", "impact": "50 mailboxes", "systems": ["mail"], "actions_taken": "blocked one sender"});
    let r = t
        .post(
            &format!("{u}/reject-closure"),
            &hd,
            json!({"reason": "still arriving", "escalate": true, "report": report}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "in_progress");
    assert_eq!(r.body["criticality"], "escalation");
    assert_eq!(r.body["tier"], 2);
    assert_eq!(r.body["assignee"], "sr");
}
