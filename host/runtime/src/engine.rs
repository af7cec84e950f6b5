//! The wasmtime engine (pooling allocator, epoch interruption), the ticker thread that drives
//! deadlines, and the on-disk cache of compiled components, authenticated by a keyed MAC.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{PluginError, PluginsConfig, TICK};

const MIB: u64 = 1024 * 1024;

/// Pages of a memory or table slot that a call wrote and that stay mapped for the next call in
/// the slot, reset in place to their initial contents instead of being unmapped (`madvise`), so
/// the next call takes no page fault on them. Only used when the kernel reports written pages
/// (`PAGEMAP_SCAN`, Linux 6.7+): without it wasmtime would reset the lowest bytes whether written
/// or not, and a Rust guest's lowest MiB is its mostly untouched stack.
const KEEP_RESIDENT: usize = 1024 * 1024;

/// The engine every plugin shares. Pool slots are sized for the largest memory cap configured.
pub fn build(config: &PluginsConfig) -> Result<Engine, PluginError> {
    let largest_mib =
        config.plugin.values().filter_map(|p| p.memory_mib).chain([config.memory_mib]).max().unwrap_or(64);
    if largest_mib == 0 || largest_mib > 4096 {
        return Err(PluginError::Config(format!("memory cap of {largest_mib} MiB is outside 1..=4096")));
    }
    let calls = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(calls)
        .total_stacks(calls)
        // A Rust component holds its module plus a few adapter shims.
        .total_core_instances(calls.saturating_mul(16))
        .max_core_instances_per_component(32)
        .total_memories(calls.saturating_mul(2))
        .max_memories_per_component(2)
        .total_tables(calls.saturating_mul(8))
        .max_tables_per_component(8)
        .max_memory_size(usize::try_from(largest_mib * MIB).map_err(|e| PluginError::Config(e.to_string()))?);
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes).linear_memory_keep_resident(KEEP_RESIDENT).table_keep_resident(KEEP_RESIDENT);
    }
    let mut wasm = Config::new();
    // No concurrent (component-model-async) calls are made, yet with it every `Store` set up and
    // tore down state for them: 7 µs of a 17 µs call with `RUST_BACKTRACE=1`, as the teardown
    // builds (and captures a backtrace for) an error it then discards.
    wasm.concurrency_support(false)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .wasm_component_model(true);
    Engine::new(&wasm).map_err(|e| PluginError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every [`TICK`] until dropped.
pub struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    /// Start the ticker thread.
    pub fn start(engine: &Engine) -> Result<Ticker, PluginError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("toolgate-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Deserialised from a `.cwasm` compiled earlier, after its MAC checked out.
    Cache,
    /// Compiled now (and written to the cache).
    Compiled,
}

/// A compiled component and the cache file that holds it.
pub struct Compiled {
    pub component: Component,
    pub source: Source,
    pub cache_file: PathBuf,
}

/// What starts every cache entry, before its MAC and the compiled code.
const MAGIC: &[u8; 8] = b"TGCWASM1";
/// Length of the HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Domain of the MAC, so that the key authenticates nothing else.
const MAC_DOMAIN: &[u8] = b"toolgate plugin cache v1\0";

/// The on-disk cache of compiled components. Compiled code is native code that runs unchecked,
/// so an entry is trusted only when its HMAC-SHA256, under a key kept outside the cache
/// directory, covers both its name (the component's sha256 and the engine's compatibility hash)
/// and its content: a substituted, swapped or damaged entry is discarded and the component
/// recompiled, and never deserialised.
pub struct Cache {
    dir: PathBuf,
    key: [u8; 32],
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Cache {
    /// The cache in `dir` (created private, 0700), authenticated with the key in `key_file`
    /// (32 random bytes in a 0600 file, created on first use).
    pub fn open(dir: &Path, key_file: &Path) -> Result<Cache, PluginError> {
        if key_file.starts_with(dir) {
            return Err(PluginError::Config(format!(
                "the plugin cache key `{}` must be kept outside the cache directory `{}`",
                key_file.display(),
                dir.display()
            )));
        }
        toolgate_core::private_fs::dir(dir).map_err(PluginError::io(dir))?;
        Ok(Cache { dir: dir.to_owned(), key: cache_key(key_file)? })
    }

    /// Compile `bytes`, or reuse the authenticated entry keyed by their sha256 and the engine's
    /// compatibility hash (wasmtime version and every setting that changes generated code).
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut compat);
        let name = format!("{}-{:016x}", hex::encode(Sha256::digest(bytes)), compat.finish());
        let cache_file = self.dir.join(format!("{name}.cwasm"));
        match self.read_entry(&name, &cache_file) {
            Ok(Some(code)) => match deserialize(engine, &code) {
                Ok(component) => return Ok(Compiled { component, source: Source::Cache, cache_file }),
                Err(e) => {
                    tracing::warn!(file = %cache_file.display(), error = %format!("{e:#}"), "unusable plugin cache entry; recompiling")
                }
            },
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(file = %cache_file.display(), reason, "plugin cache entry refused; recompiling");
                let _ = std::fs::remove_file(&cache_file);
            }
        }
        let code = engine
            .precompile_component(bytes)
            .map_err(|e| PluginError::Compile { file: String::new(), message: format!("{e:#}") })?;
        self.write_entry(&name, &cache_file, &code)?;
        let component = deserialize(engine, &code)
            .map_err(|e| PluginError::Compile { file: String::new(), message: format!("{e:#}") })?;
        Ok(Compiled { component, source: Source::Compiled, cache_file })
    }

    fn mac(&self, name: &str, code: &[u8]) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(MAC_DOMAIN);
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(code);
        mac
    }

    /// The compiled code of entry `name`, `None` when there is none; `Err` saying why an entry
    /// that is there is not trusted.
    fn read_entry(&self, name: &str, file: &Path) -> Result<Option<Vec<u8>>, &'static str> {
        // Read into memory rather than mapped, so a file rewritten later cannot fault the host
        // (SIGBUS) nor change under the check.
        let mut bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(_) => return Err("unreadable"),
        };
        if bytes.len() < MAGIC.len() + TAG_LEN || !bytes.starts_with(MAGIC) {
            return Err("not a toolgate cache entry");
        }
        let code = bytes.split_off(MAGIC.len() + TAG_LEN);
        self.mac(name, &code).verify_slice(&bytes[MAGIC.len()..]).map_err(|_| "its MAC does not match")?;
        Ok(Some(code))
    }

    fn write_entry(&self, name: &str, file: &Path, code: &[u8]) -> Result<(), PluginError> {
        let tag = self.mac(name, code).finalize().into_bytes();
        let tmp = self.dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
        let written =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).and_then(|mut f| {
                f.write_all(MAGIC)?;
                f.write_all(&tag)?;
                f.write_all(code)?;
                f.sync_all()
            });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, file)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(PluginError::Io { path: file.to_owned(), source: e });
        }
        Ok(())
    }
}

