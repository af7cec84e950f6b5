//! The connection to the system bus: opened on first use, shared by every call, and opened again
//! once it broke (the bus was restarted), so Toolgate outlives a restart of `dbus`.

use std::time::Duration;

use tokio::sync::Mutex;
use zbus::{Connection, DBusError};

use crate::{SystemConfig, SystemError};

/// Where the system bus listens when neither the configuration nor the environment says.
const DEFAULT_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// Longest wait for the bus to accept a connection (its socket may be there while the daemon
/// behind it is still starting, or never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(25);

/// The system bus, and through it systemd ([`crate::Services`]) and PackageKit
/// ([`crate::Packages`]), both implemented by this type.
///
/// The connection belongs to the tokio runtime that first used it: build one `SystemBus` per
/// runtime.
pub struct SystemBus {
    address: String,
    pub(crate) job_timeout: Duration,
    pub(crate) transaction_timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for SystemBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemBus").field("address", &self.address).finish_non_exhaustive()
    }
}

impl SystemBus {
    /// A bus at the configured address (empty: `$DBUS_SYSTEM_BUS_ADDRESS`, else
    /// `unix:path=/run/dbus/system_bus_socket`). Nothing is opened until the first call.
    pub fn new(config: &SystemConfig) -> SystemBus {
        let address = if !config.bus_address.is_empty() {
            config.bus_address.clone()
        } else {
            std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned())
        };
        SystemBus {
            address,
            job_timeout: config.job_timeout(),
            transaction_timeout: config.transaction_timeout(),
            connection: Mutex::new(None),
        }
    }

    /// The bus address in use.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The shared connection, opened now if there is none or the last one broke.
    pub(crate) async fn connection(&self) -> Result<Connection, SystemError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        *slot = None;
        let connection = self.open().await?;
        tracing::debug!(address = %self.address, "connected to the system bus");
        *slot = Some(connection.clone());
        Ok(connection)
    }

    async fn open(&self) -> Result<Connection, SystemError> {
        let unreachable = |cause: &dyn std::fmt::Display| {
            SystemError::Unavailable(format!("cannot reach the system bus at `{}`: {cause}", self.address))
        };
        let builder = zbus::connection::Builder::address(self.address.as_str()).map_err(|e| unreachable(&e))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(unreachable(&e)),
            Err(_) => Err(unreachable(&format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
        }
    }
}

/// A D-Bus call that failed, sorted once for every service's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The peer answered with an error: its name and message.
    Reply { name: String, message: String },
    /// The connection is broken or the bus cannot be reached.
    Transport(String),
    /// Anything else on our side (a reply of an unexpected type...).
    Local(String),
}

impl Fault {
    /// `org.freedesktop.DBus.Error.AccessDenied`, ... → [`SystemError`] for the names every
    /// service shares; `None` for a name the service must decide on.
    /// `doing` says what was asked (`restart \`nginx.service\``).
    pub(crate) fn common(&self, doing: &str) -> Option<SystemError> {
        match self {
            Fault::Transport(cause) => {
                Some(SystemError::Unavailable(format!("{doing}: the system bus connection failed: {cause}")))
            }
            Fault::Local(cause) => Some(SystemError::Failed(format!("{doing}: {cause}"))),
            Fault::Reply { name, message } => match name.as_str() {
                "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
                | "org.freedesktop.DBus.Error.AuthFailed"
                | "org.freedesktop.PolicyKit1.Error.NotAuthorized" => {
                    Some(SystemError::PermissionDenied(format!("{doing}: not authorised: {message}")))
                }
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.TimedOut"
                | "org.freedesktop.DBus.Error.Disconnected"
                | "org.freedesktop.DBus.Error.NoServer"
                | "org.freedesktop.DBus.Error.LimitsExceeded"
                | "org.freedesktop.DBus.Error.NoMemory" => {
                    Some(SystemError::Unavailable(format!("{doing}: {message} ({name})")))
                }
                _ if name.starts_with("org.freedesktop.DBus.Error.Spawn.") => {
                    Some(SystemError::Unavailable(format!("{doing}: {message} ({name})")))
                }
                "org.freedesktop.DBus.Error.InvalidArgs" => {
                    Some(SystemError::InvalidArgument(format!("{doing}: {message}")))
                }
                _ => None,
            },
        }
    }

