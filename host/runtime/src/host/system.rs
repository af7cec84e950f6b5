//! `services`, `packages` and `filesystems`: the host's systemd, package manager and file systems.
//!
//! A `services` or `packages` call goes: the grant (`denied`), the object names' grammar
//! (`invalid-params`), the exec policy's `host` decision point (`not-allowed`, and nothing is sent
//! on the bus), then the system. Each call is one audit entry `host_call` with its method, objects,
//! outcome and duration, refused ones included.

use std::sync::Arc;
use std::time::Instant;

use super::{require, traced};
use crate::bindings::Error;
use crate::bindings::toolgate::plugin::filesystems::{self, Filesystem};
use crate::bindings::toolgate::plugin::packages::{self, PackageInfo};
use crate::bindings::toolgate::plugin::services::{self, UnitStatus};
use crate::manifest::Capability;
use crate::state::{CallInfo, HostState};
use toolgate_core::AuditEvent;
use toolgate_policy::{CallerInput, HostCallInput};
use toolgate_system::{self as system, SystemError, UnitVerb};

/// One call of the `services` or `packages` interface, as the policy and the audit log see it.
struct HostCall {
    interface: &'static str,
    method: &'static str,
    capability: Capability,
    objects: Vec<String>,
}

impl HostCall {
    fn access(&self) -> &'static str {
        match self.capability {
            Capability::ServicesManage | Capability::PackagesManage => "manage",
            _ => "read",
        }
    }

    fn command(&self) -> String {
        let mut line = format!("{}.{}", self.interface, self.method);
        for object in &self.objects {
            line.push(' ');
            line.push_str(object);
        }
        line
    }
}

impl HostState {
    /// Grant, grammar and policy for `call` (its objects replaced by their checked names); the
    /// refusal, audited, as the error the plugin gets.
    fn admit(
        &mut self,
        call: &mut HostCall,
        validate: fn(&str) -> Result<String, SystemError>,
    ) -> wasmtime::Result<Result<Arc<CallInfo>, Error>> {
        let info = self.call()?;
        if let Err(e) = require(&info, &call.capability) {
            self.audit_host_call(&info, call, false, "capability_not_declared", None);
            return Ok(Err(e));
        }
        match call.objects.iter().map(|o| validate(o)).collect::<Result<Vec<_>, _>>() {
            Ok(objects) => call.objects = objects,
            Err(e) => return Ok(Err(system_error(e))),
        }
        let Some(policy) = self.services.exec_policy.clone() else {
            self.audit_host_call(&info, call, false, "no_exec_policy", None);
            return Ok(Err(Error::Denied("no exec policy is configured, so no host call may be made".into())));
        };
        let input = HostCallInput {
            caller: CallerInput::from(&info.context.caller),
            tool: info.tool.clone(),
            interface: call.interface.to_owned(),
            method: call.method.to_owned(),
            access: call.access().to_owned(),
            objects: call.objects.clone(),
        };
        let decision = policy.decide_host_call(&input);
        if !decision.allow {
            let detail = serde_json::to_value(&decision).unwrap_or_default();
            self.audit_host_call(&info, call, false, &decision.reason_codes(), Some(detail));
            let reasons: Vec<String> = decision.reasons.iter().map(|r| format!("{} ({})", r.message, r.code)).collect();
            let message = format!("the exec policy refused {}: {}", call.command(), reasons.join("; "));
            // An object outside the caller's lists is `not-allowed`; a tool without the call
            // listed (or another plugin's) is the grant's kind of refusal.
            return Ok(Err(if decision.reasons.iter().all(|r| r.code == "not_allowed") {
                Error::NotAllowed(message)
            } else {
                Error::Denied(message)
            }));
        }
        Ok(Ok(info))
    }

    /// The port of `call`'s interface, or `unavailable` (audited) when the host has none.
    fn port<P: ?Sized>(&self, info: &CallInfo, call: &HostCall, port: Option<Arc<P>>) -> Result<Arc<P>, Error> {
        port.ok_or_else(|| {
            self.audit_host_call(info, call, false, "unavailable", None);
            Error::Unavailable(format!(
                "the `{}` interface is not configured on this host ([system] section)",
                call.interface
            ))
        })
    }