/// The cache key in `file`, created (32 random bytes, 0600) when there is none. Two servers
/// starting at once agree on one key: the file appears whole, by a hard link, or not at all.
fn cache_key(file: &Path) -> Result<[u8; 32], PluginError> {
    let read = |file: &Path| -> Result<Option<[u8; 32]>, PluginError> {
        match std::fs::read(file) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map(Some).map_err(|_| {
                PluginError::Config(format!("the plugin cache key `{}` is not 32 bytes long", file.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::Io { path: file.to_owned(), source: e }),
        }
    };
    if let Some(key) = read(file)? {
        toolgate_core::private_fs::restrict(file, 0o600).map_err(PluginError::io(file))?;
        return Ok(key);
    }
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(PluginError::io(parent))?;
    let key: [u8; 32] = rand::random();
    let tmp = parent.join(format!(".plugin-cache-key.{}.tmp", uuid::Uuid::new_v4()));
    let written = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).and_then(|mut f| {
        f.write_all(&key)?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, file));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(file)?.ok_or_else(|| {
            PluginError::Config(format!("the plugin cache key `{}` vanished while being created", file.display()))
        }),
        Err(e) => Err(PluginError::Io { path: file.to_owned(), source: e }),
    }
}

/// The only `unsafe` of the runtime.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime requires the bytes to be a trusted artefact of `precompile_component`.
    // They are either what this process just compiled, or a cache entry whose HMAC under our
    // private key (kept outside the cache directory) covers this component's digest, this
    // engine's compatibility hash and every byte of the code: only a holder of the key could
    // have written it. wasmtime still checks the header and engine compatibility.
    unsafe { Component::deserialize(engine, code) }
}
