//! [`Services`] over `org.freedesktop.systemd1`: unit state from the unit's properties, and
//! start/stop/restart as a job whose end (`JobRemoved`) is awaited.
//!
//! polkit decides each state-changing call (`org.freedesktop.systemd1.manage-units`, with the
//! unit and the verb as details); its refusal arrives as `AccessDenied` or
//! `InteractiveAuthorizationRequired`. Nothing that changes state is ever retried.

use std::collections::HashMap;

use futures_util::StreamExt;
use toolgate_core::BoxFuture;
use zbus::Connection;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::bus::Fault;
use crate::{JobOutcome, Services, SystemBus, SystemError, UnitStatus, UnitVerb, validate_unit};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_INTERFACE: &str = "org.freedesktop.systemd1.Service";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    /// The unit's object, loading it if needed (a unit that does not exist loads as `not-found`).
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    /// Asks systemd to emit its signals (it emits none while no client subscribed).
    fn subscribe(&self) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

impl Services for SystemBus {
    fn status<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitStatus, SystemError>> {
        Box::pin(async move {
            let unit = validate_unit(unit)?;
            let connection = self.connection().await?;
            let doing = format!("status of `{unit}`");
            unit_status(&connection, &unit, &doing).await
        })
    }

    fn run<'a>(&'a self, verb: UnitVerb, unit: &'a str) -> BoxFuture<'a, Result<JobOutcome, SystemError>> {
        Box::pin(async move {
            let unit = validate_unit(unit)?;
            let connection = self.connection().await?;
            run_job(self, &connection, verb, &unit).await
        })
    }
}

async fn run_job(
    bus: &SystemBus,
    connection: &Connection,
    verb: UnitVerb,
    unit: &str,
) -> Result<JobOutcome, SystemError> {
    let doing = format!("{} `{unit}`", verb.as_str());
    // Not found is answered before anything is queued.
    let before = unit_status(connection, unit, &doing).await?;

    let manager = ManagerProxy::new(connection).await.map_err(|e| map_error(e.into(), &doing))?;
    match manager.subscribe().await {
        Ok(()) => {}
        Err(e) => {
            let fault = Fault::from(e);
            // The connection is shared: a second Subscribe on it is answered so, and is fine.
            if fault.name() != Some("org.freedesktop.systemd1.AlreadySubscribed") {
                return Err(map_error(fault, &doing));
            }
        }
    }
    // INVARIANT: the stream exists before the job is queued, or a job that ends at once is missed.
    // Filtered by the bus on the unit's own name (argument 2; `Id`, which an alias is not), so
    // other units' jobs never queue up here while the call below is under way.
    let mut removed = manager
        .inner()
        .receive_signal_with_args("JobRemoved", &[(2, before.name.as_str())])
        .await
        .map_err(|e| map_error(e.into(), &doing))?;

    let queued = match verb {
        UnitVerb::Start => manager.start_unit(unit, "replace").await,
        UnitVerb::Stop => manager.stop_unit(unit, "replace").await,
        UnitVerb::Restart => manager.restart_unit(unit, "replace").await,
    };
    let job = queued.map_err(|e| map_error(e.into(), &doing))?;
    tracing::debug!(unit, verb = verb.as_str(), job = %job.as_str(), "unit job queued");

    let timeout = bus.job_timeout;
    let result = tokio::time::timeout(timeout, async {
        while let Some(message) = removed.next().await {
            let signal = JobRemoved::from_message(message);
            let Some(args) = signal.as_ref().and_then(|s| s.args().ok()) else { continue };
            if args.job.as_str() == job.as_str() {
                return Ok(args.result.clone());
            }
        }
        Err(SystemError::Unavailable(format!(
            "{doing}: the system bus connection closed while the job ran; its outcome is unknown"
        )))
    })
    .await
    .map_err(|_| {
        SystemError::Timeout(format!(
            "{doing}: the job did not finish within {} s; it may still run",
            timeout.as_secs()
        ))
    })??;
    drop(removed);

    let status = unit_status(connection, unit, &doing).await;
    if result != "done" {
        let state = match &status {
            Ok(s) => format!(" (the unit is {}/{})", s.active_state, s.sub_state),
            Err(_) => String::new(),
        };
        return Err(SystemError::Failed(format!("{doing}: the job ended `{result}`{state}")));
    }
    Ok(JobOutcome { result, status: status? })
}

