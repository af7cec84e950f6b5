//! The grammars of the names a caller passes: systemd unit names and Debian package names. Both
//! are checked before any D-Bus traffic, so that a malformed name is `invalid_params` and never
//! reaches systemd's or PackageKit's own parsers.

use crate::SystemError;

/// Longest unit name systemd accepts (`UNIT_NAME_MAX` is 256 with the final NUL).
const UNIT_NAME_MAX: usize = 255;

/// Longest package name accepted (Debian sets no limit; no real package comes close).
const PACKAGE_NAME_MAX: usize = 128;

/// The unit types systemd knows; a name without one of them is a service.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".slice",
    ".scope",
];

/// Checks a systemd unit name and returns it in full: `nginx` becomes `nginx.service`, a name
/// with a known unit suffix (`dbus.socket`, `backup.timer`) stays as it is.
///
/// Accepted: ASCII letters, digits and `:_.\@-`, at most 255 characters once completed, not
/// starting with `-` (it would read as an option wherever the name ends up on a command line), and
/// neither `.` nor `..`. Anything else is [`SystemError::InvalidArgument`].
pub fn validate_unit(unit: &str) -> Result<String, SystemError> {
    let invalid = |why: &str| SystemError::InvalidArgument(format!("invalid unit name `{}`: {why}", shown(unit)));
    if unit.is_empty() {
        return Err(SystemError::InvalidArgument("invalid unit name: it is empty".into()));
    }
    if unit.len() > UNIT_NAME_MAX {
        return Err(SystemError::InvalidArgument(format!("invalid unit name: longer than {UNIT_NAME_MAX} characters")));
    }
    if let Some(c) = unit.chars().find(|&c| !(c.is_ascii_alphanumeric() || ":_.\\@-".contains(c))) {
        return Err(invalid(&format!("`{}` is not allowed (letters, digits and `:_.\\@-` are)", c.escape_debug())));
    }
    if unit.starts_with('-') {
        return Err(invalid("it starts with `-`"));
    }
    if unit == "." || unit == ".." {
        return Err(invalid("not a unit"));
    }
    if UNIT_SUFFIXES.iter().any(|suffix| unit.len() > suffix.len() && unit.ends_with(suffix)) {
        return Ok(unit.to_owned());
    }
    let full = format!("{unit}.service");
    if full.len() > UNIT_NAME_MAX {
        return Err(invalid(&format!("longer than {UNIT_NAME_MAX} characters with `.service`")));
    }
    Ok(full)
}

/// Checks a Debian package name (`^[a-z0-9][a-z0-9+.-]+$`, at most 128 characters): Debian
/// policy §5.6.1. Anything else is [`SystemError::InvalidArgument`]. An architecture qualifier
/// (`libc6:amd64`) is not accepted: Toolgate installs for the native architecture only.
pub fn validate_package(package: &str) -> Result<(), SystemError> {
    let invalid = |why: &str| SystemError::InvalidArgument(format!("invalid package name `{}`: {why}", shown(package)));
    if package.len() > PACKAGE_NAME_MAX {
        return Err(SystemError::InvalidArgument(format!(
            "invalid package name: longer than {PACKAGE_NAME_MAX} characters"
        )));
    }
    if package.len() < 2 {
        return Err(invalid("a package name has at least two characters"));
    }
    if let Some(c) = package.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))) {
        return Err(invalid(&format!(
            "`{}` is not allowed (lowercase letters, digits and `+.-` are)",
            c.escape_debug()
        )));
    }
    if !package.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(invalid("it must start with a lowercase letter or a digit"));
    }
    Ok(())
}

/// A name as it may appear in a message: control characters escaped.
fn shown(name: &str) -> String {
    name.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_get_service_unless_they_name_a_type() {
        assert_eq!(validate_unit("nginx").unwrap(), "nginx.service");
        assert_eq!(validate_unit("nginx.service").unwrap(), "nginx.service");
        assert_eq!(validate_unit("dbus.socket").unwrap(), "dbus.socket");
        assert_eq!(validate_unit("apt-daily.timer").unwrap(), "apt-daily.timer");
        assert_eq!(validate_unit("getty@tty1.service").unwrap(), "getty@tty1.service");
        assert_eq!(validate_unit("getty@tty1").unwrap(), "getty@tty1.service");
        assert_eq!(
            validate_unit("systemd-fsck@dev-disk-by\\x2duuid-1.service").unwrap(),
            "systemd-fsck@dev-disk-by\\x2duuid-1.service"
        );
        assert_eq!(validate_unit("php8.2-fpm").unwrap(), "php8.2-fpm.service");
        // A suffix alone is a name with an unknown type, not a unit of that type.
        assert_eq!(validate_unit(".service").unwrap(), ".service.service");
    }

    #[test]
    fn malformed_units_are_invalid_arguments() {
        for bad in ["", ".", "..", "-nginx", "ngi nx", "nginx;reboot", "a/b", "ünit", "x\n", "a$b", "*"] {
            let err = validate_unit(bad).unwrap_err();
            assert!(matches!(err, SystemError::InvalidArgument(_)), "{bad:?}: {err:?}");
        }
        assert!(validate_unit(&"a".repeat(255)).is_err(), "255 characters, too long with .service");
        assert_eq!(validate_unit(&format!("{}.service", "a".repeat(247))).unwrap().len(), 255);
        assert!(validate_unit(&format!("{}.service", "a".repeat(248))).is_err());
        let message = validate_unit("x\ny").unwrap_err().to_string();
        assert!(message.contains("`x\\ny`"), "{message}");
    }

    #[test]
    fn debian_package_names() {
        for good in ["nginx", "g++", "libstdc++6", "0ad", "python3.11", "lib32gcc-s1", "xz-utils"] {
            assert_eq!(validate_package(good), Ok(()), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "a", "Nginx", "-nginx", "+x", ".x", "nginx;rm", "libc6:amd64", "a b", "pkg_name", &long] {
            let err = validate_package(bad).unwrap_err();
            assert!(matches!(err, SystemError::InvalidArgument(_)), "{bad:?}: {err:?}");
        }
        assert_eq!(validate_package(&"a".repeat(128)), Ok(()));
    }
}
