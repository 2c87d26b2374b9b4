//! The report mailbox against a real IMAP server: a dovecot instance of the test's own
//! (Debian's `dovecot-imapd`), configured in a temporary directory, listening on loopback.
//! Without dovecot these tests fail: they are never skipped.

use crate::*;
use async_imap::types::Flag;
use firebreak_server::imap::{ImapConfig, PollStats, REJECTED_KEYWORD, poll_once};
use futures::TryStreamExt;
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "security";
const PASSWORD: &str = "imap-test-password";
const INSTALL: &str = "apt-get install dovecot-imapd";

fn sample(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firebreak-intake/tests/samples/eml")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn dovecot_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dovecot"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push("/usr/sbin/dovecot".into());
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the IMAP tests need a real IMAP server, and dovecot is not installed: {INSTALL}"
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The name of the account with this uid (from /etc/passwd), or `$USER`.
fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .or_else(|| std::env::var("USER").ok())
        .expect("the name of the current user")
}

fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    std::fs::read_to_string("/etc/passwd").ok().and_then(|t| {
        t.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    })
}

/// A standalone dovecot: its configuration, state, log and mail in a temporary directory.
pub struct Dovecot {
    child: Option<Child>,
    pub port: u16,
    /// Implicit TLS (`imaps`), when started with a certificate.
    pub tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// `tls`: a PEM certificate and key (also offered with STARTTLS on the plain port).
    pub fn start(tls: Option<(&str, &str)>) -> Self {
        let bin = dovecot_binary();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // the effective uid and gid of this process, as the files it creates get them
        let probe = std::fs::metadata(d).unwrap();
        let (uid, gid) = (probe.uid(), probe.gid());
        // dovecot runs its login processes unprivileged, and refuses to keep mail as root: as
        // root, it uses its own system users and keeps the mail as `nobody`; as anyone else,
        // everything runs as that user
        let (internal, login, mail_uid, mail_gid) = if uid == 0 {
            let (nu, ng) = passwd_ids("nobody").unwrap_or((65534, 65534));
            ("dovecot".to_string(), "dovenull".to_string(), nu, ng)
        } else {
            let me = user_name(uid);
            (me.clone(), me, uid, gid)
        };
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["base", "state", "home"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        if uid == 0 {
            std::os::unix::fs::chown(d.join("home"), Some(mail_uid), Some(mail_gid)).unwrap();
        }
        let users = d.join("users");
        std::fs::write(&users, format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n")).unwrap();
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let ssl = match tls {
            Some((cert, key)) => {
                std::fs::write(d.join("cert.pem"), cert).unwrap();
                std::fs::write(d.join("key.pem"), key).unwrap();
                format!(
                    "ssl = yes\nssl_cert = <{0}/cert.pem\nssl_key = <{0}/key.pem\n",
                    d.display()
                )
            }
            None => "ssl = no\n".to_string(),
        };
        let imaps = match tls_port {
            Some(p) => format!(
                "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {p}\n    ssl = yes\n  }}\n"
            ),
            None => "  inet_listener imaps {\n    port = 0\n  }\n".to_string(),
        };
        let conf = format!(
            "protocols = imap
listen = 127.0.0.1
base_dir = {dir}/base
state_dir = {dir}/state
log_path = {dir}/dovecot.log
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/users
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={dir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
{imaps}}}
",
            dir = d.display(),
        );
        let conf_path = d.join("dovecot.conf");
        std::fs::write(&conf_path, &conf).unwrap();
        let child = Command::new(&bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("stderr.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} ({INSTALL})", bin.display()));
        let mut me = Self {
            child: Some(child),
            port,
            tls_port,
            dir,
        };
        me.wait_ready(&conf);
        me
    }

    fn wait_ready(&mut self, conf: &str) {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf)
                    && buf[..n].starts_with(b"* OK")
                {
                    return;
                }
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f));
                panic!(
                    "dovecot did not start ({exited:?}); is dovecot-imapd installed? ({INSTALL})\n--- stderr\n{}\n--- log\n{}\n--- dovecot.conf\n{conf}",
                    read("stderr.log").unwrap_or_default(),
                    read("dovecot.log").unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The poller's configuration for this server (plain IMAP).
    pub fn config(&self, reporter: &str) -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: Some(self.port),
            tls: Some(false),
            starttls: None,
            username: USER.into(),
            password: Some(PASSWORD.into()),
            password_file: None,
            mailbox: None,
            poll_seconds: None,
            reporter: reporter.into(),
            processed_mailbox: None,
            danger_accept_invalid_certs: None,
        }
    }

    /// A session of the test's own, to deliver mail and look at flags.
    pub async fn session(&self) -> async_imap::Session<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap().unwrap();
        client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .unwrap()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM: the master stops its processes; SIGKILL only if it does not
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

type Imap = async_imap::Session<tokio::net::TcpStream>;

