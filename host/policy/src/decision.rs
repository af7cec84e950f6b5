//! Reading a decision document strictly, and what the host asks of a [`Decision`].
//!
//! Anything but `{allow: bool, reasons: [{code, message}], requirements: [requirement]}` is
//! malformed (a requirement is one of `verify`, `rollback`, `approval`, `justification`), and a
//! malformed answer is a denial.

use super::{Decision, PolicyError, Reason, Requirement};
use toolgate_core::Code;
use toolgate_core::model::Category;

impl Decision {
    /// Whether the action must also satisfy `requirement`.
    pub fn requires(&self, requirement: Requirement) -> bool {
        self.requirements.contains(&requirement)
    }

    /// Whether every reason is one of `codes`: all that stands between the caller and the action
    /// is what those codes ask for (true of a decision without reasons).
    pub fn only_missing(&self, codes: &[Code]) -> bool {
        self.reasons.iter().all(|r| codes.iter().any(|c| r.is(*c)))
    }

    /// The reason a denial answers with: what the caller can do least about (see
    /// [`denial_rank`]); the first of equal rank, in the decision's order. `None` without reasons.
    pub fn weightiest_reason(&self) -> Option<&Reason> {
        self.reasons.iter().min_by_key(|r| denial_rank(r))
    }
}

/// Rank of a denial reason, lowest first: what the caller can do least about comes first (Rego
/// sorts reasons by code, so a viewer calling a CRITICAL tool would otherwise read
/// `approval_required`).
fn denial_rank(reason: &Reason) -> u8 {
    match Code::parse(&reason.code) {
        Some(Code::RoleInsufficient) => 0,
        Some(Code::PolicyError) => 1,
        Some(Code::JustificationRequired) => 3,
        Some(Code::ApprovalRequired | Code::ApprovalRejected | Code::ApprovalExpired) => 4,
        // An operator's own `approval_*` code is about the approval too.
        None if reason.code.starts_with("approval_") => 4,
        // Codes of operators' own rules: nothing says the caller can satisfy them.
        _ => 2,
    }
}

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
        .map(|r| {
            let name = r.as_str().ok_or_else(|| format!("a requirement is not a string: {r}"))?;
            Requirement::parse(name).ok_or_else(|| {
                format!("a requirement is not one of `verify`, `rollback`, `approval`, `justification`: {r}")
            })
        })
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
        reasons: vec![Reason::new(
            Code::PolicyError,
            format!("the policy could not decide, so the request is refused: {cause}"),
        )],
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

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(codes: &[&str]) -> Decision {
        let reasons = codes.iter().map(|c| Reason { code: (*c).to_owned(), message: format!("{c}!") }).collect();
        Decision { allow: false, reasons, requirements: vec![], category: None, revision: "sha256:0".to_owned() }
    }

    #[test]
    fn a_denial_answers_with_its_weightiest_reason() {
        let cases: [(&[&str], Option<&str>); 7] = [
            (&["approval_required", "justification_required", "role_insufficient"], Some("role_insufficient")),
            (&["approval_required", "policy_error"], Some("policy_error")),
            (&["approval_expired", "justification_required", "maintenance_window"], Some("maintenance_window")),
            (&["approval_required", "justification_required"], Some("justification_required")),
            (&["approval_rejected", "approval_required"], Some("approval_rejected")),
            (&["approval_by_cab", "change_freeze"], Some("change_freeze")),
            (&[], None),
        ];
        for (codes, want) in cases {
            let decision = denial(codes);
            assert_eq!(decision.weightiest_reason().map(|r| r.code.as_str()), want, "{codes:?}");
        }
    }

    #[test]
    fn only_missing_names_what_stands_in_the_way() {
        let approval = [Code::ApprovalRequired];
        assert!(denial(&["approval_required"]).only_missing(&approval));
        assert!(!denial(&["approval_required", "justification_required"]).only_missing(&approval));
        assert!(!denial(&["approval_required_by_cab"]).only_missing(&approval), "an operator's code is not ours");
        let actionable = [Code::JustificationRequired, Code::ApprovalRequired];
        assert!(denial(&["approval_required", "justification_required"]).only_missing(&actionable));
        assert!(denial(&[]).only_missing(&actionable));
    }

    #[test]
    fn requirements_have_the_policy_names_and_unknown_ones_are_malformed() -> Result<(), String> {
        for requirement in Requirement::ALL {
            let json = serde_json::to_value(requirement).map_err(|e| e.to_string())?;
            assert_eq!(json, serde_json::json!(requirement.as_str()));
            assert_eq!(serde_json::from_value::<Requirement>(json).ok(), Some(requirement));
        }
        let names: Vec<&str> = Requirement::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["verify", "rollback", "approval", "justification"]);
        let doc = |requirements: serde_json::Value| {
            let json = serde_json::json!({ "allow": true, "reasons": [], "requirements": requirements });
            regorus::Value::from_json_str(&json.to_string()).map_err(|e| e.to_string())
        };
        let decision = parse(&doc(serde_json::json!(["justification", "verify"]))?, "r")?;
        assert!(decision.requires(Requirement::Verify) && decision.requires(Requirement::Justification));
        assert!(!decision.requires(Requirement::Approval));
        let err = parse(&doc(serde_json::json!(["verfy"]))?, "r").err().unwrap_or_default();
        assert!(err.contains("verfy"), "{err}");
        Ok(())
    }
}
