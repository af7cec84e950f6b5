//! Built-in plugin `systemd`: status, journal and restart of systemd units, each a command run in
//! the `systemd` sandbox profile (a real deployment mounts the host's systemd and journal sockets
//! there; see the default configuration).
//!
//! # Layout
//! - this file: the three tools;
//! - `unit`: the unit name grammar every parameter is checked against before anything runs;
//! - `parse`: parsers of `systemctl status` and `journalctl` output;
//! - `exec`: running a command and keeping its raw text, capped.

pub mod parse;
pub mod unit;

use toolgate_sdk::prelude::*;

use crate::parse::{JournalEntry, UnitStatus};
use toolgate_sdk::sandbox::{self, exit_failure};
use toolgate_sdk::text::capped;

/// The sandbox profile every command of this plugin runs in.
const PROFILE: &str = "systemd";

/// Most journal lines one call returns.
pub const MAX_LINES: u32 = 1000;

toolgate_sdk::plugin!(name = "systemd", tools = [SystemdStatus, SystemdLogs, SystemdRestart]);

/// Parameters naming one unit.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitParams {
    /// Unit name, e.g. `nginx` or `nginx.service`.
    #[schemars(length(min = 1, max = 256))]
    pub unit: String,
}

/// Output of `systemd_status`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusOutput {
    /// The parsed status.
    #[serde(flatten)]
    pub status: UnitStatus,
    /// The text `systemctl status` printed, capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// `systemd_status`: `systemctl status --no-pager UNIT`, parsed.
pub struct SystemdStatus;

impl Tool for SystemdStatus {
    const NAME: &'static str = "systemd_status";
    const DESCRIPTION: &'static str =
        "Shows a systemd unit's state: active state, sub state, since when, and its main process id.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    type Params = UnitParams;
    type Output = StatusOutput;

    fn invoke(params: UnitParams) -> Result<StatusOutput, Error> {
        unit::validate("unit", &params.unit)?;
        let argv = ["systemctl", "status", "--no-pager", params.unit.as_str()];
        let out = sandbox::exec(&argv, PROFILE)?;
        // Exit 3 is an inactive or failed unit: still a status. Exit 4 is an unknown unit.
        let status = parse::status(&out.stdout).ok_or_else(|| exit_failure(&argv, &out))?;
        let (raw, raw_truncated) = capped(&out.stdout);
        Ok(StatusOutput { status, raw, raw_truncated: raw_truncated || out.truncated })
    }
}

/// Parameters of `systemd_logs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Unit name, e.g. `nginx.service`.
    #[schemars(length(min = 1, max = 256))]
    pub unit: String,
    /// How many of the latest lines to return (1 to 1000).
    #[serde(default = "default_lines")]
    #[schemars(range(min = 1, max = 1000))]
    pub lines: u32,
}

fn default_lines() -> u32 {
    100
}

/// Output of `systemd_logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogsOutput {
    /// The unit.
    pub unit: String,
    /// Journal entries, oldest first.
    pub entries: Vec<JournalEntry>,
    /// The text `journalctl` printed, capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// `systemd_logs`: `journalctl -u UNIT -n LINES --no-pager`, parsed.
pub struct SystemdLogs;

impl Tool for SystemdLogs {
    const NAME: &'static str = "systemd_logs";
    const DESCRIPTION: &'static str = "Returns the latest journal lines of a systemd unit (at most 1000).";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    type Params = LogsParams;
    type Output = LogsOutput;

    fn invoke(params: LogsParams) -> Result<LogsOutput, Error> {
        unit::validate("unit", &params.unit)?;
        if !(1..=MAX_LINES).contains(&params.lines) {
            return Err(Error::invalid_params(format!("`lines`: {} is not between 1 and {MAX_LINES}", params.lines)));
        }
        let lines = params.lines.to_string();
        let out = sandbox::exec_ok(&["journalctl", "-u", &params.unit, "-n", &lines, "--no-pager"], PROFILE)?;
        let (raw, raw_truncated) = capped(&out.stdout);
        Ok(LogsOutput {
            unit: params.unit,
            entries: parse::journal(&out.stdout),
            raw,
            raw_truncated: raw_truncated || out.truncated,
        })
    }
}

/// Output of `systemd_restart`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestartOutput {
    /// The unit.
    pub unit: String,
    /// `systemctl is-active` before the restart.
    pub previous_state: String,
    /// `systemctl is-active` after the restart.
    pub active_state: String,
}

/// What `rollback` needs: the unit and whether it was running before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartUndo {
    /// The unit.
    pub unit: String,
    /// `systemctl is-active` before the restart.
    pub previous_state: String,
}

/// Output of a `systemd_restart` rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestartRollback {
    /// The unit.
    pub unit: String,
    /// What was run: `start` or `stop`.
    pub action: String,
    /// `systemctl is-active` afterwards.
    pub active_state: String,
}

/// `systemd_restart`: `systemctl restart UNIT`; verified by `systemctl is-active`, rolled back by
/// starting or stopping it to its previous state.
pub struct SystemdRestart;

