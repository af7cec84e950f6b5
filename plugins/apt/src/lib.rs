//! Built-in plugin `apt`: `apt-get update` and `apt-get install` in the `host-admin` sandbox
//! profile, which shows the host's dpkg and apt state (read-only, as nobody, by default: installing
//! needs the profile's explicit `allow_root` opt-in; see `toolgate.example.toml`).
//!
//! # Layout
//! - this file: the two tools;
//! - `package`: Debian's package name grammar, checked before anything runs;
//! - `parse`: parsers of `apt-get` and `dpkg-query` output;
//! - `exec`: running a command and keeping its raw text, capped.

pub mod package;
pub mod parse;

use toolgate_sdk::NoUndo;
use toolgate_sdk::prelude::*;

use crate::parse::{Install, PackageState, Update};
use toolgate_sdk::sandbox::{self, exit_failure};
use toolgate_sdk::text::capped;

/// The sandbox profile every command of this plugin runs in.
const PROFILE: &str = "host-admin";

toolgate_sdk::plugin!(name = "apt", tools = [AptUpdate, AptInstall]);

/// Output of `apt_update`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateOutput {
    /// What was refreshed.
    #[serde(flatten)]
    pub update: Update,
    /// What `apt-get` printed (standard output), capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// `apt_update`: `apt-get update -q`. Verified by the sources it fetched and `apt-get check`.
///
/// Refreshed package lists cannot be put back (apt keeps no copy of the old ones), so `invoke`
/// never returns an undo record: the host must treat the call as not undoable. The tool still
/// declares rollback because the host requires it of every critical tool; a rollback asked for
/// anyway fails rather than pretending.
pub struct AptUpdate;

impl Tool for AptUpdate {
    const NAME: &'static str = "apt_update";
    const DESCRIPTION: &'static str = "Refreshes the host's package lists (`apt-get update`). Verify checks every source was fetched and apt's database is consistent. It cannot be undone: no undo record is produced.";
    const CATEGORY: Category = Category::Critical;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    const SUPPORTS_VERIFY: bool = true;
    type Params = NoParams;
    type Output = WithUndo<UpdateOutput, NoUndo>;

    fn invoke(_: NoParams) -> Result<Self::Output, Error> {
        let argv = ["apt-get", "update", "-q"];
        let out = sandbox::exec(&argv, PROFILE)?;
        let update = parse::update(&out.stdout, &out.stderr);
        if out.exit_code != 0 {
            return Err(match update.errors.first() {
                Some(e) => Error::failed(format!("`apt-get update` exited with status {}: {e}", out.exit_code)),
                None => exit_failure(&argv, &out),
            });
        }
        let (raw, raw_truncated) = capped(&out.stdout);
        Ok(WithUndo::nothing_to_undo(UpdateOutput { update, raw, raw_truncated: raw_truncated || out.truncated }))
    }

    fn verify(_: NoParams, output: UpdateOutput) -> Result<Verdict, Error> {
        if let Some(failed) = output.update.sources.iter().find(|s| s.kind == "err") {
            return Ok(Verdict::fail(format!("source `{}` could not be fetched", failed.index)));
        }
        if let Some(error) = output.update.errors.first() {
            return Ok(Verdict::fail(format!("apt reported an error: {error}")));
        }
        let out = sandbox::exec(&["apt-get", "check", "-q"], PROFILE)?;
        Ok(if out.exit_code == 0 {
            Verdict::pass(format!(
                "{} sources refreshed without error and `apt-get check` passes",
                output.update.sources.len()
            ))
        } else {
            Verdict::fail(format!("`apt-get check` exited with status {}: {}", out.exit_code, out.stderr.trim()))
        })
    }

    fn rollback(undo: NoUndo) -> Result<serde_json::Value, Error> {
        match undo {}
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
    /// Its version after the call, as dpkg reports it.
    pub version: Option<String>,
    /// What `apt-get install` did.
    #[serde(flatten)]
    pub install: Install,
    /// What `apt-get` printed, capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// What `rollback` needs: the package, which was not installed before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallUndo {
    /// The package to remove again.
    pub package: String,
}

/// Output of an `apt_install` rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InstallRollback {
    /// The package removed.
    pub package: String,
    /// dpkg's status afterwards, e.g. `deinstall ok config-files`.
    pub status: Option<String>,
    /// Whether it is still installed (false when the rollback worked).
    pub installed: bool,
}

