//! Everything durable, in one redb file under `data_dir`, behind domain operations: accounts
//! ([`accounts`]), the audit log, action records and undo records ([`Snapshot`] to read, [`Tx`] to
//! write). No redb type crosses this crate's API. Every table is declared in `store/tables.rs`;
//! writes are scoped and committed in one place ([`Store::write`]); async callers go through
//! [`Store::call`], which runs the blocking work off the async runtime. It uses only
//! `toolgate-core`: the record types are its callers', encoded as JSON.
//!
//! The data directory is its owner's alone (0700) and so is the database file (0600): it holds
//! password hashes and the raw parameters of pending actions. Both are created so, and an
//! existing directory or file open to others is restricted when the store opens (a warning
//! says so); a store whose modes cannot be restricted is not opened.
//!
//! Uses only `toolgate-core`; the records of the layers above are stored as JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, WriteTransaction};

pub mod accounts;
mod audit;
mod snapshot;
mod tables;
mod tx;

pub use accounts::{AccountChange, Actor, ApiKeyRecord, Changed, Session, UserRecord};
pub use audit::{AuditEntries, AuditEntry};
pub use snapshot::Snapshot;
pub use tx::Tx;

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
    /// An append to the audit log found the entry's sequence number taken: the log is
    /// append-only, so the transaction is not committed.
    #[error("audit entry {0} exists already: the audit log is append-only")]
    AuditSeqTaken(u64),
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
    /// The change would leave no enabled administrator.
    #[error("refused: `{0}` is the last enabled administrator")]
    LastAdmin(String),
    /// An API key tried to create, promote or enable an administrator.
    #[error("an api key cannot make `{0}` an enabled administrator; log in with a password")]
    KeyGrantsAdmin(String),
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

/// The redb database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Create `dir` (and missing parents) for its owner only, or restrict an existing one to its owner.
pub fn private_dir(dir: &Path) -> Result<(), StoreError> {
    toolgate_core::private_fs::dir(dir).map_err(|source| StoreError::DataDir { path: dir.to_owned(), source })
}

/// Open (creating it 0600 if missing) a file in the data directory for its owner only.
pub fn private_file(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| StoreError::DataDir { path: path.to_owned(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    toolgate_core::private_fs::restrict(path, 0o600).map_err(failed)?;
    Ok(file)
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
        store.transact(|tx| {
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
    /// writes into one call (group commit). One write transaction runs at a time: a check made
    /// in `f` holds until the commit.
    pub fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.transact(|tx| Tx::scoped(tx, f))
    }

    /// [`Store::write`] on redb's own transaction, for the operations of this crate.
    pub(crate) fn transact<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_write()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// A consistent, read-only view of the store as of now (writes committed later are not in it).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::new(self.db.begin_read()?))
    }

    /// Up to `limit` audit entries, newest first, strictly before `before` when given
    /// (pagination), decoded as `T`. See [`Snapshot::audit_page`].
    pub fn audit_page<T: serde::de::DeserializeOwned>(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        self.snapshot()?.audit_page(before, limit)
    }

    /// The action record `id`, decoded as `T`. See [`Snapshot::action`].
    pub fn action<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        self.snapshot()?.action(id)
    }

    /// The undo record of action `id`, decoded as `T`. See [`Snapshot::undo`].
    pub fn undo<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>, StoreError> {
        self.snapshot()?.undo(id)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