async fn deliver(s: &mut Imap, mailbox: &str, raw: &[u8]) {
    s.append(mailbox, None, None, raw).await.unwrap();
}

/// UID -> flags of every message in the mailbox.
async fn flags(s: &mut Imap, mailbox: &str) -> Vec<(u32, Vec<String>)> {
    s.select(mailbox).await.unwrap();
    let fetched: Vec<_> = s
        .fetch("1:*", "(UID FLAGS)")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap_or_default();
    let mut out: Vec<(u32, Vec<String>)> = fetched
        .iter()
        .map(|f| {
            (
                f.uid.unwrap(),
                f.flags()
                    .filter_map(|fl| match fl {
                        Flag::Seen => Some("\\Seen".to_string()),
                        Flag::Deleted => Some("\\Deleted".to_string()),
                        Flag::Custom(c) => Some(c.to_string()),
                        _ => None,
                    })
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn events(t: &TestApp, tok: &str) -> Vec<Value> {
    let r = t.get("/api/v1/events?limit=100", tok).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn has_observable(e: &Value, kind: &str, value: &str) -> bool {
    e["observables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["kind"] == kind && o["value"] == value)
}

#[tokio::test]
async fn report_mailbox_mail_becomes_events_communications_or_is_flagged() {
    let dovecot = Dovecot::start(None);
    let t = TestApp::on(Backend::Sqlite).await;
    t.user("mailbox", &[Role::Reporter]).await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let cfg = dovecot.config("mailbox");
    let mut imap = dovecot.session().await;

    // an empty mailbox: nothing to do
    assert_eq!(poll_once(&t.app, &cfg).await.unwrap(), PollStats::default());

    // (a) a phishing report becomes one event, attributed to the reporter, with observables
    deliver(&mut imap, "INBOX", &sample("phishing_report.eml")).await;
    let s = poll_once(&t.app, &cfg).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 1,
            events: 1,
            ..Default::default()
        }
    );
    let evs = events(&t, &hd).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    let e = &evs[0];
    assert_eq!(
        e["reporter"]["contact"], "dana.reyes@acme.example.com",
        "{e}"
    );
    assert_eq!(e["reporter"]["name"], "Dana Reyes");
    assert_eq!(e["reported_by"], "mailbox");
    assert!(has_observable(e, "ip", "137.184.34.4"), "{e}");
    assert!(
        has_observable(e, "domain", "blog1seguimentmydomaine2bra.me"),
        "{e}"
    );
    assert_eq!(
        flags(&mut imap, "INBOX").await,
        vec![(1, vec!["\\Seen".into()])]
    );
    // a second poll finds nothing new and creates nothing
    assert_eq!(poll_once(&t.app, &cfg).await.unwrap(), PollStats::default());
    assert_eq!(events(&t, &hd).await.len(), 1);

    // (b) a reply naming an existing ticket becomes a communication on it, not an event
    let r = t
        .post(
            "/api/v1/tickets",
            &hd,
            json!({"title": "Suspicious login to finance VPN"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["number"], "SEC-000001");
    let reply = String::from_utf8(sample("ticket_reply.eml"))
        .unwrap()
        .replace("SEC-000042", "SEC-000001");
    deliver(&mut imap, "INBOX", reply.as_bytes()).await;
    let s = poll_once(&t.app, &cfg).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 1,
            communications: 1,
            ..Default::default()
        }
    );
    let c = t
        .get("/api/v1/tickets/SEC-000001/communications", &hd)
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let items = c.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", c.body);
    assert_eq!(items[0]["channel"], "email");
    assert_eq!(items[0]["direction"], "inbound");
    assert_eq!(items[0]["recorded_by"], "mailbox");
    assert!(
        items[0]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("[SEC-000001]")),
        "{}",
        c.body
    );
    assert!(
        items[0]["from"]
            .as_str()
            .is_some_and(|f| f.contains("jordan.lee@acme.example.com")),
        "{}",
        c.body
    );
    assert_eq!(events(&t, &hd).await.len(), 1, "no event for the reply");

    // (c) something that is not a mail is flagged, marked read, and not retried
    deliver(
        &mut imap,
        "INBOX",
        b"this is not an email at all\r\njust some words without any header\r\n",
    )
    .await;
    let s = poll_once(&t.app, &cfg).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 1,
            rejected: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        flags(&mut imap, "INBOX").await,
        vec![
            (1, vec!["\\Seen".into()]),
            (2, vec!["\\Seen".into()]),
            (3, vec!["\\Seen".into(), REJECTED_KEYWORD.into()]),
        ]
    );
    assert_eq!(poll_once(&t.app, &cfg).await.unwrap(), PollStats::default());
    assert_eq!(events(&t, &hd).await.len(), 1);

    // a message a human reads before the poll is left alone (only unread mail is taken)
    let mut other = sample("phishing_report.eml");
    other = String::from_utf8(other)
        .unwrap()
        .replace("Message-ID: <AM0PR04MB", "Message-ID: <READ-AM0PR04MB")
        .into_bytes();
    imap.append("INBOX", Some("(\\Seen)"), None, &other)
        .await
        .unwrap();
    assert_eq!(poll_once(&t.app, &cfg).await.unwrap(), PollStats::default());

    // an unknown reporter, or a wrong password: the poll fails, clearly, and takes nothing
    deliver(&mut imap, "INBOX", &sample("phishing_report.eml")).await;
    let err = poll_once(&t.app, &dovecot.config("nobody-here"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("reporter"), "{err:#}");
    let mut wrong = cfg.clone();
    wrong.password = Some("not-the-password".into());
    let err = poll_once(&t.app, &wrong).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("login"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert!(!format!("{wrong:?}").contains("not-the-password"));
    // a reporter without the right to report: the message stays unread
    t.user("auditor", &[Role::Auditor]).await;
    let err = poll_once(&t.app, &dovecot.config("auditor"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("reporter"), "{err:#}");
    let f = flags(&mut imap, "INBOX").await;
    assert_eq!(f.last().unwrap().1, Vec::<String>::new(), "{f:?}");
    // the same mail again (same Message-ID) counts on the existing event
    let s = poll_once(&t.app, &cfg).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 1,
            events: 1,
            ..Default::default()
        }
    );
    let evs = events(&t, &hd).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!(evs[0]["occurrences"], 2, "{}", evs[0]);
    imap.logout().await.unwrap();
}

#[tokio::test]
async fn processed_mail_moves_to_the_processed_mailbox() {
    let dovecot = Dovecot::start(None);
    let t = TestApp::on(Backend::Sqlite).await;
    t.user("mailbox", &[Role::Helpdesk]).await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let mut cfg = dovecot.config("mailbox");
    cfg.mailbox = Some("Reports".into());
    cfg.processed_mailbox = Some("Reports.done".into());
    let mut imap = dovecot.session().await;
    imap.create("Reports").await.unwrap();
    deliver(&mut imap, "Reports", &sample("phishing_report.eml")).await;
    deliver(&mut imap, "Reports", b"garbage, not a mail\r\n").await;
    let s = poll_once(&t.app, &cfg).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 2,
            events: 1,
            rejected: 1,
            ..Default::default()
        }
    );
    // the report moved (read); the refused message stays, flagged
    assert_eq!(
        flags(&mut imap, "Reports").await,
        vec![(2, vec!["\\Seen".into(), REJECTED_KEYWORD.into()])]
    );
    let done = flags(&mut imap, "Reports.done").await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].1, vec!["\\Seen".to_string()]);
    assert_eq!(poll_once(&t.app, &cfg).await.unwrap(), PollStats::default());
    assert_eq!(events(&t, &hd).await.len(), 1);
    imap.logout().await.unwrap();
}

