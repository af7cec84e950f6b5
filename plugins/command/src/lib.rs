//! Built-in plugin `command`: `run_command`, the generic tool. The command line is split with
//! shlex here and run in the `default` sandbox profile; which programs a role may run is the
//! host's exec policy's decision, so the tool itself is only `moderate`.
//!
//! # Layout
//! - this file: the tool;
//! - `line`: splitting a command line and refusing shell constructs;
//! - `exec`: keeping the command's text capped.

pub mod line;

use toolgate_sdk::prelude::*;
use toolgate_sdk::sandbox;

use toolgate_sdk::text::capped;

/// The sandbox profile commands run in.
const PROFILE: &str = "default";

toolgate_sdk::plugin!(name = "command", tools = [RunCommand]);

/// Parameters of `run_command`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// One command line, e.g. `uptime` or `grep -c "reset" /var/log/app.log`. Quoting as in a
    /// shell; pipes, `;`, `&&`, `$(...)`, variables and redirections are refused.
    #[schemars(length(min = 1, max = 4096))]
    pub command: String,
}

/// Output of `run_command`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CommandOutput {
    /// The argv that ran.
    pub argv: Vec<String>,
    /// Its exit status; non-zero is reported here, not as an error.
    pub exit_code: i32,
    /// Standard output, capped at 64 KiB.
    pub stdout: String,
    /// Standard error, capped at 64 KiB.
    pub stderr: String,
    /// True when either was cut (by the host or here).
    pub truncated: bool,
    /// Wall-clock time of the run in milliseconds.
    pub duration_ms: u64,
}

/// `run_command`: one command line, split with shlex, run in the sandbox if the exec policy
/// allows it for the caller's role.
pub struct RunCommand;

impl Tool for RunCommand {
    const NAME: &'static str = "run_command";
    const DESCRIPTION: &'static str = "Runs one command line (no shell) in the sandbox, if the exec policy allows that command for your role; returns its exit code and output. A read command's exit code is part of its answer (`grep` finding nothing exits 1); a command that changes something is verified by its exit code, and one that exits non-zero leaves the action `failed`.";
    const CATEGORY: Category = Category::Moderate;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    const SUPPORTS_VERIFY: bool = true;
    type Params = CommandParams;
    type Output = CommandOutput;

    fn invoke(params: CommandParams) -> Result<CommandOutput, Error> {
        let argv = line::split("command", &params.command)?;
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = sandbox::exec(&args, PROFILE)?;
        let (stdout, cut_out) = capped(&out.stdout);
        let (stderr, cut_err) = capped(&out.stderr);
        Ok(CommandOutput {
            argv,
            exit_code: out.exit_code,
            stdout,
            stderr,
            truncated: out.truncated || cut_out || cut_err,
            duration_ms: out.duration_ms,
        })
    }

    /// What a command changed is not known here; what is known is whether it says it succeeded.
    /// The host asks for this wherever the call's category requires verify (MODERATE and up).
    fn verify(_: CommandParams, output: CommandOutput) -> Result<Verdict, Error> {
        Ok(exited_zero(&output))
    }
}

/// The verdict on a command: exit status 0, or the status and the last line of its error output.
fn exited_zero(output: &CommandOutput) -> Verdict {
    let command = output.argv.join(" ");
    if output.exit_code == 0 {
        return Verdict::pass(format!("`{command}` exited with 0"));
    }
    match output.stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => Verdict::fail(format!("`{command}` exited with {}: {}", output.exit_code, last.trim())),
        None => Verdict::fail(format!("`{command}` exited with {}", output.exit_code)),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn injection_is_refused_before_any_sandbox_starts() {
        // Natively no sandbox exists: reaching `exec` would panic, so an `Err` proves nothing ran.
        for command in ["nginx; rm -rf /", "$(id)", "cat x\nreboot"] {
            let params = serde_json::json!({ "command": command }).to_string();
            let err = PLUGIN.invoke("run_command", &params).expect_err(command);
            assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`command`")), "{command:?}: {err}");
        }
    }

    #[test]
    fn verify_is_the_exit_status() {
        let output = |exit_code: i32, stderr: &str| CommandOutput {
            argv: vec!["cat".into(), "/nope".into()],
            exit_code,
            stdout: String::new(),
            stderr: stderr.into(),
            truncated: false,
            duration_ms: 1,
        };
        assert!(exited_zero(&output(0, "")).ok);
        let failed = exited_zero(&output(1, "cat: can't open '/nope': No such file or directory\n\n"));
        assert!(!failed.ok);
        assert_eq!(failed.detail, "`cat /nope` exited with 1: cat: can't open '/nope': No such file or directory");
        assert_eq!(exited_zero(&output(137, "")).detail, "`cat /nope` exited with 137");
    }

    #[test]
    fn the_tool_is_moderate_in_the_default_profile() {
        let m = PLUGIN.manifest();
        assert_eq!(m.tools[0].name, "run_command");
        assert_eq!(m.tools[0].category, Category::Moderate);
        assert!(!m.tools[0].supports_rollback && m.tools[0].supports_verify);
    }
}
