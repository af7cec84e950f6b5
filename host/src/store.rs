//! Everything durable, in one redb file under `data_dir`. Every table is declared in
//! `store/tables.rs`; writes are scoped and committed in one place (`Store::write`); async
//! callers go through [`Store::call`], which runs the blocking work off the async runtime.
//!
//! The data directory is its owner's alone (0700) and so is the database file (0600): it holds
//! password hashes and the raw parameters of pending actions. Both are created so, and an
//! existing directory or file open to others is restricted when the store opens (a warning
//! says so); a store whose modes cannot be restricted is not opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::Role;

pub mod tables;

/// File name of the database inside `data_dir`.
pub const DB_FILE: &str = "toolgate.redb";

/// redb's page cache. Its default (1 GiB) grows with the file, as every page written stays
/// cached: a busy server kept faulting in fresh memory (zeroed 2 MiB at a time with transparent
/// huge pages) during commits, which showed in the tail latency of every call waiting for them.
/// The hot set (the B-trees' upper levels, the newest leaves) fits in far less, and the audit
/// tool reads the newest entries from memory (`governance::audit::Tail`).
const CACHE_BYTES: usize = 64 << 20;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb refused an operation (I/O, corruption, lock).
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// The data directory, or a file in it, could not be created or restricted to its owner.
    #[error("cannot create or restrict to its owner `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database file disappeared while the server runs: new data would be lost on restart.
    #[error("database file `{0}` is missing")]
    FileMissing(PathBuf),
    /// A stored record could not be decoded.
    #[error("corrupt record in `{table}`: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A user with that name exists already.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No user with that name.
    #[error("no user `{0}`")]
    NoUser(String),
    /// An API key with that name exists already.
    #[error("api key `{0}` already exists")]
    KeyExists(String),
    /// No API key with that name.
    #[error("no api key `{0}`")]
    NoKey(String),
    /// The blocking task was cancelled or panicked.
    #[error("store task failed: {0}")]
    Task(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Unique user name.
    pub username: String,
    /// PHC string (`$scrypt$ln=..,r=..,p=..$salt$hash`): the parameters travel with the hash.
    pub password_hash: String,
    /// The user's role.
    pub role: Role,
    /// When the account was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A disabled user cannot log in and their tokens stop working at once.
    pub disabled: bool,
    /// Login tokens issued before this instant (Unix seconds) are refused: a password change
    /// ends every other session.
    #[serde(default)]
    pub tokens_valid_after: u64,
}

impl UserRecord {
    /// A new, enabled account created now.
    pub fn new(username: impl Into<String>, password_hash: String, role: Role) -> UserRecord {
        UserRecord {
            username: username.into(),
            password_hash,
            role,
            created_at: OffsetDateTime::now_utc(),
            disabled: false,
            tokens_valid_after: 0,
        }
    }
}

/// A service account's API key. Only a SHA-256 of the secret is kept: the secret has 256 bits of
/// entropy, so a slow hash would add latency to every request without adding safety.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public identifier, part of the key string; the table key.
    pub id: String,
    /// Unique, human-chosen name; the caller name requests carry.
    pub name: String,
    /// The key's role.
    pub role: Role,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Revoked keys stay listed (for the audit trail) but never authenticate.
    pub revoked: bool,
}

/// What a bearer of a login token needs checked on every request, read in one transaction.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user, if it still exists.
    pub user: Option<UserRecord>,
    /// Whether the token id was revoked (logout, refresh).
    pub revoked: bool,
}

/// The redb database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { table, source })
}

pub(crate) fn encode<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Corrupt { table, source })
}

/// Create `dir` (and missing parents) for its owner only, or restrict an existing one to its owner.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })?;
    }
    restrict(dir, 0o700)
}

/// Open (creating it 0600 if missing) a file in the data directory for its owner only.
pub fn private_file(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| StoreError::DataDir { path: path.to_owned(), source })?;
    restrict(path, 0o600)?;
    Ok(file)
}

/// Set `path` to `mode` if group or others have any access to it, and say so.
fn restrict(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |source| StoreError::DataDir { path: path.to_owned(), source };
    let current = std::fs::metadata(path).map_err(failed)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
        tracing::warn!(
            path = %path.display(),
            was = format!("{current:o}"),
            now = format!("{mode:o}"),
            "restricted to its owner: it was open to other users"
        );
    }
    Ok(())
}

