//! Plugin identity. A plugin is the file the operator put in the plugin directory, named by its
//! file name (`docker.wasm` is plugin `docker`), plus the sha256 of its content: grants bind to
//! that file name (and, when the operator pins one, to that digest), never to the name a
//! component gives itself in its manifest. A component whose manifest claims another name is
//! refused, and so are all the components that claim the same plugin or tool name: never
//! first come, first served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::PluginError;
use toolgate_core::model::{PluginName, ToolName};

/// Who a component file is, before anything it says about itself is believed.
#[derive(Debug, Clone)]
pub struct FileIdentity {
    /// The plugin name, from the file name.
    pub name: PluginName,
    /// The file name, for messages.
    pub file_name: String,
    /// `sha256:<hex>` of the file's content.
    pub digest: String,
}

/// The identity of `file` with content `bytes`, checked against the digest pinned for it, if any.
pub fn of_file(file: &Path, bytes: &[u8], pinned: Option<&str>) -> Result<FileIdentity, PluginError> {
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let refuse = |reason: String| PluginError::Identity { file: file_name.clone(), reason };
    let name: PluginName = stem
        .parse()
        .map_err(|e| refuse(format!("a plugin is named by its file, and `{stem}` is not a valid plugin name: {e}")))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    if let Some(pin) = pinned
        && normalize_pin(pin).as_deref() != Some(digest.as_str())
    {
        return Err(refuse(format!(
            "its content is `{digest}`, not the `{pin}` pinned for plugin `{name}` in `[plugins.plugin.{name}] sha256`"
        )));
    }
    Ok(FileIdentity { name, file_name, digest })
}

/// `sha256:<64 lower-case hex digits>` from a pin written with or without the prefix, in any
/// case; `None` when it is not a sha256 digest.
pub fn normalize_pin(pin: &str) -> Option<String> {
    let hex = pin.strip_prefix("sha256:").unwrap_or(pin).to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// Refuse a component whose manifest calls it something other than its file name.
pub fn check_claim(identity: &FileIdentity, claimed: &str) -> Result<(), PluginError> {
    if claimed == identity.name.as_str() {
        return Ok(());
    }
    Err(PluginError::Identity {
        file: identity.file_name.clone(),
        reason: format!(
            "its manifest calls it `{claimed}`, but a plugin is named by its file, and this file is plugin `{}`; \
             it gets no grants of `{claimed}`",
            identity.name
        ),
    })
}

/// One component that passed every check of its own, as the collision check sees it.
pub struct Claim<'a> {
    /// Its file name.
    pub file_name: &'a str,
    /// Its plugin name.
    pub name: &'a PluginName,
    /// Its tools.
    pub tools: &'a [ToolName],
}

/// For each claim (by index) that shares its plugin name or one of its tool names with another,
/// the refusal naming every file involved. Every claimant is refused, whatever the file order.
pub fn collisions(claims: &[Claim<'_>]) -> BTreeMap<usize, PluginError> {
    let mut by_name: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    let mut by_tool: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (i, claim) in claims.iter().enumerate() {
        by_name.entry(claim.name.as_str()).or_default().insert(i);
        for tool in claim.tools {
            by_tool.entry(tool.as_str()).or_default().insert(i);
        }
    }
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let groups = by_name
        .iter()
        .map(|(name, who)| ("plugin", name, who))
        .chain(by_tool.iter().map(|(tool, who)| ("tool", tool, who)));
    for (kind, name, who) in groups.filter(|(_, _, who)| who.len() > 1) {
        let mut files: Vec<String> = who.iter().map(|&i| format!("`{}`", claims[i].file_name)).collect();
        files.sort();
        for &i in who {
            reasons
                .entry(i)
                .or_default()
                .push(format!("{kind} `{name}` is claimed by {}, so all of them are refused", files.join(", ")));
        }
    }
    reasons
        .into_iter()
        .map(|(i, reasons)| {
            (i, PluginError::Identity { file: claims[i].file_name.to_owned(), reason: reasons.join("; ") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_file_is_named_by_its_file_name_and_checked_against_its_pin() {
        let id = of_file(Path::new("/p/docker.wasm"), b"code", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.name.as_str(), "docker");
        assert_eq!(id.digest, format!("sha256:{}", hex::encode(Sha256::digest(b"code"))));
        let upper = id.digest.trim_start_matches("sha256:").to_ascii_uppercase();
        assert!(of_file(Path::new("/p/docker.wasm"), b"code", Some(&upper)).is_ok());
        let err = of_file(Path::new("/p/docker.wasm"), b"other code", Some(&id.digest)).err();
        assert!(matches!(&err, Some(PluginError::Identity { file, .. }) if file == "docker.wasm"), "{err:?}");
        assert!(of_file(Path::new("/p/Not A Name.wasm"), b"code", None).is_err());
        assert!(check_claim(&id, "docker").is_ok());
        let err = check_claim(&id, "files").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("`docker.wasm`") && err.contains("calls it `files`"), "{err}");
    }

    #[test]
    fn every_claimant_of_a_name_or_tool_is_refused() {
        let (a, b, c) = (parse::<PluginName>("a"), parse::<PluginName>("b"), parse::<PluginName>("c"));
        let (echo, other) = ([parse::<ToolName>("echo")], [parse::<ToolName>("other")]);
        let claims = [
            Claim { file_name: "b.wasm", name: &b, tools: &echo },
            Claim { file_name: "c.wasm", name: &c, tools: &other },
            Claim { file_name: "a.wasm", name: &a, tools: &echo },
        ];
        let refused = collisions(&claims);
        assert_eq!(refused.keys().copied().collect::<Vec<_>>(), [0, 2]);
        for error in refused.values() {
            let message = error.to_string();
            assert!(message.contains("tool `echo`") && message.contains("`a.wasm`, `b.wasm`"), "{message}");
        }
    }
}
