//! Workspace paths as the plugin accepts them: relative, no `..`, nothing a terminal or a log
//! would misread. The host checks again and also refuses symlinks leading out of the workspace,
//! which only it can see.

use toolgate_sdk::Error;

/// Longest path accepted (Linux's `PATH_MAX`).
pub const MAX_LEN: usize = 4096;

/// What a path may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A file: the workspace root itself (`.`) is refused.
    File,
    /// A directory: `.` names the workspace root.
    Dir,
}

/// Check `path` (the value of parameter `field`) and return it without `./` noise.
pub fn validate(field: &str, path: &str, target: Target) -> Result<String, Error> {
    let bad = |why: &str| {
        let shown: String = path.chars().take(120).flat_map(char::escape_default).collect();
        Err(Error::invalid_params(format!("`{field}`: `{shown}` is not a workspace path: {why}")))
    };
    if path.is_empty() {
        return bad("it is empty");
    }
    if path.len() > MAX_LEN {
        return bad("it is longer than 4096 bytes");
    }
    if path.chars().any(char::is_control) {
        return bad("it contains a control character (newline, NUL, ...)");
    }
    if path.starts_with('/') {
        return bad("it is absolute; give it relative to the workspace");
    }
    if path.contains('\\') {
        return bad("it contains `\\`");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            ".." => return bad("it contains `..`"),
            "." => {}
            "" => return bad("it contains an empty component (`//` or a trailing `/`)"),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return match target {
            Target::Dir => Ok(".".to_owned()),
            Target::File => bad("it names the workspace root, not a file"),
        };
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_accepted_and_normalised() {
        assert_eq!(validate("path", "notes.txt", Target::File), Ok("notes.txt".into()));
        assert_eq!(validate("path", "./etc/nginx/nginx.conf", Target::File), Ok("etc/nginx/nginx.conf".into()));
        assert_eq!(validate("path", "a/./b", Target::File), Ok("a/b".into()));
        assert_eq!(validate("path", ".", Target::Dir), Ok(".".into()));
        assert_eq!(validate("path", "logs", Target::Dir), Ok("logs".into()));
        assert_eq!(validate("path", "my file (1).txt", Target::File), Ok("my file (1).txt".into()));
    }

    #[test]
    fn escapes_and_injection_attempts_are_refused_naming_the_field() {
        for p in
            ["../..", "..", "a/../../etc/passwd", "/etc/passwd", "notes\n.txt", "a\0b", "a//b", "a/", "", "a\\..\\b"]
        {
            let err = validate("path", p, Target::File).expect_err(p);
            assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`path`:")), "{p:?}: {err}");
        }
        assert!(validate("path", ".", Target::File).is_err());
        assert!(validate("path", &"a".repeat(4097), Target::File).is_err());
    }
}
