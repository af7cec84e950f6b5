//! Run commands in the host's locked-down sandbox. Needs [`Capability::Exec`](crate::Capability)
//! for the profile used.

use std::time::Duration;

use crate::Error;
use crate::bindings::toolgate::plugin::sandbox as wit;

pub use wit::ExecOutput;

/// Run `argv` in sandbox profile `profile` with the profile's default deadline. A non-zero exit is
/// an `Ok` with its exit code; `Err` means nothing ran to completion (`denied`, `unavailable`,
/// `timeout`).
///
/// ```no_run
/// let out = toolgate_sdk::sandbox::exec(&["df", "-P"], "default")?;
/// # Ok::<(), toolgate_sdk::Error>(())
/// ```
pub fn exec(argv: &[&str], profile: &str) -> Result<ExecOutput, Error> {
    run(argv, profile, None)
}

/// As [`exec`], killed after `timeout` (never later than the profile's maximum; whole
/// milliseconds, capped at `u32::MAX`).
pub fn exec_with_timeout(argv: &[&str], profile: &str, timeout: Duration) -> Result<ExecOutput, Error> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    run(argv, profile, Some(ms))
}

fn run(argv: &[&str], profile: &str, timeout_ms: Option<u32>) -> Result<ExecOutput, Error> {
    let request = wit::ExecRequest {
        argv: argv.iter().map(|&a| a.to_owned()).collect(),
        profile: profile.to_owned(),
        timeout_ms,
    };
    crate::host::call(|| wit::exec(&request))
}

/// As [`exec`], but a non-zero exit is an error too: `failed`, naming the command, its status
/// and the first lines it printed ([`exit_failure`]).
pub fn exec_ok(argv: &[&str], profile: &str) -> Result<ExecOutput, Error> {
    let out = exec(argv, profile)?;
    if out.exit_code != 0 {
        return Err(exit_failure(argv, &out));
    }
    Ok(out)
}

/// `failed`, naming the command, its exit status and the first lines of what it said (stderr,
/// or stdout when stderr is empty).
pub fn exit_failure(argv: &[&str], out: &ExecOutput) -> Error {
    let said = if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr };
    let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
    Error::failed(format!("`{}` exited with status {}: {}", argv.join(" "), out.exit_code, said.join(" / ")))
}
