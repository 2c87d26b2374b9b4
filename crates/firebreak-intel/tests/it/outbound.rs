use std::collections::BTreeSet;

use firebreak_intel::feeds::{FeedFormat, Indicator, parse_feed};
use firebreak_intel::outbound::{Message, export_stix, export_text, slack_payload, teams_payload};
use serde_json::Value;
use time::macros::datetime;

use crate::{NOW, check_golden};

fn message() -> Message {
    Message {
        title: "Ticket FB-1042 escalated: ransomware on <FIN-WS-023>".into(),
        text: "Suricata saw *tasksche.exe* beacon to 197.231.221.221 & the kill-switch domain.\n<!channel> please join the bridge."
            .into(),
        link: Some("https://firebreak.corp.example/tickets/0193a4b2-7c1d-7e2f-8a3b-4c5d6e7f8091".into()),
        facts: vec![
            ("Severity".into(), "critical".into()),
            ("Owner".into(), "Dana <dana@corp.example>".into()),
            ("Host".into(), "FIN-WS-023".into()),
        ],
    }
}

fn indicator(kind: &str, value: &str, confidence: i32, description: Option<&str>) -> Indicator {
    Indicator {
        kind: kind.into(),
        value: value.into(),
        confidence,
        source: "abuse.ch".into(),
        description: description.map(str::to_string),
        valid_until: None,
    }
}

fn indicators() -> Vec<Indicator> {
    vec![
        Indicator {
            valid_until: Some(datetime!(2027-01-31 00:00 UTC)),
            ..indicator("ip", "203.0.113.7", 90, Some("Emotet epoch 5 C2"))
        },
        indicator("ip", "2001:db8::2a", 70, None),
        indicator("domain", "malware-drop.example.net", 50, None),
        indicator(
            "url",
            "http://evil.example.com/it's/gate.php?id=1",
            70,
            Some("Loader gate"),
        ),
        indicator("email", "billing@invoice-portal.example.com", 60, None),
        indicator(
            "md5",
            "44d88612fea8a8f36de82e1278abb02f",
            95,
            Some("EICAR test file"),
        ),
        indicator("sha1", "3395856ce81f2b7382dee72602f798b642f14140", 95, None),
        indicator(
            "sha256",
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
            95,
            None,
        ),
        indicator("filename", r"C:\Users\Public\it's.exe", 40, None),
        indicator("cve", "CVE-2021-44228", 80, Some("Log4Shell")),
    ]
}

#[test]
fn golden_payloads() {
    check_golden("outbound/slack.golden.json", &slack_payload(&message()));
    check_golden("outbound/teams.golden.json", &teams_payload(&message()));
    check_golden(
        "outbound/export.stix.golden.json",
        &export_stix(&indicators(), "ACME SOC", NOW),
    );
}

#[test]
fn slack_escapes_user_text_and_drops_unsafe_links() {
    let p = slack_payload(&message());
    let text = p["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt;") && text.contains("&amp; the"),
        "{text}"
    );
    assert!(!p.to_string().contains("<!channel>"));
    assert_eq!(p["blocks"][0]["type"], "header");
    assert_eq!(p["blocks"][2]["fields"].as_array().unwrap().len(), 3);
    assert_eq!(
        p["blocks"][2]["fields"][1]["text"],
        "*Owner*\nDana &lt;dana@corp.example&gt;"
    );
    assert!(
        p["text"]
            .as_str()
            .unwrap()
            .starts_with("Ticket FB-1042 escalated")
    );
    let m = Message {
        link: Some("javascript:alert(1)".into()),
        facts: (0..25).map(|i| (format!("k{i}"), "v".into())).collect(),
        ..message()
    };
    let p = slack_payload(&m);
    let blocks = p["blocks"].as_array().unwrap();
    assert!(
        blocks.iter().all(|b| b["type"] != "actions"),
        "no button for a non-web link"
    );
    let sections: Vec<usize> = blocks
        .iter()
        .filter_map(|b| b["fields"].as_array().map(Vec::len))
        .collect();
    assert_eq!(sections, [10, 10, 5]);
    let long = Message {
        title: "t".repeat(300),
        text: "x".repeat(5000),
        ..Message::default()
    };
    let p = slack_payload(&long);
    assert_eq!(
        p["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        150
    );
    assert_eq!(
        p["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        3000
    );
}

#[test]
fn teams_card_shape() {
    let p = teams_payload(&message());
    assert_eq!(p["type"], "message");
    let a = &p["attachments"][0];
    assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(a["contentUrl"], Value::Null);
    let card = &a["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["weight"], "Bolder");
    assert_eq!(card["body"][1]["wrap"], true);
    assert_eq!(card["body"][2]["facts"][0]["title"], "Severity");
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    let bare = teams_payload(&Message {
        title: "Only a title".into(),
        ..Message::default()
    });
    assert_eq!(
        bare["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(bare["attachments"][0]["content"].get("actions").is_none());
}

#[test]
fn text_export_is_sorted_unique_and_filtered() {
    let mut list = indicators();
    list.push(Indicator {
        source: "other".into(),
        ..indicator("ip", "203.0.113.7", 10, None)
    });
    list.push(indicator("ip", "192.0.2.1\nrm -rf", 10, None));
    assert_eq!(export_text(&list, &["ip"]), "2001:db8::2a\n203.0.113.7\n");
    assert_eq!(
        export_text(&list, &["domain", "url"]),
        "http://evil.example.com/it's/gate.php?id=1\nmalware-drop.example.net\n"
    );
    assert_eq!(export_text(&list, &[]).lines().count(), 10);
    assert_eq!(export_text(&[], &["ip"]), "");
}

#[test]
fn stix_export_parses_back_to_the_same_indicators() {
    let original = indicators();
    let bundle = export_stix(&original, "ACME SOC", NOW);
    let bytes = serde_json::to_vec(&bundle).unwrap();
    let report = parse_feed(FeedFormat::Stix, &bytes, "unused", NOW).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.skipped, 0);
    let expect: BTreeSet<_> = original
        .iter()
        .map(|i| {
            (
                i.kind.clone(),
                i.value.clone(),
                i.confidence,
                "ACME SOC".to_string(),
                i.description.clone(),
                i.valid_until,
            )
        })
        .collect();
    let got: BTreeSet<_> = report
        .indicators
        .iter()
        .map(|i| {
            (
                i.kind.clone(),
                i.value.clone(),
                i.confidence,
                i.source.clone(),
                i.description.clone(),
                i.valid_until,
            )
        })
        .collect();
    assert_eq!(got, expect);
}

#[test]
fn stix_export_leaves_out_what_stix_cannot_carry() {
    let list = vec![
        indicator("user", "alice", 50, None),
        indicator("other", "x", 50, None),
        Indicator {
            valid_until: Some(NOW),
            ..indicator("ip", "192.0.2.1", 50, None)
        },
        indicator("hostname", "mail.evil.example", 50, None),
        indicator("hostname", "mail.evil.example", 50, None),
    ];
    let bundle = export_stix(&list, "ACME SOC", NOW);
    let objects = bundle["objects"].as_array().unwrap();
    assert_eq!(
        objects.len(),
        2,
        "the identity and one domain-name indicator"
    );
    assert_eq!(
        objects[1]["pattern"],
        "[domain-name:value = 'mail.evil.example']"
    );
    // Deterministic: the same input gives the same bundle.
    assert_eq!(bundle, export_stix(&list, "ACME SOC", NOW));
}
