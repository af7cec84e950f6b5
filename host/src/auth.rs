//! Accounts and credentials: scrypt password hashes, HS256 JWTs, API keys.

use serde::{Deserialize, Serialize};

/// `[auth]`: accounts and tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a login token, in seconds.
    pub token_ttl_secs: u64,
    /// Whether `POST /api/v1/auth/register` is open (new users are viewers).
    pub register_enabled: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { token_ttl_secs: 24 * 3600, register_enabled: false }
    }
}
