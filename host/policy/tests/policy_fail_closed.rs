//! Fail closed: whatever goes wrong with the policy (missing rule, run-time error, undefined
//! result, malformed document), the host denies with `policy_error`; a broken reload keeps the
//! last good set; a broken set at start-up is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use toolgate_core::Code;
use toolgate_core::model::{AuthMethod, Category, Role};
use toolgate_policy::{
    ActionInput, ApprovalState, CallerInput, Decision, ExecInput, ExecPolicy, PolicyConfig, PolicyEngine, PolicyError,
    Requirement, ToolInput,
};

const EXEC_OK: &str = r#"package toolgate.exec

decision := {"allow": input.argv == ["echo", "hi"], "reasons": reasons, "requirements": []}

reasons := [] if input.argv == ["echo", "hi"]
else := [{"code": "command_not_allowed", "message": "only echo hi"}]
"#;

const HOST_NONE: &str = "package toolgate.host\n\ndecision := {\"allow\": false, \"reasons\": [{\"code\": \"not_allowed\", \"message\": \"no host calls\"}], \"requirements\": []}\n";

fn action_rego(decision_body: &str) -> String {
    format!("package toolgate.action\n\n{decision_body}\n")
}

fn write_set(dir: &Path, action: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join("action.rego"), action_rego(action))?;
    std::fs::write(dir.join("exec.rego"), EXEC_OK)?;
    std::fs::write(dir.join("host.rego"), HOST_NONE)?;
    Ok(())
}

fn config(dir: &Path) -> PolicyConfig {
    PolicyConfig { dir: dir.to_owned(), min_justification_len: 10, test_on_reload: true }
}

fn caller(role: Role) -> CallerInput {
    CallerInput { user: "carol".into(), role, auth_method: AuthMethod::Password, source_ip: None }
}

fn tool(category: Category) -> ToolInput {
    ToolInput {
        name: "run_echo".into(),
        plugin: "well_behaved".into(),
        category,
        supports_verify: false,
        supports_rollback: false,
        capabilities: vec!["exec:default".into()],
    }
}

fn action(role: Role, category: Category, justification: Option<&str>) -> ActionInput {
    ActionInput {
        caller: caller(role),
        tool: tool(category),
        params: serde_json::json!({}),
        justification: justification.map(str::to_owned),
        approval: ApprovalState::None,
        dry_run: true,
        command: None,
        rollback: None,
    }
}

fn is_policy_error(d: &Decision) -> bool {
    !d.allow && d.reasons.len() == 1 && d.reasons[0].is(Code::PolicyError) && !d.revision.is_empty()
}

/// Load a set whose action decision is `body`, and decide one action.
fn decide_with(body: &str) -> anyhow::Result<Decision> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), body)?;
    let input = action(Role::Admin, Category::Read, None);
    Ok(PolicyEngine::load(&config(dir.path()))?.decide_action(&input))
}

