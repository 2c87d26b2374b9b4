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
