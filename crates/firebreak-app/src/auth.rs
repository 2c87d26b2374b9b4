//! Signing in: password check with database-counted throttling (shared by every node), server-side
//! sessions, the optional TOTP second factor with recovery codes, password change, sign-out.
//!
//! Unknown users, disabled users and wrong passwords take the same path: one argon2 verification,
//! one failure counted on the account key and the address key, one audit entry, one answer.

use crate::principal::{SessionInfo, token_hash};
use crate::{App, AppError, AppResult, Principal, hash_password};
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::ids::UserId;
use firebreak_domain::user::User;
use firebreak_store::{ChangeSet, Op, SessionRecord, StoreError, UserRecord};
use serde_json::json;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

/// Sign-in policy (`[auth]` in firebreak.toml).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// A session unused for this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute: Duration,
    /// Time allowed between the password and the second factor.
    pub mfa_timeout: Duration,
    /// Failures per account and per client address before sign-in is refused (429).
    pub max_failures: i64,
    /// Failures older than this are forgotten.
    pub failure_window: Duration,
    /// How long sign-in stays refused once the limit is reached.
    pub lockout: Duration,
    /// Shown by authenticator apps.
    pub totp_issuer: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::minutes(30),
            session_absolute: Duration::hours(12),
            mfa_timeout: Duration::minutes(5),
            max_failures: 5,
            failure_window: Duration::minutes(15),
            lockout: Duration::minutes(15),
            totp_issuer: "Firebreak".into(),
        }
    }
}

/// Who is knocking: the client address (after trusted-proxy resolution) and user agent.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub addr: Option<String>,
    pub user_agent: Option<String>,
}

/// A session just created: the cookie secret is only ever in this value and the cookie.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
    /// The password was right, the second factor is still owed.
    pub mfa_required: bool,
    pub user: User,
}

/// A started TOTP enrolment.
#[derive(Debug, Clone)]
pub struct TotpEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

const TOTP_STEP: i64 = 30;
const TOTP_DIGITS: u32 = 6;
const RECOVERY_CODES: usize = 10;
const MAX_PASSWORD: usize = 1024;

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An argon2id hash of a random password, verified against when the user does not exist or
/// has no password, so that every failure costs the same.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&crate::generate_password()).unwrap_or_else(|_| {
            // a fixed, valid PHC string with the default parameters
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$8j7dJ4wKqjO7vOQGqyvRqBZpG8HqK3XhdH3o6bQq1Z0".into()
        })
    })
}

/// Verifies `password` against a PHC string in constant time; malformed hashes fail.
pub fn verify_password(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// The throttle key of an account: the name as typed, trimmed and lowercased (so `Admin` and
/// ` admin` count together); over-long input is hashed rather than stored.
fn account_key(username: &str) -> String {
    let n = username.trim().to_lowercase();
    if n.len() <= 64 {
        format!("user:{n}")
    } else {
        format!("user:#{}", &token_hash(&n)[..32])
    }
}

/// The throttle key of a client address; IPv6 clients are counted per /64 (one subscriber).
fn addr_key(addr: &str) -> String {
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(ip) => format!("addr:{ip}"),
        Err(_) => format!("addr:{}", addr.chars().take(64).collect::<String>()),
    }
}

/// An audit actor from untrusted text: at most 64 characters.
fn actor_name(username: &str) -> String {
    username.chars().take(64).collect()
}

/// RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) for one time step.
pub fn totp_code(secret: &[u8], step: i64) -> u32 {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    bin % 10u32.pow(TOTP_DIGITS)
}

fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD
        .decode(secret.trim_end_matches('=').as_bytes())
        .ok()
}

/// The time step a 6-digit `code` matches, within one step of `now` either way.
fn totp_match(secret: &str, code: &str, now: OffsetDateTime) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let code = code.trim().replace(' ', "");
    if code.len() != TOTP_DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = decode_secret(secret)?;
    let step = now.unix_timestamp().div_euclid(TOTP_STEP);
    let mut found = None;
    for s in [step - 1, step, step + 1] {
        let want = format!("{:06}", totp_code(&key, s));
        if bool::from(want.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(s);
        }
    }
    found
}

fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    rand::fill(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

fn recovery_hash(code: &str) -> String {
    token_hash(&code.trim().to_lowercase().replace(' ', ""))
}

impl App {
    fn auth(&self) -> &AuthConfig {
        &self.config.auth
    }

    /// Starts a sign-in attempt. The attempt is counted against the account first, in one
    /// atomic database statement, so parallel guesses are all counted; then the attempt is
    /// refused (429) if the account has more than the allowed failures in the window or the
    /// address has reached them. A success clears the account's count; a failure adds one to
    /// the address (`record_failure`). An attempt that cannot be counted is not made.
    async fn begin_attempt(&self, username: &str, client: &ClientInfo) -> AppResult<()> {
        let now = self.now();
        let a = self.auth();
        let account = account_key(username);
        self.store_commit(ChangeSet::new().op(Op::LoginFailure {
            key: account.clone(),
            at: now,
            window: a.failure_window,
            limit: a.max_failures + 1,
            lock: a.lockout,
        }))
        .await?;
        let rows = self
            .store
            .login_throttle(&Self::throttle_keys(username, client))
            .await?;
        for r in rows {
            let over = if r.key == account {
                r.failures > a.max_failures
            } else {
                r.failures >= a.max_failures
            };
            if over {
                let until = r
                    .locked_until
                    .filter(|u| *u > now)
                    .unwrap_or(r.window_start + a.failure_window);
                let secs = (until - now).whole_seconds().max(1);
                return Err(AppError::TooManyAttempts {
                    retry_after: u32::try_from(secs).unwrap_or(u32::MAX),
                });
            }
        }
        Ok(())
    }

    /// A failed attempt: one more failure for the client address (the account's was counted
    /// when the attempt began), and an audit entry.
    async fn record_failure(&self, username: &str, client: &ClientInfo, why: &str) {
        let now = self.now();
        let a = self.auth();
        let mut cs = ChangeSet::new();
        if let Some(addr) = &client.addr {
            cs = cs.op(Op::LoginFailure {
                key: addr_key(addr),
                at: now,
                window: a.failure_window,
                limit: a.max_failures,
                lock: a.lockout,
            });
        }
        let cs = cs.audit(
            AuditDraft::new(&actor_name(username), "auth.failed", "user", "").details(json!({
                "username": actor_name(username),
                "factor": why,
                "client_addr": client.addr,
            })),
        );
        if let Err(e) = self.store_commit(cs).await {
            tracing::warn!(error = %e, "could not count a failed sign-in");
        }
    }

    /// Audits a refused sign-in that is not a guess (an identity provider's user who may not
    /// sign in here).
    async fn audit_refusal(&self, username: &str, client: &ClientInfo, factor: &str, reason: &str) {
        let entry =
            AuditDraft::new(&actor_name(username), "auth.refused", "user", "").details(json!({
                "username": actor_name(username), "factor": factor, "reason": reason,
                "client_addr": client.addr,
            }));
        if let Err(e) = self.store_commit(ChangeSet::new().audit(entry)).await {
            tracing::warn!(error = %e, "could not audit a refused sign-in");
        }
    }

    fn throttle_keys(username: &str, client: &ClientInfo) -> Vec<String> {
        let mut keys = vec![account_key(username)];
        if let Some(a) = &client.addr {
            keys.push(addr_key(a));
        }
        keys
    }

    fn session_record(
        &self,
        user: UserId,
        mfa_pending: bool,
        client: &ClientInfo,
    ) -> (SessionRecord, String) {
        let now = self.now();
        let secret = random_b64(32);
        let expires = if mfa_pending {
            now + self.auth().mfa_timeout
        } else {
            now + self.auth().session_absolute
        };
        let rec = SessionRecord {
            id_hash: token_hash(&secret),
            user_id: user,
            csrf_token: random_b64(32),
            created_at: now,
            last_seen_at: now,
            expires_at: expires,
            mfa_pending,
            client_addr: client.addr.clone(),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|u| u.chars().take(256).collect()),
            revoked_at: None,
        };
        (rec, secret)
    }

    /// Checks a username and password. On success opens a session (pending the second factor
    /// when the user has TOTP). Every failure is the same `InvalidCredentials`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
    ) -> AppResult<NewSession> {
        self.begin_attempt(username, client).await?;
        let valid_input = !username.is_empty()
            && username.len() <= 64
            && !password.is_empty()
            && password.len() <= MAX_PASSWORD;
        let rec: Option<UserRecord> = if valid_input {
            match self.store.get_user_by_name(username).await {
                Ok(r) => Some(r),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let phc = rec
            .as_ref()
            .and_then(|r| r.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let pw = password.chars().take(MAX_PASSWORD).collect::<String>();
        let ok = verify_blocking(&phc, &pw).await
            && valid_input
            && rec
                .as_ref()
                .is_some_and(|r| r.password_hash.is_some() && !r.user.disabled);
        let Some(rec) = rec.filter(|_| ok) else {
            self.record_failure(username, client, "password").await;
            return Err(AppError::InvalidCredentials);
        };
        let totp = self.store.get_totp(rec.user.id).await?;
        let mfa = totp.is_some_and(|t| t.enabled);
        let (session, secret) = self.session_record(rec.user.id, mfa, client);
        let mut cs = ChangeSet::new();
        if !mfa {
            // cleared only once sign-in is complete: a known password does not reset the
            // second factor's guesses
            cs = cs.op(Op::ClearLoginFailures {
                keys: vec![account_key(username)],
            });
        }
        let cs = cs
            .op(Op::InsertSession(session.clone()))
            .audit(
                AuditDraft::new(&rec.user.username, if mfa { "auth.password_ok" } else { "auth.login" }, "user", rec.user.id)
                    .details(json!({"client_addr": client.addr, "factor": "password", "second_factor_required": mfa})),
            );
        self.store_commit(cs).await?;
        Ok(NewSession {
            secret,
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
            mfa_required: mfa,
            user: rec.user,
        })
    }

    /// Signs in a user vouched for by an external identity provider (OIDC). `subject` is the
    /// provider's stable id for the person (`<issuer> <sub>`); users are matched on it, never
    /// on their name. The first sign-in creates the user with the mapped roles (no password);
    /// later sign-ins keep the roles in step with the provider. A Firebreak account that the
    /// provider did not create is never signed into this way.
    pub async fn login_external(
        &self,
        provider: &str,
        subject: &str,
        username: &str,
        roles: &[firebreak_domain::role::Role],
        email: Option<&str>,
        client: &ClientInfo,
    ) -> AppResult<NewSession> {
        let refuse = |reason: String| async move {
            self.audit_refusal(username, client, provider, &reason)
                .await;
            AppError::Forbidden(reason)
        };
        if firebreak_domain::user::validate_username(username).is_err() {
            return Err(refuse(format!(
                "the identity provider's username {:?} is not a valid Firebreak username",
                actor_name(username)
            ))
            .await);
        }
        if roles.is_empty() {
            return Err(
                refuse("the identity provider grants this user no Firebreak role".into()).await,
            );
        }
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let linked = match self.store.get_user_by_external_id(subject).await {
            Ok(r) => Some(r),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        let mut cs = ChangeSet::new();
        let user = match linked {
            Some(r) if r.user.disabled => {
                self.audit_refusal(
                    &r.user.username,
                    client,
                    provider,
                    "the account is disabled",
                )
                .await;
                return Err(AppError::InvalidCredentials);
            }
            Some(r) => {
                if r.user.roles != roles {
                    cs = cs
                        .op(Op::SetUserRoles {
                            user_id: r.user.id,
                            roles: roles.clone(),
                        })
                        .audit(
                            AuditDraft::new(provider, "user.roles_set", "user", r.user.id)
                                .details(json!({"username": r.user.username, "from": r.user.roles, "to": roles, "source": "identity provider"})),
                        );
                }
                User {
                    roles: roles.clone(),
                    ..r.user
                }
            }
            None => {
                match self.store.get_user_by_name(username).await {
                    Ok(_) => {
                        return Err(refuse(
                            "this name belongs to a Firebreak account that is not linked to the identity provider".into(),
                        )
                        .await);
                    }
                    Err(StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                let rec = UserRecord {
                    user: User {
                        id: UserId::new(),
                        username: username.to_string(),
                        roles: roles.clone(),
                        title: None,
                        seniority: 0,
                        on_duty: true,
                        email: email.map(str::to_string),
                        disabled: false,
                        clearances: vec![],
                        created_at: self.now(),
                    },
                    password_hash: None,
                    external_id: Some(subject.to_string()),
                };
                cs = cs.op(Op::InsertUser(rec.clone())).audit(
                    AuditDraft::new(provider, "user.created", "user", rec.user.id).details(json!({
                        "username": username, "roles": roles, "email": email,
                        "source": "identity provider", "subject": subject,
                    })),
                );
                rec.user
            }
        };
        let (session, secret) = self.session_record(user.id, false, client);
        cs = cs.op(Op::InsertSession(session.clone())).audit(
            AuditDraft::new(&user.username, "auth.login", "user", user.id)
                .details(json!({"client_addr": client.addr, "factor": provider})),
        );
        match self.store_commit(cs).await {
            Ok(_) => {}
            // two first sign-ins of the same person at once: the other one created the user
            Err(StoreError::Conflict(m)) => {
                return Err(AppError::Conflict {
                    code: "conflict",
                    message: m,
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(NewSession {
            secret,
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
            mfa_required: false,
            user,
        })
    }

    /// Resolves a session cookie. `allow_pending`: accept a session that still owes its second
    /// factor (only the second-factor step does).
    pub async fn authenticate_session(
        &self,
        secret: &str,
        allow_pending: bool,
    ) -> AppResult<(Principal, SessionRecord)> {
        self.authenticate_session_with(secret, allow_pending, true)
            .await
    }

    /// [`App::authenticate_session`] for a request the page makes by itself (a live refresh):
    /// it does not count as activity, so an open page does not keep an idle session alive.
    pub async fn authenticate_session_passive(
        &self,
        secret: &str,
    ) -> AppResult<(Principal, SessionRecord)> {
        self.authenticate_session_with(secret, false, false).await
    }

    async fn authenticate_session_with(
        &self,
        secret: &str,
        allow_pending: bool,
        activity: bool,
    ) -> AppResult<(Principal, SessionRecord)> {
        if secret.is_empty() || secret.len() > 128 {
            return Err(AppError::Unauthenticated);
        }
        let (s, u) = match self.store.get_session_with_user(&token_hash(secret)).await {
            Ok(v) => v,
            Err(StoreError::NotFound) => return Err(AppError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        let idle_end = s.last_seen_at + self.auth().session_idle;
        if s.revoked_at.is_some()
            || s.expires_at <= now
            || idle_end <= now
            || u.user.disabled
            || (s.mfa_pending && !allow_pending)
        {
            return Err(AppError::Unauthenticated);
        }
        if activity
            && now - s.last_seen_at >= Duration::minutes(1)
            && let Err(e) = self
                .store_commit(ChangeSet::new().op(Op::TouchSession {
                    id_hash: s.id_hash.clone(),
                    at: now,
                }))
                .await
        {
            tracing::warn!(error = %e, "could not record session activity");
        }
        let p = Principal {
            user: u.user,
            scopes: vec![],
            token_id: None,
            session: Some(SessionInfo {
                id_hash: s.id_hash.clone(),
                csrf_token: s.csrf_token.clone(),
                expires_at: s.expires_at.min(now + self.auth().session_idle),
            }),
        };
        Ok((p, s))
    }

    /// Completes a sign-in that owes its second factor: a TOTP code or a recovery code. The
    /// pending session is replaced by a new one (new secret, new CSRF token).
    pub async fn login_second_factor(
        &self,
        pending_secret: &str,
        code: &str,
        client: &ClientInfo,
    ) -> AppResult<NewSession> {
        let (p, pending) = self.authenticate_session(pending_secret, true).await?;
        if !pending.mfa_pending {
            return Err(AppError::Conflict {
                code: "already_signed_in",
                message: "this session does not await a second factor".into(),
            });
        }
        self.begin_attempt(&p.user.username, client).await?;
        let accepted = self.check_second_factor(p.user.id, code).await?;
        let Some((factor, op)) = accepted else {
            self.record_failure(&p.user.username, client, "second_factor")
                .await;
            return Err(AppError::InvalidCredentials);
        };
        let now = self.now();
        let (session, secret) = self.session_record(p.user.id, false, client);
        let cs = ChangeSet::new()
            .op(op)
            .op(Op::RevokeSessions {
                user_id: p.user.id,
                only: Some(pending.id_hash.clone()),
                except: None,
                at: now,
            })
            .op(Op::ClearLoginFailures {
                keys: vec![account_key(&p.user.username)],
            })
            .op(Op::InsertSession(session.clone()))
            .audit(
                AuditDraft::new(&p.user.username, "auth.login", "user", p.user.id)
                    .details(json!({"client_addr": client.addr, "factor": factor})),
            );
        match self.store_commit(cs).await {
            Ok(_) => {}
            // a replayed TOTP code or a recovery code spent concurrently
            Err(StoreError::Conflict(_) | StoreError::NotFound) => {
                self.record_failure(&p.user.username, client, "second_factor")
                    .await;
                return Err(AppError::InvalidCredentials);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(NewSession {
            secret,
            csrf_token: session.csrf_token,
            expires_at: session.expires_at,
            mfa_required: false,
            user: p.user,
        })
    }

    /// Which factor `code` satisfies, with the op that spends it.
    async fn check_second_factor(
        &self,
        user: UserId,
        code: &str,
    ) -> AppResult<Option<(&'static str, Op)>> {
        let Some(t) = self.store.get_totp(user).await?.filter(|t| t.enabled) else {
            return Ok(None);
        };
        if let Some(step) = totp_match(&t.secret, code, self.now()) {
            if step <= t.last_step {
                return Ok(None);
            }
            return Ok(Some((
                "totp",
                Op::UseTotpStep {
                    user_id: user,
                    step,
                },
            )));
        }
        let c = code.trim();
        if c.len() == 11 && c.as_bytes()[5] == b'-' {
            return Ok(Some((
                "recovery_code",
                Op::UseRecoveryCode {
                    user_id: user,
                    code_hash: recovery_hash(c),
                    at: self.now(),
                },
            )));
        }
        Ok(None)
    }

    /// Ends the caller's session.
    pub async fn logout(&self, p: &Principal) -> AppResult<()> {
        let Some(s) = &p.session else {
            return Ok(());
        };
        let cs = ChangeSet::new()
            .op(Op::RevokeSessions {
                user_id: p.user.id,
                only: Some(s.id_hash.clone()),
                except: None,
                at: self.now(),
            })
            .audit(AuditDraft::new(
                p.username(),
                "auth.logout",
                "user",
                p.user.id,
            ));
        self.store_commit(cs).await?;
        Ok(())
    }

    /// Checks the caller's current password as a throttled sign-in factor would.
    async fn reauthenticate(
        &self,
        p: &Principal,
        password: &str,
        client: &ClientInfo,
    ) -> AppResult<()> {
        self.begin_attempt(p.username(), client).await?;
        let rec = self.store.get_user(p.user.id).await?;
        let phc = rec
            .password_hash
            .clone()
            .unwrap_or_else(|| dummy_hash().to_string());
        let ok = verify_blocking(&phc, password).await && rec.password_hash.is_some();
        if !ok {
            self.record_failure(p.username(), client, "password").await;
            return Err(AppError::field(
                "current_password",
                "is not the current password",
            ));
        }
        self.store_commit(ChangeSet::new().op(Op::ClearLoginFailures {
            keys: vec![account_key(p.username())],
        }))
        .await?;
        Ok(())
    }

    /// Changes the caller's own password; every other session of theirs ends.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> AppResult<()> {
        if !p.can_write() {
            return Err(AppError::Forbidden(
                "changing a password needs a write-scoped token or a session".into(),
            ));
        }
        check_new_password(new, p.username())?;
        self.reauthenticate(p, current, client).await?;
        let cs = ChangeSet::new()
            .op(Op::SetPassword {
                user_id: p.user.id,
                password_hash: hash_password(new)?,
            })
            .op(Op::RevokeSessions {
                user_id: p.user.id,
                only: None,
                except: p.session.as_ref().map(|s| s.id_hash.clone()),
                at: self.now(),
            })
            .audit(AuditDraft::new(
                p.username(),
                "user.password_changed",
                "user",
                p.user.id,
            ));
        self.store_commit(cs).await?;
        Ok(())
    }

    /// Sets a user's password on behalf of an administrator (CLI): every session of theirs ends.
    pub async fn reset_password(
        &self,
        actor: &str,
        username: &str,
        password: &str,
    ) -> AppResult<()> {
        let rec = match self.store.get_user_by_name(username).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return Err(AppError::field("user", format!("no user named {username}")));
            }
            Err(e) => return Err(e.into()),
        };
        check_new_password(password, username).map_err(|_| {
            AppError::field(
                "password",
                "must be 12 to 1024 characters and not the username",
            )
        })?;
        let cs = ChangeSet::new()
            .op(Op::SetPassword {
                user_id: rec.user.id,
                password_hash: hash_password(password)?,
            })
            .op(Op::RevokeSessions {
                user_id: rec.user.id,
                only: None,
                except: None,
                at: self.now(),
            })
            .op(Op::ClearLoginFailures {
                keys: vec![account_key(username)],
            })
            .audit(
                AuditDraft::new(actor, "user.password_reset", "user", rec.user.id)
                    .details(json!({"username": username})),
            );
        self.store_commit(cs).await?;
        Ok(())
    }

    /// Removes a user's second factor on behalf of an administrator (lost authenticator).
    pub async fn reset_second_factor(&self, actor: &str, username: &str) -> AppResult<()> {
        let rec = match self.store.get_user_by_name(username).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => {
                return Err(AppError::field("user", format!("no user named {username}")));
            }
            Err(e) => return Err(e.into()),
        };
        self.remove_totp(actor, rec.user.id).await
    }

    /// Starts TOTP enrolment for the caller: a new secret to put in an authenticator app.
    pub async fn totp_begin(&self, p: &Principal) -> AppResult<TotpEnrollment> {
        if !p.can_write() {
            return Err(AppError::Forbidden(
                "needs a write-scoped token or a session".into(),
            ));
        }
        if self
            .store
            .get_totp(p.user.id)
            .await?
            .is_some_and(|t| t.enabled)
        {
            return Err(AppError::Conflict {
                code: "totp_already_enabled",
                message: "a second factor is already enabled; disable it first".into(),
            });
        }
        let mut raw = [0u8; 20];
        rand::fill(&mut raw);
        let secret = data_encoding::BASE32_NOPAD.encode(&raw);
        let cs = ChangeSet::new()
            .op(Op::SetTotp {
                user_id: p.user.id,
                secret: Some(secret.clone()),
            })
            .audit(AuditDraft::new(
                p.username(),
                "user.totp_enrollment_started",
                "user",
                p.user.id,
            ));
        self.store_commit(cs).await?;
        let issuer = &self.auth().totp_issuer;
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let otpauth_uri = format!(
            "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP}",
            enc(issuer),
            enc(p.username()),
            enc(issuer)
        );
        Ok(TotpEnrollment {
            secret,
            otpauth_uri,
        })
    }

    /// Confirms enrolment with a first code; returns the recovery codes (shown once).
    pub async fn totp_confirm(&self, p: &Principal, code: &str) -> AppResult<Vec<String>> {
        if !p.can_write() {
            return Err(AppError::Forbidden(
                "needs a write-scoped token or a session".into(),
            ));
        }
        let Some(t) = self.store.get_totp(p.user.id).await? else {
            return Err(AppError::Conflict {
                code: "totp_not_started",
                message: "start enrolment first (POST /api/v1/users/me/totp)".into(),
            });
        };
        if t.enabled {
            return Err(AppError::Conflict {
                code: "totp_already_enabled",
                message: "a second factor is already enabled".into(),
            });
        }
        let Some(step) = totp_match(&t.secret, code, self.now()) else {
            return Err(AppError::field("code", "does not match the authenticator"));
        };
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let cs = ChangeSet::new()
            .op(Op::EnableTotp { user_id: p.user.id })
            .op(Op::UseTotpStep {
                user_id: p.user.id,
                step,
            })
            .op(Op::SetRecoveryCodes {
                user_id: p.user.id,
                code_hashes: codes.iter().map(|c| recovery_hash(c)).collect(),
            })
            .audit(AuditDraft::new(
                p.username(),
                "user.totp_enabled",
                "user",
                p.user.id,
            ));
        self.store_commit(cs).await?;
        Ok(codes)
    }

    /// Removes the caller's second factor (needs the current password).
    pub async fn totp_disable(
        &self,
        p: &Principal,
        password: &str,
        client: &ClientInfo,
    ) -> AppResult<()> {
        if !p.can_write() {
            return Err(AppError::Forbidden(
                "needs a write-scoped token or a session".into(),
            ));
        }
        self.reauthenticate(p, password, client).await?;
        self.remove_totp(p.username(), p.user.id).await
    }

    /// Removes a user's second factor (the user, or an administrator for a locked-out user).
    pub async fn remove_totp(&self, actor: &str, user: UserId) -> AppResult<()> {
        let cs = ChangeSet::new()
            .op(Op::SetTotp {
                user_id: user,
                secret: None,
            })
            .op(Op::SetRecoveryCodes {
                user_id: user,
                code_hashes: vec![],
            })
            .audit(AuditDraft::new(actor, "user.totp_disabled", "user", user));
        self.store_commit(cs).await?;
        Ok(())
    }

    /// Whether the user has a second factor, and how many recovery codes are left.
    pub async fn totp_status(&self, user: UserId) -> AppResult<(bool, i64)> {
        let enabled = self.store.get_totp(user).await?.is_some_and(|t| t.enabled);
        let left = if enabled {
            self.store.recovery_codes_left(user).await?
        } else {
            0
        };
        Ok((enabled, left))
    }
}

/// Argon2 verification (tens of milliseconds of CPU) on the blocking pool, so that sign-in
/// storms do not stall the request executor; the cost is the same for every outcome.
async fn verify_blocking(phc: &str, password: &str) -> bool {
    let (phc, password) = (phc.to_string(), password.to_string());
    tokio::task::spawn_blocking(move || verify_password(&phc, &password))
        .await
        .unwrap_or(false)
}

/// Rules for a new password: 12 to 1024 characters, not the username.
pub fn check_new_password(new: &str, username: &str) -> AppResult<()> {
    let n = new.chars().count();
    if n < 12 {
        return Err(AppError::field(
            "new_password",
            "must be at least 12 characters",
        ));
    }
    if new.len() > MAX_PASSWORD {
        return Err(AppError::field(
            "new_password",
            "must be at most 1024 bytes",
        ));
    }
    if new.eq_ignore_ascii_case(username) {
        return Err(AppError::field("new_password", "must not be the username"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8 digits truncated to 6
        let key = b"12345678901234567890";
        let cases = [
            (59, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ];
        for (t, want8) in cases {
            assert_eq!(totp_code(key, t / 30), want8 % 1_000_000, "t={t}");
        }
    }

    #[test]
    fn totp_accepts_adjacent_steps_only() {
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        let now = OffsetDateTime::from_unix_timestamp(1_111_111_109).unwrap();
        let code = |s: i64| format!("{:06}", totp_code(b"12345678901234567890", s));
        let step = 1_111_111_109 / 30;
        assert_eq!(totp_match(&secret, &code(step), now), Some(step));
        assert_eq!(totp_match(&secret, &code(step - 1), now), Some(step - 1));
        assert_eq!(totp_match(&secret, &code(step + 1), now), Some(step + 1));
        assert_eq!(totp_match(&secret, &code(step + 2), now), None);
        assert_eq!(totp_match(&secret, "12345", now), None);
        assert_eq!(totp_match(&secret, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_are_normalized() {
        let c = recovery_code();
        assert_eq!(c.len(), 11);
        assert_eq!(
            recovery_hash(&c),
            recovery_hash(&format!(" {} ", c.to_uppercase()))
        );
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new_password("short", "alice").is_err());
        assert!(check_new_password("aliceALICEalice", "alicealicealice").is_err());
        assert!(check_new_password("a long enough passphrase", "alice").is_ok());
    }
}