#[test]
fn a_well_formed_allow_is_returned_as_is() -> anyhow::Result<()> {
    let d = decide_with(r#"decision := {"allow": true, "reasons": [], "requirements": ["verify"]}"#)?;
    assert!(d.allow, "{d:?}");
    assert_eq!(d.requirements, [Requirement::Verify]);
    Ok(())
}

#[test]
fn an_undefined_decision_denies() -> anyhow::Result<()> {
    let d = decide_with(r#"decision := {"allow": true, "reasons": [], "requirements": []} if input.never"#)?;
    assert!(is_policy_error(&d), "{d:?}");
    assert!(d.reasons[0].message.contains("the decision is undefined"), "the reason names the cause: {d:?}");
    Ok(())
}

#[test]
fn a_runtime_error_denies() -> anyhow::Result<()> {
    // Two complete definitions that both hold with different values: an evaluation error.
    let body = r#"decision := {"allow": true, "reasons": [], "requirements": []} if input.caller.role == "admin"
decision := {"allow": false, "reasons": [{"code": "x", "message": "y"}], "requirements": []} if input.dry_run"#;
    let d = decide_with(body)?;
    assert!(is_policy_error(&d), "{d:?}");
    Ok(())
}

/// An allowing decision built from a `deny` set whose one rule runs `condition`.
fn deny_if(condition: &str) -> String {
    format!(
        r#"decision := {{"allow": count(deny) == 0, "reasons": [r | some r in deny], "requirements": []}}

deny contains {{"code": "change_freeze", "message": "frozen"}} if {{
	{condition}
}}"#
    )
}

#[test]
fn a_deny_rule_whose_builtin_fails_denies_naming_the_error() -> anyhow::Result<()> {
    // Each of these would silently drop the deny rule, and so allow, if a failing built-in were
    // undefined rather than an error. The reason quotes the error, and where the engine locates
    // it, the place and the source line (which names the built-in).
    let failing: [(&str, &[&str]); 4] = [
        (r#"time.parse_rfc3339_ns("not a date") > 0"#, &["Failed to parse datetime"]),
        (r#"sprintf("%s since %s", ["a"]) != """#, &["action.rego:6:", "no argument specified", "`sprintf("]),
        (r#"to_number("ten") > 1"#, &["action.rego:6:", "could not parse string as number", "`to_number("]),
        (r#"regex.match("(", "x")"#, &["action.rego:6:", "invalid regex", "`regex.match("]),
    ];
    for (condition, named) in failing {
        let d = decide_with(&deny_if(condition))?;
        assert!(is_policy_error(&d), "{condition}: {d:?}");
        let message = &d.reasons[0].message;
        assert!(message.contains("`data.toolgate.action.decision`"), "{message}");
        for part in named {
            assert!(message.contains(part), "{condition}: `{part}` not in {message}");
        }
    }
    // The same rule with a valid argument decides normally.
    let d = decide_with(&deny_if(r#"time.parse_rfc3339_ns("2026-01-01T00:00:00Z") > 0"#))?;
    assert_eq!(d.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), ["change_freeze"], "{d:?}");
    Ok(())
}

#[test]
fn a_builtin_that_fails_under_not_denies() -> anyhow::Result<()> {
    // `not f(x)` must not turn an error into true.
    let d = decide_with(&deny_if(r#"not time.parse_rfc3339_ns("garbage") > 0"#))?;
    assert!(is_policy_error(&d), "{d:?}");
    Ok(())
}

#[test]
fn malformed_documents_deny() -> anyhow::Result<()> {
    let malformed = [
        r#"decision := true"#,
        r#"decision := {"reasons": [], "requirements": []}"#,
        r#"decision := {"allow": "yes", "reasons": [], "requirements": []}"#,
        r#"decision := {"allow": 1, "reasons": [], "requirements": []}"#,
        r#"decision := {"allow": true, "reasons": [{"message": "no code"}], "requirements": []}"#,
        r#"decision := {"allow": true, "reasons": [{"code": "", "message": "empty code"}], "requirements": []}"#,
        r#"decision := {"allow": true, "reasons": "none", "requirements": []}"#,
        r#"decision := {"allow": true, "reasons": []}"#,
        r#"decision := {"allow": true, "reasons": [], "requirements": [1]}"#,
        r#"decision := {"allow": true, "reasons": [], "requirements": ["verfy"]}"#,
        r#"decision := {"allow": false, "reasons": [], "requirements": []}"#,
    ];
    for body in malformed {
        let d = decide_with(body)?;
        assert!(is_policy_error(&d), "{body}: {d:?}");
    }
    Ok(())
}

#[test]
fn a_set_without_a_decision_rule_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("exec.rego"), EXEC_OK)?;
    std::fs::write(dir.path().join("host.rego"), HOST_NONE)?;
    std::fs::write(dir.path().join("action.rego"), "package toolgate.action\n\nallow := true\n")?;
    let err = PolicyEngine::load(&config(dir.path())).err();
    assert!(matches!(&err, Some(PolicyError::MissingRule(rule)) if rule == "data.toolgate.action.decision"), "{err:?}");
    Ok(())
}

#[test]
fn an_empty_or_missing_directory_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    assert!(matches!(PolicyEngine::load(&config(dir.path())), Err(PolicyError::Empty(_))));
    let missing = dir.path().join("nope");
    assert!(matches!(PolicyEngine::load(&config(&missing)), Err(PolicyError::Read { .. })));
    Ok(())
}

#[test]
fn a_syntax_error_at_start_up_is_refused_with_its_location() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), "decision := {\"allow\": true,, }")?;
    let err = PolicyEngine::load(&config(dir.path())).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("action.rego:3:"), "{err}");
    assert!(err.contains('^'), "{err}");
    Ok(())
}

#[test]
fn exec_decisions_go_through_the_exec_rule() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), r#"decision := {"allow": true, "reasons": [], "requirements": []}"#)?;
    let engine = PolicyEngine::load(&config(dir.path()))?;
    let exec = |argv: &[&str]| ExecInput {
        caller: caller(Role::Viewer),
        tool: tool(Category::Read),
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        profile: "default".into(),
    };
    assert!(engine.decide_exec(&exec(&["echo", "hi"])).allow);
    let denied = engine.decide_exec(&exec(&["rm", "-rf", "/"]));
    assert!(!denied.allow && denied.reasons[0].code == "command_not_allowed", "{denied:?}");
    Ok(())
}

