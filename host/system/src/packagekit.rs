//! [`Packages`] over `org.freedesktop.PackageKit`: each operation is one transaction whose
//! signals are listened to before its method is called, and whose `Finished` is awaited.
//!
//! - resolve: `Resolve` with the `arch` filter (packages of the native architecture, and `all`
//!   ones), then newest first per name (dpkg's order, `version`);
//! - install: resolve, then `InstallPackages(ONLY_TRUSTED)` of each name's newest version that is
//!   not installed; a name whose newest version is installed needs nothing;
//! - remove: resolve the installed ones, then `RemovePackages` simulated first: the apt backend
//!   ignores `allow_deps = false` and would remove what depends on them too.
//!
//! The enum values of PackageKit's D-Bus API are in `abi`, with where they come from.
//!
//! polkit decides install (`org.freedesktop.packagekit.package-install`), remove
//! (`package-remove`) and refresh (`system-sources-refresh`); resolve needs no authorisation.
//! PackageKit passes the requested package ids (`name;version;arch;data`, joined by `&`) to polkit
//! as the detail `package_ids` (`action.lookup("package_ids")` in a rules file), so a polkit rule
//! can restrict which packages a user may install or remove; dependencies pulled in are not in
//! the detail. Simulated transactions are not authorised at all.

mod abi;
mod version;

use futures_util::StreamExt;
use toolgate_core::BoxFuture;
use zbus::message::Message;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use self::abi::{
    ERRORS, EXIT_SUCCESS, EXITS, FILTER_ARCH, FILTER_INSTALLED, FLAG_ONLY_TRUSTED, FLAG_SIMULATE, FLAGS_NONE, info,
};
use crate::bus::Fault;
use crate::{PackageInfo, Packages, SystemBus, SystemError, validate_package};

#[zbus::proxy(
    interface = "org.freedesktop.PackageKit",
    default_service = "org.freedesktop.PackageKit",
    default_path = "/org/freedesktop/PackageKit",
    gen_blocking = false
)]
trait PackageKit {
    fn create_transaction(&self) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.PackageKit.Transaction",
    default_service = "org.freedesktop.PackageKit",
    gen_blocking = false
)]
trait Transaction {
    fn set_hints(&self, hints: &[&str]) -> zbus::Result<()>;
    fn refresh_cache(&self, force: bool) -> zbus::Result<()>;
    fn resolve(&self, filter: u64, packages: &[String]) -> zbus::Result<()>;
    fn install_packages(&self, transaction_flags: u64, package_ids: &[String]) -> zbus::Result<()>;
    fn remove_packages(
        &self,
        transaction_flags: u64,
        package_ids: &[String],
        allow_deps: bool,
        autoremove: bool,
    ) -> zbus::Result<()>;
    fn cancel(&self) -> zbus::Result<()>;
}

