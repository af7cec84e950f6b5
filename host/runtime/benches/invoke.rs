//! Cost of one tool call through the runtime (fresh store + instantiate + invoke + schema checks)
//! for `well_behaved`'s `echo` and the SDK template's `greet` (a smaller component that makes one
//! host call, `log`), and of start-up (loading every fixture from a warm compilation cache).
//!
//! Needs the fixtures: `cargo xtask plugins`, then `cargo bench -p toolgate-runtime --bench invoke`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use toolgate_core::MemoryAuditSink;
use toolgate_core::model::ToolName;
use toolgate_runtime::{CallContext, HostServices, PluginRuntime, PluginsConfig, local_admin};

fn fixtures() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf).unwrap_or_default();
    target.join("fixtures")
}

fn services(workspace: &Path) -> HostServices {
    HostServices::new(Arc::new(MemoryAuditSink::default()), workspace)
}

fn bench(c: &mut Criterion) {
    let dir = fixtures();
    assert!(
        dir.join("well_behaved.wasm").is_file(),
        "fixtures missing in {}: run `cargo xtask plugins`",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let (plugins, cache) = (tmp.path().join("plugins"), tmp.path().join("cache"));
    std::fs::create_dir_all(&plugins).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
        std::fs::copy(entry.path(), plugins.join(entry.file_name())).unwrap_or_else(|e| panic!("{e}"));
    }
    let config = PluginsConfig { dir: plugins, ..PluginsConfig::default() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let runtime =
        rt.block_on(PluginRuntime::load(&config, &cache, services(tmp.path()))).unwrap_or_else(|e| panic!("load: {e}"));
    let call = CallContext { action_id: "bench".into(), caller: local_admin(), justification: None, category: None };
    let echo: ToolName = "echo".parse().unwrap_or_else(|e| panic!("{e}"));
    let params = serde_json::json!({ "text": "hello" });
    rt.block_on(runtime.invoke(&call, &echo, params.clone())).unwrap_or_else(|e| panic!("echo: {e}"));
    let greet: ToolName = "greet".parse().unwrap_or_else(|e| panic!("{e}"));
    let name = serde_json::json!({ "name": "bench" });
    let greeting = rt.block_on(runtime.invoke(&call, &greet, name.clone())).unwrap_or_else(|e| panic!("greet: {e}"));
    assert_eq!(greeting.output, serde_json::json!({ "message": "Hello, bench!" }));

    c.bench_function("invoke echo (new store + instantiate + call)", |b| {
        b.iter(|| rt.block_on(runtime.invoke(&call, &echo, params.clone())))
    });
    c.bench_function("invoke greet (new store + instantiate + call)", |b| {
        b.iter(|| rt.block_on(runtime.invoke(&call, &greet, name.clone())))
    });
    let mut startup = c.benchmark_group("startup");
    startup.sample_size(10);
    startup.bench_function("load all fixtures, warm cache", |b| {
        b.iter(|| rt.block_on(PluginRuntime::load(&config, &cache, services(tmp.path()))))
    });
    startup.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
