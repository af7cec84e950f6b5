//! Capped capture of a command's output, shared by both backends.

use std::time::Instant;

use super::ExecOutput;

/// The output of a finished command from its two capped streams.
pub(crate) fn finished(exit_code: i32, stdout: Capped, stderr: Capped, started: Instant) -> ExecOutput {
    ExecOutput {
        exit_code,
        truncated: stdout.truncated() || stderr.truncated(),
        stdout: stdout.into_string(),
        stderr: stderr.into_string(),
        duration: started.elapsed(),
        container_id: None,
    }
}

/// Bytes of one stream, kept up to a cap; the rest is counted and dropped.
#[derive(Debug)]
pub(crate) struct Capped {
    bytes: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capped {
    pub(crate) fn new(limit: u64) -> Self {
        Self { bytes: Vec::new(), limit: usize::try_from(limit).unwrap_or(usize::MAX), truncated: false }
    }

    /// Keep what fits under the cap; remember that something was cut.
    pub(crate) fn push(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    pub(crate) fn truncated(&self) -> bool {
        self.truncated
    }

    /// The text, invalid UTF-8 replaced (a cut may split a character).
    pub(crate) fn into_string(self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_beyond_the_cap_is_dropped_and_flagged() {
        let mut out = Capped::new(5);
        out.push(b"abc");
        assert!(!out.truncated());
        out.push(b"defg");
        out.push(b"h");
        assert!(out.truncated());
        assert_eq!(out.into_string(), "abcde");
    }
}
