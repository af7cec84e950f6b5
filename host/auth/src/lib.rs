//! Credentials and who may vouch for whom: scrypt password hashes ([`password`]), HS256 JWTs
//! ([`token`]), API keys ([`apikey`]), and account provenance for the two-person rule
//! ([`provenance`]); the `[auth]` section ([`AuthConfig`]).
//!
//! Uses `toolgate-core` and `toolgate-store` (the stored account records it reads). The security
//! events of logins and key use are written by the server to `toolgate_telemetry::security`.

use serde::{Deserialize, Serialize};

pub mod apikey;
pub mod password;
pub mod provenance;
pub mod token;

/// `[auth]`: accounts and tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a login token, in seconds.
    pub token_ttl_secs: u64,
    /// Whether `POST /api/v1/auth/register` is open (new users are viewers).
    pub register_enabled: bool,
    /// scrypt cost for new password hashes (N = 2^log_n, r = 8, p = 1). Recorded with each hash,
    /// so raising it later keeps old hashes verifiable. Production default 15 (32 MiB).
    pub scrypt_log_n: u8,
    /// Name of the cookie that carries the token set at login.
    pub cookie_name: String,
    /// Longest lifetime of an API key, in days.
    pub api_key_max_days: u32,
    /// Longest lifetime of a session, in seconds: refresh never extends a session past this
    /// long after its login.
    pub session_max_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 24 * 3600,
            register_enabled: false,
            scrypt_log_n: 15,
            cookie_name: "toolgate_token".into(),
            api_key_max_days: 365,
            session_max_secs: 7 * 24 * 3600,
        }
    }
}

/// Why a credential or account operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The password misses rules of the policy; each failed rule is named.
    #[error("password must contain {}", .0.join(", "))]
    WeakPassword(Vec<&'static str>),
    /// A user or key name outside the grammar.
    #[error(
        "invalid name `{0}`: expected 1 to 64 characters, a lower-case letter first, then lower-case letters, digits, `.`, `_` or `-`"
    )]
    InvalidName(String),
    /// Wrong user name or password (deliberately not saying which).
    #[error("invalid user name or password")]
    InvalidCredentials,
    /// The current password given to change it is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// An API key expiry outside the accepted range.
    #[error("{0}")]
    BadExpiry(String),
    /// The request carries no token or key.
    #[error("authentication required: send `Authorization: Bearer <token>` or the login cookie")]
    MissingCredentials,
    /// Not a token we signed, or not a token at all.
    #[error("invalid token")]
    TokenInvalid,
    /// The token's `alg` is not HS256.
    #[error("token algorithm `{0}` is not accepted; only HS256 is")]
    TokenAlgorithm(String),
    /// The token expired.
    #[error("token expired")]
    TokenExpired,
    /// The token was revoked (logout, refresh, or a new session generation: password change,
    /// disable, enable, role change).
    #[error("token revoked")]
    TokenRevoked,
    /// The session reached `auth.session_max_secs` since its login; refresh is refused.
    #[error("the session is over (`auth.session_max_secs` since login); log in again")]
    SessionOver,
    /// A refresh token was presented a second time.
    #[error("this token was already used for a refresh")]
    RefreshReused,
    /// The API key's creator no longer holds the authority the key carries.
    #[error("api key `{key}` is void: {why}")]
    KeyCreatorInactive {
        /// The key's name.
        key: String,
        /// What happened to its creator.
        why: String,
    },
    /// A cookie-authenticated request that changes state came from another origin (or named none).
    #[error("cross-origin request refused: {0}")]
    CrossOrigin(String),
    /// The account is disabled.
    #[error("account disabled")]
    UserDisabled,
    /// The API key is unknown or its secret does not match.
    #[error("invalid api key")]
    KeyInvalid,
    /// The API key expired.
    #[error("api key expired")]
    KeyExpired,
    /// The API key was revoked.
    #[error("api key revoked")]
    KeyRevoked,
    /// The caller's role is below what the operation needs.
    #[error("this operation needs the `{0}` role")]
    Forbidden(toolgate_core::model::Role),
    /// The JWT secret is too short to start.
    #[error("jwt secret has {0} characters; at least 64 are required (set `jwt_secret` or `TOOLGATE_JWT_SECRET`)")]
    WeakSecret(usize),
    /// The JWT secret is long enough but too predictable (one letter repeated, a short motif).
    #[error(
        "jwt secret is too predictable: about {bits} bits of entropy over {distinct} distinct characters; \
         at least {needed} are needed: use random bytes, e.g. `openssl rand -hex 48`"
    )]
    PredictableSecret {
        /// Distinct characters in the secret.
        distinct: usize,
        /// Its estimated entropy, in bits.
        bits: u64,
        /// The least accepted, in bits, for its length.
        needed: u64,
    },
    /// A setting of `[auth]` is unusable.
    #[error("{0}")]
    Config(String),
    /// Hashing or signing failed (internal).
    #[error("credential processing failed: {0}")]
    Hash(String),
}

/// Check a user or API key name: `[a-z][a-z0-9._-]{0,63}`.
pub fn check_name(name: &str) -> Result<(), AuthError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_BYTES
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(AuthError::InvalidName(capped(name))) }
}

/// Longest user or key name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// User input as it may appear in a log line, an event or a message: at most a little more
/// than a name's length, marked when cut (a 900 kB user name is not logged whole).
pub fn capped(input: &str) -> String {
    const KEEP: usize = MAX_NAME_BYTES + 16;
    if input.len() <= KEEP {
        return input.to_owned();
    }
    let mut end = KEEP;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &input[..end], input.len())
}

/// Compare two byte strings without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        assert!(check_name("ci-bot.prod_1").is_ok());
        for bad in ["", "Admin", "1abc", "a b", "ä", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        let huge = "é".repeat(450_000);
        let message = check_name(&huge).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.len() < 400 && message.contains("(900000 bytes)"), "{message}");
    }
}
