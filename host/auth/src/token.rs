//! Login tokens: HS256 JWTs with `sub`, `role`, `jti`, `iat`, `exp`, the user's session
//! generation `gen` and the time of the login the session started with, `auth_time`. Only HS256 is accepted; the
//! header's `alg` is checked before anything else so `none` and algorithm confusion are refused
//! with their own code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::AuthError;
use toolgate_core::Secret;
use toolgate_core::model::Role;

/// Shortest accepted signing secret, in characters.
pub const MIN_SECRET_CHARS: usize = 64;

/// Least estimated entropy of a signing secret, in bits per character: random hex (4) and base64
/// (6) clear it with room to spare, a short motif repeated (`abab…`, one letter 64 times) does not.
pub const MIN_SECRET_BITS_PER_CHAR: f64 = 3.0;

/// How strong a secret looks: its length, its distinct characters and the Shannon entropy of
/// its character frequencies (an upper bound of what it really holds: it cannot see patterns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecretStrength {
    /// Characters.
    pub chars: usize,
    /// Distinct characters.
    pub distinct: usize,
    /// Estimated entropy, in bits per character.
    pub bits_per_char: f64,
}

impl SecretStrength {
    /// Measure `secret`.
    pub fn of(secret: &str) -> SecretStrength {
        let mut counts = std::collections::HashMap::<char, usize>::new();
        for c in secret.chars() {
            *counts.entry(c).or_default() += 1;
        }
        let chars = secret.chars().count();
        let n = chars as f64;
        let bits_per_char = counts
            .values()
            .map(|&k| {
                let p = k as f64 / n;
                -p * p.log2()
            })
            .sum::<f64>();
        SecretStrength { chars, distinct: counts.len(), bits_per_char: bits_per_char.max(0.0) }
    }

    /// Estimated entropy of the whole secret, in bits.
    pub fn bits(&self) -> f64 {
        self.bits_per_char * self.chars as f64
    }

    /// `Ok` when long and varied enough to sign tokens, else what is missing.
    pub fn check(&self) -> Result<(), AuthError> {
        if self.chars < MIN_SECRET_CHARS {
            return Err(AuthError::WeakSecret(self.chars));
        }
        if self.bits_per_char < MIN_SECRET_BITS_PER_CHAR {
            return Err(AuthError::PredictableSecret {
                distinct: self.distinct,
                bits: self.bits().floor() as u64,
                needed: (MIN_SECRET_BITS_PER_CHAR * self.chars as f64).ceil() as u64,
            });
        }
        Ok(())
    }
}

/// The claims of a login token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// The role when the token was issued (the store's current role wins on each request).
    pub role: Role,
    /// Unique token id, what logout revokes.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds.
    pub exp: u64,
    /// The user's session generation when issued; a token of an older generation is dead
    /// (password change, disable, enable, role change).
    #[serde(default)]
    pub r#gen: u64,
    /// When the password was checked for the session this token continues (Unix seconds):
    /// refresh keeps it, and no token of the session outlives `auth_time + session_max_secs`.
    #[serde(default)]
    pub auth_time: u64,
}

/// Issues and checks tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    session_max_secs: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret`, valid `ttl_secs`; refuses a secret shorter than 64 characters
    /// or too predictable ([`SecretStrength::check`]).
    pub fn new(secret: &Secret, ttl_secs: u64) -> Result<Tokens, AuthError> {
        SecretStrength::of(secret.expose()).check()?;
        if ttl_secs == 0 {
            return Err(AuthError::Config("`auth.token_ttl_secs` must be at least 1".into()));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token is dead the second its `exp` passes.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Ok(Tokens {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
            ttl_secs,
            session_max_secs: u64::MAX,
        })
    }

    /// Sessions end `secs` after their login, however often they are refreshed.
    pub fn with_session_max(mut self, secs: u64) -> Result<Tokens, AuthError> {
        if secs == 0 {
            return Err(AuthError::Config("`auth.session_max_secs` must be at least 1".into()));
        }
        self.session_max_secs = secs;
        Ok(self)
    }

    /// A fresh token for `user` with `role` (generation 0), starting a session now.
    pub fn issue(&self, user: &str, role: Role) -> Result<(String, Claims), AuthError> {
        self.issue_session(user, role, 0, None)
    }

    /// A token for `user` with `role` of session generation `generation`: a new session, or the
    /// continuation of the one that logged in at `auth_time` (refused once it is over).
    pub fn issue_session(
        &self,
        user: &str,
        role: Role,
        generation: u64,
        auth_time: Option<u64>,
    ) -> Result<(String, Claims), AuthError> {
        let iat = now_secs();
        let auth_time = auth_time.unwrap_or(iat);
        let session_end = auth_time.saturating_add(self.session_max_secs);
        if session_end <= iat {
            return Err(AuthError::SessionOver);
        }
        let claims = Claims {
            sub: user.to_owned(),
            role,
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            exp: (iat + self.ttl_secs).min(session_end),
            r#gen: generation,
            auth_time,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of a valid, unexpired HS256 token signed with our secret. Revocation and the
    /// user's state are checked by the caller against the store.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        #[derive(Deserialize)]
        struct AlgOnly {
            alg: String,
        }
        let header = token.split('.').next().unwrap_or_default();
        let header: AlgOnly =
            B64URL.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or(AuthError::TokenInvalid)?;
        if header.alg != "HS256" {
            return Err(AuthError::TokenAlgorithm(header.alg));
        }
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::TokenAlgorithm(header.alg),
                _ => AuthError::TokenInvalid,
            }
        })
    }

    /// Lifetime of new tokens, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }
}

