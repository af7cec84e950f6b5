//! The host's systemd, through its D-Bus API. [`status`] needs
//! [`Capability::ServicesRead`](crate::Capability); [`start`], [`stop`] and [`restart`] need
//! [`Capability::ServicesManage`](crate::Capability). The host's exec policy decides which units
//! each caller may touch (`not-allowed` otherwise); polkit on the host decides again
//! (`permission-denied`). A name without a suffix means `.service`.

use crate::Error;
use crate::bindings::toolgate::plugin::services as wit;

pub use wit::UnitStatus;

/// The state of `unit`; `not-found` when systemd does not know it.
pub fn status(unit: &str) -> Result<UnitStatus, Error> {
    crate::host::call(|| wit::status(unit))
}

/// Start `unit` and wait for its job; its state after.
pub fn start(unit: &str) -> Result<UnitStatus, Error> {
    crate::host::call(|| wit::start(unit))
}

/// Stop `unit` and wait for its job; its state after.
pub fn stop(unit: &str) -> Result<UnitStatus, Error> {
    crate::host::call(|| wit::stop(unit))
}

/// Restart `unit` (starting it when stopped) and wait for its job; its state after.
pub fn restart(unit: &str) -> Result<UnitStatus, Error> {
    crate::host::call(|| wit::restart(unit))
}
