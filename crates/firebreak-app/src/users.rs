//! Users and API tokens: creation (CLI and admin API), listing, disabling, roles, the first
//! admin on a fresh database. Passwords are argon2id PHC strings; tokens are stored as SHA-256.

use crate::principal::token_hash;
use crate::{App, AppError, AppResult, Principal};
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use firebreak_domain::api::{CreateUserRequest, UpdateUserRequest};
use firebreak_domain::audit::AuditDraft;
use firebreak_domain::ids::{TokenId, UserId};
use firebreak_domain::role::{Role, Scope};
use firebreak_domain::user::User;
use firebreak_store::{ChangeSet, Op, StoreError, TokenRecord, UserRecord};
use rand::Rng as _;
use serde_json::json;
use time::{Duration, OffsetDateTime};

/// A user to create (from the CLI or the admin API).
#[derive(Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub roles: Vec<Role>,
    pub title: Option<String>,
    pub seniority: i32,
    pub on_duty: bool,
    pub email: Option<String>,
    pub clearances: Vec<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("roles", &self.roles)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl From<&CreateUserRequest> for NewUser {
    fn from(r: &CreateUserRequest) -> Self {
        Self {
            username: r.username.clone(),
            roles: r.roles.clone(),
            title: r.title.clone(),
            seniority: r.seniority.unwrap_or(0),
            on_duty: r.on_duty.unwrap_or(true),
            email: r.email.clone(),
            clearances: r.clearances.clone().unwrap_or_default(),
            password: r.password.clone(),
        }
    }
}

/// A token to create.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    pub username: String,
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub expires_in: Option<Duration>,
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A random password of 20 characters (~115 bits).
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("fbk_{}", hex::encode(bytes))
}

/// The actor name used for changes made from the command line on the server's machine.
pub const CLI_ACTOR: &str = "cli";
pub const SYSTEM_ACTOR: &str = "system";

impl App {
    fn user_record(&self, u: &NewUser) -> AppResult<UserRecord> {
        let req = CreateUserRequest {
            username: u.username.clone(),
            roles: u.roles.clone(),
            title: u.title.clone(),
            seniority: Some(u.seniority),
            on_duty: Some(u.on_duty),
            email: u.email.clone(),
            clearances: Some(u.clearances.clone()),
            password: u.password.clone(),
        };
        req.validate()?;
        let password_hash = u.password.as_deref().map(hash_password).transpose()?;
        let mut roles = u.roles.clone();
        roles.sort();
        roles.dedup();
        Ok(UserRecord {
            user: User {
                id: UserId::new(),
                username: u.username.clone(),
                roles,
                title: u.title.clone(),
                seniority: u.seniority,
                on_duty: u.on_duty,
                email: u.email.clone(),
                disabled: false,
                clearances: u.clearances.clone(),
                created_at: self.now(),
            },
            password_hash,
            external_id: None,
        })
    }

    fn user_created_entry(actor: &str, u: &User) -> AuditDraft {
        AuditDraft::new(actor, "user.created", "user", u.id).details(json!({
            "username": u.username, "roles": u.roles, "title": u.title, "seniority": u.seniority,
            "on_duty": u.on_duty, "email": u.email, "clearances": u.clearances,
        }))
    }

