//! Golden decision cases: `policies/golden/*.json`, each an array of `{note, point, input, want}`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use toolgate_policy::Point;

/// What a case expects: the verdict, the reason codes in order, the requirements, and (action
/// point) the category the call is decided at, `null` when its command is unclassified.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Want {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub requirements: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
}

/// One case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub note: String,
    pub point: Point,
    pub input: serde_json::Value,
    pub want: Want,
}

/// The default policy directory of the repository.
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Every golden case, tagged with its file.
pub fn cases() -> anyhow::Result<Vec<(String, Case)>> {
    let dir = policy_dir().join("golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let cases: Vec<Case> = serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        all.extend(cases.into_iter().map(|c| (name.clone(), c)));
    }
    Ok(all)
}
