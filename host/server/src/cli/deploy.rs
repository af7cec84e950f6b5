//! `toolgate deploy`: files a Debian server needs beside the binary, generated from what Toolgate
//! itself reads, so that they cannot drift from it.
//!
//! - `polkit [DIR] [--user NAME]`: the polkit rules that let Toolgate's user manage exactly the
//!   units and packages of the policy's `manage` lists (`data.host.<interface>.manage.<role>`,
//!   every role), and nothing else. `deploy/polkit/50-toolgate.rules` is its output for the
//!   shipped `policies/data.json`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use toolgate_policy::PolicyConfig;

/// Subcommands of `toolgate deploy`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Print the polkit rules for Toolgate's user, from the policy's `data.host` manage lists.
    Polkit {
        /// Policy directory (default: `policy.dir` of the configuration, `TOOLGATE_POLICY_DIR`).
        dir: Option<PathBuf>,
        /// The user Toolgate runs as.
        #[arg(long, default_value = "toolgate")]
        user: String,
    },
}

/// Run one `deploy` subcommand.
pub fn run(args: Args, config: &PolicyConfig) -> anyhow::Result<ExitCode> {
    match args {
        Args::Polkit { dir, user } => {
            let dir = dir.unwrap_or_else(|| config.dir.clone());
            let path = dir.join("data.json");
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
            let data: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
            print!("{}", polkit_rules(&data, &user)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every pattern of `data.host.<interface>.manage`, all roles together: polkit knows Toolgate's
/// user, not its callers; the `host` decision point tells the roles apart before polkit is asked.
fn manage_patterns(data: &serde_json::Value, interface: &str) -> anyhow::Result<BTreeSet<String>> {
    let Some(roles) = data.pointer(&format!("/host/{interface}/manage")) else { return Ok(BTreeSet::new()) };
    let roles = roles.as_object().with_context(|| format!("`data.host.{interface}.manage` is not an object"))?;
    let mut patterns = BTreeSet::new();
    for (role, list) in roles {
        let list = list.as_array().with_context(|| format!("`data.host.{interface}.manage.{role}` is not a list"))?;
        for pattern in list {
            let pattern =
                pattern.as_str().with_context(|| format!("`data.host.{interface}.manage.{role}`: not a string"))?;
            // Names of units and packages, or prefixes of them: nothing that needs quoting in JS
            // (no quote, no backslash: a unit name with systemd's `\x2d` escapes is refused here).
            anyhow::ensure!(
                !pattern.starts_with('!'),
                "`data.host.{interface}.manage.{role}`: `{pattern}`: a manage list names what may change, it takes no exclusion"
            );
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            anyhow::ensure!(!name.is_empty() || pattern == "*", "`data.host.{interface}.manage.{role}`: an empty name");
            anyhow::ensure!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || "@:._+-".contains(c)),
                "`data.host.{interface}.manage.{role}`: `{pattern}` is not a name or a prefix ending in `*`"
            );
            patterns.insert(pattern.to_owned());
        }
    }
    Ok(patterns)
}

/// The rules file: `manage-units` for the listed units and the verbs Toolgate uses; PackageKit's
/// refresh, and install and remove of the listed packages. Anything else of systemd's or
/// PackageKit's the user asks is refused (`NO`), not left to other rules.
pub fn polkit_rules(data: &serde_json::Value, user: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !user.is_empty() && user.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
        "`{user}` is not a user name"
    );
    let js_list = |set: &BTreeSet<String>| set.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    let units = manage_patterns(data, "services")?;
    let packages = manage_patterns(data, "packages")?;
    Ok(format!(
        r#"// Toolgate's polkit rules, written by `toolgate deploy polkit` from the policy's
// `data.host.*.manage` lists: the user `{user}` may start, stop and restart exactly these units,
// refresh the package lists, and install or remove exactly these packages (PackageKit names them
// in the detail `package_ids`; dependencies it pulls in are not named); everything else of
// systemd's or PackageKit's it asks is refused. Toolgate's `host` policy point decides the same
// lists per role before anything is asked. Regenerate after editing those lists:
//     toolgate deploy polkit > /etc/polkit-1/rules.d/50-toolgate.rules
polkit.addRule(function(action, subject) {{
    if (subject.user !== "{user}") {{
        return polkit.Result.NOT_HANDLED;
    }}
    var units = [{units}];
    var packages = [{packages}];
    function listed(list, name) {{
        for (var i = 0; i < list.length; i++) {{
            var p = list[i];
            if (p === name || (p.charAt(p.length - 1) === "*" && String(name).indexOf(p.slice(0, -1)) === 0)) {{
                return true;
            }}
        }}
        return false;
    }}
    if (action.id === "org.freedesktop.systemd1.manage-units") {{
        var verb = action.lookup("verb");
        if ((verb === "start" || verb === "stop" || verb === "restart") && listed(units, action.lookup("unit"))) {{
            return polkit.Result.YES;
        }}
        return polkit.Result.NO;
    }}
    if (action.id === "org.freedesktop.packagekit.system-sources-refresh") {{
        return polkit.Result.YES;
    }}
    if (action.id === "org.freedesktop.packagekit.package-install" ||
        action.id === "org.freedesktop.packagekit.package-remove") {{
        // `name;version;arch;data` ids, joined by `&`.
        var ids = String(action.lookup("package_ids") || "").split("&");
        for (var j = 0; j < ids.length; j++) {{
            if (!listed(packages, ids[j].split(";")[0])) {{
                return polkit.Result.NO;
            }}
        }}
        return polkit.Result.YES;
    }}
    if (action.id.indexOf("org.freedesktop.systemd1.") === 0 ||
        action.id.indexOf("org.freedesktop.packagekit.") === 0) {{
        return polkit.Result.NO;
    }}
    return polkit.Result.NOT_HANDLED;
}});
"#,
        units = js_list(&units),
        packages = js_list(&packages),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_the_output_for_the_shipped_policy() -> anyhow::Result<()> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join("policies/data.json"))?)?;
        let shipped = std::fs::read_to_string(root.join("deploy/polkit/50-toolgate.rules"))?;
        assert_eq!(
            polkit_rules(&data, "toolgate")?,
            shipped,
            "deploy/polkit/50-toolgate.rules is stale: regenerate it with `toolgate deploy polkit policies`"
        );
        Ok(())
    }

    #[test]
    fn names_that_could_break_out_of_the_script_are_refused() -> anyhow::Result<()> {
        for bad in [r#"a"; polkit.Result.YES; //"#, "a b", "x*y*", "a\\", "\\u0022", ""] {
            let data = serde_json::json!({"host": {"services": {"manage": {"admin": [bad]}}}});
            assert!(polkit_rules(&data, "toolgate").is_err(), "{bad:?}");
        }
        assert!(polkit_rules(&serde_json::json!({}), "tool\"gate").is_err());
        let rules = polkit_rules(&serde_json::json!({}), "toolgate")?;
        assert!(rules.contains("var units = [];") && rules.contains("var packages = [];"), "{rules}");
        Ok(())
    }
}