/// What a transaction asks for.
enum Method<'a> {
    RefreshCache,
    Resolve { filter: u64, names: &'a [String] },
    InstallPackages { ids: &'a [String] },
    RemovePackages { ids: &'a [String], simulate: bool },
}

/// One `Package` signal: `(u info, s package_id, s summary)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Emitted {
    info: u32,
    id: String,
    summary: String,
}

impl Packages for SystemBus {
    fn refresh(&self) -> BoxFuture<'_, Result<(), SystemError>> {
        Box::pin(async move {
            self.transaction("refresh the package lists", Method::RefreshCache).await?;
            Ok(())
        })
    }

    fn resolve<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>> {
        Box::pin(async move {
            let found = self.resolve_names(names, FILTER_ARCH).await?;
            let mut packages = Vec::new();
            for name in names {
                let mut versions: Vec<PackageInfo> = found.iter().filter(|p| &p.name == name).cloned().collect();
                if versions.is_empty() {
                    return Err(SystemError::NotFound(format!("package `{name}` does not exist")));
                }
                versions.sort_by(|a, b| version::compare(&b.version, &a.version).then(b.installed.cmp(&a.installed)));
                versions.dedup_by(|a, b| a.id == b.id);
                packages.extend(versions);
            }
            packages.dedup_by(|a, b| a.id == b.id);
            Ok(packages)
        })
    }

    fn install<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>> {
        Box::pin(async move {
            let found = self.resolve_names(names, FILTER_ARCH).await?;
            let mut ids = Vec::new();
            for name in names {
                let versions: Vec<&PackageInfo> = found.iter().filter(|p| &p.name == name).collect();
                if versions.is_empty() {
                    return Err(SystemError::NotFound(format!("package `{name}` does not exist")));
                }
                // The newest version not installed; none when the newest is installed already.
                let newest = versions.iter().max_by(|a, b| version::compare(&a.version, &b.version));
                if let Some(newest) = newest.filter(|p| !p.installed)
                    && !ids.contains(&newest.id)
                {
                    ids.push(newest.id.clone());
                }
            }
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let doing = format!("install {}", listed(names));
            let emitted = self.transaction(&doing, Method::InstallPackages { ids: &ids }).await?;
            let installed = [info::INSTALLING, info::INSTALLED, info::UPDATING, info::REINSTALLING];
            Ok(packages_with(&emitted, &installed, true))
        })
    }

    fn remove<'a>(&'a self, names: &'a [String]) -> BoxFuture<'a, Result<Vec<PackageInfo>, SystemError>> {
        Box::pin(async move {
            let found = self.resolve_names(names, FILTER_INSTALLED | FILTER_ARCH).await?;
            let mut ids = Vec::new();
            for name in names {
                let installed: Vec<&PackageInfo> = found.iter().filter(|p| &p.name == name && p.installed).collect();
                if installed.is_empty() {
                    return Err(SystemError::NotFound(format!("package `{name}` is not installed")));
                }
                for package in installed {
                    if !ids.contains(&package.id) {
                        ids.push(package.id.clone());
                    }
                }
            }
            let doing = format!("remove {}", listed(names));
            // The apt backend ignores `allow_deps` (1.2.6 reads it and never uses it) and removes
            // what depends on a package with it: a simulation says what would go first.
            let simulated = self.transaction(&doing, Method::RemovePackages { ids: &ids, simulate: true }).await?;
            let dependents: Vec<String> = packages_with(&simulated, &[info::REMOVING, info::OBSOLETING], false)
                .into_iter()
                .map(|p| p.name)
                .filter(|name| !names.contains(name))
                .collect();
            if !dependents.is_empty() {
                return Err(SystemError::Failed(format!(
                    "{doing}: it would also remove {}, which need what is removed; nothing was removed",
                    listed(&dependents)
                )));
            }
            let emitted = self.transaction(&doing, Method::RemovePackages { ids: &ids, simulate: false }).await?;
            Ok(packages_with(&emitted, &[info::REMOVING], false))
        })
    }
}

impl SystemBus {
    /// `Resolve(filter, names)` after checking each name; the packages it names.
    async fn resolve_names(&self, names: &[String], filter: u64) -> Result<Vec<PackageInfo>, SystemError> {
        if names.is_empty() {
            return Err(SystemError::InvalidArgument("no package named".into()));
        }
        for name in names {
            validate_package(name)?;
        }
        let doing = format!("resolve {}", listed(names));
        let emitted = self.transaction(&doing, Method::Resolve { filter, names }).await?;
        Ok(emitted
            .iter()
            .filter_map(|e| {
                let mut package = package_info(e)?;
                package.installed |= e.info == info::INSTALLED;
                Some(package)
            })
            .collect())
    }

