//! The host system as Toolgate's plugins reach it, without a shell and without root: systemd and
//! PackageKit through their D-Bus APIs on the system bus (each call authorised by polkit for the
//! user Toolgate runs as), and the host's own file systems from its mount table.
//!
//! This crate only talks to the system. Who may ask for what (the exec policy's unit and package
//! lists, the plugin's grants) is decided before a call gets here, by the runtime.
//!
//! # Layout
//! - this file: the ports ([`Services`], [`Packages`], [`Filesystems`]), their values, the error;
//! - `bus`: the connection to the system bus ([`SystemBus`]), opened on first use;
//! - `systemd`: [`Services`] over `org.freedesktop.systemd1`, jobs awaited;
//! - `packagekit`: [`Packages`] over `org.freedesktop.PackageKit`, transactions awaited;
//! - `mounts`: [`Filesystems`] from a mount table and `statvfs` ([`HostFilesystems`]);
//! - `names`: the unit and package name grammars ([`validate_unit`], [`validate_package`]), checked
//!   before any D-Bus traffic.

#![forbid(unsafe_code)]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toolgate_core::BoxFuture;

mod bus;
mod mounts;
mod names;
mod packagekit;
mod systemd;

pub use bus::SystemBus;
pub use mounts::HostFilesystems;
pub use names::{validate_package, validate_unit};

/// The `[system]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// D-Bus address of the system bus; empty: `$DBUS_SYSTEM_BUS_ADDRESS`, else
    /// `unix:path=/run/dbus/system_bus_socket`.
    pub bus_address: String,
    /// Longest wait for a unit job (start, stop, restart), in seconds.
    pub job_timeout_secs: u64,
    /// Longest wait for a PackageKit transaction (refresh, resolve, install, remove), in seconds.
    pub transaction_timeout_secs: u64,
    /// The mount table `filesystems` reads (`/proc/self/mountinfo`: the host's, as Toolgate sees it).
    pub mount_table: String,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            bus_address: String::new(),
            job_timeout_secs: 90,
            transaction_timeout_secs: 600,
            mount_table: "/proc/self/mountinfo".into(),
        }
    }
}

impl SystemConfig {
    /// [`SystemConfig::job_timeout_secs`] as a duration.
    pub fn job_timeout(&self) -> Duration {
        Duration::from_secs(self.job_timeout_secs)
    }

    /// [`SystemConfig::transaction_timeout_secs`] as a duration.
    pub fn transaction_timeout(&self) -> Duration {
        Duration::from_secs(self.transaction_timeout_secs)
    }
}

/// Why a system call failed. Each maps to one WIT error case and one API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemError {
    /// The unit or package does not exist (`not_found`).
    #[error("{0}")]
    NotFound(String),
    /// polkit (or the bus policy) refused; the message is polkit's (`permission_denied`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The bus, systemd or PackageKit cannot be reached, or PackageKit is busy (`unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// The job or transaction did not finish in time (`timeout`).
    #[error("{0}")]
    Timeout(String),
    /// It ran and failed: a job whose result is not `done`, a transaction that did not succeed
    /// (`tool_failed`).
    #[error("{0}")]
    Failed(String),
    /// The argument is malformed (a unit or package name outside the grammar) (`invalid_params`).
    #[error("{0}")]
    InvalidArgument(String),
}

/// A unit's state, as systemd's properties say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// Full unit name (`Id`), e.g. `nginx.service`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// `LoadState`: `loaded`, `not-found`, `masked`, `error`...
    pub load_state: String,
    /// `ActiveState`: `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active_state: String,
    /// `SubState`, e.g. `running`, `dead`, `exited`.
    pub sub_state: String,
    /// `UnitFileState`: `enabled`, `disabled`, `static`... (empty when none).
    pub unit_file_state: String,
    /// `MainPID` of a service (0 when none or not a service).
    pub main_pid: u32,
    /// `ActiveEnterTimestamp`: microseconds since the epoch it last became active (0: never).
    pub active_enter_timestamp_us: u64,
    /// `NRestarts` of a service (automatic restarts), 0 otherwise.
    pub restarts: u32,
}

/// What a unit job did: the job's `result` and the unit's state once it finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// `done` (success); anything else (`failed`, `timeout`, `dependency`...) is a
    /// [`SystemError::Failed`], so an outcome always says `done`.
    pub result: String,
    /// The unit after the job.
    pub status: UnitStatus,
}

/// The verbs of [`Services::run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitVerb {
    /// `StartUnit`.
    Start,
    /// `StopUnit`.
    Stop,
    /// `RestartUnit`.
    Restart,
}

impl UnitVerb {
    /// `start`, `stop`, `restart`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitVerb::Start => "start",
            UnitVerb::Stop => "stop",
            UnitVerb::Restart => "restart",
        }
    }
}

/// systemd: unit state, and start/stop/restart with the job awaited.
pub trait Services: Send + Sync {
    /// The unit's state. A unit systemd does not know (`LoadState` `not-found`) is
    /// [`SystemError::NotFound`].
    fn status<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<UnitStatus, SystemError>>;
    /// Queue `verb` for `unit` (mode `replace`) and wait for its job to finish, then read the
    /// unit's state. A job that ends other than `done` is [`SystemError::Failed`] naming the result.
    fn run<'a>(&'a self, verb: UnitVerb, unit: &'a str) -> BoxFuture<'a, Result<JobOutcome, SystemError>>;
}

/// One package, as PackageKit resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageInfo {
    /// Package name, e.g. `nginx`.
    pub name: String,
    /// Version, e.g. `1.22.1-9`.
    pub version: String,
    /// Architecture, e.g. `amd64` (`all` for architecture-independent ones).
    pub arch: String,
    /// PackageKit's id `name;version;arch;data`.
    pub id: String,
    /// Whether this version is installed.
    pub installed: bool,
    /// One-line summary.
    pub summary: String,
}

/// PackageKit: refresh, resolve, install, remove; each one transaction, awaited.
pub trait Packages: Send + Sync {
    /// Refresh the package lists (`RefreshCache`, not forced).
    fn refresh(&self) -> BoxFuture<'_, Result<(), SystemError>>;
    /// Every package named in `names`, installed or available (`Resolve`, newest first per
    /// name; the native architecture's and `all` ones). A name PackageKit cannot resolve is
    /// [`SystemError::NotFound`] naming it.
    fn resolve<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>>;
    /// Install the newest available version of each of `names` (`InstallPackages`, only
    /// trusted); answers every package the transaction installed, dependencies included. A name
    /// whose newest version is installed already needs nothing (and is not in the answer).
    fn install<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>>;
    /// Remove the installed `names` (`RemovePackages`, without removing what depends on them:
    /// a package something else needs is [`SystemError::Failed`]); answers what was removed. A
    /// name that is not installed is [`SystemError::NotFound`].
    fn remove<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>>;
}

/// One mounted file system of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filesystem {
    /// What is mounted (`/dev/sda1`, a server's export...).
    pub source: String,
    /// Where.
    pub mount_point: String,
    /// File system type (`ext4`, `xfs`...).
    pub fs_type: String,
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Used bytes (size minus free).
    pub used_bytes: u64,
    /// Bytes available to an unprivileged user.
    pub available_bytes: u64,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// The host's file systems: the mount table, pseudo file systems left out, each with its usage.
pub trait Filesystems: Send + Sync {
    /// Every real file system mounted on the host, in mount table order.
    fn list(&self) -> Result<Vec<Filesystem>, SystemError>;
}
