//! `sandbox.exec`: grant check, then the exec policy (no policy means deny), then the executor.

use std::time::Duration;

use super::{require, sandbox_error, traced};
use crate::bindings::Error;
use crate::bindings::toolgate::plugin::sandbox::{ExecOutput, ExecRequest, Host};
use crate::manifest::Capability;
use crate::state::{CallInfo, HostState};
use toolgate_core::AuditEvent;
use toolgate_policy::{CallerInput, Decision, ExecInput};
use toolgate_sandbox::{self as sandbox, ExecOrigin};

impl Host for HostState {
    async fn exec(&mut self, request: ExecRequest) -> wasmtime::Result<Result<ExecOutput, Error>> {
        traced("sandbox", "exec", self.exec_checked(request)).await
    }
}

impl HostState {
    async fn exec_checked(&mut self, request: ExecRequest) -> wasmtime::Result<Result<ExecOutput, Error>> {
        let call = self.call()?;
        if let Err(e) = require(&call, &Capability::Exec(request.profile.clone())) {
            self.record(&call, &request, false, "capability_not_declared");
            return Ok(Err(e));
        }
        if request.argv.first().is_none_or(|p| p.is_empty()) {
            return Ok(Err(Error::InvalidParams("`argv` must name a program".into())));
        }
        let Some(policy) = self.services.exec_policy.clone() else {
            self.record(&call, &request, false, "no_exec_policy");
            return Ok(Err(Error::Denied("no exec policy is configured, so no command may run".into())));
        };
        let input = ExecInput {
            caller: CallerInput::from(&call.context.caller),
            tool: call.tool.clone(),
            argv: request.argv.clone(),
            profile: request.profile.clone(),
        };
        let decision = policy.decide_exec(&input);
        self.record_decision(&call, &request, &decision);
        if !decision.allow {
            let reasons: Vec<String> = decision.reasons.iter().map(|r| format!("{} ({})", r.message, r.code)).collect();
            return Ok(Err(Error::Denied(format!("exec policy refused the command: {}", reasons.join("; ")))));
        }
        let Some(executor) = self.services.executor.clone() else {
            return Ok(Err(Error::Unavailable("no sandbox executor is configured on this host".into())));
        };
        let exec = sandbox::ExecRequest {
            argv: request.argv,
            profile: request.profile,
            timeout: request.timeout_ms.map(|ms| Duration::from_millis(ms.into())),
            origin: ExecOrigin {
                caller: call.context.caller.clone(),
                plugin: call.plugin.clone(),
                tool: call.tool.name.clone(),
                action_id: call.context.action_id.clone(),
                secrets: call.secrets.clone(),
            },
        };
        let result = executor.exec(exec).await;
        Ok(result.map_err(sandbox_error).map(|out| ExecOutput {
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
            truncated: out.truncated,
        }))
    }

    fn record(&self, call: &CallInfo, request: &ExecRequest, allowed: bool, reason: &str) {
        self.services.audit.record(exec_event(call, request, allowed, reason.to_owned(), serde_json::Value::Null));
    }

    fn record_decision(&self, call: &CallInfo, request: &ExecRequest, decision: &Decision) {
        let reason = decision.reasons.first().map_or_else(|| "allowed".to_owned(), |r| r.code.clone());
        let detail = serde_json::to_value(decision).unwrap_or_default();
        self.services.audit.record(exec_event(call, request, decision.allow, reason, detail));
    }
}

fn exec_event(
    call: &CallInfo,
    request: &ExecRequest,
    allowed: bool,
    reason: String,
    decision: serde_json::Value,
) -> AuditEvent {
    let secrets = &call.secrets;
    let argv = secrets.scrub_all(&request.argv);
    let mut event =
        AuditEvent::new("exec_decision", allowed, secrets.scrub(&reason).into_owned()).by(&call.context.caller);
    event.action_id = Some(call.context.action_id.clone());
    event.tool = Some(call.tool.name.clone());
    event.category = Some(call.tool.category);
    event.command = Some(sandbox::command_line(&argv));
    event.detail = serde_json::json!({
        "plugin": call.plugin,
        "argv": argv,
        "profile": request.profile,
        "decision": decision,
    });
    // A policy's message may quote the argv.
    secrets.scrub_value(&mut event.detail);
    event
}