#[tokio::test]
async fn implicit_tls_and_starttls_with_a_self_signed_certificate() {
    firebreak_server::tls::install_crypto_provider();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (pem, key) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let dovecot = Dovecot::start(Some((&pem, &key)));
    let t = TestApp::on(Backend::Sqlite).await;
    t.user("mailbox", &[Role::Reporter]).await;
    let hd = t.user("hd", &[Role::Helpdesk]).await;
    let mut imap = dovecot.session().await;
    deliver(&mut imap, "INBOX", &sample("phishing_report.eml")).await;

    let mut tls = dovecot.config("mailbox");
    tls.tls = None; // the default: TLS
    tls.port = dovecot.tls_port;
    // an untrusted certificate is refused, and nothing is taken
    let err = poll_once(&t.app, &tls).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("TLS") && msg.contains("certificate"), "{msg}");
    assert!(events(&t, &hd).await.is_empty());
    // accepted on request (self-signed test servers)
    tls.danger_accept_invalid_certs = Some(true);
    let s = poll_once(&t.app, &tls).await.unwrap();
    assert_eq!(
        s,
        PollStats {
            found: 1,
            events: 1,
            ..Default::default()
        }
    );

    // STARTTLS on the plain port
    let mut starttls = dovecot.config("mailbox");
    starttls.starttls = Some(true);
    let err = poll_once(&t.app, &starttls).await.unwrap_err();
    assert!(format!("{err:#}").contains("certificate"), "{err:#}");
    starttls.danger_accept_invalid_certs = Some(true);
    starttls.check().unwrap();
    let reply = String::from_utf8(sample("ticket_reply.eml")).unwrap();
    deliver(&mut imap, "INBOX", reply.as_bytes()).await;
    let s = poll_once(&t.app, &starttls).await.unwrap();
    // no ticket SEC-000042 here: a new report
    assert_eq!(
        s,
        PollStats {
            found: 1,
            events: 1,
            ..Default::default()
        }
    );
    assert_eq!(events(&t, &hd).await.len(), 2);
    imap.logout().await.unwrap();
}