    /// Audit what the system answered, charge its time to the host, and hand it to the plugin.
    fn answered<T>(
        &mut self,
        info: &CallInfo,
        call: &HostCall,
        result: Result<T, SystemError>,
        started: Instant,
    ) -> Result<T, Error> {
        let took = started.elapsed();
        let (ok, reason) = match &result {
            Ok(_) => (true, "ok"),
            Err(e) => (false, error_code(e)),
        };
        let detail = serde_json::json!({
            "duration_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "error": result.as_ref().err().map(ToString::to_string),
        });
        self.audit_host_call(info, call, ok, reason, Some(detail));
        result.map_err(system_error)
    }

    fn audit_host_call(
        &self,
        info: &CallInfo,
        call: &HostCall,
        allowed: bool,
        reason: &str,
        detail: Option<serde_json::Value>,
    ) {
        let mut event = AuditEvent::new("host_call", allowed, reason.to_owned()).by(&info.context.caller);
        event.action_id = Some(info.context.action_id.clone());
        event.tool = Some(info.tool.name.clone());
        event.category = Some(info.tool.category);
        event.command = Some(call.command());
        let mut doc = serde_json::json!({
            "plugin": info.plugin,
            "interface": call.interface,
            "method": call.method,
            "objects": call.objects,
        });
        if let (Some(map), Some(serde_json::Value::Object(extra))) = (doc.as_object_mut(), detail) {
            map.extend(extra);
        }
        event.detail = doc;
        self.services.audit.record(event);
    }

    async fn unit_call(&mut self, verb: Option<UnitVerb>, unit: String) -> wasmtime::Result<Result<UnitStatus, Error>> {
        let (method, capability) = match verb {
            None => ("status", Capability::ServicesRead),
            Some(v) => (v.as_str(), Capability::ServicesManage),
        };
        let mut call = HostCall { interface: "services", method, capability, objects: vec![unit] };
        let info = match self.admit(&mut call, system::validate_unit)? {
            Ok(info) => info,
            Err(e) => return Ok(Err(e)),
        };
        let systemd = match self.port(&info, &call, self.services.systemd.clone()) {
            Ok(port) => port,
            Err(e) => return Ok(Err(e)),
        };
        let unit = call.objects.first().cloned().unwrap_or_default();
        let started = Instant::now();
        let result = match verb {
            None => systemd.status(&unit).await,
            Some(verb) => systemd.run(verb, &unit).await.map(|outcome| outcome.status),
        };
        Ok(self.answered(&info, &call, result, started).map(unit_status))
    }

    async fn package_call(
        &mut self,
        method: &'static str,
        capability: Capability,
        names: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<PackageInfo>, Error>> {
        if method != "refresh" && (names.is_empty() || names.len() > MAX_PACKAGES) {
            return Ok(Err(Error::InvalidParams(format!("name 1 to {MAX_PACKAGES} packages, not {}", names.len()))));
        }
        let mut call = HostCall { interface: "packages", method, capability, objects: names };
        let info = match self.admit(&mut call, package_name)? {
            Ok(info) => info,
            Err(e) => return Ok(Err(e)),
        };
        let packagekit = match self.port(&info, &call, self.services.packagekit.clone()) {
            Ok(port) => port,
            Err(e) => return Ok(Err(e)),
        };
        let started = Instant::now();
        let result = match method {
            "refresh" => packagekit.refresh().await.map(|()| Vec::new()),
            "resolve" => packagekit.resolve(&call.objects).await,
            "install" => packagekit.install(&call.objects).await,
            _ => packagekit.remove(&call.objects).await,
        };
        Ok(self.answered(&info, &call, result, started).map(|list| list.into_iter().map(package_info).collect()))
    }
}

/// A package name as the policy sees it, once its grammar is checked.
fn package_name(name: &str) -> Result<String, SystemError> {
    system::validate_package(name).map(|()| name.to_owned())
}

/// Most packages one call names.
const MAX_PACKAGES: usize = 64;

impl services::Host for HostState {
    async fn status(&mut self, unit: String) -> wasmtime::Result<Result<UnitStatus, Error>> {
        traced("services", "status", self.unit_call(None, unit)).await
    }

    async fn start(&mut self, unit: String) -> wasmtime::Result<Result<UnitStatus, Error>> {
        traced("services", "start", self.unit_call(Some(UnitVerb::Start), unit)).await
    }