/// The unit's properties; [`SystemError::NotFound`] when systemd has no such unit.
async fn unit_status(connection: &Connection, unit: &str, doing: &str) -> Result<UnitStatus, SystemError> {
    let fail = |e: zbus::Error| map_error(e.into(), doing);
    let manager = ManagerProxy::new(connection).await.map_err(fail)?;
    let path = manager.load_unit(unit).await.map_err(fail)?;
    let unit_properties = properties(connection, &path, UNIT_INTERFACE).await.map_err(|f| map_error(f, doing))?;
    let text = |key: &str| text(&unit_properties, key);
    if text("LoadState") == "not-found" {
        return Err(not_found(unit));
    }
    let mut status = UnitStatus {
        name: text("Id"),
        description: text("Description"),
        load_state: text("LoadState"),
        active_state: text("ActiveState"),
        sub_state: text("SubState"),
        unit_file_state: text("UnitFileState"),
        main_pid: 0,
        active_enter_timestamp_us: number::<u64>(&unit_properties, "ActiveEnterTimestamp"),
        restarts: 0,
    };
    if unit.ends_with(".service") {
        let service = properties(connection, &path, SERVICE_INTERFACE).await.map_err(|f| map_error(f, doing))?;
        status.main_pid = number::<u32>(&service, "MainPID");
        status.restarts = number::<u32>(&service, "NRestarts");
    }
    Ok(status)
}

async fn properties(
    connection: &Connection,
    path: &OwnedObjectPath,
    interface: &'static str,
) -> Result<HashMap<String, OwnedValue>, Fault> {
    let proxy = zbus::fdo::PropertiesProxy::builder(connection)
        .destination(SYSTEMD)?
        .path(path.as_ref())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    Ok(proxy.get_all(InterfaceName::from_static_str_unchecked(interface)).await?)
}

fn text(properties: &HashMap<String, OwnedValue>, key: &str) -> String {
    properties.get(key).and_then(|v| <&str>::try_from(&**v).ok()).unwrap_or_default().to_owned()
}

fn number<T>(properties: &HashMap<String, OwnedValue>, key: &str) -> T
where
    T: Default + for<'v> TryFrom<&'v zbus::zvariant::Value<'v>>,
{
    properties.get(key).and_then(|v| T::try_from(&**v).ok()).unwrap_or_default()
}

fn not_found(unit: &str) -> SystemError {
    SystemError::NotFound(format!("unit `{unit}` does not exist"))
}

/// systemd's errors → [`SystemError`], after the ones every service shares.
fn map_error(fault: Fault, doing: &str) -> SystemError {
    if let Some(error) = fault.common(doing) {
        return error;
    }
    match fault.name() {
        Some("org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed") => {
            SystemError::NotFound(format!("{doing}: {}", fault.message()))
        }
        Some("org.freedesktop.systemd1.ShuttingDown") => {
            SystemError::Unavailable(format!("{doing}: {}", fault.message()))
        }
        Some(name) => SystemError::Failed(format!("{doing}: {} ({name})", fault.message())),
        None => SystemError::Failed(format!("{doing}: {}", fault.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(name: &str, message: &str) -> Fault {
        Fault::Reply { name: name.into(), message: message.into() }
    }

    #[test]
    fn systemd_errors() {
        assert_eq!(
            map_error(reply("org.freedesktop.systemd1.NoSuchUnit", "Unit x.service not found."), "start `x.service`"),
            SystemError::NotFound("start `x.service`: Unit x.service not found.".into())
        );
        assert!(matches!(
            map_error(reply("org.freedesktop.systemd1.UnitMasked", "Unit x.service is masked."), "start"),
            SystemError::Failed(m) if m.contains("masked") && m.contains("UnitMasked")
        ));
        assert!(matches!(
            map_error(reply("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "Interactive authentication required."), "stop"),
            SystemError::PermissionDenied(m) if m.contains("Interactive authentication required.")
        ));
    }
}
