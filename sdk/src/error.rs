//! The error every tool and host call returns: the WIT `error` variant with constructors.

use crate::bindings::toolgate::plugin::types::Error as WitError;

/// Why a tool or a host call failed. It mirrors the WIT `error` variant case for case: the case is
/// what the host and its callers act on, the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The parameters are not acceptable; the message names the offending field.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// Refused by the capability grant or by policy; the message says which.
    #[error("denied: {0}")]
    Denied(String),
    /// The operation ran and failed.
    #[error("failed: {0}")]
    Failed(String),
    /// A resource the operation needs is not available now (e.g. the sandbox).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The operation ran out of time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The exec policy keeps this caller off the object (a unit or package outside its list).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The object does not exist (a unit, a package).
    #[error("not found: {0}")]
    NotFound(String),
    /// The system refused (polkit); the message is the system's.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

impl Error {
    /// The parameters are not acceptable; say which field and why.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::InvalidParams(message.into())
    }

    /// The tool refuses to act (the host uses it for grants and policy).
    pub fn denied(message: impl Into<String>) -> Self {
        Self::Denied(message.into())
    }

    /// The operation ran and failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }

    /// Something the operation needs is not available now; trying again later may work.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// The operation ran out of time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::Timeout(message.into())
    }

    /// The human message, without the case.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidParams(m)
            | Self::Denied(m)
            | Self::Failed(m)
            | Self::Unavailable(m)
            | Self::Timeout(m)
            | Self::NotAllowed(m)
            | Self::NotFound(m)
            | Self::PermissionDenied(m) => m,
        }
    }
}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::InvalidParams(m) => Self::InvalidParams(m),
            WitError::Denied(m) => Self::Denied(m),
            WitError::Failed(m) => Self::Failed(m),
            WitError::Unavailable(m) => Self::Unavailable(m),
            WitError::Timeout(m) => Self::Timeout(m),
            WitError::NotAllowed(m) => Self::NotAllowed(m),
            WitError::NotFound(m) => Self::NotFound(m),
            WitError::PermissionDenied(m) => Self::PermissionDenied(m),
        }
    }
}

impl From<Error> for WitError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidParams(m) => Self::InvalidParams(m),
            Error::Denied(m) => Self::Denied(m),
            Error::Failed(m) => Self::Failed(m),
            Error::Unavailable(m) => Self::Unavailable(m),
            Error::Timeout(m) => Self::Timeout(m),
            Error::NotAllowed(m) => Self::NotAllowed(m),
            Error::NotFound(m) => Self::NotFound(m),
            Error::PermissionDenied(m) => Self::PermissionDenied(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_crosses_the_boundary_unchanged() {
        let cases = [
            Error::invalid_params("field `text`: missing"),
            Error::denied("capability `workspace-write` not declared"),
            Error::failed("disk full"),
            Error::unavailable("no sandbox"),
            Error::timeout("killed after 5000 ms"),
        ];
        for error in cases {
            let back = Error::from(WitError::from(error.clone()));
            assert_eq!(back, error);
        }
    }

    #[test]
    fn display_names_the_case_and_keeps_the_message() {
        assert_eq!(
            Error::invalid_params("field `n`: expected a number").to_string(),
            "invalid params: field `n`: expected a number"
        );
        assert_eq!(Error::timeout("after 1 s").to_string(), "timeout: after 1 s");
        assert_eq!(Error::denied("no").message(), "no");
    }
}