impl Store {
    /// Open (or create) the database in `data_dir`, creating every table; the directory and the
    /// file are made their owner's alone.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let backend = redb::backends::FileBackend::new(private_file(&path)?)?;
        let db = Database::builder().set_cache_size(CACHE_BYTES).create_with_backend(backend)?;
        let store = Store { db: Arc::new(db), path };
        // Read transactions fail on tables never written; create them all up front.
        store.write(|tx| {
            tx.open_table(tables::USERS)?;
            tx.open_table(tables::REVOKED_TOKENS)?;
            tx.open_table(tables::API_KEYS)?;
            tx.open_table(tables::AUDIT)?;
            tx.open_table(tables::ACTIONS)?;
            tx.open_table(tables::ROLLBACK_LOG)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run blocking store work on the blocking thread pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The one place writes happen: `f` runs in a write transaction committed only if it succeeds
    /// (durably: redb's default `Immediate` durability). The governance journal batches many
    /// writes into one call (group commit).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let tx = self.db.begin_write()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// A read transaction, for modules that keep their tables' codecs (governance).
    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Readiness: the file is still there and a read transaction works.
    pub fn health(&self) -> Result<(), StoreError> {
        if !self.path.exists() {
            return Err(StoreError::FileMissing(self.path.clone()));
        }
        let tx = self.db.begin_read()?;
        tx.open_table(tables::USERS)?.len()?;
        Ok(())
    }

    /// One user.
    pub fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(tables::USERS)?;
        table.get(username)?.map(|v| decode("users_v1", v.value())).transpose()
    }

    /// The user and the revocation state of a token id, consistently.
    pub fn session(&self, username: &str, jti: &str) -> Result<Session, StoreError> {
        let tx = self.db.begin_read()?;
        let users = tx.open_table(tables::USERS)?;
        let user = users.get(username)?.map(|v| decode("users_v1", v.value())).transpose()?;
        let revoked = tx.open_table(tables::REVOKED_TOKENS)?.get(jti)?.is_some();
        Ok(Session { user, revoked })
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(tables::USERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode("users_v1", v.value())?);
        }
        Ok(out)
    }

    /// How many users exist.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(tables::USERS)?.len()?)
    }

    /// Add a user; refuses an existing name.
    pub fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let bytes = encode("users_v1", user)?;
        self.write(|tx| {
            let mut table = tx.open_table(tables::USERS)?;
            if table.get(user.username.as_str())?.is_some() {
                return Err(StoreError::UserExists(user.username.clone()));
            }
            table.insert(user.username.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Change a user in place and return the new record.
    pub fn update_user(&self, username: &str, change: impl FnOnce(&mut UserRecord)) -> Result<UserRecord, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(tables::USERS)?;
            let mut user: UserRecord = match table.get(username)? {
                Some(v) => decode("users_v1", v.value())?,
                None => return Err(StoreError::NoUser(username.to_owned())),
            };
            change(&mut user);
            let bytes = encode("users_v1", &user)?;
            table.insert(username, bytes.as_slice())?;
            Ok(user)
        })
    }

    /// Revoke a token id until `expires_at` (Unix seconds), after which the token is dead anyway.
    pub fn revoke_token(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(tables::REVOKED_TOKENS)?.insert(jti, expires_at)?;
            Ok(())
        })
    }

    /// Forget revocations of tokens expired before `now` (Unix seconds); returns how many.
    pub fn purge_revoked(&self, now: u64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(tables::REVOKED_TOKENS)?;
            let mut purged = 0;
            table.retain(|_, exp| {
                let keep = exp >= now;
                purged += usize::from(!keep);
                keep
            })?;
            Ok(purged)
        })
    }

    /// Add an API key; refuses a name in use, even by a revoked key.
    pub fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let bytes = encode("api_keys_v1", key)?;
        self.write(|tx| {
            let mut table = tx.open_table(tables::API_KEYS)?;
            for entry in table.iter()? {
                let (_, v) = entry?;
                let existing: ApiKeyRecord = decode("api_keys_v1", v.value())?;
                if existing.name == key.name {
                    return Err(StoreError::KeyExists(key.name.clone()));
                }
            }
            table.insert(key.id.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// One API key by id.
    pub fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(tables::API_KEYS)?;
        table.get(id)?.map(|v| decode("api_keys_v1", v.value())).transpose()
    }

    /// Every API key.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(tables::API_KEYS)?;
        let mut out: Vec<ApiKeyRecord> = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode("api_keys_v1", v.value())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Revoke the API key called `name`; returns it.
    pub fn revoke_api_key(&self, name: &str) -> Result<ApiKeyRecord, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(tables::API_KEYS)?;
            let mut found = None;
            for entry in table.iter()? {
                let (_, v) = entry?;
                let key: ApiKeyRecord = decode("api_keys_v1", v.value())?;
                if key.name == name {
                    found = Some(key);
                    break;
                }
            }
            let mut key = found.ok_or_else(|| StoreError::NoKey(name.to_owned()))?;
            key.revoked = true;
            let bytes = encode("api_keys_v1", &key)?;
            table.insert(key.id.as_str(), bytes.as_slice())?;
            Ok(key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserRecord {
        UserRecord::new(name, "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA".into(), Role::Viewer)
    }

    #[test]
    fn users_survive_reopening_and_names_are_unique() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            store.insert_user(&user("alice"))?;
            assert!(matches!(store.insert_user(&user("alice")), Err(StoreError::UserExists(_))));
            store.update_user("alice", |u| u.role = Role::Operator)?;
            assert!(matches!(store.update_user("bob", |_| ()), Err(StoreError::NoUser(_))));
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.user("alice")?.map(|u| u.role), Some(Role::Operator));
        assert_eq!(store.user_count()?, 1);
        Ok(())
    }

    #[test]
    fn revocations_are_purged_after_expiry() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.revoke_token("old", 100)?;
        store.revoke_token("new", 300)?;
        assert_eq!(store.purge_revoked(200)?, 1);
        assert!(!store.session("x", "old")?.revoked);
        assert!(store.session("x", "new")?.revoked);
        Ok(())
    }

    #[test]
    fn health_notices_a_deleted_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.health()?;
        std::fs::remove_file(store.path())?;
        assert!(matches!(store.health(), Err(StoreError::FileMissing(_))));
        Ok(())
    }
}