    /// Runs one transaction and answers the packages it emitted; a transaction that did not
    /// succeed is the error its `ErrorCode` (or its exit) says.
    async fn transaction(&self, doing: &str, method: Method<'_>) -> Result<Vec<Emitted>, SystemError> {
        let connection = self.connection().await?;
        let fail = |e: zbus::Error| map_error(Fault::from(e), doing);
        let packagekit = PackageKitProxy::new(&connection).await.map_err(fail)?;
        let path = packagekit.create_transaction().await.map_err(fail)?;
        let transaction = TransactionProxy::builder(&connection)
            .path(path)
            .map_err(fail)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(fail)?;
        // INVARIANT: both streams exist before the method is called, or a quick transaction's
        // signals are lost.
        let mut signals = transaction.inner().receive_all_signals().await.map_err(fail)?;
        let mut owner = transaction.inner().receive_owner_changed().await.map_err(fail)?;
        transaction.set_hints(&["interactive=false", "background=false"]).await.map_err(fail)?;
        match method {
            Method::RefreshCache => transaction.refresh_cache(false).await,
            Method::Resolve { filter, names } => transaction.resolve(filter, names).await,
            Method::InstallPackages { ids } => transaction.install_packages(FLAG_ONLY_TRUSTED, ids).await,
            Method::RemovePackages { ids, simulate } => {
                let flags = if simulate { FLAG_SIMULATE } else { FLAGS_NONE };
                transaction.remove_packages(flags, ids, false, false).await
            }
        }
        .map_err(fail)?;

        let timeout = self.transaction_timeout;
        let outcome = tokio::time::timeout(timeout, async {
            let mut emitted = Vec::new();
            let mut errors = Vec::new();
            let mut watching_owner = true;
            loop {
                tokio::select! {
                    message = signals.next() => {
                        let Some(message) = message else {
                            return Err(SystemError::Unavailable(format!(
                                "{doing}: the system bus connection closed during the transaction; its outcome is unknown"
                            )));
                        };
                        if let Some(exit) = take_signal(&message, &mut emitted, &mut errors) {
                            return Ok((exit, emitted, errors));
                        }
                    }
                    changed = owner.next(), if watching_owner => match changed {
                        Some(None) => {
                            return Err(SystemError::Unavailable(format!(
                                "{doing}: PackageKit left the bus during the transaction; its outcome is unknown"
                            )));
                        }
                        Some(Some(_)) => {}
                        None => watching_owner = false,
                    },
                }
            }
        })
        .await;
        let (exit, emitted, errors) = match outcome {
            Ok(outcome) => outcome?,
            Err(_) => {
                drop((signals, owner));
                if let Err(e) = transaction.cancel().await {
                    tracing::warn!(error = %e, doing, "cannot cancel a PackageKit transaction that timed out");
                }
                return Err(SystemError::Timeout(format!(
                    "{doing}: the transaction did not finish within {} s and was cancelled",
                    timeout.as_secs()
                )));
            }
        };
        if let Some((code, details)) = errors.first() {
            return Err(transaction_error(*code, details, doing));
        }
        if exit != EXIT_SUCCESS {
            let name = EXITS.get(exit as usize).copied().unwrap_or("unknown");
            return Err(match name {
                "cancelled" | "cancelled-priority" | "killed" => {
                    SystemError::Unavailable(format!("{doing}: the transaction was `{name}`"))
                }
                _ => SystemError::Failed(format!("{doing}: the transaction ended `{name}`")),
            });
        }
        Ok(emitted)
    }
}

