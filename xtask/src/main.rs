//! Project tasks, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! - `setup`: install what the build needs on a fresh machine: the `wasm32-wasip2` target (rustup,
//!   or the offline archive in `../shared/toolchain/`), Debian's `busybox-static` for the
//!   sandbox image, the reference OPA engine (`<target>/opa/libopabridge.so`, from the PyPI
//!   wheel `opa-golib-python-bindings`) that the policy tests use as an oracle, and the Debian
//!   images (`images`).
//! - `images`: build the Debian images offline with `debootstrap` when their recipe changed: the
//!   sandbox image `toolgate-debian` and the tests' booting system `toolgate-test-debian-system`;
//!   each reference is written to `<target>/images/<repository>.ref` (see `images.rs`).
//! - `plugins`: build every guest component into the target directory: built-in plugins into
//!   `plugins/`, the SDK template and test fixtures into `fixtures/`, each named after its crate's
//!   directory (`tests/fixtures/well_behaved/` -> `fixtures/well_behaved.wasm`).
//! - `test`: `setup`, `plugins`, then every test of the workspace.
//! - `serve`: `setup`, `plugins`, then `toolgate serve` with the embedded defaults (development
//!   mode, plugins from `target/plugins/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod images;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("images") => images::ensure_images(&root),
        Some("plugins") => {
            setup(&root)?;
            build_plugins(&root)
        }
        Some("test") => {
            setup(&root)?;
            build_plugins(&root)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["test", "--workspace", "--no-fail-fast"])
                .args(&args[1..]))
        }
        Some("serve") => {
            setup(&root)?;
            build_plugins(&root)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["run", "--release", "--package", "toolgate-server", "--bin", "toolgate", "--", "serve"])
                .args(&args[1..])
                .env("TOOLGATE_PLUGINS_DIR", target_dir(&root).join("plugins"))
                .env("TOOLGATE_POLICY_DIR", root.join("policies"))
                .env_remove("TOOLGATE_MODE")
                .env("TOOLGATE_MODE", std::env::var("TOOLGATE_MODE").unwrap_or_else(|_| "development".into())))
        }
        _ => bail!("usage: cargo xtask <setup|images|plugins|test|serve> [args for cargo test or toolgate serve]"),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (CI keeps one outside the clone).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed: {status}", cmd.get_program());
    }
    Ok(())
}

fn setup(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target(root)?;
    ensure_debian_package("busybox-static", Path::new("/bin/busybox"))?;
    // The OpenAPI document is validated by an independent implementation in the tests.
    ensure_python_module("openapi_spec_validator", "openapi-spec-validator")?;
    ensure_opa(root)?;
    images::ensure_images(root)
}

fn ensure_python_module(module: &str, package: &str) -> anyhow::Result<()> {
    let present = Command::new("python3").args(["-c", &format!("import {module}")]).output();
    if present.is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("xtask: installing the Python package {package}");
    run(Command::new("python3").args(["-m", "pip", "install", "--quiet", package]))
}

/// The wheel that carries OPA's Go library as a C shared object; pinned so oracle runs repeat.
const OPA_WHEEL: &str = "opa-golib-python-bindings==0.4.4";

/// Download the OPA wheel with pip and unzip `libopabridge.so` into `<target>/opa/` when absent.
fn ensure_opa(root: &Path) -> anyhow::Result<()> {
    let dir = target_dir(root).join("opa");
    let lib = dir.join("libopabridge.so");
    if lib.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("xtask: fetching the reference OPA library ({OPA_WHEEL})");
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--python-version", "3.14", "--only-binary=:all:"])
        .args(["--platform", "manylinux_2_34_x86_64", "--dest"])
        .arg(&dir)
        .arg(OPA_WHEEL))?;
    let wheel = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    // The wheel is a zip; Python (which pip needs anyway) unpacks the one member we want.
    let script = "import sys, zipfile; open(sys.argv[2], 'wb').write(zipfile.ZipFile(sys.argv[1]).read('opa_bindings/libopabridge.so'))";
    // Written aside, then renamed: an interrupted setup must not leave a truncated library.
    let partial = dir.join("libopabridge.so.part");
    run(Command::new("python3").args(["-c", script]).arg(&wheel).arg(&partial))?;
    std::fs::rename(&partial, &lib)?;
    std::fs::remove_file(&wheel)?;
    Ok(())
}

fn ensure_wasm_target(root: &Path) -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if let Ok(out) = &installed
        && String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    if Command::new("rustup").args(["target", "add", WASM_TARGET]).status().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    // Offline fallback: the standard library archive shipped beside the project.
    let archive = root.join("../shared/toolchain/rust-std-1.95.0-wasm32-wasip2.tar.xz");
    if !archive.exists() {
        bail!("cannot install the {WASM_TARGET} target: rustup failed and {} is missing", archive.display());
    }
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output()?;
    let sysroot = String::from_utf8(sysroot.stdout)?.trim().to_owned();
    run(Command::new("tar").arg("-xJf").arg(&archive).arg("-C").arg(format!("{sysroot}/lib/rustlib/")))
}

fn ensure_debian_package(package: &str, marker: &Path) -> anyhow::Result<()> {
    if marker.exists() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian package {package}");
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get").args(["install", "-y", "-q", package]).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Guest crates: (directory holding one crate per subdirectory, or a crate itself; output folder).
const GUESTS: [(&str, &str); 3] =
    [("plugins", "plugins"), ("sdk/template", "fixtures"), ("tests/fixtures", "fixtures")];

fn build_plugins(root: &Path) -> anyhow::Result<()> {
    let mut crates = Vec::new();
    for (dir, out) in GUESTS {
        let dir = root.join(dir);
        if dir.join("Cargo.toml").exists() {
            crates.push((dir, out));
        } else if dir.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("Cargo.toml").exists())
                .collect();
            entries.sort();
            crates.extend(entries.into_iter().map(|p| (p, out)));
        }
    }
    if crates.is_empty() {
        return Ok(());
    }
    let mut names = Vec::new();
    for (dir, out) in &crates {
        // The directory names the component: package names use `-`, fixture names `_`.
        let stem = dir
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("bad crate directory {}", dir.display()))?;
        names.push((package_name(&dir.join("Cargo.toml"))?, *out, stem.to_owned()));
    }
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(["build", "--profile", "plugin", "--target", WASM_TARGET]);
    for (name, _, _) in &names {
        cmd.args(["--package", name]);
    }
    run(&mut cmd)?;
    let target = target_dir(root);
    let built = target.join(WASM_TARGET).join("plugin");
    for (name, out, stem) in &names {
        let file = format!("{}.wasm", name.replace('-', "_"));
        let dest_dir = target.join(out);
        std::fs::create_dir_all(&dest_dir)?;
        std::fs::copy(built.join(&file), dest_dir.join(format!("{stem}.wasm")))
            .with_context(|| format!("copying {file} (is the crate a `cdylib`?)"))?;
    }
    Ok(())
}

fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)?;
    text.lines()
        .map(str::trim)
        .find_map(|l| {
            l.strip_prefix("name").map(|r| r.trim_start().trim_start_matches('=').trim().trim_matches('"').to_owned())
        })
        .with_context(|| format!("no package name in {}", manifest.display()))
}