/// `apt_install`: `apt-get install -y -q PACKAGE`; verified by `dpkg-query -s`, rolled back by
/// `apt-get remove -y -q PACKAGE` when it was not installed before.
pub struct AptInstall;

impl Tool for AptInstall {
    const NAME: &'static str = "apt_install";
    const DESCRIPTION: &'static str = "Installs a Debian package on the host. Verify checks dpkg reports it installed; rollback removes it when it was not installed before.";
    const CATEGORY: Category = Category::Critical;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    const SUPPORTS_VERIFY: bool = true;
    type Params = InstallParams;
    type Output = WithUndo<InstallOutput, InstallUndo>;

    fn invoke(params: InstallParams) -> Result<Self::Output, Error> {
        package::validate("package", &params.package)?;
        let before = dpkg_query(&params.package)?;
        let argv = ["apt-get", "install", "-y", "-q", params.package.as_str()];
        let out = sandbox::exec(&argv, PROFILE)?;
        if out.exit_code != 0 {
            return Err(apt_failure(&argv, &out));
        }
        let after = dpkg_query(&params.package)?;
        let (raw, raw_truncated) = capped(&out.stdout);
        let output = InstallOutput {
            package: params.package.clone(),
            was_installed: before.installed,
            version: after.version,
            install: parse::install(&out.stdout),
            raw,
            raw_truncated: raw_truncated || out.truncated,
        };
        Ok(if before.installed {
            WithUndo::nothing_to_undo(output)
        } else {
            WithUndo::new(output, InstallUndo { package: params.package })
        })
    }

    fn verify(params: InstallParams, _output: InstallOutput) -> Result<Verdict, Error> {
        package::validate("package", &params.package)?;
        let state = dpkg_query(&params.package)?;
        let status = state.status.as_deref().unwrap_or("unknown to dpkg");
        Ok(if state.installed {
            Verdict::pass(format!(
                "dpkg reports `{}` {} as `{status}`",
                params.package,
                state.version.as_deref().unwrap_or("?")
            ))
        } else {
            Verdict::fail(format!("dpkg reports `{}` as `{status}`, not installed", params.package))
        })
    }

    fn rollback(undo: InstallUndo) -> Result<serde_json::Value, Error> {
        // The undo record came back from storage: check it as if a caller had typed it.
        package::validate("undo.package", &undo.package)?;
        sandbox::exec_ok(&["apt-get", "remove", "-y", "-q", &undo.package], PROFILE)?;
        let state = dpkg_query(&undo.package)?;
        let restored = InstallRollback { package: undo.package, status: state.status, installed: state.installed };
        serde_json::to_value(restored).map_err(|e| Error::failed(format!("cannot encode the rollback output: {e}")))
    }
}

/// `dpkg-query -s PACKAGE`: exit 1 with "is not installed and no information is available"
/// is a package dpkg knows nothing of, not an error.
fn dpkg_query(package: &str) -> Result<PackageState, Error> {
    let argv = ["dpkg-query", "-s", package];
    let out = sandbox::exec(&argv, PROFILE)?;
    match out.exit_code {
        0 => Ok(parse::dpkg_status(&out.stdout)),
        1 if out.stderr.contains("is not installed") || out.stderr.contains("no packages found") => {
            Ok(PackageState { installed: false, status: None, version: None })
        }
        _ => Err(exit_failure(&argv, &out)),
    }
}

/// `failed` with apt's own `E:` line when it printed one (`Unable to locate package ...`).
fn apt_failure(argv: &[&str], out: &toolgate_sdk::sandbox::ExecOutput) -> Error {
    match out.stderr.lines().chain(out.stdout.lines()).find_map(|l| l.strip_prefix("E: ")) {
        Some(e) => Error::failed(format!("`{}` exited with status {}: {e}", argv.join(" "), out.exit_code)),
        None => exit_failure(argv, out),
    }
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
    fn both_tools_are_critical_and_declare_verify_and_rollback() {
        let m = PLUGIN.manifest();
        let update = m.tools.iter().find(|t| t.name == "apt_update").expect("apt_update");
        let install = m.tools.iter().find(|t| t.name == "apt_install").expect("apt_install");
        assert_eq!((update.category, install.category), (Category::Critical, Category::Critical));
        // The host refuses a critical tool without both; apt_update never returns an undo record.
        assert!(update.supports_rollback && update.supports_verify);
        assert!(install.supports_rollback && install.supports_verify);
        let err = PLUGIN.rollback("apt_update", "{}").expect_err("nothing to undo");
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
    }
}