/// Records a transaction signal; `Some(exit)` once it is `Finished`.
fn take_signal(message: &Message, emitted: &mut Vec<Emitted>, errors: &mut Vec<(u32, String)>) -> Option<u32> {
    let header = message.header();
    let body = message.body();
    match header.member().map(|m| m.as_str()) {
        Some("Package") => match body.deserialize::<(u32, String, String)>() {
            Ok((info, id, summary)) => emitted.push(Emitted { info: info & 0xFFFF, id, summary }),
            Err(e) => tracing::debug!(error = %e, "PackageKit `Package` signal left out: malformed"),
        },
        // The plural form, sent only to clients that ask for it with a hint; read all the same.
        Some("Packages") => match body.deserialize::<Vec<(u32, String, String)>>() {
            Ok(packages) => emitted.extend(packages.into_iter().map(|(info, id, summary)| Emitted {
                info: info & 0xFFFF,
                id,
                summary,
            })),
            Err(e) => tracing::debug!(error = %e, "PackageKit `Packages` signal left out: malformed"),
        },
        Some("ErrorCode") => match body.deserialize::<(u32, String)>() {
            Ok(error) => errors.push(error),
            Err(e) => errors.push((0, format!("malformed ErrorCode signal: {e}"))),
        },
        Some("Finished") => return Some(body.deserialize::<(u32, u32)>().map_or(0, |(exit, _runtime)| exit)),
        _ => {}
    }
    None
}

/// The distinct packages emitted with one of `infos` (`Package` carries the update severity in
/// its high 16 bits, already masked off), said `installed` or not: what the transaction made them.
fn packages_with(emitted: &[Emitted], infos: &[u32], installed: bool) -> Vec<PackageInfo> {
    let mut packages: Vec<PackageInfo> = Vec::new();
    for e in emitted.iter().filter(|e| infos.contains(&e.info)) {
        if let Some(mut package) = package_info(e)
            && !packages
                .iter()
                .any(|p| p.name == package.name && p.arch == package.arch && p.version == package.version)
        {
            package.installed = installed;
            if package.summary.is_empty()
                && let Some(other) = emitted.iter().find(|o| o.id == e.id && !o.summary.is_empty())
            {
                package.summary = other.summary.clone();
            }
            packages.push(package);
        }
    }
    packages
}

/// A package id `name;version;arch;data` → [`PackageInfo`], installed as its data says; `None`
/// when malformed.
fn package_info(emitted: &Emitted) -> Option<PackageInfo> {
    let mut parts = emitted.id.split(';');
    let (name, version, arch, data) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() || parts.next().is_some() {
        tracing::debug!(id = %emitted.id, "PackageKit package id left out: malformed");
        return None;
    }
    Some(PackageInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: arch.to_owned(),
        id: emitted.id.clone(),
        installed: installed_data(data),
        summary: emitted.summary.clone(),
    })
}

/// Whether an id's data field says installed: `installed` or `installed:<repo>` by PackageKit's
/// spec, `manual:<repo>` or `auto:<repo>` from the apt backend (1.2); `+manual:`/`+auto:` are
/// pending installations, not installed ones.
fn installed_data(data: &str) -> bool {
    data == "installed" || data.starts_with("installed:") || data.starts_with("manual:") || data.starts_with("auto:")
}

/// `ErrorCode(code, details)` → [`SystemError`].
fn transaction_error(code: u32, details: &str, doing: &str) -> SystemError {
    let name = ERRORS.get(code as usize).copied().unwrap_or("unknown");
    match name {
        "package-not-found" | "package-not-installed" => SystemError::NotFound(format!("{doing}: {details}")),
        "not-authorized" => SystemError::PermissionDenied(format!("{doing}: not authorised: {details}")),
        "transaction-cancelled" | "cancelled-priority" | "cannot-get-lock" | "lock-required" => {
            SystemError::Unavailable(format!("{doing}: PackageKit is busy ({name}): {details}"))
        }
        _ => SystemError::Failed(format!("{doing}: PackageKit error `{name}`: {details}")),
    }
}

/// PackageKit's D-Bus errors → [`SystemError`], after the ones every service shares.
fn map_error(fault: Fault, doing: &str) -> SystemError {
    if let Some(error) = fault.common(doing) {
        return error;
    }
    match fault.name() {
        Some(
            "org.freedesktop.PackageKit.Transaction.RefusedByPolicy" | "org.freedesktop.PackageKit.RefusedByPolicy",
        ) => SystemError::PermissionDenied(format!("{doing}: not authorised: {}", fault.message())),
        Some("org.freedesktop.PackageKit.CannotCheckAuth") => {
            SystemError::Unavailable(format!("{doing}: {}", fault.message()))
        }
        Some(name) => SystemError::Failed(format!("{doing}: {} ({name})", fault.message())),
        None => SystemError::Failed(format!("{doing}: {}", fault.message())),
    }
}

