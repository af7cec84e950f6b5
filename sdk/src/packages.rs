//! The host's packages, through PackageKit. [`refresh`] and [`resolve`] need
//! [`Capability::PackagesRead`](crate::Capability); [`install`] and [`remove`] need
//! [`Capability::PackagesManage`](crate::Capability). The host's exec policy decides which
//! packages each caller may touch (`not-allowed` otherwise); polkit on the host decides again.

use crate::Error;
use crate::bindings::toolgate::plugin::packages as wit;

pub use wit::PackageInfo;

/// Refresh the package lists.
pub fn refresh() -> Result<(), Error> {
    crate::host::call(wit::refresh)
}

/// The installed and available versions of each of `names`; `not-found` names one no
/// repository has.
pub fn resolve(names: &[String]) -> Result<Vec<PackageInfo>, Error> {
    crate::host::call(|| wit::resolve(names))
}

/// Install the newest version of each of `names`; every package installed, dependencies included.
pub fn install(names: &[String]) -> Result<Vec<PackageInfo>, Error> {
    crate::host::call(|| wit::install(names))
}

/// Remove `names`; what was removed.
pub fn remove(names: &[String]) -> Result<Vec<PackageInfo>, Error> {
    crate::host::call(|| wit::remove(names))
}
