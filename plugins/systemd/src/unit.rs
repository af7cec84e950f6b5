//! The grammar of a systemd unit name, checked before a name reaches an argv.

use toolgate_sdk::Error;

/// Longest unit name systemd accepts (`UNIT_NAME_MAX`).
pub const MAX_LEN: usize = 256;

/// Unit types systemd knows; a name with a dot must end in one of them.
const SUFFIXES: [&str; 11] =
    ["service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope"];

/// Check `unit` (the value of parameter `field`): `[A-Za-z0-9:_.\@-]+`, at most 256 characters,
/// no leading `-` (it would read as an option), and a known type suffix when it has one.
pub fn validate(field: &str, unit: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::invalid_params(format!("`{field}`: `{}` is not a systemd unit name: {why}", printable(unit))))
    };
    if unit.is_empty() {
        return bad("it is empty");
    }
    if unit.len() > MAX_LEN {
        return bad("it is longer than 256 characters");
    }
    if unit.starts_with('-') {
        return bad("it starts with `-`");
    }
    if let Some(c) = unit.chars().find(|&c| !(c.is_ascii_alphanumeric() || ":_.\\@-".contains(c))) {
        return bad(&format!("character {c:?} is not allowed"));
    }
    if let Some((stem, suffix)) = unit.rsplit_once('.') {
        if stem.is_empty() {
            return bad("the name before the type suffix is empty");
        }
        if !SUFFIXES.contains(&suffix) {
            return bad(&format!("`.{suffix}` is not a unit type"));
        }
    }
    Ok(())
}

/// `text` with control characters escaped, so an error message stays on one line.
fn printable(text: &str) -> String {
    text.chars().take(80).flat_map(char::escape_default).collect()
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn real_unit_names_are_accepted() {
        for unit in [
            "nginx",
            "nginx.service",
            "getty@tty1.service",
            "systemd-journald.service",
            "dbus-org.freedesktop.login1.service",
            "home-user\\x2ddata.mount",
            "multi-user.target",
            "apt-daily.timer",
            "user-1000.slice",
        ] {
            assert_eq!(validate("unit", unit), Ok(()), "{unit}");
        }
    }

    #[test]
    fn injection_attempts_are_refused_naming_the_field() {
        for unit in ["nginx; rm -rf /", "$(id)", "../..", "nginx\nid", "nginx service", "`id`", "a|b", "a>b", ""] {
            let err = validate("unit", unit).expect_err(unit);
            assert!(matches!(&err, Error::InvalidParams(m) if m.starts_with("`unit`:")), "{unit}: {err}");
        }
    }

    #[test]
    fn options_unknown_suffixes_and_overlong_names_are_refused() {
        assert!(validate("unit", "--all").is_err());
        assert!(validate("unit", "-H").is_err());
        assert!(validate("unit", "nginx.conf").is_err());
        assert!(validate("unit", ".service").is_err());
        assert!(validate("unit", &"a".repeat(257)).is_err());
        assert_eq!(validate("unit", &"a".repeat(256)), Ok(()));
    }

    #[test]
    fn a_newline_is_escaped_in_the_message() {
        let err = validate("unit", "a\nb").expect_err("newline");
        assert!(err.message().contains("a\\nb"), "{err}");
    }
}
