//! Identifiers and values shared by every layer. Identifiers users type are validated when they
//! are deserialised, so the rest of the host never sees an invalid one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A caller's role, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only.
    Viewer,
    /// Safe and moderate actions.
    Operator,
    /// Everything, sensitive actions with a justification.
    Admin,
}

impl Role {
    /// All roles, least powerful first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The name used in config, tokens and policy input.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownValue {
            kind: "role",
            value: s.to_owned(),
            expected: "viewer, operator, admin",
        })
    }
}

/// A tool's risk category (the WIT `category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Category {
    /// Reads state only.
    Read,
    /// Harmless changes.
    Safe,
    /// Changes where verify is recommended.
    Moderate,
    /// Changes needing justification, verify and rollback.
    Sensitive,
    /// Changes needing a second admin's approval, verify and rollback.
    Critical,
}

impl Category {
    /// All categories, least risky first.
    pub const ALL: [Category; 5] =
        [Category::Read, Category::Safe, Category::Moderate, Category::Sensitive, Category::Critical];

    /// The name used in the API and in policy input (`READ`, `SAFE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Read => "READ",
            Category::Safe => "SAFE",
            Category::Moderate => "MODERATE",
            Category::Sensitive => "SENSITIVE",
            Category::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A JWT obtained by password login.
    Password,
    /// A service account's API key.
    ApiKey,
    /// The local CLI (`toolgate plugins call`), trusted as the machine's operator.
    Local,
}

/// An authenticated caller, as every layer below HTTP sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// User name or API key name.
    pub name: String,
    /// The caller's role.
    pub role: Role,
    /// How the caller authenticated.
    pub auth_method: AuthMethod,
    /// Where the request came from, when it came over the network.
    pub source_ip: Option<IpAddr>,
}

/// A name users and plugins type, checked against a grammar when it is created or deserialised:
/// tool names (`[a-z][a-z0-9_]{0,63}`) and plugin names (`[a-z][a-z0-9_-]{0,63}`).
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $extra:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                let mut chars = s.chars();
                let valid = s.len() <= 64
                    && chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == $extra);
                if valid {
                    Ok(Self(s))
                } else {
                    Err(InvalidName { kind: $kind, value: s })
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A tool's name: `[a-z][a-z0-9_]{0,63}`, unique across all loaded plugins.
    ToolName, "tool name", '_'
);
name_type!(
    /// A plugin's name: `[a-z][a-z0-9_-]{0,63}`.
    PluginName, "plugin name", '-'
);

/// A name that does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {kind} `{value}`: expected a lower-case letter, then lower-case letters, digits or separators, at most 64 characters"
)]
pub struct InvalidName {
    /// What kind of name it was.
    pub kind: &'static str,
    /// The refused value.
    pub value: String,
}

/// A value outside a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`: expected one of {expected}")]
pub struct UnknownValue {
    /// What kind of value it was.
    pub kind: &'static str,
    /// The refused value.
    pub value: String,
    /// The accepted values.
    pub expected: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_grammar() {
        assert!("disk_usage".parse::<ToolName>().is_ok());
        assert!("Disk".parse::<ToolName>().is_err());
        assert!("disk-usage".parse::<ToolName>().is_err());
        assert!("docker-tools".parse::<PluginName>().is_ok());
        assert!("".parse::<PluginName>().is_err());
        assert!("a".repeat(65).parse::<ToolName>().is_err());
    }

    #[test]
    fn roles_and_categories_use_their_wire_names() {
        assert_eq!(serde_json::to_string(&Role::Operator).ok().as_deref(), Some("\"operator\""));
        assert_eq!(serde_json::to_string(&Category::Critical).ok().as_deref(), Some("\"CRITICAL\""));
        assert!("root".parse::<Role>().is_err());
        assert!(Role::Viewer < Role::Admin);
    }
}
