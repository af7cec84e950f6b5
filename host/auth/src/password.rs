//! Passwords: the policy, and scrypt hashes in PHC form (`$scrypt$ln=15,r=8,p=1$salt$hash`).
//! The parameters travel with each hash, so raising `auth.scrypt_log_n` later only affects new
//! hashes and every old one still verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;

use super::AuthError;

/// A rule: what a refusal says, and the check.
type Rule = (&'static str, fn(&str) -> bool);

/// The rules a password must meet, in the order a refusal names them.
const RULES: [Rule; 5] = [
    ("at least 8 characters", |p| p.chars().count() >= 8),
    ("an upper-case letter", |p| p.chars().any(char::is_uppercase)),
    ("a lower-case letter", |p| p.chars().any(char::is_lowercase)),
    ("a digit", |p| p.chars().any(|c| c.is_ascii_digit())),
    ("a special character", |p| p.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace())),
];

/// Longest accepted password: hashing is slow on purpose, so the input is bounded.
const MAX_CHARS: usize = 256;

/// Check `password` against the policy; the error names every rule that failed.
pub fn check_policy(password: &str) -> Result<(), AuthError> {
    let mut failed: Vec<&'static str> = RULES.iter().filter(|(_, ok)| !ok(password)).map(|(rule, _)| *rule).collect();
    if password.chars().count() > MAX_CHARS {
        failed.push("at most 256 characters");
    }
    if failed.is_empty() { Ok(()) } else { Err(AuthError::WeakPassword(failed)) }
}

/// Hash `password` with a fresh 16-byte salt and scrypt at `log_n` (r = 8, p = 1).
pub fn hash(password: &str, log_n: u8) -> Result<String, AuthError> {
    let params = scrypt::Params::new(log_n, 8, 1).map_err(|e| AuthError::Hash(e.to_string()))?;
    let salt: [u8; 16] = rand::random();
    let mut out = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut out).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(format!("$scrypt$ln={log_n},r=8,p=1${}${}", B64.encode(salt), B64.encode(out)))
}

/// Whether `password` matches the PHC string `phc`, using the parameters recorded in it.
pub fn verify(password: &str, phc: &str) -> Result<bool, AuthError> {
    let bad = || AuthError::Hash("stored password hash is not a scrypt PHC string".into());
    let mut parts = phc.split('$');
    let (Some(""), Some("scrypt"), Some(params), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (mut log_n, mut r, mut p) = (None, None, None);
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some(("ln", v)) => log_n = v.parse::<u8>().ok(),
            Some(("r", v)) => r = v.parse::<u32>().ok(),
            Some(("p", v)) => p = v.parse::<u32>().ok(),
            _ => return Err(bad()),
        }
    }
    let (Some(log_n), Some(r), Some(p)) = (log_n, r, p) else { return Err(bad()) };
    // Bounded so a damaged record cannot make one login take minutes or gigabytes.
    if !(1..=22).contains(&log_n) || !(1..=32).contains(&r) || !(1..=16).contains(&p) {
        return Err(bad());
    }
    let params = scrypt::Params::new(log_n, r, p).map_err(|e| AuthError::Hash(e.to_string()))?;
    let salt = B64.decode(salt).map_err(|_| bad())?;
    let expected = B64.decode(expected).map_err(|_| bad())?;
    if expected.is_empty() || expected.len() > 64 {
        return Err(bad());
    }
    let mut out = vec![0u8; expected.len()];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut out).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(super::constant_time_eq(&out, &expected))
}

/// Spend the time a real verification would, so an unknown user name is not revealed by timing.
pub fn verify_dummy(log_n: u8) {
    if let Ok(params) = scrypt::Params::new(log_n, 8, 1) {
        let mut out = [0u8; 32];
        let _ = scrypt::scrypt(b"dummy", b"toolgate-dummy-salt", &params, &mut out);
    }
}

/// A random password that meets the policy (the initial admin's).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    loop {
        let groups: Vec<String> = (0..4)
            .map(|_| (0..5).map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())])).collect())
            .collect();
        let candidate = groups.join("-");
        if check_policy(&candidate).is_ok() {
            return candidate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_each_failed_rule() {
        let Err(AuthError::WeakPassword(failed)) = check_policy("abc") else { panic!("weak password accepted") };
        assert_eq!(failed, ["at least 8 characters", "an upper-case letter", "a digit", "a special character"]);
        assert!(check_policy("Str0ng-enough").is_ok());
        assert!(check_policy(&format!("Aa1!{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn hashes_verify_with_their_recorded_parameters() -> anyhow::Result<()> {
        let cheap = hash("Corr3ct-horse", 4)?;
        let dearer = hash("Corr3ct-horse", 6)?;
        assert!(cheap.starts_with("$scrypt$ln=4,r=8,p=1$"), "{cheap}");
        assert_ne!(cheap, hash("Corr3ct-horse", 4)?, "salt must differ per hash");
        assert!(verify("Corr3ct-horse", &cheap)?);
        assert!(verify("Corr3ct-horse", &dearer)?);
        assert!(!verify("corr3ct-horse", &cheap)?);
        assert!(verify("x", "$argon2id$v=19$m=1$abc$def").is_err());
        assert!(verify("x", "$scrypt$ln=40,r=8,p=1$c2FsdA$aGFzaA").is_err());
        Ok(())
    }

    #[test]
    fn generated_passwords_meet_the_policy() {
        let a = generate();
        assert!(check_policy(&a).is_ok(), "{a}");
        assert_ne!(a, generate());
    }
}
