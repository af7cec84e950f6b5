//! The semantics of `opa test`: every `test_*` rule of every file must evaluate to `true`.
//! Anything else (false, undefined, an error) is a failure.

use std::collections::BTreeSet;

use super::set::PolicySet;

/// The result of one test rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    /// File that defines it, relative to the policy directory.
    pub file: String,
    /// Full rule path, e.g. `data.toolgate.action_test.test_viewer_read_allowed`.
    pub name: String,
    /// Whether it evaluated to `true`.
    pub passed: bool,
    /// What it evaluated to instead, or the error.
    pub detail: Option<String>,
}

/// Line coverage of one file over a whole test run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCoverage {
    /// File, relative to the policy directory.
    pub file: String,
    /// Lines evaluated.
    pub covered: usize,
    /// Lines that hold evaluable code.
    pub total: usize,
    /// Evaluable lines never evaluated.
    pub not_covered: Vec<u32>,
}

impl FileCoverage {
    /// Covered share in percent (100 for a file with no evaluable line).
    pub fn percent(&self) -> f64 {
        if self.total == 0 { 100.0 } else { self.covered as f64 * 100.0 / self.total as f64 }
    }
}

/// Every test outcome, and coverage when asked for.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// In file order, then rule order.
    pub outcomes: Vec<TestOutcome>,
    /// Per file, when coverage was enabled.
    pub coverage: Vec<FileCoverage>,
}

impl TestReport {
    /// Number of failed tests.
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.passed).count()
    }
}

/// Run every `test_*` rule of `set` on a clone of its prepared engine: the evaluator that
/// decides for the server, so a test passes here exactly when the server would agree.
pub fn run(set: &PolicySet, coverage: bool) -> TestReport {
    let mut engine = set.engine();
    engine.set_enable_coverage(coverage);
    let mut report = TestReport::default();
    for file in &set.sources().files {
        let Some(package) = package_of(&file.text) else { continue };
        for rule in test_rules(&file.text) {
            let name = format!("data.{package}.{rule}");
            let (passed, detail) = match engine.eval_rule(name.clone()) {
                Ok(regorus::Value::Bool(true)) => (true, None),
                Ok(regorus::Value::Undefined) => (false, Some("undefined (a condition did not hold)".to_owned())),
                Ok(other) => (false, Some(format!("evaluated to {other}"))),
                Err(e) => (false, Some(format!("error: {e}"))),
            };
            report.outcomes.push(TestOutcome { file: file.path.clone(), name, passed, detail });
        }
    }
    if coverage && let Ok(cov) = engine.get_coverage_report() {
        report.coverage = cov
            .files
            .iter()
            .map(|f| FileCoverage {
                file: f.path.clone(),
                covered: f.covered.len(),
                total: f.covered.len() + f.not_covered.len(),
                not_covered: f.not_covered.iter().copied().collect(),
            })
            .collect();
    }
    report
}

/// The package a file declares (`package a.b` → `a.b`).
pub(super) fn package_of(text: &str) -> Option<String> {
    text.lines().find_map(|l| l.trim().strip_prefix("package ").map(|p| p.trim().to_owned()))
}

/// Names of the `test_*` rules a file defines at the start of a line, each once, in order.
fn test_rules(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.lines()
        .filter(|l| l.starts_with("test_"))
        .map(|l| l.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        .filter(|name| seen.insert(name.clone()))
        .collect()
}
