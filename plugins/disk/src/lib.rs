//! Built-in plugin `disk`: disk usage of the mounted filesystems, `df -P -k` in the `default`
//! sandbox profile (busybox's `df` understands both flags).
//!
//! # Layout
//! - this file: the tool;
//! - `df`: the parser of `df -P -k` output;
//! - `exec`: running a command and keeping its raw text, capped.

pub mod df;

use toolgate_sdk::prelude::*;

use crate::df::Filesystem;
use toolgate_sdk::sandbox::{self, exit_failure};
use toolgate_sdk::text::capped;

/// The sandbox profile the command runs in.
const PROFILE: &str = "default";

toolgate_sdk::plugin!(name = "disk", tools = [DiskUsage]);

/// Output of `disk_usage`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DiskUsageOutput {
    /// Every mounted filesystem `df` reports.
    pub filesystems: Vec<Filesystem>,
    /// What `df` said on standard error (a mount it could not read, ...).
    pub warnings: Vec<String>,
    /// The text `df` printed, capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// `disk_usage`: `df -P -k`, parsed.
pub struct DiskUsage;

impl Tool for DiskUsage {
    const NAME: &'static str = "disk_usage";
    const DESCRIPTION: &'static str =
        "Shows each mounted filesystem with its mount point, size, used and available bytes, and use percentage.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    type Params = NoParams;
    type Output = DiskUsageOutput;

    fn invoke(_: NoParams) -> Result<DiskUsageOutput, Error> {
        let argv = ["df", "-P", "-k"];
        let out = sandbox::exec(&argv, PROFILE)?;
        // `df` exits 1 when one mount cannot be read but still reports the others.
        if out.exit_code != 0 && out.stdout.trim().is_empty() {
            return Err(exit_failure(&argv, &out));
        }
        let filesystems =
            df::filesystems(&out.stdout).map_err(|e| Error::failed(format!("unreadable `df` output: {e}")))?;
        let warnings = out.stderr.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
        let (raw, raw_truncated) = capped(&out.stdout);
        Ok(DiskUsageOutput { filesystems, warnings, raw, raw_truncated: raw_truncated || out.truncated })
    }
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
        for field in ["mount", "size_bytes", "used_bytes", "available_bytes", "use_percent"] {
            assert!(schema.contains(&format!("\"{field}\"")), "{field} missing from {schema}");
        }
    }
}
