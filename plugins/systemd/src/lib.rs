//! Built-in plugin `systemd`: state and restart of systemd units through the host's `services`
//! interface (systemd's D-Bus API: no `systemctl`, no bus socket in a container), and a unit's
//! journal read by `journalctl -o json` in the `journal` sandbox profile (the host's journal
//! mounted read-only, as a member of `systemd-journal`).
//!
//! # Layout
//! - this file: the three tools;
//! - `unit`: the unit name grammar every parameter is checked against before anything runs;
//! - `parse`: the parser of `journalctl -o json` output.

pub mod parse;
pub mod unit;

use toolgate_sdk::prelude::*;
use toolgate_sdk::sandbox;
use toolgate_sdk::services::{self, UnitStatus};

use crate::parse::JournalEntry;

/// The sandbox profile `journalctl` runs in.
const JOURNAL_PROFILE: &str = "journal";

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

/// `systemd_status`: the unit's properties, from systemd itself.
pub struct SystemdStatus;

impl Tool for SystemdStatus {
    const NAME: &'static str = "systemd_status";
    const DESCRIPTION: &'static str = "Shows a systemd unit's state from systemd itself: load, active and sub state, unit file state, main process id, when it last became active, and how often systemd restarted it.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::ServicesRead];
    type Params = UnitParams;
    type Output = UnitStatus;

    fn invoke(params: UnitParams) -> Result<UnitStatus, Error> {
        unit::validate("unit", &params.unit)?;
        services::status(&params.unit)
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
    /// True when the host cut `journalctl`'s output at its cap (the oldest entries are missing).
    pub truncated: bool,
}

/// `systemd_logs`: `journalctl -o json -u UNIT -n LINES --no-pager`, as structured records.
pub struct SystemdLogs;

impl Tool for SystemdLogs {
    const NAME: &'static str = "systemd_logs";
    const DESCRIPTION: &'static str = "Returns the latest journal entries of a systemd unit (at most 1000), each with its time, priority, identifier, process id and message.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(JOURNAL_PROFILE)];
    type Params = LogsParams;
    type Output = LogsOutput;

    fn invoke(params: LogsParams) -> Result<LogsOutput, Error> {
        unit::validate("unit", &params.unit)?;
        if !(1..=MAX_LINES).contains(&params.lines) {
            return Err(Error::invalid_params(format!("`lines`: {} is not between 1 and {MAX_LINES}", params.lines)));
        }
        let lines = params.lines.to_string();
        let argv = ["journalctl", "-o", "json", "-u", &params.unit, "-n", &lines, "--no-pager"];
        let out = sandbox::exec_ok(&argv, JOURNAL_PROFILE)?;
        Ok(LogsOutput { unit: params.unit, entries: parse::journal(&out.stdout), truncated: out.truncated })
    }
}

/// What a restart changes, before and after.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UnitSnapshot {
    /// `ActiveState`.
    pub active_state: String,
    /// `SubState`.
    pub sub_state: String,
    /// `MainPID`; 0 when none.
    pub main_pid: u32,
    /// `ActiveEnterTimestamp`, microseconds since the epoch; 0: never.
    pub active_enter_timestamp_us: u64,
}

impl From<&UnitStatus> for UnitSnapshot {
    fn from(s: &UnitStatus) -> Self {
        UnitSnapshot {
            active_state: s.active_state.clone(),
            sub_state: s.sub_state.clone(),
            main_pid: s.main_pid,
            active_enter_timestamp_us: s.active_enter_timestamp_us,
        }
    }
}

/// Output of `systemd_restart`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestartOutput {
    /// The unit's full name.
    pub unit: String,
    /// Before the restart.
    pub before: UnitSnapshot,
    /// Once the restart job finished.
    pub after: UnitSnapshot,
}

/// `systemd_restart`: restart a unit with its job awaited; verified by a new main process (or a
/// new activation time) and `active`. A restart cannot be undone (the old process is gone), so it
/// returns no undo record and a failed verify leaves the action `failed`, not `rolled_back`.
pub struct SystemdRestart;

