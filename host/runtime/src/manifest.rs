//! Capabilities and manifest validation. A plugin is loaded only when everything its manifest
//! says is well-formed and every capability its tools need was granted to it.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::PluginError;
use super::bindings::exports::toolgate::plugin::tool::{Manifest, ToolSpec};
use super::bindings::{self, Category as WitCategory};
use toolgate_core::model::{Category, PluginName, ToolName};
use toolgate_core::redact::may_mark_secrets;

/// An authority a tool needs from the host, written in grants as `exec:<profile>` or one of the
/// names of [`Capability::NAMED`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Run commands in the named sandbox profile.
    Exec(String),
    /// List and inspect containers, read their logs.
    ContainersRead,
    /// Start, stop and restart containers.
    ContainersManage,
    /// Read and list workspace files.
    WorkspaceRead,
    /// Write and remove workspace files.
    WorkspaceWrite,
    /// Read the audit log, scoped to the caller.
    AuditRead,
    /// Read systemd units' state.
    ServicesRead,
    /// Start, stop and restart systemd units.
    ServicesManage,
    /// Resolve packages, refresh the package lists.
    PackagesRead,
    /// Install and remove packages.
    PackagesManage,
    /// List the host's file systems.
    FilesystemsRead,
}

impl Capability {
    /// Every capability but `exec:<profile>`, by its grant name.
    pub const NAMED: [(&'static str, Capability); 10] = [
        ("containers-read", Capability::ContainersRead),
        ("containers-manage", Capability::ContainersManage),
        ("workspace-read", Capability::WorkspaceRead),
        ("workspace-write", Capability::WorkspaceWrite),
        ("audit-read", Capability::AuditRead),
        ("services-read", Capability::ServicesRead),
        ("services-manage", Capability::ServicesManage),
        ("packages-read", Capability::PackagesRead),
        ("packages-manage", Capability::PackagesManage),
        ("filesystems-read", Capability::FilesystemsRead),
    ];
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Exec(profile) => write!(f, "exec:{profile}"),
            named => {
                let name = Capability::NAMED.iter().find(|(_, c)| c == named).map_or("", |(n, _)| n);
                f.write_str(name)
            }
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((_, c)) = Capability::NAMED.iter().find(|(n, _)| *n == s) {
            return Ok(c.clone());
        }
        match s.strip_prefix("exec:") {
            Some(profile) if valid_profile(profile) => Ok(Capability::Exec(profile.to_owned())),
            _ => {
                let names: Vec<&str> = Capability::NAMED.iter().map(|(n, _)| *n).collect();
                Err(format!("unknown capability `{s}`: expected exec:<profile> or one of {}", names.join(", ")))
            }
        }
    }
}

impl TryFrom<&bindings::Capability> for Capability {
    type Error = String;
    fn try_from(c: &bindings::Capability) -> Result<Self, Self::Error> {
        use bindings::Capability as W;
        Ok(match c {
            W::Exec(profile) if valid_profile(profile) => Capability::Exec(profile.clone()),
            W::Exec(profile) => return Err(format!("invalid sandbox profile name `{profile}`")),
            W::ContainersRead => Capability::ContainersRead,
            W::ContainersManage => Capability::ContainersManage,
            W::WorkspaceRead => Capability::WorkspaceRead,
            W::WorkspaceWrite => Capability::WorkspaceWrite,
            W::AuditRead => Capability::AuditRead,
            W::ServicesRead => Capability::ServicesRead,
            W::ServicesManage => Capability::ServicesManage,
            W::PackagesRead => Capability::PackagesRead,
            W::PackagesManage => Capability::PackagesManage,
            W::FilesystemsRead => Capability::FilesystemsRead,
        })
    }
}

/// Profile names follow the plugin-name grammar, so a grant string is never ambiguous.
fn valid_profile(profile: &str) -> bool {
    profile.parse::<PluginName>().is_ok()
}

/// Parse a plugin's grant strings.
pub fn parse_grants(plugin: &str, grants: &[String]) -> Result<BTreeSet<Capability>, PluginError> {
    grants
        .iter()
        .map(|g| g.parse().map_err(|e| PluginError::Config(format!("grants of plugin `{plugin}`: {e}"))))
        .collect()
}

/// One tool, validated.
pub struct ToolDef {
    /// Its name.
    pub name: ToolName,
    /// For people and agents.
    pub description: String,
    /// Risk category.
    pub category: Category,
    /// The parameters schema, as declared.
    pub params_schema: serde_json::Value,
    /// Whether the parameters schema can mark a value secret ([`may_mark_secrets`]).
    pub params_secrets: bool,
    /// The output schema, as declared.
    pub output_schema: serde_json::Value,
    /// Compiled once here, used on every call.
    pub params_validator: Arc<jsonschema::Validator>,
    /// Compiled once here, used on every result.
    pub output_validator: Arc<jsonschema::Validator>,
    /// Whether `verify` is supported.
    pub supports_verify: bool,
    /// Whether `rollback` is supported.
    pub supports_rollback: bool,
    /// What host calls it may make.
    pub capabilities: BTreeSet<Capability>,
}

