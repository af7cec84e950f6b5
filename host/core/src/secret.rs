//! Values that configure every layer: the run mode, and secrets that never reach a log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether the host runs for real or on a developer's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every safety check enforced; weak settings refuse to start.
    #[default]
    Production,
    /// Local development: may generate a JWT secret and allow direct execution, and says so loudly.
    Development,
}

/// A value that must never appear in a log or a response: `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}