impl Tool for SystemdRestart {
    const NAME: &'static str = "systemd_restart";
    const DESCRIPTION: &'static str = "Restarts a systemd unit and waits for systemd's job. Verify checks it is active with a new main process. A restart cannot be undone.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::ServicesRead, Capability::ServicesManage];
    const SUPPORTS_VERIFY: bool = true;
    type Params = UnitParams;
    type Output = RestartOutput;

    fn invoke(params: UnitParams) -> Result<RestartOutput, Error> {
        unit::validate("unit", &params.unit)?;
        let before = services::status(&params.unit)?;
        let after = services::restart(&params.unit)?;
        Ok(RestartOutput { unit: after.name.clone(), before: (&before).into(), after: (&after).into() })
    }

    fn verify(params: UnitParams, output: RestartOutput) -> Result<Verdict, Error> {
        unit::validate("unit", &params.unit)?;
        let now = services::status(&params.unit)?;
        Ok(restarted(&output.before, &now))
    }
}

/// The verdict on a restart: active now, and a new main process (or, for a unit without one, a
/// new activation time) than before.
fn restarted(before: &UnitSnapshot, now: &UnitStatus) -> Verdict {
    if now.active_state != "active" {
        return Verdict::fail(format!("`{}` is `{}` ({}), not `active`", now.name, now.active_state, now.sub_state));
    }
    let new_process = now.main_pid != 0 && now.main_pid != before.main_pid;
    let new_activation = now.active_enter_timestamp_us > before.active_enter_timestamp_us;
    if new_process || (now.main_pid == 0 && new_activation) {
        Verdict::pass(format!(
            "`{}` is active, main PID {} -> {}, active since {} (was {})",
            now.name, before.main_pid, now.main_pid, now.active_enter_timestamp_us, before.active_enter_timestamp_us
        ))
    } else {
        Verdict::fail(format!(
            "`{}` is active but was not restarted: main PID {} and activation time {} are unchanged",
            now.name, now.main_pid, now.active_enter_timestamp_us
        ))
    }
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
    fn verify_wants_active_and_a_new_main_process() {
        let status = |state: &str, pid: u32, at: u64| UnitStatus {
            name: "t.service".into(),
            description: String::new(),
            load_state: "loaded".into(),
            active_state: state.into(),
            sub_state: "running".into(),
            unit_file_state: String::new(),
            main_pid: pid,
            active_enter_timestamp_us: at,
            restarts: 0,
        };
        let before = UnitSnapshot::from(&status("active", 10, 100));
        assert!(restarted(&before, &status("active", 11, 200)).ok);
        assert!(!restarted(&before, &status("active", 10, 100)).ok, "same process: not restarted");
        assert!(!restarted(&before, &status("failed", 0, 100)).ok);
        // A unit without a main process (oneshot): a new activation time.
        let oneshot = UnitSnapshot::from(&status("active", 0, 100));
        assert!(restarted(&oneshot, &status("active", 0, 300)).ok);
        assert!(!restarted(&oneshot, &status("active", 0, 100)).ok);
    }

    #[test]
    fn the_manifest_declares_categories_profiles_and_schemas() {
        let m = PLUGIN.manifest();
        let names: Vec<&str> = m.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["systemd_status", "systemd_logs", "systemd_restart"]);
        let restart = &m.tools[2];
        assert_eq!(restart.category, Category::Sensitive);
        assert!(restart.supports_verify && !restart.supports_rollback, "a restart cannot be undone");
        let logs: serde_json::Value = serde_json::from_str(&m.tools[1].params_schema).expect("schema");
        assert_eq!(logs["properties"]["lines"]["maximum"], 1000);
        let status: serde_json::Value = serde_json::from_str(&m.tools[0].output_schema).expect("schema");
        assert!(status["properties"]["main_pid"].is_object(), "{status}");
    }
}