    /// Creates a user on behalf of `actor` (the CLI, or an admin through the API).
    pub async fn add_user(&self, actor: &str, u: &NewUser) -> AppResult<User> {
        let rec = self.user_record(u)?;
        let entry = Self::user_created_entry(actor, &rec.user);
        match self
            .store_commit(
                ChangeSet::new()
                    .op(Op::InsertUser(rec.clone()))
                    .audit(entry),
            )
            .await
        {
            Ok(_) => Ok(rec.user),
            Err(StoreError::Conflict(m)) => Err(AppError::Conflict {
                code: "user_exists",
                message: m,
            }),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_user_api(&self, p: &Principal, req: &CreateUserRequest) -> AppResult<User> {
        if !p.is_admin() {
            return Err(self.deny_admin(p, "user.create").await);
        }
        self.add_user(p.username(), &NewUser::from(req)).await
    }

    async fn deny_admin(&self, p: &Principal, action: &str) -> AppError {
        let entry = AuditDraft::new(p.username(), "authz.denied", "user", "")
            .details(json!({"attempted": action, "reason": "requires the admin role and an admin-scoped token"}));
        if let Err(e) = self.store_commit(ChangeSet::new().audit(entry)).await {
            tracing::warn!(error = %e, "could not audit a denial");
        }
        AppError::Forbidden(format!("{action} requires the admin role"))
    }

    /// Creates the `admin` user with a random password if the database has no users; returns
    /// the password when it did. Safe when several nodes start together.
    pub async fn bootstrap_admin(&self) -> AppResult<Option<String>> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let password = generate_password();
        let rec = self.user_record(&NewUser {
            username: "admin".into(),
            roles: vec![Role::Admin],
            title: Some("Administrator".into()),
            on_duty: true,
            password: Some(password.clone()),
            ..Default::default()
        })?;
        let entry = Self::user_created_entry(SYSTEM_ACTOR, &rec.user);
        match self
            .store_commit(ChangeSet::new().op(Op::InsertFirstUser(rec)).audit(entry))
            .await
        {
            Ok(_) => Ok(Some(password)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_users(&self, p: &Principal) -> AppResult<Vec<User>> {
        self.list_users_allowed(p)?;
        Ok(self.store.list_users().await?)
    }

    /// One user (same readers as the list); 404 for unknown names.
    pub async fn get_user(&self, p: &Principal, username: &str) -> AppResult<User> {
        self.list_users_allowed(p)?;
        match self.store.get_user_by_name(username).await {
            Ok(u) => Ok(u.user),
            Err(StoreError::NotFound) => Err(AppError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    fn list_users_allowed(&self, p: &Principal) -> AppResult<()> {
        if !p.can_read() || p.only_own() && !p.is_admin() {
            return Err(AppError::Forbidden(
                "reading users requires a team, auditor or admin role".into(),
            ));
        }
        Ok(())
    }

    /// Changes a user's profile, roles, clearances or state (admin). Disabling also revokes
    /// every token the user holds, in the same transaction. Audited with the changes.
    pub async fn update_user_api(
        &self,
        p: &Principal,
        username: &str,
        req: &UpdateUserRequest,
    ) -> AppResult<User> {
        if !p.is_admin() {
            return Err(self.deny_admin(p, "user.update").await);
        }
        let u = match self.store.get_user_by_name(username).await {
            Ok(u) => u.user,
            Err(StoreError::NotFound) => return Err(AppError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let (n, changed) = req.apply(&u)?;
        if changed.is_empty() {
            return Ok(u);
        }
        if n.disabled && n.id == p.user.id {
            return Err(AppError::field("disabled", "you cannot disable yourself"));
        }
        let (before, after) = (
            serde_json::to_value(&u).unwrap_or_default(),
            serde_json::to_value(&n).unwrap_or_default(),
        );
        let mut diff = serde_json::Map::new();
        for f in &changed {
            diff.insert(
                (*f).to_string(),
                json!({"from": before.get(*f), "to": after.get(*f)}),
            );
        }
        let mut cs = ChangeSet::new().op(Op::UpdateUser(n.clone())).audit(
            AuditDraft::new(p.username(), "user.updated", "user", u.id)
                .details(json!({"username": u.username, "changes": diff})),
        );
        if n.disabled && !u.disabled {
            cs = cs
                .op(Op::RevokeTokens {
                    user_id: u.id,
                    token_id: None,
                    at: self.now(),
                })
                .op(Op::RevokeSessions {
                    user_id: u.id,
                    only: None,
                    except: None,
                    at: self.now(),
                });
        }
        self.store_commit(cs).await?;
        Ok(n)
    }

    pub async fn all_users(&self) -> AppResult<Vec<User>> {
        Ok(self.store.list_users().await?)
    }

    async fn user_by_name(&self, username: &str) -> AppResult<User> {
        match self.store.get_user_by_name(username).await {
            Ok(u) => Ok(u.user),
            Err(StoreError::NotFound) => Err(AppError::field(
                "username",
                format!("no user named {username}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Disables a user and revokes every token they hold, in one transaction.
    pub async fn disable_user(&self, actor: &str, username: &str) -> AppResult<User> {
        let mut u = self.user_by_name(username).await?;
        u.disabled = true;
        let now = self.now();
        let cs = ChangeSet::new()
            .op(Op::SetUserDisabled {
                user_id: u.id,
                disabled: true,
            })
            .op(Op::RevokeTokens {
                user_id: u.id,
                token_id: None,
                at: now,
            })
            .op(Op::RevokeSessions {
                user_id: u.id,
                only: None,
                except: None,
                at: now,
            })
            .audit(
                AuditDraft::new(actor, "user.disabled", "user", u.id)
                    .details(json!({"username": u.username})),
            );
        self.store_commit(cs).await?;
        Ok(u)
    }

    pub async fn set_roles(&self, actor: &str, username: &str, roles: &[Role]) -> AppResult<User> {
        if roles.is_empty() {
            return Err(AppError::field("roles", "at least one role is required"));
        }
        let mut u = self.user_by_name(username).await?;
        let before = u.roles.clone();
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        u.roles = roles;
        let cs = ChangeSet::new()
            .op(Op::SetUserRoles {
                user_id: u.id,
                roles: u.roles.clone(),
            })
            .audit(
                AuditDraft::new(actor, "user.roles_changed", "user", u.id)
                    .details(json!({"username": u.username, "from": before, "to": u.roles})),
            );
        self.store_commit(cs).await?;
        Ok(u)
    }

    /// Creates an API token and returns the secret, which is shown once and stored only hashed.
    pub async fn create_token(
        &self,
        actor: &str,
        spec: &TokenSpec,
    ) -> AppResult<(TokenRecord, String)> {
        let u = self.user_by_name(&spec.username).await?;
        if u.disabled {
            return Err(AppError::field(
                "user",
                format!("user {} is disabled", u.username),
            ));
        }
        let secret = generate_token();
        let now = self.now();
        let mut scopes = spec.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let rec = TokenRecord {
            id: TokenId::new(),
            user_id: u.id,
            name: spec.name.clone().unwrap_or_else(|| "token".into()),
            token_hash: token_hash(&secret),
            scopes,
            created_at: now,
            expires_at: match spec.expires_in {
                Some(d) => Some(
                    now.checked_add(d)
                        .ok_or_else(|| AppError::field("expires", "too far in the future"))?,
                ),
                None => None,
            },
            revoked_at: None,
            last_used_at: None,
        };
        let entry = AuditDraft::new(actor, "token.created", "token", rec.id).details(json!({
            "user": u.username, "name": rec.name, "scopes": rec.scopes,
            "expires_at": rec.expires_at.map(|t| t.unix_timestamp()),
        }));
        self.store_commit(
            ChangeSet::new()
                .op(Op::InsertToken(rec.clone()))
                .audit(entry),
        )
        .await?;
        Ok((rec, secret))
    }

    /// A token for `spec.username` made by a signed-in principal: an admin (with a write-capable
    /// session or token) for anyone; anyone else only for themselves, within their own rights
    /// (no `admin` scope). Refusals are audited.
    pub async fn create_token_as(
        &self,
        p: &Principal,
        spec: &TokenSpec,
    ) -> AppResult<(TokenRecord, String)> {
        let own = spec.username == p.username();
        let admin_scope = spec.scopes.contains(&firebreak_domain::role::Scope::Admin);
        if !p.can_write() || (!own && !p.is_admin()) || (admin_scope && !p.is_admin()) {
            return Err(self.deny_admin(p, "token.create").await);
        }
        self.create_token(p.username(), spec).await
    }

    /// A user's tokens (records only: the secrets were never stored).
    pub async fn list_tokens(&self, username: &str) -> AppResult<Vec<TokenRecord>> {
        let u = self.user_by_name(username).await?;
        Ok(self.store.list_tokens(u.id).await?)
    }

    /// Revokes one of a user's tokens; it fails from the next request on. Audited.
    pub async fn revoke_token(&self, actor: &str, username: &str, token_id: &str) -> AppResult<()> {
        let u = self.user_by_name(username).await?;
        let id: TokenId = token_id
            .parse()
            .map_err(|_| AppError::field("id", "not a token id"))?;
        let tokens = self.store.list_tokens(u.id).await?;
        let Some(t) = tokens.iter().find(|t| t.id == id) else {
            return Err(AppError::field(
                "id",
                format!("{username} has no token {token_id}"),
            ));
        };
        if t.revoked_at.is_some() {
            return Ok(());
        }
        let cs = ChangeSet::new()
            .op(Op::RevokeTokens {
                user_id: u.id,
                token_id: Some(id),
                at: self.now(),
            })
            .audit(
                AuditDraft::new(actor, "token.revoked", "token", id)
                    .details(json!({"user": u.username, "name": t.name})),
            );
        self.store_commit(cs).await?;
        Ok(())
    }

    pub fn now_utc(&self) -> OffsetDateTime {
        self.now()
    }
}