impl Tool for SystemdRestart {
    const NAME: &'static str = "systemd_restart";
    const DESCRIPTION: &'static str = "Restarts a systemd unit. Verify checks it is active afterwards; rollback restores its previous active or inactive state.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    const SUPPORTS_VERIFY: bool = true;
    type Params = UnitParams;
    type Output = WithUndo<RestartOutput, RestartUndo>;

    fn invoke(params: UnitParams) -> Result<Self::Output, Error> {
        unit::validate("unit", &params.unit)?;
        let previous_state = is_active(&params.unit)?;
        sandbox::exec_ok(&["systemctl", "restart", &params.unit], PROFILE)?;
        let active_state = is_active(&params.unit)?;
        let undo = RestartUndo { unit: params.unit.clone(), previous_state: previous_state.clone() };
        Ok(WithUndo::new(RestartOutput { unit: params.unit, previous_state, active_state }, undo))
    }

    fn verify(params: UnitParams, _output: RestartOutput) -> Result<Verdict, Error> {
        unit::validate("unit", &params.unit)?;
        let state = is_active(&params.unit)?;
        Ok(if state == "active" {
            Verdict::pass(format!("`systemctl is-active {}` says `active`", params.unit))
        } else {
            Verdict::fail(format!("`systemctl is-active {}` says `{state}`, not `active`", params.unit))
        })
    }

    fn rollback(undo: RestartUndo) -> Result<serde_json::Value, Error> {
        // The undo record came back from storage: check it as if a caller had typed it.
        unit::validate("undo.unit", &undo.unit)?;
        let action = if was_running(&undo.previous_state) { "start" } else { "stop" };
        sandbox::exec_ok(&["systemctl", action, &undo.unit], PROFILE)?;
        let active_state = is_active(&undo.unit)?;
        let restored = RestartRollback { unit: undo.unit, action: action.to_owned(), active_state };
        serde_json::to_value(restored).map_err(|e| Error::failed(format!("cannot encode the rollback output: {e}")))
    }
}

/// Whether a unit in `state` counts as running, so that rolling back must leave it running.
fn was_running(state: &str) -> bool {
    matches!(state, "active" | "activating" | "reloading" | "refreshing")
}

/// `systemctl is-active UNIT`: exit 0 for `active`, 3 for the others, the state on stdout.
fn is_active(unit: &str) -> Result<String, Error> {
    let argv = ["systemctl", "is-active", unit];
    let out = sandbox::exec(&argv, PROFILE)?;
    let state = out.stdout.trim();
    let known = !state.is_empty() && state.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    if !known || !(out.exit_code == 0 || out.exit_code == 3) {
        return Err(exit_failure(&argv, &out));
    }
    Ok(state.to_owned())
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_bad_unit_is_refused_before_any_command_runs() {
        // Natively no sandbox exists: reaching `exec` would panic, so an `Err` proves nothing ran.
        for unit in ["nginx; rm -rf /", "$(id)", "../..", "nginx\n"] {
            let params = format!(r#"{{"unit": {}}}"#, serde_json::json!(unit));
            for tool in ["systemd_status", "systemd_restart"] {
                let err = PLUGIN.invoke(tool, &params).expect_err(unit);
                assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`unit`")), "{tool} {unit}: {err}");
            }
        }
    }

    #[test]
    fn logs_refuse_a_line_count_outside_the_cap() {
        for lines in [0, 1001, 100_000] {
            let err =
                PLUGIN.invoke("systemd_logs", &format!(r#"{{"unit":"nginx","lines":{lines}}}"#)).expect_err("cap");
            assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`lines`")), "{err}");
        }
    }

    #[test]
    fn a_tampered_undo_record_is_refused() {
        let err = PLUGIN
            .rollback("systemd_restart", r#"{"unit":"x; reboot","previous_state":"active"}"#)
            .expect_err("bad unit");
        assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`undo.unit`")), "{err}");
    }

    #[test]
    fn rollback_starts_what_was_running_and_stops_the_rest() {
        assert!(was_running("active"));
        assert!(was_running("activating"));
        assert!(!was_running("inactive"));
        assert!(!was_running("failed"));
    }

    #[test]
    fn the_manifest_declares_categories_profiles_and_schemas() {
        let m = PLUGIN.manifest();
        let names: Vec<&str> = m.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["systemd_status", "systemd_logs", "systemd_restart"]);
        let restart = &m.tools[2];
        assert_eq!(restart.category, Category::Sensitive);
        assert!(restart.supports_verify && restart.supports_rollback);
        let logs: serde_json::Value = serde_json::from_str(&m.tools[1].params_schema).expect("schema");
        assert_eq!(logs["properties"]["lines"]["maximum"], 1000);
        let status: serde_json::Value = serde_json::from_str(&m.tools[0].output_schema).expect("schema");
        assert!(status["properties"]["main_pid"].is_object(), "{status}");
    }
}
