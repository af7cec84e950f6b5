//! [`Filesystems`] from a mount table in the `mountinfo` format (`/proc/self/mountinfo`) and
//! `statvfs` of each mount point.
//!
//! What is listed, as `df` shows it without `-a`, less what only takes memory:
//! - pseudo file systems are left out: the kernel's own (`proc`, `sysfs`, `cgroup`, `cgroup2`,
//!   `devpts`, `mqueue`, `debugfs`, `tracefs`, `securityfs`, `pstore`, `bpf`, `configfs`,
//!   `fusectl`, `hugetlbfs`, `autofs`, `binfmt_misc`, `nsfs`, `efivarfs`, `selinuxfs`,
//!   `rpc_pipefs`, `nfsd`, `fuse.lxcfs`...) and the memory-backed ones (`tmpfs`, `devtmpfs`,
//!   `ramfs`), which `df` does show but which hold no data a disk could run out of;
//! - so is every file system whose size is 0 (`df` hides those too);
//! - a file system mounted at several places (bind mounts: same device number) is listed once,
//!   like `df` does: at the mount of the shallowest part of it (its root before a subdirectory),
//!   then the mount point nearest `/`, then the first in the table;
//! - overlay and FUSE file systems (a container's root, `fuse-overlayfs`, sshfs) are listed:
//!   they have a size of their own, and `df` lists them.
//!
//! A mount point `statvfs` cannot reach (gone since the table was read, no permission) is left
//! out and logged at debug level. `statvfs` blocks: on a hung network file system it hangs, so
//! callers on an async runtime call [`Filesystems::list`] from a blocking thread.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::{Filesystem, Filesystems, SystemConfig, SystemError};

/// File system types that are never listed (see the module documentation).
const PSEUDO_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Whether `fs_type` is a pseudo file system [`HostFilesystems`] leaves out.
pub(crate) fn is_pseudo(fs_type: &str) -> bool {
    PSEUDO_TYPES.contains(&fs_type)
}

/// The host's file systems, read from a `mountinfo` table.
#[derive(Debug, Clone)]
pub struct HostFilesystems {
    table: PathBuf,
}

impl HostFilesystems {
    /// File systems of the mount table at `table` (`/proc/self/mountinfo` format).
    pub fn new(table: impl Into<PathBuf>) -> HostFilesystems {
        HostFilesystems { table: table.into() }
    }

    /// File systems of [`SystemConfig::mount_table`].
    pub fn from_config(config: &SystemConfig) -> HostFilesystems {
        HostFilesystems::new(&config.mount_table)
    }

    /// The mount table read.
    pub fn table(&self) -> &Path {
        &self.table
    }
}

impl Filesystems for HostFilesystems {
    fn list(&self) -> Result<Vec<Filesystem>, SystemError> {
        let text = std::fs::read(&self.table).map_err(|e| {
            SystemError::Unavailable(format!("cannot read the mount table `{}`: {e}", self.table.display()))
        })?;
        let mut listed = Vec::new();
        for mount in distinct(parse_mountinfo(&text).into_iter().filter(|m| !is_pseudo(&m.fs_type))) {
            let path = Path::new(OsStr::from_bytes(&mount.mount_point));
            let stat = match rustix::fs::statvfs(path) {
                Ok(stat) => stat,
                Err(e) => {
                    tracing::debug!(mount_point = %path.display(), error = %e, "file system left out: statvfs failed");
                    continue;
                }
            };
            if stat.f_blocks == 0 {
                continue;
            }
            let unit = stat.f_frsize;
            listed.push(Filesystem {
                source: lossy(&mount.source),
                mount_point: lossy(&mount.mount_point),
                fs_type: mount.fs_type,
                size_bytes: stat.f_blocks.saturating_mul(unit),
                used_bytes: stat.f_blocks.saturating_sub(stat.f_bfree).saturating_mul(unit),
                available_bytes: stat.f_bavail.saturating_mul(unit),
                read_only: mount.read_only,
            });
        }
        Ok(listed)
    }
}

/// One line of a `mountinfo` table, with what [`HostFilesystems`] needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// `major:minor` of the file system's device (`st_dev`).
    pub device: String,
    /// The directory of the file system mounted here (`/` unless it is a bind mount of a part).
    pub root: Vec<u8>,
    /// Where, unescaped (bytes: a mount point need not be UTF-8).
    pub mount_point: Vec<u8>,
    /// Mounted read-only (`ro` in the mount's options or in the super block's).
    pub read_only: bool,
    /// File system type, with its subtype (`fuse.sshfs`).
    pub fs_type: String,
    /// What is mounted, unescaped.
    pub source: Vec<u8>,
}