/// `\`a\`, \`b\`` for messages (names are validated, so they need no escaping).
fn listed(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(info: u32, id: &str) -> Emitted {
        Emitted { info, id: id.into(), summary: format!("summary of {id}") }
    }

    #[test]
    fn the_enum_tables_match_pk_enum() {
        assert_eq!(ERRORS.len(), 69, "PK_ERROR_ENUM_LAST");
        assert_eq!(ERRORS[8], "package-not-found");
        assert_eq!(ERRORS[17], "transaction-cancelled");
        assert_eq!(ERRORS[26], "cannot-get-lock");
        assert_eq!(ERRORS[48], "not-authorized");
        assert_eq!(ERRORS[67], "lock-required");
        assert_eq!(EXITS.len(), 12, "PK_EXIT_ENUM_LAST");
        assert_eq!(EXITS[EXIT_SUCCESS as usize], "success");
    }

    #[test]
    fn package_ids() {
        let available = package_info(&emitted(2, "nginx;1.22.1-9;amd64;debian-bookworm-main"));
        let available = available.unwrap();
        assert_eq!(
            (available.name.as_str(), available.version.as_str(), available.arch.as_str()),
            ("nginx", "1.22.1-9", "amd64")
        );
        assert!(!available.installed);
        for data in ["installed", "installed:debian-bookworm-main", "manual:debian-bookworm-main", "auto:local"] {
            let id = format!("curl;7.88.1-10;amd64;{data}");
            assert!(package_info(&emitted(0, &id)).unwrap().installed, "{data}");
        }
        assert!(!package_info(&emitted(0, "x;1;all;+manual:local")).unwrap().installed);
        assert!(package_info(&emitted(0, "x;1;all")).is_none());
        assert!(package_info(&emitted(0, "x;1;all;a;b")).is_none());
    }

    #[test]
    fn install_answers_what_was_installed_once_each() {
        let signals = [
            emitted(10, "dep;1;all;local"), // downloading
            emitted(info::INSTALLING, "dep;1;all;local"),
            emitted(info::INSTALLING, "pkg;1;all;local"),
            emitted(18, "pkg;1;all;local"), // finished
            emitted(info::INSTALLED, "pkg;1;all;manual:local"),
        ];
        let installed = packages_with(&signals, &[info::INSTALLING, info::INSTALLED], true);
        let names: Vec<&str> = installed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["dep", "pkg"]);
        assert!(installed.iter().all(|p| p.installed));
        let removed = packages_with(&[emitted(info::REMOVING, "pkg;1;all;manual:local")], &[info::REMOVING], false);
        assert!(!removed[0].installed, "removed, whatever the id said before");
    }

    #[test]
    fn transaction_errors() {
        assert!(matches!(transaction_error(8, "Couldn't find package x", "install `x`"), SystemError::NotFound(_)));
        assert!(matches!(
            transaction_error(48, "Failed to obtain authentication.", "install `x`"),
            SystemError::PermissionDenied(m) if m.contains("Failed to obtain authentication.")
        ));
        assert!(matches!(transaction_error(26, "", "x"), SystemError::Unavailable(_)));
        assert!(matches!(transaction_error(67, "", "x"), SystemError::Unavailable(_)));
        assert!(matches!(
            transaction_error(13, "toolgate-test-dep is needed", "remove"),
            SystemError::Failed(m) if m.contains("dep-resolution-failed") && m.contains("is needed")
        ));
        assert!(matches!(transaction_error(999, "?", "x"), SystemError::Failed(m) if m.contains("`unknown`")));
    }
}
