//! [`Code`]: the stable codes the host itself produces or compares, as they cross layers: the
//! reason codes of a decision it acts on, and the codes of a failed action.
//!
//! A policy may give reasons with codes of its own (an operator's `change_freeze`): those stay
//! strings where they are carried (a decision's reasons) and are compared through
//! [`Code::parse`], which knows only these.

use serde::{Deserialize, Serialize};

/// A stable machine code; its serde name and [`Code::as_str`] are the wire string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    // Reasons of a decision the host acts on.
    /// The action waits for a second admin (CRITICAL).
    ApprovalRequired,
    /// The second admin refused.
    ApprovalRejected,
    /// The approval window closed.
    ApprovalExpired,
    /// The call lacks a justification long enough.
    JustificationRequired,
    /// The caller's role may not do this.
    RoleInsufficient,
    /// The reason of every fail-closed denial: the policy is missing, failed (a built-in's error
    /// included), or answered something malformed. Its message names the cause (the rule and the
    /// engine's first line); the full error is logged.
    PolicyError,
    // Why an action failed.
    /// The tool refused its parameters.
    InvalidParams,
    /// The exec policy refused a command the tool ran.
    ExecDenied,
    /// The exec policy keeps the caller off a unit or package the tool touched.
    NotAllowed,
    /// A unit or package the tool named does not exist.
    NotFound,
    /// The system refused the tool's call (polkit), with the system's message.
    PermissionDenied,
    /// The sandbox or the engine is down.
    Unavailable,
    /// The tool ran out of time.
    Timeout,
    /// The tool reported a failure.
    ToolFailed,
    /// The plugin failed (trapped, broke its contract).
    PluginFailed,
    /// The plugin's output exceeded its cap.
    PluginOutputTooLarge,
    /// Verify found the effect missing, or failed.
    VerifyFailed,
    /// `VERIFY_REQUIRED` and the tool cannot verify.
    VerifyUnavailable,
    /// The rollback ran and failed.
    RollbackFailed,
    /// The rollback could not start (plugin not loaded, sandbox down).
    RollbackUnavailable,
    /// The server stopped while the action ran.
    Interrupted,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 21] = [
        Code::ApprovalRequired,
        Code::ApprovalRejected,
        Code::ApprovalExpired,
        Code::JustificationRequired,
        Code::RoleInsufficient,
        Code::PolicyError,
        Code::InvalidParams,
        Code::ExecDenied,
        Code::NotAllowed,
        Code::NotFound,
        Code::PermissionDenied,
        Code::Unavailable,
        Code::Timeout,
        Code::ToolFailed,
        Code::PluginFailed,
        Code::PluginOutputTooLarge,
        Code::VerifyFailed,
        Code::VerifyUnavailable,
        Code::RollbackFailed,
        Code::RollbackUnavailable,
        Code::Interrupted,
    ];

    /// The wire name (`approval_required`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::ApprovalRequired => "approval_required",
            Code::ApprovalRejected => "approval_rejected",
            Code::ApprovalExpired => "approval_expired",
            Code::JustificationRequired => "justification_required",
            Code::RoleInsufficient => "role_insufficient",
            Code::PolicyError => "policy_error",
            Code::InvalidParams => "invalid_params",
            Code::ExecDenied => "exec_denied",
            Code::NotAllowed => "not_allowed",
            Code::NotFound => "not_found",
            Code::PermissionDenied => "permission_denied",
            Code::Unavailable => "unavailable",
            Code::Timeout => "timeout",
            Code::ToolFailed => "tool_failed",
            Code::PluginFailed => "plugin_failed",
            Code::PluginOutputTooLarge => "plugin_output_too_large",
            Code::VerifyFailed => "verify_failed",
            Code::VerifyUnavailable => "verify_unavailable",
            Code::RollbackFailed => "rollback_failed",
            Code::RollbackUnavailable => "rollback_unavailable",
            Code::Interrupted => "interrupted",
        }
    }

    /// The code named `s`, if the host knows it (a policy's own codes it does not).
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Code> for String {
    fn from(code: Code) -> String {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_wire_strings() -> anyhow::Result<()> {
        for code in Code::ALL {
            let json = serde_json::to_value(code)?;
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(serde_json::from_value::<Code>(json)?, code);
            assert_eq!(Code::parse(code.as_str()), Some(code));
        }
        assert_eq!(Code::PolicyError.as_str(), "policy_error");
        assert_eq!(Code::PluginOutputTooLarge.as_str(), "plugin_output_too_large");
        assert_eq!(Code::parse("change_freeze"), None, "a policy's own code");
        Ok(())
    }
}
