//! `firebreak backup`, `backup verify`, `restore` and `migrate-store` on the real binary.

use crate::http::Conn;
use crate::support::{Env, drop_pg_schema, pg_schema_url, stdout};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Uploads `data` as a document of ticket `number`; returns its SHA-256.
fn upload(addr: std::net::SocketAddr, token: &str, number: &str, data: &[u8]) -> String {
    let boundary = "fbtestboundary7";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nmail dump\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dump.eml\"\r\nContent-Type: message/rfc822\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = crate::support::http_client()
            .post(format!("http://{addr}/api/v1/tickets/{number}/documents"))
            .bearer_auth(token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        v["sha256"].as_str().unwrap().to_string()
    })
}

fn download(addr: std::net::SocketAddr, token: &str, number: &str) -> Vec<u8> {
    let mut c = Conn::new(addr);
    let list = c
        .request(
            "GET",
            &format!("/api/v1/tickets/{number}/documents"),
            Some(token),
            None,
        )
        .unwrap();
    assert_eq!(list.status, 200, "{}", list.json());
    let id = list.json()["items"][0]["id"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = crate::support::http_client()
            .get(format!(
                "http://{addr}/api/v1/tickets/{number}/documents/{id}/content"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    })
}

fn new_ticket(c: &mut Conn, token: &str, title: &str) -> String {
    let r = c
        .request(
            "POST",
            "/api/v1/tickets",
            Some(token),
            Some(json!({ "title": title }).to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["number"].as_str().unwrap().to_string()
}

/// Tickets, a log entry each, an EVE alert and a document; returns (numbers, document bytes).
fn fill(env: &Env, token: &str) -> (Vec<String>, Vec<u8>) {
    let server = env.start();
    let mut c = Conn::new(server.addr);
    let mut numbers = Vec::new();
    for i in 0..8 {
        let n = new_ticket(&mut c, token, &format!("backup ticket {i}"));
        let r = c
            .request(
                "POST",
                &format!("/api/v1/tickets/{n}/log"),
                Some(token),
                Some(br#"{"text":"analysed"}"#),
            )
            .unwrap();
        assert_eq!(r.status, 201);
        numbers.push(n);
    }
    let eve = r#"{"timestamp":"2026-12-06T08:00:00.000000+0000","event_type":"alert","src_ip":"203.0.113.9","dest_ip":"10.0.0.5","proto":"TCP","alert":{"signature_id":2100498,"signature":"GPL ATTACK_RESPONSE id check returned root","severity":1,"category":"Potentially Bad Traffic"}}"#;
    let r = c
        .request(
            "POST",
            "/api/v1/ingest/ndjson?format=eve",
            Some(token),
            Some(eve.as_bytes()),
        )
        .unwrap();
    assert!(r.status < 300, "{}", r.json());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    upload(server.addr, token, &numbers[0], &data);
    (numbers, data)
}

fn ticket_status(env: &Env, token: &str, numbers: &[String]) -> Vec<u16> {
    let server = env.start();
    let mut c = Conn::new(server.addr);
    numbers
        .iter()
        .map(|n| {
            c.request("GET", &format!("/api/v1/tickets/{n}"), Some(token), None)
                .unwrap()
                .status
        })
        .collect()
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn online_backup_verifies_and_restores_into_a_new_data_dir() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = Env::sqlite(a_dir.path());
    let token = a.user_token("bk-rita", &["responder", "helpdesk"]);
    let (numbers, doc) = fill(&a, &token);

    // a backup taken while a server keeps writing
    let server = a.start();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked, token, addr) = (stop.clone(), acked.clone(), token.clone(), server.addr);
        std::thread::spawn(move || {
            let mut c = Conn::new(addr);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = new_ticket(&mut c, &token, &format!("during backup {i}"));
                acked.lock().unwrap().push(n);
                i += 1;
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before: Vec<String> = acked.lock().unwrap().clone();
    let file = a_dir.path().join("nightly.fbk");
    let out = a.cli(&["backup", "--output", file.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(server);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("backup written to"),
        "{}",
        stdout(&out)
    );
    assert!(!before.is_empty());
    // the file is only readable by its owner
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    // an existing file is not overwritten
    let again = a.cli(&["backup", "--output", file.to_str().unwrap()]);
    assert!(!again.status.success());

    let v = a.cli(&["backup", "verify", file.to_str().unwrap()]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let said = stdout(&v);
    assert!(said.contains("backup intact"), "{said}");
    assert!(
        said.contains("1 documents with their content (1 of 1 blobs opened"),
        "{said}"
    );

    // restored into a new data dir: every ticket acknowledged before the backup started, the
    // document's bytes, the chain; numbering goes on
    let b_dir = tempfile::tempdir().unwrap();
    let b = Env::sqlite(b_dir.path());
    let r = b.cli(&["restore", file.to_str().unwrap()]);
    assert!(r.status.success(), "{}{}", stdout(&r), stderr(&r));
    assert!(stdout(&r).contains("restored"), "{}", stdout(&r));
    let audit = b.cli(&["audit", "verify"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
    let mut all = numbers.clone();
    all.extend(before);
    assert!(ticket_status(&b, &token, &all).iter().all(|s| *s == 200));
    {
        let server = b.start();
        assert_eq!(download(server.addr, &token, &numbers[0]), doc);
        let mut c = Conn::new(server.addr);
        let next = new_ticket(&mut c, &token, "after restore");
        // past every number the backup holds (tickets acknowledged while it ran may be in it)
        let max = all
            .iter()
            .map(|n| n.rsplit('-').next().unwrap().parse::<i64>().unwrap())
            .max()
            .unwrap();
        assert!(
            next.rsplit('-').next().unwrap().parse::<i64>().unwrap() > max,
            "{next} after {max}"
        );
    }
    // a database that holds data is not restored over
    let twice = b.cli(&["restore", file.to_str().unwrap()]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("already holds data"),
        "{}",
        stderr(&twice)
    );

    // damage is found: a flipped byte, a cut-off end
    let len = std::fs::metadata(&file).unwrap().len() as usize;
    let flipped = a_dir.path().join("flipped.fbk");
    std::fs::copy(&file, &flipped).unwrap();
    flip_byte(&flipped, len / 2);
    let v = a.cli(&["backup", "verify", flipped.to_str().unwrap()]);
    assert!(!v.status.success(), "{}", stdout(&v));
    let cut = a_dir.path().join("cut.fbk");
    std::fs::write(&cut, &std::fs::read(&file).unwrap()[..len * 2 / 3]).unwrap();
    let v = a.cli(&["backup", "verify", cut.to_str().unwrap()]);
    assert!(!v.status.success(), "{}", stdout(&v));
    let c_dir = tempfile::tempdir().unwrap();
    let c = Env::sqlite(c_dir.path());
    let r = c.cli(&["restore", cut.to_str().unwrap()]);
    assert!(!r.status.success());
}

#[test]
fn migrate_store_moves_sqlite_to_postgres_and_a_postgres_backup_comes_back() {
    let a_dir = tempfile::tempdir().unwrap();
    let a = Env::sqlite(a_dir.path());
    let token = a.user_token("mig-rita", &["responder", "helpdesk"]);
    let (numbers, doc) = fill(&a, &token);

    let (url, schema) = pg_schema_url();
    let out = a.cli(&["migrate-store", "--to", &url]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("copied into"), "{}", stdout(&out));
    // a second run finds the target in use
    let again = a.cli(&["migrate-store", "--to", &url]);
    assert!(!again.status.success());

    // the same data dir (keys, head file) on PostgreSQL: chain, tickets, the document
    let mut p = a;
    p.database_url = Some(url);
    let audit = p.cli(&["audit", "verify"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
    assert!(
        ticket_status(&p, &token, &numbers)
            .iter()
            .all(|s| *s == 200)
    );
    let last = {
        let server = p.start();
        assert_eq!(download(server.addr, &token, &numbers[0]), doc);
        let mut c = Conn::new(server.addr);
        let next = new_ticket(&mut c, &token, "on postgres");
        let n: i64 = next.rsplit('-').next().unwrap().parse().unwrap();
        assert!(n > numbers.len() as i64, "{next}");
        next
    };

    // a backup of PostgreSQL restores into SQLite
    let file = a_dir.path().join("pg.fbk");
    let out = p.cli(&["backup", "--output", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v = p.cli(&["backup", "verify", file.to_str().unwrap()]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
    let b_dir = tempfile::tempdir().unwrap();
    let b = Env::sqlite(b_dir.path());
    let r = b.cli(&["restore", file.to_str().unwrap()]);
    assert!(r.status.success(), "{}{}", stdout(&r), stderr(&r));
    let mut all = numbers.clone();
    all.push(last);
    assert!(ticket_status(&b, &token, &all).iter().all(|s| *s == 200));
    {
        let server = b.start();
        assert_eq!(download(server.addr, &token, &numbers[0]), doc);
    }
    let audit = b.cli(&["audit", "verify"]);
    assert!(audit.status.success(), "{}", stdout(&audit));
    drop_pg_schema(&schema);
}