#[test]
fn a_broken_reload_keeps_the_last_good_set() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), r#"decision := {"allow": true, "reasons": [], "requirements": []}"#)?;
    let engine = PolicyEngine::load(&config(dir.path()))?;
    let good = engine.revision();
    let input = action(Role::Viewer, Category::Read, None);

    write_set(dir.path(), "decision := {\"allow\": false,, }")?;
    assert!(matches!(engine.reload(), Err(PolicyError::Invalid(_))));
    assert_eq!(engine.revision(), good);
    assert!(engine.decide_action(&input).allow, "the last good set must still decide");

    // A valid change is swapped in and its revision shows in every decision.
    write_set(
        dir.path(),
        r#"decision := {"allow": false, "reasons": [{"code": "closed", "message": "m"}], "requirements": []}"#,
    )?;
    let new = engine.reload()?;
    assert_ne!(new, good);
    let d = engine.decide_action(&input);
    assert!(!d.allow && d.revision == new, "{d:?}");
    Ok(())
}

#[test]
fn a_reload_whose_own_tests_fail_is_refused_unless_tests_are_disabled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), r#"decision := {"allow": true, "reasons": [], "requirements": []}"#)?;
    let engine = PolicyEngine::load(&config(dir.path()))?;
    let good = engine.revision();
    std::fs::write(dir.path().join("action_test.rego"), "package toolgate.action_test\n\ntest_fails if false\n")?;
    let err = engine.reload().err();
    assert!(matches!(&err, Some(PolicyError::TestsFailed { failed: 1, .. })), "{err:?}");
    assert_eq!(engine.revision(), good);

    let untested = PolicyEngine::load(&PolicyConfig { test_on_reload: false, ..config(dir.path()) })?;
    assert_ne!(untested.revision(), good);
    Ok(())
}

#[test]
fn the_configured_justification_length_overrides_the_data_file() -> anyhow::Result<()> {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let input = action(Role::Admin, Category::Sensitive, Some("twelve chars"));
    let default = PolicyEngine::load(&PolicyConfig { dir: policies.clone(), ..PolicyConfig::default() })?;
    assert!(default.decide_action(&input).allow);
    let strict = PolicyEngine::load(&PolicyConfig { dir: policies, min_justification_len: 20, test_on_reload: true })?;
    let d = strict.decide_action(&input);
    assert_eq!(d.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), ["justification_required"]);
    assert!(d.reasons[0].message.contains("20 characters"), "{d:?}");
    Ok(())
}

/// Wait until `cond` holds; the watcher works in the background.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_watcher_swaps_valid_changes_and_refuses_broken_ones() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_set(dir.path(), r#"decision := {"allow": true, "reasons": [], "requirements": []}"#)?;
    let engine = Arc::new(PolicyEngine::load(&config(dir.path()))?);
    let _watch = engine.watch()?;
    let first = engine.revision();
    let input = action(Role::Viewer, Category::Read, None);

    write_set(
        dir.path(),
        r#"decision := {"allow": false, "reasons": [{"code": "closed", "message": "m"}], "requirements": []}"#,
    )?;
    assert!(eventually(|| engine.revision() != first), "the change was not picked up");
    let second = engine.revision();
    assert!(!engine.decide_action(&input).allow);

    write_set(dir.path(), "decision := {{{")?;
    assert!(eventually(|| engine.last_reload_error().is_some()), "the broken change was not seen");
    let error = engine.last_reload_error().unwrap_or_default();
    assert!(error.starts_with("action.rego:") && error.contains('^'), "{error}");
    assert_eq!(engine.revision(), second);
    assert!(!engine.decide_action(&input).allow);

    // Fixed again: swapped in, and the error is cleared.
    write_set(dir.path(), r#"decision := {"allow": true, "reasons": [], "requirements": []}"#)?;
    assert!(eventually(|| engine.last_reload_error().is_none() && engine.revision() != second));
    assert!(engine.decide_action(&input).allow);
    Ok(())
}