    /// The peer's error name, if it answered with one.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Fault::Reply { name, .. } => Some(name),
            Fault::Transport(_) | Fault::Local(_) => None,
        }
    }

    /// What the peer or the connection said.
    pub(crate) fn message(&self) -> &str {
        match self {
            Fault::Reply { message, .. } | Fault::Transport(message) | Fault::Local(message) => message,
        }
    }
}

impl From<zbus::Error> for Fault {
    fn from(error: zbus::Error) -> Fault {
        match error {
            zbus::Error::MethodError(name, message, _) => {
                Fault::Reply { name: name.to_string(), message: message.unwrap_or_default() }
            }
            zbus::Error::FDO(fdo) => Fault::from(*fdo),
            e @ (zbus::Error::InputOutput(_)
            | zbus::Error::Connection(..)
            | zbus::Error::Handshake(_)
            | zbus::Error::Address(_)) => Fault::Transport(e.to_string()),
            e => Fault::Local(e.to_string()),
        }
    }
}

impl From<zbus::fdo::Error> for Fault {
    fn from(error: zbus::fdo::Error) -> Fault {
        match error {
            zbus::fdo::Error::ZBus(e) => Fault::from(e),
            e => Fault::Reply { name: e.name().to_string(), message: e.description().unwrap_or_default().to_owned() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(name: &str) -> Fault {
        Fault::Reply { name: name.into(), message: "the peer's words".into() }
    }

    #[test]
    fn common_errors_map_to_the_same_cases_for_every_service() {
        let denied = reply("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired").common("restart `x`");
        assert_eq!(denied, Some(SystemError::PermissionDenied("restart `x`: not authorised: the peer's words".into())));
        assert!(matches!(
            reply("org.freedesktop.DBus.Error.AccessDenied").common("x"),
            Some(SystemError::PermissionDenied(_))
        ));
        for name in ["org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply"] {
            assert!(matches!(reply(name).common("x"), Some(SystemError::Unavailable(_))), "{name}");
        }
        assert!(matches!(Fault::Transport("broken pipe".into()).common("x"), Some(SystemError::Unavailable(_))));
        assert_eq!(reply("org.freedesktop.systemd1.NoSuchUnit").common("x"), None);
    }

    #[test]
    fn io_errors_are_transport_faults() {
        let io = zbus::Error::InputOutput(std::sync::Arc::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert!(matches!(Fault::from(io), Fault::Transport(_)));
        let fdo = zbus::fdo::Error::AccessDenied("Access denied".into());
        assert_eq!(
            Fault::from(zbus::Error::from(fdo)),
            Fault::Reply { name: "org.freedesktop.DBus.Error.AccessDenied".into(), message: "Access denied".into() }
        );
    }

    #[test]
    fn the_address_comes_from_the_config_first() {
        let config = SystemConfig { bus_address: "unix:path=/tmp/x".into(), ..SystemConfig::default() };
        assert_eq!(SystemBus::new(&config).address(), "unix:path=/tmp/x");
    }

    #[tokio::test]
    async fn an_unreachable_bus_is_unavailable_with_address_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}/no_bus_here", dir.path().display());
        let bus = SystemBus::new(&SystemConfig { bus_address: address.clone(), ..SystemConfig::default() });
        let err = bus.connection().await.unwrap_err();
        let SystemError::Unavailable(message) = err else { panic!("{err:?}") };
        assert!(message.contains(&address), "{message}");
        assert!(message.contains("No such file or directory"), "{message}");
    }
}
