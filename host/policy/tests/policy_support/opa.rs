//! The reference OPA engine (Go), loaded from `libopabridge.so` of the PyPI wheel
//! `opa-golib-python-bindings`, as a differential oracle and benchmark peer.
//!
//! `cargo xtask setup` puts the library at `<target>/opa/libopabridge.so`; `TOOLGATE_OPA_LIB`
//! overrides the path.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

type NewFn = unsafe extern "C" fn() -> u64;
type AddFn = unsafe extern "C" fn(u64, *const c_char, *const c_char) -> *mut c_char;
type EvalFn = unsafe extern "C" fn(u64, *const c_char, *const c_char, c_int, c_int) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// One OPA engine instance (policies and data added to it).
pub struct Opa {
    handle: u64,
    add_policy: AddFn,
    add_data: AddFn,
    eval_document: EvalFn,
    free_string: FreeFn,
}

/// Where the library is expected.
pub fn library_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TOOLGATE_OPA_LIB") {
        return PathBuf::from(path);
    }
    // <target>/<profile>/deps/<test or bench> → <target>/opa/libopabridge.so
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe.ancestors().nth(3).unwrap_or(Path::new("target"));
    target.join("opa").join("libopabridge.so")
}

impl Opa {
    /// Load the library and create an engine; fails with a clear message when it is missing.
    pub fn new() -> anyhow::Result<Opa> {
        let path = library_path();
        if !path.exists() {
            bail!(
                "the reference OPA library is missing at `{}`: run `cargo xtask setup` (or set TOOLGATE_OPA_LIB)",
                path.display()
            );
        }
        // SAFETY: loading runs the Go runtime's initialisers, which have no preconditions. The
        // library is leaked on purpose: a Go runtime cannot be unloaded.
        let lib: &'static libloading::Library = Box::leak(Box::new(unsafe { libloading::Library::new(&path) }?));
        // SAFETY: the symbol types match the C signatures of the bridge (see the wheel's
        // `_native.py`: `OpaNew() -> u64`, `OpaAddPolicy(u64, char*, char*) -> char*`, ...).
        unsafe {
            let new: NewFn = *lib.get::<NewFn>(b"OpaNew\0")?;
            Ok(Opa {
                handle: new(),
                add_policy: *lib.get::<AddFn>(b"OpaAddPolicy\0")?,
                add_data: *lib.get::<AddFn>(b"OpaAddData\0")?,
                eval_document: *lib.get::<EvalFn>(b"OpaEvalDocument\0")?,
                free_string: *lib.get::<FreeFn>(b"OpaFreeString\0")?,
            })
        }
    }

    /// Add one Rego module.
    pub fn add_policy(&self, path: &str, source: &str) -> anyhow::Result<()> {
        let (path, source) = (CString::new(path)?, CString::new(source)?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let out = unsafe { (self.add_policy)(self.handle, path.as_ptr(), source.as_ptr()) };
        self.envelope(out).with_context(|| format!("OPA refused policy `{}`", path.to_string_lossy()))?;
        Ok(())
    }

    /// Merge a document at the root of `data`.
    pub fn add_data(&self, data: &serde_json::Value) -> anyhow::Result<()> {
        let (path, json) = (CString::new("")?, CString::new(data.to_string())?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let out = unsafe { (self.add_data)(self.handle, path.as_ptr(), json.as_ptr()) };
        self.envelope(out).context("OPA refused the data document")?;
        Ok(())
    }

    /// Evaluate `data.<path>` (dotted, without `data.`) on `input`; `None` when undefined.
    pub fn eval(&self, path: &str, input: &serde_json::Value) -> anyhow::Result<Option<serde_json::Value>> {
        let (path, input) = (CString::new(path)?, CString::new(input.to_string())?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let out = unsafe { (self.eval_document)(self.handle, path.as_ptr(), input.as_ptr(), 0, 0) };
        let envelope = self.envelope(out)?;
        Ok(envelope.get("result").and_then(|rs| rs.get(0)).and_then(|r| r.pointer("/expressions/0/value")).cloned())
    }

    /// Read and free the JSON envelope the bridge returns; its `error` becomes an `Err`.
    fn envelope(&self, out: *mut c_char) -> anyhow::Result<serde_json::Value> {
        if out.is_null() {
            bail!("OPA returned NULL");
        }
        // SAFETY: a non-null result is a NUL-terminated string owned by us until freed below.
        let text = unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned();
        // SAFETY: `out` came from the bridge and is freed exactly once.
        unsafe { (self.free_string)(out.cast()) };
        let envelope: serde_json::Value = serde_json::from_str(&text)?;
        match envelope.get("error") {
            Some(err) if !err.is_null() => bail!("OPA error: {err}"),
            _ => Ok(envelope),
        }
    }
}

/// An OPA engine loaded with every file and the data of `set`, as regorus sees them.
pub fn load_set(set: &toolgate_policy::PolicySet) -> anyhow::Result<Opa> {
    let opa = Opa::new()?;
    for file in &set.sources().files {
        opa.add_policy(&file.path, &file.text)?;
    }
    opa.add_data(&set.sources().data)?;
    Ok(opa)
}