/// A validated manifest.
pub struct PluginManifest {
    /// Plugin name.
    pub name: PluginName,
    /// Semantic version.
    pub version: String,
    /// Its tools, in manifest order.
    pub tools: Vec<ToolDef>,
}

/// Check a manifest; `file` names the plugin in errors until its own name is known valid.
pub fn validate(
    file: &str,
    manifest: Manifest,
    grants_for: impl Fn(&str) -> Result<BTreeSet<Capability>, PluginError>,
) -> Result<PluginManifest, PluginError> {
    let name: PluginName =
        manifest.name.parse().map_err(|e| PluginError::Manifest { plugin: file.to_owned(), reason: format!("{e}") })?;
    let refuse = |reason: String| PluginError::Manifest { plugin: name.to_string(), reason };
    if !is_semver(&manifest.version) {
        return Err(refuse(format!("version `{}` is not a semantic version (MAJOR.MINOR.PATCH)", manifest.version)));
    }
    if manifest.tools.is_empty() {
        return Err(refuse("it declares no tool".into()));
    }
    let grants = grants_for(name.as_str())?;
    let mut seen = HashSet::new();
    let mut tools = Vec::with_capacity(manifest.tools.len());
    for spec in manifest.tools {
        let tool = validate_tool(spec).map_err(refuse)?;
        if !seen.insert(tool.name.clone()) {
            return Err(refuse(format!("tool `{}` is declared twice", tool.name)));
        }
        if let Some(missing) = tool.capabilities.iter().find(|c| !grants.contains(c)) {
            return Err(PluginError::Ungranted {
                plugin: name.to_string(),
                tool: tool.name.to_string(),
                capability: missing.to_string(),
            });
        }
        tools.push(tool);
    }
    Ok(PluginManifest { name, version: manifest.version, tools })
}

fn validate_tool(spec: ToolSpec) -> Result<ToolDef, String> {
    let name: ToolName = spec.name.parse().map_err(|e| format!("{e}"))?;
    if spec.description.trim().is_empty() {
        return Err(format!("tool `{name}` has no description"));
    }
    let category = match spec.category {
        WitCategory::Read => Category::Read,
        WitCategory::Safe => Category::Safe,
        WitCategory::Moderate => Category::Moderate,
        WitCategory::Sensitive => Category::Sensitive,
        WitCategory::Critical => Category::Critical,
    };
    // Governance verifies every SENSITIVE and CRITICAL action (WIT `category`), and rolls back
    // those whose tool can undo (a restart cannot, and must not claim it can).
    if category >= Category::Sensitive && !spec.supports_verify {
        return Err(format!("tool `{name}` is {category} but does not support verify"));
    }
    let (params_schema, params_validator) = schema(&name, "params-schema", &spec.params_schema)?;
    let (output_schema, output_validator) = schema(&name, "output-schema", &spec.output_schema)?;
    let capabilities = spec
        .capabilities
        .iter()
        .map(Capability::try_from)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tool `{name}`: {e}"))?;
    Ok(ToolDef {
        name,
        description: spec.description,
        category,
        params_secrets: may_mark_secrets(&params_schema),
        params_schema,
        output_schema,
        params_validator: Arc::new(params_validator),
        output_validator: Arc::new(output_validator),
        supports_verify: spec.supports_verify,
        supports_rollback: spec.supports_rollback,
        capabilities,
    })
}

fn schema(tool: &ToolName, field: &str, text: &str) -> Result<(serde_json::Value, jsonschema::Validator), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("tool `{tool}`: {field} is not JSON: {e}"))?;
    let validator = jsonschema::draft202012::new(&value)
        .map_err(|e| format!("tool `{tool}`: {field} is not a valid JSON Schema: {e}"))?;
    Ok((value, validator))
}

/// `MAJOR.MINOR.PATCH`, optionally followed by `-pre` and `+build`.
fn is_semver(v: &str) -> bool {
    let core = v.split_once('+').map_or(v, |(c, build)| if build.is_empty() { "" } else { c });
    let core = core.split_once('-').map_or(core, |(c, pre)| if pre.is_empty() { "" } else { c });
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_round_trip_and_unknown_ones_are_named() {
        let all =
            ["exec:default", "containers-read", "containers-manage", "workspace-read", "workspace-write", "audit-read"];
        for g in all {
            assert_eq!(g.parse::<Capability>().map(|c| c.to_string()).as_deref(), Ok(g));
        }
        let err = "exec".parse::<Capability>().err().unwrap_or_default();
        assert!(err.contains("`exec`"), "{err}");
        assert!("exec:".parse::<Capability>().is_err());
        assert!("exec:Bad Profile".parse::<Capability>().is_err());
    }

    #[test]
    fn versions_must_be_semantic() {
        assert!(is_semver("0.1.0"));
        assert!(is_semver("1.20.3-rc.1+build.5"));
        assert!(!is_semver("1.0"));
        assert!(!is_semver("01.0.0"));
        assert!(!is_semver("1.0.0-"));
        assert!(!is_semver("v1.0.0"));
    }
}
