//! Running a command in the sandbox, and keeping its raw text capped beside the parsed output.

use toolgate_sdk::Error;
use toolgate_sdk::sandbox::{self, ExecOutput};

/// How much raw command text an output document keeps: enough to read, small enough to audit.
pub const RAW_CAP: usize = 64 * 1024;

/// `text` cut to at most [`RAW_CAP`] bytes on a character boundary, and whether it was cut.
pub fn capped(text: &str) -> (String, bool) {
    if text.len() <= RAW_CAP {
        return (text.to_owned(), false);
    }
    let mut end = RAW_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// Run `argv` in `profile`; any exit status is `Ok`, `Err` means nothing ran to completion.
pub fn run(argv: &[&str], profile: &str) -> Result<ExecOutput, Error> {
    sandbox::exec(argv, profile)
}

/// `failed`, naming the command, its exit status and the first lines of what it said.
pub fn exit_failure(argv: &[&str], out: &ExecOutput) -> Error {
    let said = if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr };
    let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
    Error::failed(format!("`{}` exited with status {}: {}", argv.join(" "), out.exit_code, said.join(" / ")))
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn capping_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(capped("abc"), ("abc".to_owned(), false));
        let long = "é".repeat(RAW_CAP); // 2 bytes each
        let (cut, truncated) = capped(&long);
        assert!(truncated);
        assert_eq!(cut.len(), RAW_CAP);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
