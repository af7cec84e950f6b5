//! Accounts and API keys: the records, and the domain operations on them. Every change that a
//! rule depends on (the last enabled admin, a key outliving its creator's authority, a refresh
//! token used twice) is checked inside the write transaction that makes it: redb runs one write
//! transaction at a time, so two concurrent requests cannot both pass a check the other breaks.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::tables::{decode, encode};
use super::{Store, StoreError, tables};
use toolgate_core::model::Role;

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
    /// Login tokens issued before this instant (Unix seconds) are refused. Kept for tokens
    /// issued before [`UserRecord::generation`] existed.
    #[serde(default)]
    pub tokens_valid_after: u64,
    /// Session generation, carried in every login token and compared on every request: a
    /// password change, a disable, an enable or a role change increments it, which ends every
    /// session at once (whatever second they were issued in).
    #[serde(default)]
    pub generation: u64,
    /// The person who created the account over the API; `None`: the host (the initial admin,
    /// `toolgate users add`) or a database older than this field.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The person who last gave the account authority (enabled it or raised its role).
    #[serde(default)]
    pub granted_by: Option<String>,
    /// When that happened.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub granted_at: Option<OffsetDateTime>,
}

impl UserRecord {
    /// A new, enabled account created now by the host.
    pub fn new(username: impl Into<String>, password_hash: String, role: Role) -> UserRecord {
        UserRecord {
            username: username.into(),
            password_hash,
            role,
            created_at: OffsetDateTime::now_utc(),
            disabled: false,
            tokens_valid_after: 0,
            generation: 0,
            created_by: None,
            granted_by: None,
            granted_at: None,
        }
    }

    /// Whether the account holds admin authority now.
    pub fn is_enabled_admin(&self) -> bool {
        self.role == Role::Admin && !self.disabled
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
    /// Who created it (always a person logged in with a password).
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

/// Who changes an account: the person accountable for it, and the API key used, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The person (for a key, the key's creator); `None`: the host itself.
    pub person: Option<String>,
    /// The API key the change came through.
    pub via_key: Option<String>,
}

/// A change of an account; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// New role.
    pub role: Option<Role>,
    /// Disable (`true`) or enable (`false`).
    pub disabled: Option<bool>,
}

/// What [`Store::change_account`] did.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The account as stored now.
    pub user: UserRecord,
    /// API keys of the account revoked because it lost the authority they carry.
    pub revoked_keys: Vec<String>,
}

