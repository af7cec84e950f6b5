//! The grammar of a container reference (name or id), checked before it reaches the engine.

use toolgate_sdk::Error;

/// Longest container reference accepted; Docker's own names are far shorter in practice.
pub const MAX_LEN: usize = 255;

/// Check `container` (the value of parameter `field`): a Docker name
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, which a 12 to 64 character hex id also matches).
pub fn validate(field: &str, container: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        let shown: String = container.chars().take(80).flat_map(char::escape_default).collect();
        Err(Error::invalid_params(format!("`{field}`: `{shown}` is not a container name or id: {why}")))
    };
    // Docker prints names with a leading `/`; accept the way people copy them.
    let name = container.strip_prefix('/').unwrap_or(container);
    let Some(first) = name.chars().next() else { return bad("it is empty") };
    if name.len() > MAX_LEN {
        return bad("it is longer than 255 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return bad("it must start with a letter or a digit");
    }
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
        return bad(&format!("character {c:?} is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_accepted() {
        for c in ["web", "nginx-proxy_1", "my.app", "/web", "3f2a9c1b7d4e", &"ab12".repeat(16)] {
            assert_eq!(validate("container", c), Ok(()), "{c}");
        }
    }

    #[test]
    fn injection_attempts_are_refused_naming_the_field() {
        for c in ["nginx; rm -rf /", "$(id)", "../..", "web\n", "-web", "_web", "", "/", "a b", "a/b", "web:latest"] {
            let err = validate("container", c).expect_err(c);
            assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`container`:")), "{c}: {err}");
        }
        assert!(validate("container", &"a".repeat(256)).is_err());
    }
}
