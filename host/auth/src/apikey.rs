//! API keys for service accounts: `tgk_<id>_<secret>`. The id finds the record; only a SHA-256
//! of the secret is stored, and the key string is shown once, at creation.

use sha2::{Digest, Sha256};

/// Prefix that tells an API key from a JWT in a bearer header.
pub const PREFIX: &str = "tgk_";

/// A freshly generated key: `(id, full key string, hex SHA-256 of the secret)`.
pub fn generate() -> (String, String, String) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let key = format!("{PREFIX}{id}_{secret}");
    (id, key, digest(&secret))
}

/// Split a presented key into `(id, secret)`, if it has the key shape.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some((id, secret))
}

/// Hex SHA-256 of a secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches the stored digest, in constant time.
pub fn matches(secret: &str, stored_digest: &str) -> bool {
    super::constant_time_eq(digest(secret).as_bytes(), stored_digest.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match_only_their_digest() {
        let (id, key, stored) = generate();
        let Some((pid, secret)) = parse(&key) else { panic!("generated key does not parse: {key}") };
        assert_eq!(pid, id);
        assert!(matches(secret, &stored));
        assert!(!matches(&secret.replace(|c| c != '0', "0"), &stored));
        assert!(parse("tgk_short_key").is_none());
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }
}
