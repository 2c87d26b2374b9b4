//! Roles of PRODUCT.md §2 and token scopes; which role may do what is decided here, not in handlers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Reporter,
    Helpdesk,
    Responder,
    SeniorResponder,
    Manager,
    Executive,
    Auditor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Reporter,
        Role::Helpdesk,
        Role::Responder,
        Role::SeniorResponder,
        Role::Manager,
        Role::Executive,
        Role::Auditor,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reporter => "reporter",
            Role::Helpdesk => "helpdesk",
            Role::Responder => "responder",
            Role::SeniorResponder => "senior_responder",
            Role::Manager => "manager",
            Role::Executive => "executive",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an API token may be used for; a token's rights are its user's roles limited by its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Read anything the user may read.
    Read,
    /// Read and change what the user may change.
    Write,
    /// Only report events.
    Intake,
    /// Administration (users, tokens, plan, configuration).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Intake, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Intake => "intake",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The clearance that lets a user read restricted tickets.
pub const CLEARANCE_RESTRICTED: &str = "restricted";

/// Role groups used by the permission rules.
pub mod groups {
    use super::Role;

    /// Tier 1 and tier 2 responders ("responder+").
    pub const RESPONDERS: &[Role] = &[Role::Responder, Role::SeniorResponder];
    /// People who may open tickets.
    pub const TICKET_OPENERS: &[Role] = &[
        Role::Helpdesk,
        Role::Responder,
        Role::SeniorResponder,
        Role::Manager,
    ];
    /// People who work tickets: edit fields and write to the incident log.
    pub const TEAM: &[Role] = &[
        Role::Helpdesk,
        Role::Responder,
        Role::SeniorResponder,
        Role::Manager,
    ];
    /// People who may read every (non-restricted) ticket.
    pub const READERS: &[Role] = &[
        Role::Helpdesk,
        Role::Responder,
        Role::SeniorResponder,
        Role::Manager,
        Role::Auditor,
        Role::Admin,
    ];
}
