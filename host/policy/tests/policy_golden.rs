//! The default policies against their golden cases, through the host's one evaluator and the
//! reference OPA engine: both must give the wanted decision, and the same document.

#[path = "policy_support/golden.rs"]
mod golden;
#[path = "policy_support/opa.rs"]
mod opa;

use std::collections::BTreeSet;

use toolgate_policy::{Decision, Point, PolicySet};

use golden::{Want, cases, policy_dir};

fn want_of(d: &Decision) -> Want {
    Want {
        allow: d.allow,
        reasons: d.reasons.iter().map(|r| r.code.clone()).collect(),
        requirements: d.requirements.iter().map(|r| r.as_str().to_owned()).collect(),
        category: d.category.map(|c| c.to_string()),
    }
}

/// The decision document as the policy wrote it (without the host's revision); an action
/// decision names its category (`null` when it has none).
fn document(d: &Decision, point: Point) -> serde_json::Value {
    let mut doc = serde_json::json!({"allow": d.allow, "reasons": d.reasons, "requirements": d.requirements});
    if point == Point::Action {
        doc["category"] = serde_json::json!(d.category);
    }
    doc
}

#[test]
fn the_policy_set_gives_the_wanted_decisions() -> anyhow::Result<()> {
    let set = PolicySet::load(&policy_dir(), None)?;
    let cases = cases()?;
    assert!(cases.len() > 50, "golden cases went missing: {}", cases.len());
    let mut failures = Vec::new();
    for (file, case) in &cases {
        let decided = set.decide(case.point, &case.input);
        if want_of(&decided) != case.want {
            failures.push(format!("{file}: {}: gave {:?}, want {:?}", case.note, want_of(&decided), case.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn reference_opa_agrees_on_every_golden_case() -> anyhow::Result<()> {
    let set = PolicySet::load(&policy_dir(), None)?;
    let opa = opa::load_set(&set)?;
    let mut failures = Vec::new();
    for (file, case) in cases()? {
        let ours = document(&set.decide(case.point, &case.input), case.point);
        let path = case.point.rule().trim_start_matches("data.");
        match opa.eval(path, &case.input)? {
            Some(theirs) if theirs == ours => {}
            other => failures.push(format!("{file}: {}: OPA gave {other:?}, regorus {ours}", case.note)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[test]
fn golden_cases_cover_every_reason_code_and_every_role_and_category() -> anyhow::Result<()> {
    // Every reason code the policies can emit (`"code": "..."` in a rule head).
    let mut emitted = BTreeSet::new();
    for file in PolicySet::load(&policy_dir(), None)?.sources().files.iter().filter(|f| !f.path.ends_with("_test.rego"))
    {
        for piece in file.text.split("\"code\": \"").skip(1) {
            emitted.insert(piece.split('"').next().unwrap_or_default().to_owned());
        }
    }
    assert!(emitted.len() >= 9, "reason codes not found in the policy files: {emitted:?}");
    let cases = cases()?;
    let covered: BTreeSet<String> = cases.iter().flat_map(|(_, c)| c.want.reasons.clone()).collect();
    let missing: Vec<_> = emitted.difference(&covered).collect();
    assert!(missing.is_empty(), "reason codes without a golden case: {missing:?}");

    let pairs: BTreeSet<(String, String)> = cases
        .iter()
        .filter_map(|(_, c)| {
            Some((
                c.input.pointer("/caller/role")?.as_str()?.to_owned(),
                c.input.pointer("/tool/category")?.as_str()?.to_owned(),
            ))
        })
        .filter(|_| true)
        .collect();
    for role in ["viewer", "operator", "admin"] {
        for category in ["READ", "SAFE", "MODERATE", "SENSITIVE", "CRITICAL"] {
            assert!(pairs.contains(&(role.to_owned(), category.to_owned())), "no golden case for {role} x {category}");
        }
    }
    Ok(())
}
