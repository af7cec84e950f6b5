//! PackageKit's D-Bus ABI: the enum values its filter, flag, info, exit and error arguments
//! carry, from `lib/packagekit-glib2/pk-enum.h` of PackageKit 1.2.6 (Debian 12's; the same values
//! in 1.3, where the file is `lib/pk-enum.h`). Filters and transaction flags are bitfields of
//! their enums, bit `1 << value` (`pk_bitfield_value`, `pk-bitfield.h:95`).

/// `PkFilterEnum` (pk-enum.h:316-345): `PK_FILTER_ENUM_INSTALLED` = 2 (line 318).
pub(crate) const FILTER_INSTALLED: u64 = 1 << 2;
/// `PK_FILTER_ENUM_ARCH` = 18 (pk-enum.h:334): the native architecture and `all` only.
pub(crate) const FILTER_ARCH: u64 = 1 << 18;
/// `PkTransactionFlagEnum` (pk-enum.h:780-787): `PK_TRANSACTION_FLAG_ENUM_ONLY_TRUSTED` = 1.
pub(crate) const FLAG_ONLY_TRUSTED: u64 = 1 << 1;
/// `PK_TRANSACTION_FLAG_ENUM_NONE` = 0 (pk-enum.h:780): no bit set.
pub(crate) const FLAGS_NONE: u64 = 0;
/// `PK_TRANSACTION_FLAG_ENUM_SIMULATE` = 2 (pk-enum.h:782): say what would change, change
/// nothing (and need no authorisation).
pub(crate) const FLAG_SIMULATE: u64 = 1 << 2;

/// `PkInfoEnum` (pk-enum.h:652-683; `PK_INFO_ENUM_AVAILABLE` = 2, line 654, is what Resolve says of
/// a package not installed).
pub(crate) mod info {
    pub const INSTALLED: u32 = 1; // line 653
    pub const UPDATING: u32 = 11; // line 663
    pub const INSTALLING: u32 = 12; // line 664
    pub const REMOVING: u32 = 13; // line 665
    pub const OBSOLETING: u32 = 15; // line 667
    pub const REINSTALLING: u32 = 19; // line 671
}

/// `PkExitEnum` (pk-enum.h:244-256) by value, as `pk_exit_enum_to_string` names them (pk-enum.c:39-53).
pub(crate) const EXITS: &[&str] = &[
    "unknown",
    "success",
    "failed",
    "cancelled",
    "key-required",
    "eula-required",
    "killed",
    "media-change-required",
    "need-untrusted",
    "cancelled-priority",
    "skip-transaction",
    "repair-required",
];
pub(crate) const EXIT_SUCCESS: u32 = 1;

/// `PkErrorEnum` (pk-enum.h:447-517) by value, as `pk_error_enum_to_string` names them
/// (pk-enum.c:135-203).
pub(crate) const ERRORS: &[&str] = &[
    "unknown",                        // 0
    "out-of-memory",                  // 1
    "no-network",                     // 2
    "not-supported",                  // 3
    "internal-error",                 // 4
    "gpg-failure",                    // 5
    "package-id-invalid",             // 6
    "package-not-installed",          // 7
    "package-not-found",              // 8
    "package-already-installed",      // 9
    "package-download-failed",        // 10
    "group-not-found",                // 11
    "group-list-invalid",             // 12
    "dep-resolution-failed",          // 13
    "filter-invalid",                 // 14
    "create-thread-failed",           // 15
    "transaction-error",              // 16
    "transaction-cancelled",          // 17
    "no-cache",                       // 18
    "repo-not-found",                 // 19
    "cannot-remove-system-package",   // 20
    "process-kill",                   // 21
    "failed-initialization",          // 22
    "failed-finalise",                // 23
    "failed-config-parsing",          // 24
    "cannot-cancel",                  // 25
    "cannot-get-lock",                // 26
    "no-packages-to-update",          // 27
    "cannot-write-repo-config",       // 28
    "local-install-failed",           // 29
    "bad-gpg-signature",              // 30
    "missing-gpg-signature",          // 31
    "cannot-install-source-package",  // 32
    "repo-configuration-error",       // 33
    "no-license-agreement",           // 34
    "file-conflicts",                 // 35
    "package-conflicts",              // 36
    "repo-not-available",             // 37
    "invalid-package-file",           // 38
    "package-install-blocked",        // 39
    "package-corrupt",                // 40
    "all-packages-already-installed", // 41
    "file-not-found",                 // 42
    "no-more-mirrors-to-try",         // 43
    "no-distro-upgrade-data",         // 44
    "incompatible-architecture",      // 45
    "no-space-on-device",             // 46
    "media-change-required",          // 47
    "not-authorized",                 // 48
    "update-not-found",               // 49
    "cannot-install-repo-unsigned",   // 50
    "cannot-update-repo-unsigned",    // 51
    "cannot-get-filelist",            // 52
    "cannot-get-requires",            // 53
    "cannot-disable-repository",      // 54
    "restricted-download",            // 55
    "package-failed-to-configure",    // 56
    "package-failed-to-build",        // 57
    "package-failed-to-install",      // 58
    "package-failed-to-remove",       // 59
    "failed-due-to-running-process",  // 60
    "package-database-changed",       // 61
    "provide-type-not-supported",     // 62
    "install-root-invalid",           // 63
    "cannot-fetch-sources",           // 64
    "cancelled-priority",             // 65
    "unfinished-transaction",         // 66
    "lock-required",                  // 67
    "repo-already-set",               // 68
];
