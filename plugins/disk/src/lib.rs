//! Built-in plugin `disk`: usage of the host's mounted file systems, from the host's own mount
//! table through the `filesystems` host interface (a command in a sandbox would only see the
//! container's mounts).

use toolgate_sdk::filesystems;
use toolgate_sdk::prelude::*;

toolgate_sdk::plugin!(name = "disk", tools = [DiskUsage]);

/// One file system, with its use in percent.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Filesystem {
    /// What is mounted (`/dev/sda1`, a server's export...).
    pub source: String,
    /// Where.
    pub mount: String,
    /// File system type (`ext4`, `xfs`...).
    pub fs_type: String,
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
    /// Bytes available to an unprivileged user.
    pub available_bytes: u64,
    /// Used share of what a user can have (used / (used + available)), rounded up as `df` does.
    pub use_percent: u8,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// Output of `disk_usage`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DiskUsageOutput {
    /// Every real file system mounted on the host, in mount order.
    pub filesystems: Vec<Filesystem>,
}

/// `disk_usage`: the host's file systems and their usage.
pub struct DiskUsage;

impl Tool for DiskUsage {
    const NAME: &'static str = "disk_usage";
    const DESCRIPTION: &'static str = "Shows each file system mounted on the host (pseudo file systems left out) with its mount point, type, size, used and available bytes, and use percentage.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::FilesystemsRead];
    type Params = NoParams;
    type Output = DiskUsageOutput;

    fn invoke(_: NoParams) -> Result<DiskUsageOutput, Error> {
        let filesystems = filesystems::list()?
            .into_iter()
            .map(|f| Filesystem {
                use_percent: use_percent(f.used_bytes, f.available_bytes),
                source: f.source,
                mount: f.mount_point,
                fs_type: f.fs_type,
                size_bytes: f.size_bytes,
                used_bytes: f.used_bytes,
                available_bytes: f.available_bytes,
                read_only: f.read_only,
            })
            .collect();
        Ok(DiskUsageOutput { filesystems })
    }
}

/// `df`'s "Use%": used over what users can have, rounded up.
fn use_percent(used: u64, available: u64) -> u8 {
    let total = u128::from(used) + u128::from(available);
    if total == 0 {
        return 0;
    }
    let percent = (u128::from(used) * 100).div_ceil(total);
    u8::try_from(percent.min(100)).unwrap_or(100)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn the_manifest_documents_the_output_fields() {
        let m = PLUGIN.manifest();
        assert_eq!(m.tools[0].name, "disk_usage");
        assert_eq!(m.tools[0].category, Category::Read);
        let schema = &m.tools[0].output_schema;
        for field in ["mount", "fs_type", "size_bytes", "used_bytes", "available_bytes", "use_percent"] {
            assert!(schema.contains(&format!("\"{field}\"")), "{field} missing from {schema}");
        }
    }

    #[test]
    fn use_percent_rounds_up_like_df() {
        assert_eq!(use_percent(0, 0), 0);
        assert_eq!(use_percent(0, 10), 0);
        assert_eq!(use_percent(1, 999), 1);
        assert_eq!(use_percent(50, 50), 50);
        assert_eq!(use_percent(10, 0), 100);
    }
}
