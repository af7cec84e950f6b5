//! Calls whose category follows the command they run (`run_command`): the host splits the
//! command line for the action policy, which classifies it, and the call then runs at the
//! category the policy decided.

use std::borrow::Cow;

use serde_json::Value;

use toolgate_policy::Decision;
use toolgate_runtime::{PluginError, ToolInfo};
use toolgate_sandbox::split_command;

/// The argv of a call's command line: the `command` parameter, when the tool has one, split the
/// way the sandbox would run it (no shell; shell tokens refused). `None` for other tools. A line
/// that cannot run (a shell token, an unbalanced quote) is refused here, before any decision.
pub fn command_line(tool: &ToolInfo, params: &Value) -> Result<Option<Vec<String>>, PluginError> {
    let Some(line) = params.get("command").and_then(Value::as_str) else {
        return Ok(None);
    };
    split_command(line)
        .map(Some)
        .map_err(|e| PluginError::InvalidParams { tool: tool.name.to_string(), message: format!("`command`: {e}") })
}

/// The tool as the call runs: at the category `decision` names (the class of its command for a
/// `run_command` call), or its own when the decision names none.
pub fn at_decided_category<'a>(tool: &'a ToolInfo, decision: &Decision) -> Cow<'a, ToolInfo> {
    match decision.category {
        Some(category) if category != tool.category => Cow::Owned(ToolInfo { category, ..tool.clone() }),
        _ => Cow::Borrowed(tool),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;
    use toolgate_core::model::Category;

    fn tool() -> ToolInfo {
        ToolInfo {
            name: "run_command".parse().expect("name"),
            plugin: "command".parse().expect("plugin"),
            description: String::new(),
            category: Category::Moderate,
            params_schema: Value::Null,
            output_schema: Value::Null,
            supports_verify: false,
            supports_rollback: false,
            capabilities: Vec::new(),
        }
    }

    #[test]
    fn a_command_line_is_split_as_the_sandbox_runs_it() {
        let argv = command_line(&tool(), &serde_json::json!({"command": "ls -lah '/work space'"})).expect("split");
        assert_eq!(argv, Some(vec!["ls".to_owned(), "-lah".to_owned(), "/work space".to_owned()]));
        assert_eq!(command_line(&tool(), &serde_json::json!({"unit": "nginx"})).expect("no command"), None);
    }

    #[test]
    fn a_command_line_with_shell_tokens_is_refused_before_any_decision() {
        for line in ["ls & id", "echo ${IFS}", "ls; id", "'unbalanced"] {
            let err = command_line(&tool(), &serde_json::json!({ "command": line })).expect_err(line);
            assert!(
                matches!(&err, PluginError::InvalidParams { message, .. } if message.starts_with("`command`")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_call_runs_at_the_decided_category() {
        let tool = tool();
        let mut decision = Decision {
            allow: true,
            reasons: Vec::new(),
            requirements: Vec::new(),
            category: Some(Category::Read),
            revision: String::new(),
        };
        assert_eq!(at_decided_category(&tool, &decision).category, Category::Read);
        decision.category = None;
        assert_eq!(at_decided_category(&tool, &decision).category, Category::Moderate);
    }
}
