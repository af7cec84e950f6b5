//! The wasmtime engine (pooling allocator, epoch interruption), the ticker thread that drives
//! deadlines, and the on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Deserialised from a `.cwasm` compiled earlier.
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

/// Compile `bytes`, or reuse the cached artefact keyed by their sha256 and the engine's
/// compatibility hash (wasmtime version and every setting that changes generated code).
pub fn compile(engine: &Engine, bytes: &[u8], cache_dir: &Path) -> Result<Compiled, PluginError> {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let key = format!("{}-{:016x}", hex::encode(Sha256::digest(bytes)), compat.finish());
    let cache_file = cache_dir.join(format!("{key}.cwasm"));
    if cache_file.is_file() {
        match deserialize_cached(engine, &cache_file) {
            Ok(component) => return Ok(Compiled { component, source: Source::Cache, cache_file }),
            // A damaged cache entry is recompiled and replaced, never trusted.
            Err(e) => {
                tracing::warn!(file = %cache_file.display(), error = %format!("{e:#}"), "unusable plugin cache entry")
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|e| PluginError::Compile { file: String::new(), message: format!("{e:#}") })?;
    std::fs::create_dir_all(cache_dir).map_err(PluginError::io(cache_dir))?;
    let tmp = cache_dir.join(format!(".{key}.{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, &compiled).map_err(PluginError::io(&tmp))?;
    std::fs::rename(&tmp, &cache_file).map_err(PluginError::io(&cache_file))?;
    let component = deserialize_cached(engine, &cache_file)
        .map_err(|e| PluginError::Compile { file: String::new(), message: format!("{e:#}") })?;
    Ok(Compiled { component, source: Source::Compiled, cache_file })
}

/// The only `unsafe` of the runtime. The file is read into memory rather than mapped, so a
/// cache file truncated or rewritten later cannot fault a running host (SIGBUS).
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, file: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(file)?;
    // SAFETY: wasmtime requires the bytes to be a trusted artefact of `precompile_component`. We
    // wrote the file ourselves under our data directory (temp file + rename, so never
    // half-written), its name is the sha256 of the source bytes plus the engine's compatibility
    // hash, and wasmtime still checks its header and engine compatibility before using it.
    unsafe { Component::deserialize(engine, &bytes) }
}