    async fn stop(&mut self, unit: String) -> wasmtime::Result<Result<UnitStatus, Error>> {
        traced("services", "stop", self.unit_call(Some(UnitVerb::Stop), unit)).await
    }

    async fn restart(&mut self, unit: String) -> wasmtime::Result<Result<UnitStatus, Error>> {
        traced("services", "restart", self.unit_call(Some(UnitVerb::Restart), unit)).await
    }
}

impl packages::Host for HostState {
    async fn refresh(&mut self) -> wasmtime::Result<Result<(), Error>> {
        let refreshed = self.package_call("refresh", Capability::PackagesRead, vec![]);
        Ok(traced("packages", "refresh", refreshed).await?.map(|_| ()))
    }

    async fn resolve(&mut self, names: Vec<String>) -> wasmtime::Result<Result<Vec<PackageInfo>, Error>> {
        traced("packages", "resolve", self.package_call("resolve", Capability::PackagesRead, names)).await
    }

    async fn install(&mut self, names: Vec<String>) -> wasmtime::Result<Result<Vec<PackageInfo>, Error>> {
        traced("packages", "install", self.package_call("install", Capability::PackagesManage, names)).await
    }

    async fn remove(&mut self, names: Vec<String>) -> wasmtime::Result<Result<Vec<PackageInfo>, Error>> {
        traced("packages", "remove", self.package_call("remove", Capability::PackagesManage, names)).await
    }
}

impl filesystems::Host for HostState {
    async fn list(&mut self) -> wasmtime::Result<Result<Vec<Filesystem>, Error>> {
        traced("filesystems", "list", async move {
            let call = self.call()?;
            if let Err(e) = require(&call, &Capability::FilesystemsRead) {
                return Ok(Err(e));
            }
            let Some(port) = self.services.filesystems.clone() else {
                return Ok(Err(Error::Unavailable("no file system table is configured on this host".into())));
            };
            let result = tokio::task::spawn_blocking(move || port.list()).await;
            let result =
                result.unwrap_or_else(|e| Err(SystemError::Failed(format!("reading the mount table aborted: {e}"))));
            Ok(result.map(|list| list.into_iter().map(filesystem).collect()).map_err(system_error))
        })
        .await
    }
}

fn unit_status(s: system::UnitStatus) -> UnitStatus {
    UnitStatus {
        name: s.name,
        description: s.description,
        load_state: s.load_state,
        active_state: s.active_state,
        sub_state: s.sub_state,
        unit_file_state: s.unit_file_state,
        main_pid: s.main_pid,
        active_enter_timestamp_us: s.active_enter_timestamp_us,
        restarts: s.restarts,
    }
}

fn package_info(p: system::PackageInfo) -> PackageInfo {
    PackageInfo { name: p.name, version: p.version, arch: p.arch, id: p.id, installed: p.installed, summary: p.summary }
}

fn filesystem(f: system::Filesystem) -> Filesystem {
    Filesystem {
        source: f.source,
        mount_point: f.mount_point,
        fs_type: f.fs_type,
        size_bytes: f.size_bytes,
        used_bytes: f.used_bytes,
        available_bytes: f.available_bytes,
        read_only: f.read_only,
    }
}

/// The audit reason of a failed system call: the API code it becomes.
fn error_code(e: &SystemError) -> &'static str {
    match e {
        SystemError::NotFound(_) => "not_found",
        SystemError::PermissionDenied(_) => "permission_denied",
        SystemError::Unavailable(_) => "unavailable",
        SystemError::Timeout(_) => "timeout",
        SystemError::Failed(_) => "tool_failed",
        SystemError::InvalidArgument(_) => "invalid_params",
    }
}

fn system_error(e: SystemError) -> Error {
    match e {
        SystemError::NotFound(m) => Error::NotFound(m),
        SystemError::PermissionDenied(m) => Error::PermissionDenied(m),
        SystemError::Unavailable(m) => Error::Unavailable(m),
        SystemError::Timeout(m) => Error::Timeout(m),
        SystemError::Failed(m) => Error::Failed(m),
        SystemError::InvalidArgument(m) => Error::InvalidParams(m),
    }
}
