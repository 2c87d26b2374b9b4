//! Users as the rest of the system sees them (credentials live in the store, never here).

use crate::ids::UserId;
use crate::role::{CLEARANCE_RESTRICTED, Role};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub roles: Vec<Role>,
    pub title: Option<String>,
    pub seniority: i32,
    pub on_duty: bool,
    pub email: Option<String>,
    pub disabled: bool,
    pub clearances: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: time::OffsetDateTime,
}

impl User {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
    pub fn has_clearance_restricted(&self) -> bool {
        self.clearances.iter().any(|c| c == CLEARANCE_RESTRICTED)
    }
}

/// A username: 1-64 characters of `a-z A-Z 0-9 . _ - @`, starting with a letter or digit.
pub fn validate_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or a digit".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err("may only contain letters, digits, '.', '_', '-' and '@'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_validated() {
        assert!(validate_username("alice").is_ok());
        assert!(validate_username("a.b-c_d@x").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("-x").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
    }
}
