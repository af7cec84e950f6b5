//! Reading a decision document strictly. Anything but `{allow: bool, reasons: [{code, message}],
//! requirements: [string]}` is malformed, and a malformed answer is a denial.

use super::{Decision, POLICY_ERROR, PolicyError, Reason};
use toolgate_core::model::Category;

/// Turn the value of a decision rule into a [`Decision`], or say why it is malformed.
pub(super) fn parse(value: &regorus::Value, revision: &str) -> Result<Decision, String> {
    if *value == regorus::Value::Undefined {
        return Err("the decision is undefined".into());
    }
    let json = serde_json::to_value(value).map_err(|e| format!("cannot read the decision: {e}"))?;
    let doc = json.as_object().ok_or_else(|| format!("the decision is not an object: {json}"))?;
    let allow = doc.get("allow").ok_or("the decision has no `allow`")?.as_bool().ok_or("`allow` is not a boolean")?;
    let reasons = doc.get("reasons").ok_or("the decision has no `reasons`")?;
    let reasons = reasons
        .as_array()
        .ok_or("`reasons` is not an array")?
        .iter()
        .map(|r| {
            let code = r.get("code").and_then(|c| c.as_str()).filter(|c| !c.is_empty());
            let message = r.get("message").and_then(|m| m.as_str());
            match (code, message) {
                (Some(code), Some(message)) => Ok(Reason { code: code.to_owned(), message: message.to_owned() }),
                _ => Err(format!("a reason lacks a non-empty `code` or a `message`: {r}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let requirements = doc
        .get("requirements")
        .ok_or("the decision has no `requirements`")?
        .as_array()
        .ok_or("`requirements` is not an array")?
        .iter()
        .map(|r| r.as_str().map(str::to_owned).ok_or_else(|| format!("a requirement is not a string: {r}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !allow && reasons.is_empty() {
        return Err("the decision denies without a reason".into());
    }
    let category = match doc.get("category") {
        None | Some(serde_json::Value::Null) => None,
        Some(c) => Some(
            serde_json::from_value::<Category>(c.clone()).map_err(|_| format!("`category` is not a category: {c}"))?,
        ),
    };
    Ok(Decision { allow, reasons, requirements, category, revision: revision.to_owned() })
}

/// The fail-closed denial; its reason names the cause (also logged in full).
pub(super) fn policy_error(revision: &str, cause: &str) -> Decision {
    Decision {
        allow: false,
        reasons: vec![Reason {
            code: POLICY_ERROR.into(),
            message: format!("the policy could not decide, so the request is refused: {cause}"),
        }],
        requirements: Vec::new(),
        category: None,
        revision: revision.to_owned(),
    }
}

/// Longest cause quoted in a reason: enough for a location and a built-in's message.
const MAX_CAUSE: usize = 240;

/// What a `policy_error` reason says about `err`: the rule evaluated and the engine's error,
/// with its location and the source line that failed (which names the built-in) when the engine
/// gives them, on one line and bounded. The full error goes to the log.
pub(super) fn cause_of(err: &PolicyError) -> String {
    let PolicyError::Eval { rule, message } = err else {
        return bounded(err.to_string().lines().next().unwrap_or_default());
    };
    // regorus renders a located error as `--> file:line:col`, `N | source`, a caret, `error: msg`.
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let location = lines.iter().find_map(|l| l.strip_prefix("-->")).map(str::trim);
    let error = lines.iter().find_map(|l| l.strip_prefix("error:")).map(str::trim);
    let source = lines.iter().find_map(|l| {
        let (number, code) = l.split_once('|')?;
        let number = number.trim();
        (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then(|| code.trim())
    });
    match (location, error) {
        (Some(location), Some(error)) => {
            let source = source.map(|s| format!(" (in `{}`)", bounded(s))).unwrap_or_default();
            format!("evaluating `{rule}` failed at {location}: {}{source}", bounded(error))
        }
        _ => format!("evaluating `{rule}` failed: {}", bounded(lines.first().copied().unwrap_or("no message"))),
    }
}

fn bounded(line: &str) -> String {
    if line.chars().count() <= MAX_CAUSE {
        return line.to_owned();
    }
    line.chars().take(MAX_CAUSE).chain(['…']).collect()
}
