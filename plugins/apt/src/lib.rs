//! Built-in plugin `apt`: the host's package lists and packages through the host's `packages`
//! interface (PackageKit's D-Bus API, authorised by polkit on the host: no root, no `apt-get` in
//! a container).
//!
//! # Layout
//! - this file: the two tools;
//! - `package`: Debian's package name grammar, checked before anything is asked.

pub mod package;

use toolgate_sdk::packages::{self, PackageInfo};
use toolgate_sdk::prelude::*;

toolgate_sdk::plugin!(name = "apt", tools = [AptUpdate, AptInstall]);

/// The package verify resolves to check the package database answers after a refresh: every
/// Debian system has it installed.
const ALWAYS_INSTALLED: &str = "dpkg";

/// Output of `apt_update`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateOutput {
    /// True: PackageKit's refresh transaction finished successfully.
    pub refreshed: bool,
}

/// `apt_update`: refresh the package lists (PackageKit `RefreshCache`).
///
/// Refreshed package lists cannot be put back (apt keeps no copy of the old ones), so the tool
/// declares no rollback and its actions answer `undo_available: false`.
pub struct AptUpdate;

impl Tool for AptUpdate {
    const NAME: &'static str = "apt_update";
    const DESCRIPTION: &'static str = "Refreshes the host's package lists through PackageKit. Verify checks the package database answers afterwards. It cannot be undone: no undo record is produced.";
    const CATEGORY: Category = Category::Critical;
    const CAPABILITIES: &'static [Capability] = &[Capability::PackagesRead];
    const SUPPORTS_VERIFY: bool = true;
    type Params = NoParams;
    type Output = UpdateOutput;

    fn invoke(_: NoParams) -> Result<UpdateOutput, Error> {
        packages::refresh()?;
        Ok(UpdateOutput { refreshed: true })
    }

    fn verify(_: NoParams, _output: UpdateOutput) -> Result<Verdict, Error> {
        let found = packages::resolve(&[ALWAYS_INSTALLED.to_owned()])?;
        Ok(match found.iter().find(|p| p.installed) {
            Some(p) => Verdict::pass(format!(
                "the refresh transaction succeeded and the package database answers (`{}` {} installed)",
                p.name, p.version
            )),
            None => {
                Verdict::fail(format!("after the refresh PackageKit does not report `{ALWAYS_INSTALLED}` installed"))
            }
        })
    }
}

/// Parameters of `apt_install`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallParams {
    /// Debian package name, e.g. `htop`.
    #[schemars(length(min = 2, max = 128))]
    pub package: String,
}

/// Output of `apt_install`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InstallOutput {
    /// The package asked for.
    pub package: String,
    /// Whether it was installed before the call (then the call changed nothing to undo).
    pub was_installed: bool,
    /// Its installed version after the call.
    pub version: Option<String>,
    /// Every package the transaction installed, dependencies included.
    pub installed: Vec<PackageInfo>,
}

/// What `rollback` needs: the package, which was not installed before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallUndo {
    /// The package to remove again.
    pub package: String,
    /// The dependencies the install brought in with it, reported (not removed) by the rollback.
    #[serde(default)]
    pub dependencies: Vec<String>,
}

/// Output of an `apt_install` rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InstallRollback {
    /// The package removed.
    pub package: String,
    /// What the remove transaction removed.
    pub removed: Vec<PackageInfo>,
    /// Whether it is still installed (false when the rollback worked).
    pub installed: bool,
    /// Dependencies the install brought in that stay installed: removing them is a decision of
    /// its own (each may be outside the caller's package list).
    pub dependencies_left: Vec<String>,
}

/// `apt_install`: install a package through PackageKit (trusted repositories only); verified by
/// PackageKit reporting it installed, rolled back by removing it when it was not installed before.
pub struct AptInstall;

