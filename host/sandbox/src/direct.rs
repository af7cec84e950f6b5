//! Direct execution on the host (`EXECUTE_MODE=direct`, development only): the same argv, never
//! a shell, the same deadline and output caps, but no isolation at all.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::output::{Capped, finished};
use super::{ExecOutput, SandboxError};

/// Run `argv` as a child process in `dir`, killing it at `timeout`.
pub(crate) async fn run(
    argv: &[String],
    dir: &Path,
    timeout: Duration,
    limit: u64,
) -> Result<ExecOutput, SandboxError> {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return Err(SandboxError::Refused("empty argv".into()));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        // The host's environment holds the host's secrets (`TOOLGATE_JWT_SECRET`): only PATH passes.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future at the deadline must not leave the process behind.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SandboxError::Failed(format!("cannot start `{program}`: {e}")))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(SandboxError::Failed("no pipes to the child".into()));
    };
    let work = async {
        let (stdout, stderr) = tokio::join!(drain(out, limit), drain(err, limit));
        let status = child.wait().await.map_err(|e| SandboxError::Failed(format!("waiting for `{program}`: {e}")))?;
        Ok::<_, SandboxError>((stdout?, stderr?, status))
    };
    let outcome = tokio::time::timeout(timeout, work).await;
    let (stdout, stderr, status) = match outcome {
        Ok(done) => done?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(SandboxError::Timeout(timeout));
        }
    };
    // A signal death reads as 128 + signal, like a shell would report it.
    let exit_code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(finished(exit_code, stdout, stderr, started))
}

async fn drain(mut pipe: impl AsyncRead + Unpin, limit: u64) -> Result<Capped, SandboxError> {
    let mut capped = Capped::new(limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).await.map_err(|e| SandboxError::Failed(format!("reading output: {e}")))?;
        if n == 0 {
            return Ok(capped);
        }
        capped.push(&buf[..n]);
    }
}
