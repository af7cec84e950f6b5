//! Debian's package name grammar, checked before a name reaches an argv.

use toolgate_sdk::Error;

/// Longest package name accepted; Debian's longest are well under it.
pub const MAX_LEN: usize = 128;

/// Check `package` (the value of parameter `field`) against Debian policy 5.6.1: lowercase letters,
/// digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit.
pub fn validate(field: &str, package: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        let shown: String = package.chars().take(80).flat_map(char::escape_default).collect();
        Err(Error::invalid_params(format!("`{field}`: `{shown}` is not a Debian package name: {why}")))
    };
    let Some(first) = package.chars().next() else { return bad("it is empty") };
    if package.len() < 2 {
        return bad("it is shorter than 2 characters");
    }
    if package.len() > MAX_LEN {
        return bad("it is longer than 128 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return bad("it must start with a lowercase letter or a digit");
    }
    if let Some(c) = package.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))) {
        return bad(&format!("character {c:?} is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn debian_names_are_accepted() {
        for p in ["htop", "nginx", "libc6", "g++", "libstdc++6", "python3.11", "0ad", "xz-utils", "r-base-core"] {
            assert_eq!(validate("package", p), Ok(()), "{p}");
        }
    }

    #[test]
    fn injection_attempts_options_and_odd_names_are_refused_naming_the_field() {
        for p in [
            "nginx; rm -rf /",
            "$(id)",
            "../..",
            "htop\n",
            "-y",
            "--purge",
            "Nginx",
            "a",
            "",
            "nginx=1.22",
            "nginx:amd64",
            "a b",
            "htop*",
        ] {
            let err = validate("package", p).expect_err(p);
            assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`package`:")), "{p:?}: {err}");
        }
        assert!(validate("package", &"a".repeat(129)).is_err());
    }
}
