//! `HostFilesystems` on this machine's own mount table, against what `df` says about it.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, bail};
use toolgate_system::{Filesystems, HostFilesystems};

/// Types that must never be listed: the kernel's pseudo file systems and the memory-backed ones.
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "devtmpfs",
    "tmpfs",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "efivarfs",
    "ramfs",
];

/// One line of `df -P -T -B1`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DfRow {
    source: String,
    fs_type: String,
    size: u64,
}

/// `df -P -T -B1`, by mount point. Mount points with spaces are not in this machine's table;
/// a line that does not split into seven fields fails the test rather than being guessed at.
fn df() -> anyhow::Result<BTreeMap<String, DfRow>> {
    let output = Command::new("df").args(["-P", "-T", "-B1"]).output().context("running df")?;
    // df exits 1 when one mount point cannot be read (a container going away meanwhile); its
    // other lines stand.
    let text = String::from_utf8(output.stdout)?;
    let mut rows = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [source, fs_type, size, _used, _available, _capacity, mount_point] = fields[..] else {
            bail!("unexpected df line: {line:?}");
        };
        rows.insert(
            mount_point.to_owned(),
            DfRow { source: source.into(), fs_type: fs_type.into(), size: size.parse()? },
        );
    }
    Ok(rows)
}

#[test]
fn every_real_file_system_df_lists_is_listed_with_its_size() -> anyhow::Result<()> {
    // Other tests start and remove containers meanwhile, each with its own overlay mount: only
    // mounts df shows both before and after the listing are compared.
    let before = df()?;
    let listed = HostFilesystems::new("/proc/self/mountinfo").list()?;
    let after = df()?;
    let listed: BTreeMap<&str, _> = listed.iter().map(|f| (f.mount_point.as_str(), f)).collect();

    let mut compared = 0;
    for (mount_point, row) in &before {
        if PSEUDO.contains(&row.fs_type.as_str()) || after.get(mount_point) != Some(row) {
            continue;
        }
        let Some(fs) = listed.get(mount_point.as_str()) else {
            bail!("df lists {mount_point} ({row:?}), HostFilesystems does not: {listed:#?}");
        };
        assert_eq!(fs.size_bytes, row.size, "size of {mount_point}");
        assert_eq!(fs.fs_type, row.fs_type, "type of {mount_point}");
        assert_eq!(fs.source, row.source, "source of {mount_point}");
        assert!(fs.used_bytes <= fs.size_bytes && fs.available_bytes <= fs.size_bytes, "{fs:?}");
        compared += 1;
    }
    assert!(compared > 0, "df lists no real file system: {before:#?}");
    assert!(listed.contains_key("/"), "the root file system is listed: {listed:#?}");
    Ok(())
}

#[test]
fn no_pseudo_or_empty_file_system_is_listed() -> anyhow::Result<()> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    assert!(
        table.lines().any(|l| l.contains(" - proc ") || l.contains(" - sysfs ")),
        "this machine's table has pseudo file systems to leave out"
    );
    let listed = HostFilesystems::new("/proc/self/mountinfo").list()?;
    for fs in &listed {
        assert!(!PSEUDO.contains(&fs.fs_type.as_str()), "pseudo file system listed: {fs:?}");
        assert!(fs.size_bytes > 0, "empty file system listed: {fs:?}");
    }
    let mut points: Vec<&str> = listed.iter().map(|f| f.mount_point.as_str()).collect();
    points.sort_unstable();
    points.dedup();
    assert_eq!(points.len(), listed.len(), "a mount point listed twice: {listed:#?}");
    Ok(())
}