impl Tool for AptInstall {
    const NAME: &'static str = "apt_install";
    const DESCRIPTION: &'static str = "Installs a Debian package on the host through PackageKit. Verify checks it is reported installed; rollback removes it when it was not installed before.";
    const CATEGORY: Category = Category::Critical;
    const CAPABILITIES: &'static [Capability] = &[Capability::PackagesRead, Capability::PackagesManage];
    const SUPPORTS_VERIFY: bool = true;
    type Params = InstallParams;
    type Output = WithUndo<InstallOutput, InstallUndo>;

    fn invoke(params: InstallParams) -> Result<Self::Output, Error> {
        package::validate("package", &params.package)?;
        let names = [params.package.clone()];
        if let Some(current) = installed(&packages::resolve(&names)?, &params.package) {
            let output = InstallOutput {
                package: params.package,
                was_installed: true,
                version: Some(current.version),
                installed: vec![],
            };
            return Ok(WithUndo::nothing_to_undo(output));
        }
        let done = packages::install(&names)?;
        let version = installed(&done, &params.package).map(|p| p.version);
        let dependencies = done.iter().filter(|p| p.name != params.package).map(|p| p.name.clone()).collect();
        let undo = InstallUndo { package: params.package.clone(), dependencies };
        let output = InstallOutput { package: params.package, was_installed: false, version, installed: done };
        Ok(WithUndo::new(output, undo))
    }

    fn verify(params: InstallParams, _output: InstallOutput) -> Result<Verdict, Error> {
        package::validate("package", &params.package)?;
        let found = packages::resolve(std::slice::from_ref(&params.package))?;
        Ok(match installed(&found, &params.package) {
            Some(p) => Verdict::pass(format!("PackageKit reports `{}` {} installed", p.name, p.version)),
            None => Verdict::fail(format!("PackageKit does not report `{}` installed", params.package)),
        })
    }

    fn rollback(undo: InstallUndo) -> Result<serde_json::Value, Error> {
        // The undo record came back from storage: check it as if a caller had typed it.
        package::validate("undo.package", &undo.package)?;
        let names = [undo.package.clone()];
        let removed = packages::remove(&names)?;
        let still = installed(&packages::resolve(&names)?, &undo.package).is_some();
        let restored =
            InstallRollback { package: undo.package, removed, installed: still, dependencies_left: undo.dependencies };
        serde_json::to_value(restored).map_err(|e| Error::failed(format!("cannot encode the rollback output: {e}")))
    }
}

/// The installed version of `name` among `found`.
fn installed(found: &[PackageInfo], name: &str) -> Option<PackageInfo> {
    found.iter().find(|p| p.name == name && p.installed).cloned()
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_bad_package_is_refused_before_any_command_runs() {
        // Natively no sandbox exists: reaching `exec` would panic, so an `Err` proves nothing ran.
        for p in ["nginx; rm -rf /", "$(id)", "../..", "htop\n", "-y"] {
            let params = serde_json::json!({ "package": p }).to_string();
            let err = PLUGIN.invoke("apt_install", &params).expect_err(p);
            assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`package`")), "{p:?}: {err}");
        }
        let err = PLUGIN.rollback("apt_install", r#"{"package":"htop; reboot"}"#).expect_err("undo");
        assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`undo.package`")), "{err}");
    }

    #[test]
    fn both_tools_are_critical_and_only_the_install_can_be_undone() {
        let m = PLUGIN.manifest();
        let update = m.tools.iter().find(|t| t.name == "apt_update").expect("apt_update");
        let install = m.tools.iter().find(|t| t.name == "apt_install").expect("apt_install");
        assert_eq!((update.category, install.category), (Category::Critical, Category::Critical));
        // The host refuses a critical tool without verify; refreshed lists cannot be put back.
        assert!(!update.supports_rollback && update.supports_verify);
        assert!(install.supports_rollback && install.supports_verify);
        let err = PLUGIN.rollback("apt_update", "{}").expect_err("nothing to undo");
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
    }
}
