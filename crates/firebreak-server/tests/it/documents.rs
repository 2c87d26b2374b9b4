//! The secure document store over HTTP: upload, hash, download with safe headers, custody in
//! the audit chain, visibility of restricted tickets, tampering, size limits, hostile names.

use crate::*;
use serde_json::json;
use sha2::Digest;

async fn ticket(t: &TestApp, token: &str, restricted: bool) -> String {
    let r = t
        .post(
            "/api/v1/tickets",
            token,
            json!({"title": "evidence", "restricted": restricted}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["number"].as_str().unwrap().to_string()
}

fn get_req(uri: &str, token: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn upload_then_download_returns_the_same_bytes_with_safe_headers() {
    let t = TestApp::new().await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let n = ticket(&t, &hd, false).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = t
        .upload(
            &format!("/api/v1/tickets/{n}/documents"),
            &hd,
            "mail dump.eml",
            &data,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let sha = hex::encode(sha2::Sha256::digest(&data));
    assert_eq!(r.body["sha256"], sha.as_str());
    assert_eq!(r.body["size"], data.len());
    assert_eq!(r.body["filename"], "mail dump.eml");
    assert_eq!(r.body["description"], "test evidence");
    assert_eq!(r.body["added_by"], "hd");
    let id = r.body["id"].as_str().unwrap().to_string();

    let (status, h, body) = t
        .bytes(get_req(
            &format!("/api/v1/tickets/{n}/documents/{id}/content"),
            &hd,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);
    let cd = h.get("content-disposition").unwrap().to_str().unwrap();
    assert!(
        cd.starts_with("attachment;") && cd.contains("filename=\"mail dump.eml\""),
        "{cd}"
    );
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(h.get("content-type").unwrap(), "application/octet-stream");
    assert!(
        h.get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(h.get("x-content-sha256").unwrap().to_str().unwrap(), sha);

    let list = t.get(&format!("/api/v1/tickets/{n}/documents"), &hd).await;
    assert_eq!(list.body["items"][0]["id"], id.as_str());
    let one = t
        .get(&format!("/api/v1/tickets/{n}/documents/{id}"), &hd)
        .await;
    assert_eq!(one.body["sha256"], sha.as_str());

    // the bytes at rest are encrypted: the plaintext is nowhere under the data dir
    let stored = std::fs::read(t.dir.path().join("blobs").join(&sha[..2]).join(&sha)).unwrap();
    assert!(!stored.windows(64).any(|w| w == &data[1000..1064]));

    // chain of custody: the addition and every download, on the ticket's log
    let log = t
        .get(&format!("/api/v1/tickets/{n}/log?limit=100"), &hd)
        .await;
    let actions: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"document.added"), "{actions:?}");
    assert!(actions.contains(&"document.downloaded"), "{actions:?}");
}

#[tokio::test]
async fn restricted_ticket_documents_are_invisible_to_others() {
    let t = TestApp::new().await;
    let owner = t.user("owner", &[Role::Responder]).await;
    let other = t.user("other", &[Role::Responder]).await;
    let cleared = t
        .user_with("cleared", &[Role::Auditor], &[], &["restricted"])
        .await;
    let n = ticket(&t, &owner, true).await;
    let r = t
        .upload(
            &format!("/api/v1/tickets/{n}/documents"),
            &owner,
            "secret.txt",
            b"top secret",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_str().unwrap();
    for uri in [
        format!("/api/v1/tickets/{n}/documents"),
        format!("/api/v1/tickets/{n}/documents/{id}"),
        format!("/api/v1/tickets/{n}/documents/{id}/content"),
    ] {
        assert_error(
            &t.get(&uri, &other).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_eq!(t.get(&uri, &cleared).await.status, StatusCode::OK, "{uri}");
    }
    let r = t
        .upload(
            &format!("/api/v1/tickets/{n}/documents"),
            &other,
            "x.txt",
            b"x",
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    // a document id of another ticket is not reachable through this one
    let n2 = ticket(&t, &other, false).await;
    assert_error(
        &t.get(
            &format!("/api/v1/tickets/{n2}/documents/{id}/content"),
            &other,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // readers who may not write get 403 on upload; auditors read
    let aud = t.user("aud", &[Role::Auditor]).await;
    let r = t
        .upload(
            &format!("/api/v1/tickets/{n2}/documents"),
            &aud,
            "x.txt",
            b"x",
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_tampered_blob_is_never_served() {
    let t = TestApp::new().await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let n = ticket(&t, &hd, false).await;
    let r = t
        .upload(
            &format!("/api/v1/tickets/{n}/documents"),
            &hd,
            "a.bin",
            &[42u8; 5000],
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let sha = r.body["sha256"].as_str().unwrap().to_string();
    let path = t.dir.path().join("blobs").join(&sha[..2]).join(&sha);
    let mut stored = std::fs::read(&path).unwrap();
    let last = stored.len() - 20;
    stored[last] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    let (status, _, body) = t
        .bytes(get_req(
            &format!("/api/v1/tickets/{n}/documents/{id}/content"),
            &hd,
        ))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "integrity_check_failed");
    assert!(
        !body.windows(16).any(|w| w == [42u8; 16]),
        "no content leaked"
    );
    // removed entirely: also refused
    std::fs::remove_file(&path).unwrap();
    let (status, _, _) = t
        .bytes(get_req(
            &format!("/api/v1/tickets/{n}/documents/{id}/content"),
            &hd,
        ))
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let entries = t.app.store().audit_entries(0, 1000).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "document.integrity_failed")
            .count(),
        2
    );
}

#[tokio::test]
async fn size_limit_names_and_bad_forms() {
    let config = AppConfig {
        max_document_bytes: 10_000,
        ..AppConfig::default()
    };
    let t = TestApp::with_config(config, Default::default()).await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let n = ticket(&t, &hd, false).await;
    let uri = format!("/api/v1/tickets/{n}/documents");
    let r = t.upload(&uri, &hd, "big.bin", &vec![1u8; 10_001]).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = t.upload(&uri, &hd, "fits.bin", &vec![1u8; 10_000]).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // far beyond the limit: refused without reading it all
    let r = t
        .upload(&uri, &hd, "huge.bin", &vec![1u8; 3 * 1024 * 1024])
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // names are labels, never paths
    for (name, want) in [
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        (
            "<img src=x onerror=alert(1)>.png",
            "<img src=x onerror=alert(1)>.png",
        ),
    ] {
        let r = t.upload(&uri, &hd, name, b"x").await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}");
        assert_eq!(r.body["filename"], want);
    }
    assert!(!t.dir.path().join("etc").exists());
    // an empty file is a document too
    let r = t.upload(&uri, &hd, "empty", b"").await;
    assert_eq!(
        r.body["sha256"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // not multipart: 415; no file field: 422; unknown field: 422 naming it
    let r = t.post(&uri, &hd, json!({"file": "x"})).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (ct, body) = multipart(&[("description", "no file")], None);
    let req = |ct: String, body: Vec<u8>| {
        Request::builder()
            .method("POST")
            .uri(&uri)
            .header("authorization", format!("Bearer {hd}"))
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    assert_eq!(
        assert_error(
            &t.raw(req(ct, body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed"
        )
        .as_deref(),
        Some("file")
    );
    let (ct, body) = multipart(&[("owner_id", "x")], Some(("a", b"a")));
    assert_eq!(
        assert_error(
            &t.raw(req(ct, body)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed"
        )
        .as_deref(),
        Some("owner_id")
    );
    let r = t
        .raw(req(
            "multipart/form-data; boundary=zzz".into(),
            b"garbage".to_vec(),
        ))
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // a missing ticket or document is 404
    assert_eq!(
        t.upload("/api/v1/tickets/SEC-999999/documents", &hd, "a", b"a")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("{uri}/00000000-0000-0000-0000-000000000000"), &hd)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("{uri}/not-an-id/content"), &hd).await.status,
        StatusCode::NOT_FOUND
    );
}