impl Store {
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
        self.transact(|tx| {
            let mut table = tx.open_table(tables::USERS)?;
            if table.get(user.username.as_str())?.is_some() {
                return Err(StoreError::UserExists(user.username.clone()));
            }
            table.insert(user.username.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Change a user in place and return the new record (for fields no rule depends on; see
    /// [`Store::change_account`] and [`Store::set_password`] for the others).
    pub fn update_user(&self, username: &str, change: impl FnOnce(&mut UserRecord)) -> Result<UserRecord, StoreError> {
        self.transact(|tx| {
            let mut table = tx.open_table(tables::USERS)?;
            let mut user = stored_user(&table, username)?;
            change(&mut user);
            let bytes = encode("users_v1", &user)?;
            table.insert(username, bytes.as_slice())?;
            Ok(user)
        })
    }

    /// Set a new password hash and end every session of the user (a new generation); revoke the
    /// token `jti` (valid until `exp`) as well.
    pub fn set_password(&self, username: &str, hash: String, jti: &str, exp: u64) -> Result<UserRecord, StoreError> {
        self.transact(|tx| {
            let mut table = tx.open_table(tables::USERS)?;
            let mut user = stored_user(&table, username)?;
            user.password_hash = hash;
            user.generation += 1;
            table.insert(username, encode("users_v1", &user)?.as_slice())?;
            tx.open_table(tables::REVOKED_TOKENS)?.insert(jti, exp)?;
            Ok(user)
        })
    }

    /// End every session of `username` (a new generation), e.g. when one of its refresh tokens
    /// was used twice: one of the two users holds a stolen token, and neither is told which.
    pub fn end_sessions(&self, username: &str) -> Result<(), StoreError> {
        self.update_user(username, |user| user.generation += 1).map(|_| ())
    }

    /// Change an account's role or enabled state as `actor`, in one transaction that checks:
    /// an API key never makes an administrator (creates, promotes or enables one); the last
    /// enabled administrator stays one. Any change starts a new session generation; a grant of
    /// authority (an enable, a higher role) records who gave it and when; the account's API keys
    /// whose role it no longer holds (all of them when disabled) are revoked.
    pub fn change_account(&self, username: &str, change: AccountChange, actor: &Actor) -> Result<Changed, StoreError> {
        let now = OffsetDateTime::now_utc();
        self.transact(|tx| {
            let mut users = tx.open_table(tables::USERS)?;
            let old = stored_user(&users, username)?;
            let mut user = old.clone();
            if let Some(role) = change.role {
                user.role = role;
            }
            if let Some(disabled) = change.disabled {
                user.disabled = disabled;
            }
            let raised = user.role > old.role;
            let enabled = old.disabled && !user.disabled;
            if actor.via_key.is_some() && user.is_enabled_admin() && (raised || enabled) {
                return Err(StoreError::KeyGrantsAdmin(username.to_owned()));
            }
            if old.is_enabled_admin() && !user.is_enabled_admin() {
                let mut others = 0;
                for entry in users.iter()? {
                    let (name, v) = entry?;
                    if name.value() != username && decode::<UserRecord>("users_v1", v.value())?.is_enabled_admin() {
                        others += 1;
                    }
                }
                if others == 0 {
                    return Err(StoreError::LastAdmin(username.to_owned()));
                }
            }
            if user.role != old.role || user.disabled != old.disabled {
                user.generation += 1;
            }
            if raised || enabled {
                user.granted_by.clone_from(&actor.person);
                user.granted_at = Some(now);
            }
            users.insert(username, encode("users_v1", &user)?.as_slice())?;
            let mut revoked_keys = Vec::new();
            let mut keys = tx.open_table(tables::API_KEYS)?;
            let mut lost = Vec::new();
            for entry in keys.iter()? {
                let (_, v) = entry?;
                let key: ApiKeyRecord = decode("api_keys_v1", v.value())?;
                if key.created_by == username && !key.revoked && (user.disabled || key.role > user.role) {
                    lost.push(key);
                }
            }
            for mut key in lost {
                key.revoked = true;
                keys.insert(key.id.as_str(), encode("api_keys_v1", &key)?.as_slice())?;
                revoked_keys.push(key.name);
            }
            Ok(Changed { user, revoked_keys })
        })
    }

    /// Revoke a token id until `expires_at` (Unix seconds), after which the token is dead anyway.
    pub fn revoke_token(&self, jti: &str, expires_at: u64) -> Result<(), StoreError> {
        self.transact(|tx| {
            tx.open_table(tables::REVOKED_TOKENS)?.insert(jti, expires_at)?;
            Ok(())
        })
    }

    /// Use up a token id: revoke it and answer `true`, or answer `false` when it was already
    /// revoked (a refresh token is good for one refresh, even under concurrent use).
    pub fn consume_token(&self, jti: &str, expires_at: u64) -> Result<bool, StoreError> {
        self.transact(|tx| {
            let mut table = tx.open_table(tables::REVOKED_TOKENS)?;
            if table.get(jti)?.is_some() {
                return Ok(false);
            }
            table.insert(jti, expires_at)?;
            Ok(true)
        })
    }

    /// Forget revocations of tokens expired before `now` (Unix seconds); returns how many.
    pub fn purge_revoked(&self, now: u64) -> Result<usize, StoreError> {
        self.transact(|tx| {
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
        self.transact(|tx| {
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

    /// One API key by id, with the account of its creator, consistently.
    pub fn api_key_with_creator(&self, id: &str) -> Result<Option<(ApiKeyRecord, Option<UserRecord>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let Some(key) = tx.open_table(tables::API_KEYS)?.get(id)? else { return Ok(None) };
        let key: ApiKeyRecord = decode("api_keys_v1", key.value())?;
        let users = tx.open_table(tables::USERS)?;
        let creator = users.get(key.created_by.as_str())?.map(|v| decode("users_v1", v.value())).transpose()?;
        Ok(Some((key, creator)))
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
        self.transact(|tx| {
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

/// The stored record of `username`, or [`StoreError::NoUser`].
fn stored_user(table: &redb::Table<'_, &str, &[u8]>, username: &str) -> Result<UserRecord, StoreError> {
    match table.get(username)? {
        Some(v) => decode("users_v1", v.value()),
        None => Err(StoreError::NoUser(username.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role) -> UserRecord {
        UserRecord::new(name, "$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA".into(), role)
    }

    fn by(person: &str) -> Actor {
        Actor { person: Some(person.to_owned()), via_key: None }
    }

    #[test]
    fn users_survive_reopening_and_names_are_unique() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let store = Store::open(dir.path())?;
            store.insert_user(&user("alice", Role::Viewer))?;
            assert!(matches!(store.insert_user(&user("alice", Role::Viewer)), Err(StoreError::UserExists(_))));
            store.update_user("alice", |u| u.role = Role::Operator)?;
            assert!(matches!(store.update_user("bob", |_| ()), Err(StoreError::NoUser(_))));
        }
        let store = Store::open(dir.path())?;
        assert_eq!(store.user("alice")?.map(|u| u.role), Some(Role::Operator));
        assert_eq!(store.user_count()?, 1);
        Ok(())
    }

    #[test]
    fn a_record_without_the_provenance_fields_still_reads() -> anyhow::Result<()> {
        let old = br#"{"username":"old","password_hash":"$scrypt$x","role":"admin","created_at":"2025-01-01T00:00:00Z","disabled":false,"tokens_valid_after":7}"#;
        let user: UserRecord = decode("users_v1", old)?;
        assert_eq!((user.generation, user.created_by, user.granted_at, user.tokens_valid_after), (0, None, None, 7));
        Ok(())
    }

    #[test]
    fn revocations_are_purged_after_expiry_and_a_token_is_consumed_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.revoke_token("old", 100)?;
        store.revoke_token("new", 300)?;
        assert_eq!(store.purge_revoked(200)?, 1);
        assert!(!store.session("x", "old")?.revoked);
        assert!(store.session("x", "new")?.revoked);
        assert!(store.consume_token("once", 300)?);
        assert!(!store.consume_token("once", 300)?);
        Ok(())
    }

    #[test]
    fn a_grant_is_recorded_and_every_change_starts_a_new_generation() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.insert_user(&user("root", Role::Admin))?;
        store.insert_user(&user("bob", Role::Viewer))?;
        let up = store.change_account("bob", AccountChange { role: Some(Role::Admin), disabled: None }, &by("root"))?;
        assert_eq!((up.user.generation, up.user.granted_by.as_deref()), (1, Some("root")));
        assert!(up.user.granted_at.is_some());
        let off = store.change_account("bob", AccountChange { disabled: Some(true), role: None }, &by("root"))?;
        assert_eq!(off.user.generation, 2);
        let key = Actor { person: Some("root".into()), via_key: Some("ci".into()) };
        let refused = store.change_account("bob", AccountChange { disabled: Some(false), role: None }, &key);
        assert!(matches!(refused, Err(StoreError::KeyGrantsAdmin(_))), "{refused:?}");
        Ok(())
    }

    #[test]
    fn the_last_enabled_admin_keeps_the_role() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        store.insert_user(&user("root", Role::Admin))?;
        store.insert_user(&user("bob", Role::Admin))?;
        store.change_account("bob", AccountChange { disabled: Some(true), role: None }, &by("root"))?;
        let refused =
            store.change_account("root", AccountChange { role: Some(Role::Viewer), disabled: None }, &by("bob"));
        assert!(matches!(refused, Err(StoreError::LastAdmin(_))), "{refused:?}");
        assert_eq!(store.user("root")?.map(|u| u.role), Some(Role::Admin), "nothing stored changed");
        Ok(())
    }
}
