//! Assets: the inventory entries (hosts, applications, services) tickets affect. An asset whose
//! `critical_production` is set makes every ticket affecting it an escalation; its owner is told
//! when such a ticket is escalated.

use crate::error::{DomainError, FieldError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CreateAsset {
    /// Unique, e.g. a host name.
    pub name: String,
    /// IP addresses, host names.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// A username, or an email address for owners who are not users.
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub critical_production: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn bad(s: &str) -> bool {
    s.chars().any(char::is_control)
}

impl CreateAsset {
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 || bad(name) {
            errs.push(FieldError::new(
                format!("{prefix}name"),
                "1 to 200 characters, no control characters",
            ));
        }
        if self.addresses.len() > 100 {
            errs.push(FieldError::new(
                format!("{prefix}addresses"),
                "at most 100 addresses",
            ));
        }
        for (i, a) in self.addresses.iter().enumerate() {
            if a.trim().is_empty() || a.len() > 255 || bad(a) || a.contains(' ') {
                errs.push(FieldError::new(
                    format!("{prefix}addresses[{i}]"),
                    "an address or host name",
                ));
            }
        }
        if let Some(o) = &self.owner
            && (o.trim().is_empty() || o.len() > 200 || bad(o))
        {
            errs.push(FieldError::new(
                format!("{prefix}owner"),
                "a username or an email address",
            ));
        }
        if let Some(d) = &self.description
            && (d.chars().count() > 10_000 || d.contains('\0'))
        {
            errs.push(FieldError::new(
                format!("{prefix}description"),
                "at most 10000 characters",
            ));
        }
        errs
    }

    pub fn check(&self) -> Result<(), DomainError> {
        let errs = self.validate("");
        if errs.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(errs))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Asset {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: Uuid,
    pub name: String,
    pub addresses: Vec<String>,
    pub owner: Option<String>,
    pub critical_production: bool,
    pub description: Option<String>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LinkAsset {
    /// The asset's name or id.
    pub asset: String,
}

/// Parses the CSV import (`name,addresses,owner,critical_production[,description]`, a header
/// line, addresses separated by `;` or spaces). Every bad line is reported by its number.
pub fn parse_csv(text: &str) -> (Vec<CreateAsset>, Vec<FieldError>) {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (n == 1 && line.to_ascii_lowercase().starts_with("name,")) {
            continue;
        }
        let cells = split_csv_line(line);
        if cells.len() < 4 || cells.len() > 5 {
            errs.push(FieldError::new(
                format!("line {n}"),
                "expected name,addresses,owner,critical_production[,description]",
            ));
            continue;
        }
        let critical = match cells[3].trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => true,
            "false" | "no" | "0" | "" => false,
            other => {
                errs.push(FieldError::new(
                    format!("line {n}.critical_production"),
                    format!("{other:?} is not true/false"),
                ));
                continue;
            }
        };
        let a = CreateAsset {
            name: cells[0].trim().to_string(),
            addresses: cells[1]
                .split([';', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            owner: Some(cells[2].trim().to_string()).filter(|s| !s.is_empty()),
            critical_production: critical,
            description: cells
                .get(4)
                .map(|d| d.trim().to_string())
                .filter(|s| !s.is_empty()),
        };
        let e = a.validate(&format!("line {n}."));
        if e.is_empty() {
            out.push(a);
        } else {
            errs.extend(e);
        }
    }
    (out, errs)
}

/// RFC 4180 fields of one line (quotes, doubled quotes).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => cells.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    cells.push(cur);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_import_reports_bad_lines_by_number() {
        let text = "name,addresses,owner,critical_production\nfs01,10.0.0.5;fs01.corp,ops@example.org,true\n\"db, primary\",10.0.0.6,dba,no,\"the \"\"main\"\" one\"\nbroken\nweb,1.2.3.4,x,maybe\n";
        let (ok, errs) = parse_csv(text);
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].addresses, ["10.0.0.5", "fs01.corp"]);
        assert!(ok[0].critical_production);
        assert_eq!(ok[1].name, "db, primary");
        assert_eq!(ok[1].description.as_deref(), Some("the \"main\" one"));
        let fields: Vec<String> = errs.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["line 4", "line 5.critical_production"]);
    }
}
