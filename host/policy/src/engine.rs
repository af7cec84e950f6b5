//! The active policy set behind a lock, swapped whole on reload, and the two decision functions.

use std::sync::{Arc, Mutex, RwLock};

use super::decision;
use super::set::{Point, PolicySet};
use super::testing;
use super::watch::PolicyWatcher;
use super::{ActionInput, Decision, ExecInput, ExecPolicy, HostCallInput, PolicyConfig, PolicyError};
use toolgate_telemetry::{metrics, span};

/// Decides actions and commands with the active policy set; reloads it on demand.
///
/// INVARIANT: the active set was validated (parsed, compiled, and its tests passed unless
/// `test_on_reload = false`) before it was stored; a decision reads one set from start to end.
pub struct PolicyEngine {
    config: PolicyConfig,
    active: RwLock<Arc<PolicySet>>,
    last_reload_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").field("dir", &self.config.dir).field("revision", &self.revision()).finish()
    }
}

impl PolicyEngine {
    /// Load and validate the set in `config.dir`. An invalid set is an error: the server must
    /// not start without a valid policy.
    pub fn load(config: &PolicyConfig) -> Result<PolicyEngine, PolicyError> {
        let set = validated(config)?;
        tracing::info!(dir = %config.dir.display(), revision = set.revision(), "policy set loaded");
        Ok(PolicyEngine {
            config: config.clone(),
            active: RwLock::new(Arc::new(set)),
            last_reload_error: Mutex::new(None),
        })
    }

    /// The active set.
    pub fn active(&self) -> Arc<PolicySet> {
        // A poisoned lock still holds a whole, validated set: the swap is one assignment.
        self.active.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The active set's revision.
    pub fn revision(&self) -> String {
        self.active().revision().to_owned()
    }

    /// Read and validate the directory again and, if valid, make it the active set. On error
    /// the previous set stays active. Returns the active revision.
    pub fn reload(&self) -> Result<String, PolicyError> {
        let outcome = validated(&self.config);
        let mut last_error = self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(set) => {
                let revision = set.revision().to_owned();
                *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                *last_error = None;
                Ok(revision)
            }
            Err(e) => {
                *last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Why the last reload was refused, until a later one succeeds (for health checks).
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Watch the policy directory and reload on change (debounced); see [`PolicyWatcher`].
    pub fn watch(self: &Arc<Self>) -> Result<PolicyWatcher, PolicyError> {
        PolicyWatcher::start(self.clone(), &self.config.dir)
    }

    /// The `action` decision: may this caller run this tool now? Also what
    /// `POST /api/v1/policy/evaluate` returns; the decision carries the set's revision.
    pub fn decide_action(&self, input: &ActionInput) -> Decision {
        traced(Point::Action, || match serde_json::to_value(input) {
            Ok(input) => self.active().decide(Point::Action, &input),
            Err(e) => self.refuse(Point::Action, &PolicyError::Input(e.to_string())),
        })
    }

    /// Decide at `point` on a raw input document. Never fails: any error is a denial with the
    /// reason code [`Code::PolicyError`](toolgate_core::Code::PolicyError), and its cause is logged.
    pub fn decide(&self, point: Point, input: &serde_json::Value) -> Decision {
        traced(point, || self.active().decide(point, input))
    }

    fn refuse(&self, point: Point, err: &PolicyError) -> Decision {
        refuse(self.active().revision(), point, err)
    }
}

impl PolicySet {
    /// Decide at `point` with this set. Never fails: an error anywhere in the evaluation (a
    /// failing built-in included) or a malformed answer is a logged denial whose `policy_error`
    /// reason names the cause.
    pub fn decide(&self, point: Point, input: &serde_json::Value) -> Decision {
        let value = match self.evaluate(point, input) {
            Ok(value) => value,
            Err(e) => return refuse(self.revision(), point, &e),
        };
        match decision::parse(&value, self.revision()) {
            Ok(decision) => decision,
            Err(cause) => {
                tracing::error!(point = point.as_str(), revision = self.revision(), %cause, "malformed policy decision; denying");
                decision::policy_error(self.revision(), &cause)
            }
        }
    }
}

fn refuse(revision: &str, point: Point, err: &PolicyError) -> Decision {
    tracing::error!(point = point.as_str(), revision, error = %err, "policy evaluation failed; denying");
    decision::policy_error(revision, &decision::cause_of(err))
}

impl ExecPolicy for PolicyEngine {
    fn decide_exec(&self, input: &ExecInput) -> Decision {
        traced(Point::Exec, || match serde_json::to_value(input) {
            Ok(input) => self.active().decide(Point::Exec, &input),
            Err(e) => self.refuse(Point::Exec, &PolicyError::Input(e.to_string())),
        })
    }

    fn decide_host_call(&self, input: &HostCallInput) -> Decision {
        traced(Point::Host, || match serde_json::to_value(input) {
            Ok(input) => self.active().decide(Point::Host, &input),
            Err(e) => self.refuse(Point::Host, &PolicyError::Input(e.to_string())),
        })
    }
}

/// Run `decide` inside a `policy.decision` span (a child of the caller's span), then record the
/// outcome, reason codes and revision on it and in the decision metrics. Reason messages are not
/// recorded: codes are a fixed set, messages may quote the input.
fn traced(point: Point, decide: impl FnOnce() -> Decision) -> Decision {
    let span = span::policy(point.as_str());
    let decision = span.in_scope(decide);
    let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    span::record_decision(&span, decision.allow, &codes, &decision.revision);
    metrics::decision(point.as_str(), decision.allow, &codes);
    decision
}

/// Load the set of `config` and run its own tests unless `test_on_reload` is off.
fn validated(config: &PolicyConfig) -> Result<PolicySet, PolicyError> {
    let set = PolicySet::load(&config.dir, Some(config.min_justification_len))?;
    if config.test_on_reload {
        let report = testing::run(&set, false);
        let failed: Vec<String> =
            report.outcomes.iter().filter(|o| !o.passed).map(|o| format!("{}: {}", o.file, o.name)).collect();
        if !failed.is_empty() {
            return Err(PolicyError::TestsFailed { failed: failed.len(), total: report.outcomes.len(), names: failed });
        }
    }
    Ok(set)
}
