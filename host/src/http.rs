//! The HTTP API under `/api/v1`, served by axum over hyper.

use serde::{Deserialize, Serialize};

/// `[http]`: request limits, rate limits and TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { body_limit_bytes: 1024 * 1024 }
    }
}
