//! Parser of `df -P -k` (POSIX format, 1024-byte blocks), as busybox and GNU coreutils print it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why `df` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing was printed.
    #[error("no output")]
    Empty,
    /// The first line is not the `df -P -k` header.
    #[error("unexpected header `{0}`: not `df -P -k` output")]
    Header(String),
    /// A filesystem line does not parse.
    #[error("line {line}: cannot parse `{text}`")]
    Row {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// One mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Filesystem {
    /// Device or source, e.g. `/dev/sda1`, `overlay`, `tmpfs`.
    pub filesystem: String,
    /// Where it is mounted.
    pub mount: String,
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Used bytes.
    pub used_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
    /// Used share as `df` rounds it, in percent; none when `df` prints `-` (size 0).
    pub use_percent: Option<u8>,
}

/// The filesystems in `df -P -k` output. Every line after the header must parse: a line that does
/// not is an error naming it, never silently dropped.
pub fn filesystems(text: &str) -> Result<Vec<Filesystem>, ParseError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.starts_with("Filesystem") && header.contains("1024-blocks") => {}
        Some((_, header)) => return Err(ParseError::Header(header.to_owned())),
        None => return Err(ParseError::Empty),
    }
    lines.map(|(n, line)| row(line).ok_or_else(|| ParseError::Row { line: n + 1, text: line.to_owned() })).collect()
}

/// `source blocks used available capacity% mount`; source and mount may contain spaces, so the
/// four numbers and the percentage anchor the split.
fn row(line: &str) -> Option<Filesystem> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let is_num = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let at = (1..tokens.len().saturating_sub(4)).find(|&i| {
        tokens[i..i + 3].iter().all(|t| is_num(t)) && (tokens[i + 3].ends_with('%') || tokens[i + 3] == "-")
    })?;
    let kib = |t: &str| t.parse::<u64>().ok()?.checked_mul(1024);
    let percent = tokens[at + 3];
    let use_percent = if percent == "-" { None } else { Some(percent.trim_end_matches('%').parse().ok()?) };
    Some(Filesystem {
        filesystem: tokens[..at].join(" "),
        mount: tokens[at + 4..].join(" "),
        size_bytes: kib(tokens[at])?,
        used_bytes: kib(tokens[at + 1])?,
        available_bytes: kib(tokens[at + 2])?,
        use_percent,
    })
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    // busybox 1.36 `df -P -k` inside a container.
    const BUSYBOX: &str = "Filesystem           1024-blocks    Used Available Capacity Mounted on
overlay               61255492  23475120  34638032  40% /
tmpfs                    65536         0     65536   0% /dev
shm                      65536         0     65536   0% /dev/shm
/dev/sda1             61255492  23475120  34638032  40% /etc/hosts
";
    // GNU coreutils 9.1 `df -P -k` on Debian 12.
    const GNU: &str = "Filesystem     1024-blocks     Used Available Capacity Mounted on
udev               4012532        0   4012532       0% /dev
tmpfs               804860     1044    803816       1% /run
/dev/vda1         40973536 35012124   4061876      90% /
//nas/backup share 976762584 512000000 464762584      53% /mnt/nas backup
";

    #[test]
    fn busybox_output_gives_sizes_in_bytes() {
        let fs = filesystems(BUSYBOX).expect("parsed");
        assert_eq!(fs.len(), 4);
        assert_eq!(fs[0].filesystem, "overlay");
        assert_eq!(fs[0].mount, "/");
        assert_eq!(fs[0].size_bytes, 61_255_492 * 1024);
        assert_eq!(fs[0].used_bytes, 23_475_120 * 1024);
        assert_eq!(fs[0].available_bytes, 34_638_032 * 1024);
        assert_eq!(fs[0].use_percent, Some(40));
        assert_eq!((fs[1].mount.as_str(), fs[1].use_percent), ("/dev", Some(0)));
    }

    #[test]
    fn gnu_output_with_spaces_in_names_parses() {
        let fs = filesystems(GNU).expect("parsed");
        assert_eq!(fs[2].use_percent, Some(90));
        assert_eq!(fs[3].filesystem, "//nas/backup share");
        assert_eq!(fs[3].mount, "/mnt/nas backup");
        assert_eq!(fs[3].use_percent, Some(53));
    }

    #[test]
    fn a_filesystem_without_size_has_no_percentage() {
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\nproc 0 0 0 - /proc\n";
        let fs = filesystems(text).expect("parsed");
        assert_eq!((fs[0].size_bytes, fs[0].use_percent), (0, None));
    }

    #[test]
    fn other_text_is_an_error_naming_the_line() {
        assert_eq!(filesystems(""), Err(ParseError::Empty));
        assert_eq!(
            filesystems("df: invalid option -- 'P'\n"),
            Err(ParseError::Header("df: invalid option -- 'P'".into()))
        );
        let err = filesystems("Filesystem 1024-blocks Used Available Capacity Mounted on\nbroken line\n")
            .expect_err("bad row");
        assert_eq!(err.to_string(), "line 2: cannot parse `broken line`");
    }
}