/// Parses a `mountinfo` table (proc(5)):
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`, that is
/// mount id, parent id, `major:minor`, root, mount point, mount options, zero or more optional
/// fields ended by `-`, type, source, super block options. Paths escape space, tab, newline and
/// backslash as `\ooo`. A line that does not parse is left out (logged at debug level).
pub(crate) fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let entry = parse_line(line);
            if entry.is_none() {
                tracing::debug!(line = %String::from_utf8_lossy(line), "mount table line left out: malformed");
            }
            entry
        })
        .collect()
}

fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let mut fields = line.split(|&b| b == b' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let device = std::str::from_utf8(fields.next()?).ok()?;
    let root = unescape(fields.next()?);
    let mount_point = unescape(fields.next()?);
    let options = fields.next()?;
    // Optional fields (`shared:1`, `master:2`...), as many as there are, up to the separator.
    fields.by_ref().find(|field| *field == b"-")?;
    let fs_type = std::str::from_utf8(fields.next()?).ok()?;
    let source = unescape(fields.next()?);
    let super_options = fields.next().unwrap_or_default();
    if !device.contains(':') || fs_type.is_empty() || mount_point.first() != Some(&b'/') {
        return None;
    }
    let read_only = has_option(options, b"ro") || has_option(super_options, b"ro");
    Some(MountEntry { device: device.to_owned(), root, mount_point, read_only, fs_type: fs_type.to_owned(), source })
}

fn has_option(options: &[u8], option: &[u8]) -> bool {
    options.split(|&b| b == b',').any(|o| o == option)
}

/// Undoes the kernel's `\ooo` octal escapes (`\040` is a space); anything else stays as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// One entry per device, in table order, chosen as the module documentation says.
fn distinct(mounts: impl Iterator<Item = MountEntry>) -> Vec<MountEntry> {
    let mut kept: Vec<MountEntry> = Vec::new();
    for mount in mounts {
        match kept.iter_mut().find(|k| k.device == mount.device) {
            None => kept.push(mount),
            Some(existing) => {
                let rank = |m: &MountEntry| (m.root.len(), m.mount_point.len());
                if rank(&mount) < rank(existing) {
                    *existing = mount;
                }
            }
        }
    }
    kept
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334076k,mode=755
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
45 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard
46 45 0:40 / /var/lib/docker/overlay/merged rw,nodev,noatime shared:2 master:7 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0
50 27 8:17 / /mnt/my\\040disk ro,nosuid shared:5 - xfs /dev/sdb1 ro,attr2
51 27 8:18 / /srv/back\\134slash\\011tab rw - ext4 /dev/disk/by-label/a\\040b rw
52 27 0:50 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
53 27 0:51 / /run rw,nosuid - tmpfs tmpfs rw,mode=755
54 27 8:19 / /data rw - ext4 /dev/sdc1 ro
";

    #[test]
    fn parses_fields_optional_fields_and_escapes() {
        let mounts = parse_mountinfo(TABLE.as_bytes());
        assert_eq!(mounts.len(), 10);
        let root = &mounts[2];
        assert_eq!(
            (root.device.as_str(), root.mount_point.as_slice(), root.fs_type.as_str()),
            ("254:0", &b"/"[..], "ext4")
        );
        assert_eq!(root.source, b"/dev/vda");
        assert!(!root.read_only);
        assert_eq!(mounts[3].root, b"/var/lib/docker");
        assert_eq!(mounts[4].fs_type, "fuse.fuse-overlayfs", "two optional fields");
        assert_eq!(mounts[5].mount_point, b"/mnt/my disk");
        assert!(mounts[5].read_only);
        assert_eq!(mounts[6].mount_point, b"/srv/back\\slash\ttab");
        assert_eq!(mounts[6].source, b"/dev/disk/by-label/a b");
        assert!(mounts[9].read_only, "read-only super block");
    }

    #[test]
    fn malformed_lines_are_left_out() {
        let text =
            b"garbage\n27 1 254:0 / / rw - ext4 /dev/vda rw\n28 1 8:1 / /x rw no-separator ext4 /dev/sda1 rw\n\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, b"/");
    }

    #[test]
    fn unescape_leaves_what_is_not_an_octal_escape() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"a\\0"), b"a\\0");
        assert_eq!(unescape(b"a\\089"), b"a\\089");
        assert_eq!(unescape(b"\\777"), b"\\777", "not a byte");
        assert_eq!(unescape(b"\\303\\251"), "é".as_bytes());
    }

    #[test]
    fn pseudo_types_and_bind_mounts_are_left_out() {
        let mounts = parse_mountinfo(TABLE.as_bytes());
        let real: Vec<MountEntry> = distinct(mounts.into_iter().filter(|m| !is_pseudo(&m.fs_type)));
        let points: Vec<String> = real.iter().map(|m| lossy(&m.mount_point)).collect();
        assert_eq!(points, ["/", "/var/lib/docker/overlay/merged", "/mnt/my disk", "/srv/back\\slash\ttab", "/data"]);
    }

    #[test]
    fn a_bind_mount_listed_first_gives_way_to_the_root_of_its_file_system() {
        let text = b"30 1 8:1 /srv/www /var/www rw - ext4 /dev/sda1 rw\n31 1 8:1 / /srv rw - ext4 /dev/sda1 rw\n";
        let kept = distinct(parse_mountinfo(text).into_iter());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].mount_point, b"/srv");
    }

    #[test]
    fn an_unreadable_table_is_unavailable() {
        let err = HostFilesystems::new("/nonexistent/mountinfo").list().unwrap_err();
        assert!(matches!(&err, SystemError::Unavailable(m) if m.contains("/nonexistent/mountinfo")), "{err:?}");
    }

    #[test]
    fn gone_mount_points_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("mountinfo");
        std::fs::write(
            &table,
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n28 1 8:99 / /nonexistent/mount rw - ext4 /dev/sdz rw\n",
        )
        .unwrap();
        let listed = HostFilesystems::new(&table).list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].mount_point, "/");
        assert!(listed[0].size_bytes > 0 && listed[0].used_bytes <= listed[0].size_bytes);
    }
}
