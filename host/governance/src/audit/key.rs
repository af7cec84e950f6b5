//! The key of the audit chain's links, kept outside the data directory: whoever can rewrite the
//! database (a backup restored by an attacker, a local user with write access to the data
//! directory) cannot sign a rewritten log without it.
//!
//! The key file holds at least [`MIN_KEY_BYTES`] bytes (surrounding whitespace is ignored), e.g.
//! `openssl rand -hex 32`; it must be a regular file readable by its owner only and lie outside
//! `data_dir`. Production mode requires one; development mode without one derives the key from the
//! JWT secret (see `toolgate audit` and `toolgate serve`).

use std::path::{Component, Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `[audit]`: the audit log's chain key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// File holding the key of the chain's HMAC links (`TOOLGATE_AUDIT_KEY_FILE`): at least 32
    /// bytes, readable by its owner only, outside `data_dir`. Required in production; empty in
    /// development derives a key from the JWT secret.
    pub key_file: PathBuf,
}

/// Fewest bytes a key file holds.
pub const MIN_KEY_BYTES: usize = 32;

/// Fewest distinct byte values in a key: refuses one repeated character or a short pattern
/// (random hex text of 32 bytes or more has 15 or 16).
const MIN_DISTINCT_BYTES: usize = 8;

/// What a derived development key is derived with: changing it re-keys every development log.
const DERIVE_LABEL: &[u8] = b"toolgate audit chain key v1";

/// The HMAC-SHA256 key of the chain's links. `Debug` never shows it.
#[derive(Clone)]
pub struct ChainKey(Hmac<Sha256>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(***)")
    }
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Production mode without a key file.
    #[error(
        "the audit log is keyed and no key is configured: set `audit.key_file` or `TOOLGATE_AUDIT_KEY_FILE` to a file outside the data directory, readable by its owner only, holding at least {MIN_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
    )]
    Missing,
    /// The file cannot be read.
    #[error("cannot read the audit key file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is inside the data directory, which is what the key protects.
    #[error(
        "the audit key file `{path}` is inside the data directory `{data_dir}`: keep it elsewhere, so that whoever can rewrite the log cannot read the key"
    )]
    InsideDataDir {
        /// The file.
        path: PathBuf,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// Not a regular file.
    #[error("the audit key file `{0}` is not a regular file")]
    NotAFile(PathBuf),
    /// Group or others have access.
    #[error("the audit key file `{path}` is open to other users (mode {mode:o}): `chmod 600` it")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Too short or too regular.
    #[error("the audit key in `{path}` is too weak: {reason}; generate one with `openssl rand -hex 32`")]
    Weak {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ChainKey {
    fn from_bytes(bytes: &[u8]) -> ChainKey {
        // HMAC takes a key of any length: this cannot fail.
        ChainKey(Hmac::<Sha256>::new_from_slice(bytes).unwrap_or_else(|_| unreachable_key()))
    }

    /// Read and check the key in `path`, which must lie outside `data_dir`.
    pub fn load_file(path: &Path, data_dir: &Path) -> Result<ChainKey, KeyError> {
        if inside(path, data_dir) {
            return Err(KeyError::InsideDataDir { path: path.to_owned(), data_dir: data_dir.to_owned() });
        }
        let read = |source| KeyError::Read { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(KeyError::NotAFile(path.to_owned()));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed { path: path.to_owned(), mode });
            }
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let key = bytes.trim_ascii();
        let weak = |reason: String| Err(KeyError::Weak { path: path.to_owned(), reason });
        if key.len() < MIN_KEY_BYTES {
            return weak(format!("{} bytes, at least {MIN_KEY_BYTES} are required", key.len()));
        }
        let mut seen = [false; 256];
        for b in key {
            seen[usize::from(*b)] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        if distinct < MIN_DISTINCT_BYTES {
            return weak(format!("only {distinct} distinct characters"));
        }
        Ok(ChainKey::from_bytes(key))
    }

    /// A key derived from `secret` (development mode, from the JWT secret): only as private as
    /// the secret is.
    pub fn derive(secret: &str) -> ChainKey {
        let mut mac = ChainKey::from_bytes(secret.as_bytes()).0;
        mac.update(DERIVE_LABEL);
        ChainKey::from_bytes(&mac.finalize().into_bytes())
    }

    /// A fresh random key (tests).
    pub fn random() -> ChainKey {
        ChainKey::from_bytes(&rand::random::<[u8; 32]>())
    }

    /// The link of entry `seq` after `prev`: hex `HMAC-SHA256(key, prev "\n" seq "\n" event)`
    /// over the event's JSON exactly as stored.
    pub fn link(&self, prev: &str, seq: u64, event_json: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(prev.as_bytes());
        mac.update(b"\n");
        mac.update(seq.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(event_json);
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cold]
fn unreachable_key() -> Hmac<Sha256> {
    // Only reached if the `hmac` crate started refusing some key length; fail loudly.
    panic!("hmac-sha256 refused a key")
}

/// Whether `path` is `dir` or lies under it, spelled as given or after resolving symbolic links.
fn inside(path: &Path, dir: &Path) -> bool {
    let lexical = normalize(path).starts_with(normalize(dir));
    let resolved = match (path.canonicalize(), dir.canonicalize()) {
        (Ok(path), Ok(dir)) => path.starts_with(dir),
        _ => false,
    };
    lexical || resolved
}

/// `path` made absolute against the working directory, `.` and `..` resolved by name.
fn normalize(path: &Path) -> PathBuf {
    let absolute =
        if path.is_absolute() { path.to_owned() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_key(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, content)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    #[test]
    fn a_key_file_inside_the_data_dir_exposed_or_weak_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let good = "6f1c0d9a4b7e2f3a8c5d6e7f9012ab34cd56ef7890a1b2c3d4e5f60718293a4b";
        let outside = dir.path().join("audit.key");
        write_key(&outside, &format!("{good}\n"), 0o600)?;
        let key = ChainKey::load_file(&outside, &data)?;
        assert_eq!(key.link("p", 1, b"{}"), ChainKey::load_file(&outside, &data)?.link("p", 1, b"{}"));
        assert_ne!(key.link("p", 1, b"{}"), ChainKey::random().link("p", 1, b"{}"));
        assert_eq!(format!("{key:?}"), "ChainKey(***)");

        let within = data.join("audit.key");
        write_key(&within, good, 0o600)?;
        assert!(matches!(ChainKey::load_file(&within, &data), Err(KeyError::InsideDataDir { .. })));
        // Spelled with `..`, or reached through a symbolic link.
        let dotted = dir.path().join("elsewhere/../data/audit.key");
        assert!(matches!(ChainKey::load_file(&dotted, &data), Err(KeyError::InsideDataDir { .. })));
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&within, &link)?;
        assert!(matches!(ChainKey::load_file(&link, &data), Err(KeyError::InsideDataDir { .. })));

        write_key(&outside, good, 0o640)?;
        assert!(matches!(ChainKey::load_file(&outside, &data), Err(KeyError::Exposed { mode: 0o640, .. })));
        write_key(&outside, &good[..31], 0o600)?;
        assert!(matches!(ChainKey::load_file(&outside, &data), Err(KeyError::Weak { .. })));
        write_key(&outside, &"a".repeat(64), 0o600)?;
        assert!(matches!(ChainKey::load_file(&outside, &data), Err(KeyError::Weak { .. })));
        assert!(matches!(ChainKey::load_file(&dir.path().join("none"), &data), Err(KeyError::Read { .. })));
        assert!(matches!(ChainKey::load_file(dir.path(), &data), Err(KeyError::NotAFile(_))));
        Ok(())
    }
}