/// Now, in Unix seconds.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "9f2c41d07be85a3316cf0e94a27d5b8812e6fa03c9d45b7e60a1f82c3d9e47b5a0c6";

    fn tokens() -> anyhow::Result<Tokens> {
        Ok(Tokens::new(&Secret::new(STRONG), 60)?)
    }

    #[test]
    fn a_continued_session_never_outlives_its_login() -> anyhow::Result<()> {
        let tokens = tokens()?.with_session_max(100)?;
        let now = now_secs();
        let (_, claims) = tokens.issue_session("alice", Role::Viewer, 3, Some(now - 90))?;
        assert_eq!((claims.exp, claims.auth_time, claims.r#gen), (now + 10, now - 90, 3));
        let over = tokens.issue_session("alice", Role::Viewer, 3, Some(now - 100));
        assert!(matches!(over, Err(AuthError::SessionOver)), "{over:?}");
        Ok(())
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(Tokens::new(&Secret::new(&STRONG[..63]), 60), Err(AuthError::WeakSecret(63))));
    }

    #[test]
    fn a_long_but_predictable_secret_is_refused_saying_what_is_needed() {
        for weak in ["k".repeat(64), "ab".repeat(40), "abcdefg".repeat(10), format!("{}{}", "a".repeat(60), "bcdef")] {
            let err = Tokens::new(&Secret::new(weak.clone()), 60).err();
            assert!(matches!(err, Some(AuthError::PredictableSecret { .. })), "{weak}: {err:?}");
            let message = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("bits") && message.contains("openssl rand"), "{message}");
            assert!(!message.contains(&weak), "the secret is in the message: {message}");
        }
        assert_eq!(SecretStrength::of(&"k".repeat(64)).bits(), 0.0);
        // What the guide and `openssl rand` give pass: random hex, base64, and the test suites' secret.
        for strong in [
            STRONG,
            "bW9yZS1yYW5kb20tYnl0ZXMtdGhhbi10aGlzLWluLXJlYWwtbGlmZS1idXQtZmluZQ==",
            "e2e-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        ] {
            assert!(Tokens::new(&Secret::new(strong), 60).is_ok(), "{strong}");
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_claims() -> anyhow::Result<()> {
        let tokens = tokens()?;
        let (token, claims) = tokens.issue("alice", Role::Operator)?;
        assert_eq!(tokens.verify(&token)?, claims);
        assert_eq!(claims.exp - claims.iat, 60);
        Ok(())
    }

    #[test]
    fn forged_tokens_are_refused_with_their_reason() -> anyhow::Result<()> {
        let tokens = tokens()?;
        let (token, _) = tokens.issue("alice", Role::Viewer)?;
        let mut parts: Vec<&str> = token.split('.').collect();
        let none = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        parts[0] = &none;
        assert!(matches!(tokens.verify(&format!("{}.{}.", parts[0], parts[1])), Err(AuthError::TokenAlgorithm(_))));
        let other = Tokens::new(&Secret::new(STRONG.chars().rev().collect::<String>()), 60)?;
        let (foreign, _) = other.issue("alice", Role::Admin)?;
        assert!(matches!(tokens.verify(&foreign), Err(AuthError::TokenInvalid)));
        assert!(matches!(tokens.verify("garbage"), Err(AuthError::TokenInvalid)));
        Ok(())
    }
}
