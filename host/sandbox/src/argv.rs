//! The argv checks every command passes before anything runs.
//!
//! No command ever reaches a shell, so these tokens would be harmless to the process itself; they
//! are refused anyway because their presence means the caller (often a language model) believes a
//! shell will interpret them, and a tool that passes them on to a program that does (`sh -c`,
//! `ssh`, `su -c`) would turn them into an injection.

use super::SandboxError;

/// Tokens refused anywhere in any argument, longest first so that the error names `&&` rather
/// than a shorter token it contains. A lone `&` (background a command) and `$` (any expansion:
/// `$HOME`, `${IFS}`, `$((...))`) mean a shell just as much as `;` does.
const FORBIDDEN: [(&str, &str); 14] = [
    ("&&", "`&&`"),
    ("||", "`||`"),
    ("$(", "`$(`"),
    (">>", "`>>`"),
    ("<<", "`<<`"),
    (";", "`;`"),
    ("&", "`&`"),
    ("|", "`|`"),
    ("$", "`$`"),
    ("`", "backtick"),
    (">", "`>`"),
    ("<", "`<`"),
    ("\n", "newline"),
    ("\r", "carriage return"),
];

/// Refuse an empty argv, and any argument holding a shell metacharacter or a NUL, naming the
/// offending token and argument.
pub fn check_argv(argv: &[String]) -> Result<(), SandboxError> {
    let Some(program) = argv.first() else {
        return Err(SandboxError::Refused("empty argv".into()));
    };
    if program.is_empty() {
        return Err(SandboxError::Refused("empty program name".into()));
    }
    for (index, arg) in argv.iter().enumerate() {
        if arg.contains('\0') {
            return Err(SandboxError::Refused(format!("NUL byte in argument {index}")));
        }
        // Earliest occurrence wins; at one position the longer token wins (`&&` over `&`).
        let found = FORBIDDEN
            .iter()
            .filter_map(|(token, name)| arg.find(token).map(|at| (at, std::cmp::Reverse(token.len()), *name)))
            .min();
        if let Some((_, _, name)) = found {
            return Err(SandboxError::Refused(format!(
                "forbidden token {name} in argument {index} `{}`",
                arg.escape_debug()
            )));
        }
    }
    Ok(())
}

/// Split a command line the way a POSIX shell would split words (quotes, backslashes), without
/// any expansion, then apply [`check_argv`].
pub fn split_command(line: &str) -> Result<Vec<String>, SandboxError> {
    // Checked before splitting too: quotes must not smuggle a token past the checks, and a
    // newline would otherwise be taken as a word separator.
    if let Some((_, name)) = FORBIDDEN.iter().find(|(token, _)| line.contains(token)) {
        return Err(SandboxError::Refused(format!("forbidden token {name} in `{}`", line.escape_debug())));
    }
    if line.contains('\0') {
        return Err(SandboxError::Refused("NUL byte in command line".into()));
    }
    let argv = shlex::split(line)
        .ok_or_else(|| SandboxError::Refused(format!("unbalanced quotes in `{}`", line.escape_debug())))?;
    check_argv(&argv)?;
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn every_forbidden_token_is_refused_and_named() {
        let cases = [
            ("a;b", "`;`"),
            ("a && b", "`&&`"),
            ("a || b", "`||`"),
            ("a | b", "`|`"),
            ("`id`", "backtick"),
            ("$(id)", "`$(`"),
            ("a > b", "`>`"),
            ("a >> b", "`>>`"),
            ("a < b", "`<`"),
            ("a << b", "`<<`"),
            ("a\nb", "newline"),
            ("a\rb", "carriage return"),
            ("a & id", "`&`"),
            ("${IFS}id", "`$`"),
            ("$HOME", "`$`"),
            ("x=$((1+1))", "`$(`"),
            ("x=$[1+1]", "`$`"),
        ];
        for (arg, name) in cases {
            let err = check_argv(&argv(&["echo", "ok", arg])).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(name) && err.contains("argument 2"), "{arg:?}: {err}");
        }
        let err = check_argv(&argv(&["echo", "a\0b"])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("NUL"), "{err}");
        assert!(check_argv(&[]).is_err());
        assert!(check_argv(&argv(&[""])).is_err());
    }

    #[test]
    fn ordinary_arguments_pass() {
        assert!(check_argv(&argv(&["ls", "-la", "/workspace", "a=b", "{}", "*.log", "50%", "#1", "~"])).is_ok());
    }

    #[test]
    fn command_lines_split_like_a_shell_without_expansion() -> anyhow::Result<()> {
        assert_eq!(split_command("grep -r 'two words' \"/var/log\"")?, ["grep", "-r", "two words", "/var/log"]);
        assert_eq!(split_command("echo 'a b' c")?, ["echo", "a b", "c"]);
        for line in ["echo $HOME", "echo '${IFS}'", "sleep 1 & id", "echo \"a&b\""] {
            let err = split_command(line).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("forbidden token"), "{line:?} reached the sandbox: {err}");
        }
        assert!(split_command("echo 'a;b'").is_err(), "a quoted token is still refused");
        assert!(split_command("echo 'unbalanced").is_err());
        assert!(split_command("   ").is_err(), "an empty line is an empty argv");
        Ok(())
    }
}
