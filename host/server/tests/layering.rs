//! The host's layering plan, checked against `cargo metadata`: every crate under `host/` may
//! depend only on the Toolgate crates below it in [`ALLOWED`], and takes the workspace lints.
//!
//! This test lives in the server crate because the server is where the layers are composed: its
//! `lib.rs` is the table of contents of the host, in the same order as this table.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The plan, written once: each host crate (its folder under `host/`) and the host crates it may
/// depend on. Every arrow points down; a new edge is a design decision, made here first.
const ALLOWED: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("telemetry", &["core"]),
    ("store", &["core"]),
    ("auth", &["core", "store"]),
    ("policy", &["core", "telemetry"]),
    ("sandbox", &["core", "telemetry"]),
    ("system", &["core"]),
    ("runtime", &["core", "telemetry", "policy", "sandbox", "system"]),
    ("governance", &["core", "telemetry", "store", "auth", "policy", "sandbox", "runtime"]),
    ("server", &["core", "telemetry", "store", "auth", "policy", "sandbox", "system", "runtime", "governance"]),
];

/// Outside the host, the only Toolgate crate a host crate may use, and only in its tests: the
/// end-to-end harness (`tests/`), for fixtures and the Docker check.
const TEST_HARNESS: &str = "toolgate-tests";

const WHERE: &str = "the table `ALLOWED` in host/server/tests/layering.rs";

struct HostCrate {
    folder: String,
    name: String,
    /// `(dependency, kind)`; kind is `normal`, `dev` or `build`.
    toolgate_deps: Vec<(String, String)>,
    manifest: String,
}

fn host_crates() -> anyhow::Result<Vec<HostCrate>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout)?;
    let root = metadata["workspace_root"].as_str().ok_or_else(|| anyhow::anyhow!("no workspace_root"))?;
    let host = Path::new(root).join("host");
    let mut crates = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        let Some(dir) = manifest.parent() else { continue };
        if dir.parent() != Some(host.as_path()) {
            continue;
        }
        let toolgate_deps = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let name = d["name"].as_str()?;
                let kind = d["kind"].as_str().unwrap_or("normal");
                name.starts_with("toolgate-").then(|| (name.to_owned(), kind.to_owned()))
            })
            .collect();
        crates.push(HostCrate {
            folder: dir.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            toolgate_deps,
            manifest: manifest.display().to_string(),
        });
    }
    anyhow::ensure!(crates.len() >= ALLOWED.len(), "cargo metadata lists only {} host crates", crates.len());
    Ok(crates)
}

#[test]
fn host_crates_depend_only_on_the_crates_below_them_in_the_plan() -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for krate in host_crates()? {
        let Some((_, allowed)) = ALLOWED.iter().find(|(folder, _)| *folder == krate.folder) else {
            wrong.push(format!(
                "`{}` (host/{}) is not in the layering plan: add it, with the crates it may use, to {WHERE}",
                krate.name, krate.folder
            ));
            continue;
        };
        assert_eq!(krate.name, format!("toolgate-{}", krate.folder), "package name of host/{}", krate.folder);
        let allowed: BTreeSet<String> = allowed.iter().map(|a| format!("toolgate-{a}")).collect();
        for (dep, kind) in &krate.toolgate_deps {
            let permitted = allowed.contains(dep) || (kind == "dev" && dep == TEST_HARNESS);
            if !permitted {
                wrong.push(format!(
                    "`{}` may not depend on `{dep}` ({kind} dependency in {}): the plan is {WHERE}",
                    krate.name, krate.manifest
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "host layering broken:\n  {}", wrong.join("\n  "));
    Ok(())
}

#[test]
fn every_crate_in_the_plan_exists_and_takes_the_workspace_lints() -> anyhow::Result<()> {
    let crates = host_crates()?;
    let mut wrong = Vec::new();
    for (folder, _) in ALLOWED {
        if !crates.iter().any(|c| c.folder == *folder) {
            wrong.push(format!("host/{folder} is in {WHERE} but is not a workspace member"));
        }
    }
    for krate in &crates {
        let manifest: toml::Table = std::fs::read_to_string(&krate.manifest)?.parse()?;
        let inherits = manifest.get("lints").and_then(|l| l.get("workspace")).and_then(toml::Value::as_bool);
        if inherits != Some(true) {
            wrong.push(format!("`{}` lacks `[lints] workspace = true` in {}", krate.name, krate.manifest));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}
