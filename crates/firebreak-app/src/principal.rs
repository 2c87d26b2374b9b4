//! Who is calling, with which rights: a token's rights are its user's roles limited by its scopes.

use crate::{App, AppError, AppResult};
use firebreak_domain::ids::TokenId;
use firebreak_domain::role::{Role, Scope, groups};
use firebreak_domain::user::User;
use firebreak_store::{ChangeSet, Op, StoreError};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    /// Empty: every right of the user.
    pub scopes: Vec<Scope>,
    pub token_id: Option<TokenId>,
    /// Set when the caller signed in with a session cookie.
    pub session: Option<SessionInfo>,
}

/// The sign-in session behind a cookie-authenticated request.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id_hash: String,
    /// Must accompany every state-changing request made with the cookie.
    pub csrf_token: String,
    pub expires_at: time::OffsetDateTime,
}

impl Principal {
    pub fn username(&self) -> &str {
        &self.user.username
    }

    fn scoped(&self, s: Scope) -> bool {
        self.scopes.is_empty() || self.scopes.contains(&s)
    }

    /// May read (GET) what the user's roles allow.
    pub fn can_read(&self) -> bool {
        self.scoped(Scope::Read) || self.scoped(Scope::Write) || self.scoped(Scope::Admin)
    }

    /// May change what the user's roles allow.
    pub fn can_write(&self) -> bool {
        self.scoped(Scope::Write)
    }

    /// Has the admin role and a token allowed to administer.
    pub fn is_admin(&self) -> bool {
        self.user.has_role(Role::Admin) && self.scoped(Scope::Admin)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        self.user.roles.iter().any(|r| roles.contains(r))
    }

    /// Roles that are in effect for changes: none when the token may not write.
    pub fn write_roles(&self) -> &[Role] {
        if self.can_write() {
            &self.user.roles
        } else {
            &[]
        }
    }

    /// May see restricted tickets regardless of involvement.
    pub fn restricted_ok(&self) -> bool {
        self.user.has_role(Role::Admin) || self.user.has_clearance_restricted()
    }

    /// Sees only tickets they reported, own or are assigned.
    pub fn only_own(&self) -> bool {
        !self.has_any(groups::READERS)
    }
}

/// SHA-256 of a presented token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl App {
    /// Resolves a bearer token to a principal, checked against the database on every request:
    /// revoked, expired tokens and disabled users fail at once.
    pub async fn authenticate(&self, token: &str) -> AppResult<Principal> {
        if token.is_empty() || token.len() > 256 {
            return Err(AppError::Unauthenticated);
        }
        let (rec, user) = match self.store.get_token_with_user(&token_hash(token)).await {
            Ok((t, u)) => (t, u.user),
            Err(StoreError::NotFound) => return Err(AppError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        let now = self.now();
        if rec.revoked_at.is_some() || rec.expires_at.is_some_and(|e| e <= now) || user.disabled {
            return Err(AppError::Unauthenticated);
        }
        // last use is recorded at most once a minute; a failure to record it never fails the call
        if rec
            .last_used_at
            .is_none_or(|t| now - t >= time::Duration::minutes(1))
            && let Err(e) = self
                .store_commit(ChangeSet::new().op(Op::TouchToken {
                    token_id: rec.id,
                    at: now,
                }))
                .await
        {
            tracing::warn!(error = %e, "could not record a token's last use");
        }
        Ok(Principal {
            user,
            scopes: rec.scopes,
            token_id: Some(rec.id),
            session: None,
        })
    }
}

impl App {
    /// The principal of an active user, for work done on its behalf without a token (a
    /// configured mailbox or webhook source, a CLI import). Disabled or unknown users are
    /// refused.
    pub async fn principal_for_user(&self, username: &str) -> AppResult<Principal> {
        let rec = match self.store.get_user_by_name(username).await {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Err(AppError::Unauthenticated),
            Err(e) => return Err(e.into()),
        };
        if rec.user.disabled {
            return Err(AppError::Unauthenticated);
        }
        Ok(Principal {
            user: rec.user,
            scopes: vec![Scope::Intake],
            token_id: None,
            session: None,
        })
    }
}

impl App {
    /// A principal for a listener that has no user of its own (the syslog listener): it may
    /// only report events, attributed to `name`.
    pub fn service_principal(name: &str) -> Principal {
        Principal {
            user: User {
                id: firebreak_domain::ids::UserId(uuid::Uuid::nil()),
                username: name.to_string(),
                roles: vec![Role::Reporter],
                title: None,
                seniority: 0,
                on_duty: false,
                email: None,
                disabled: false,
                clearances: vec![],
                created_at: time::OffsetDateTime::UNIX_EPOCH,
            },
            scopes: vec![Scope::Intake],
            token_id: None,
            session: None,
        }
    }
}
