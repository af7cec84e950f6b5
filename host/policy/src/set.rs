//! A policy set: the `.rego` files and `data.json` of one directory, parsed, compiled for both
//! decision points, and identified by a content hash (its revision).

use std::path::{Path, PathBuf};

use regorus::Engine;
use sha2::{Digest, Sha256};

use super::PolicyError;
use super::diagnostics::Diagnostic;

/// A decision point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Point {
    /// May this caller run this tool now?
    Action,
    /// May this plugin run this argv under this profile?
    Exec,
    /// May this plugin make this call on the host's systemd or package manager?
    Host,
}

impl Point {
    /// Both points.
    pub const ALL: [Point; 3] = [Point::Action, Point::Exec, Point::Host];

    /// The rule whose value is the decision document.
    pub fn rule(self) -> &'static str {
        match self {
            Point::Action => "data.toolgate.action.decision",
            Point::Exec => "data.toolgate.exec.decision",
            Point::Host => "data.toolgate.host.decision",
        }
    }

    /// `action`, `exec` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            Point::Action => "action",
            Point::Exec => "exec",
            Point::Host => "host",
        }
    }
}

impl std::str::FromStr for Point {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "action" => Ok(Point::Action),
            "exec" => Ok(Point::Exec),
            "host" => Ok(Point::Host),
            _ => Err(format!("unknown decision point `{s}`: expected action, exec or host")),
        }
    }
}

/// One `.rego` file: its path relative to the set's directory, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the directory, `/`-separated.
    pub path: String,
    /// The Rego source.
    pub text: String,
}

/// The raw content of a policy directory.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The directory read.
    pub dir: PathBuf,
    /// Every `.rego` file under it, sorted by path.
    pub files: Vec<SourceFile>,
    /// `data.json` at its root (`{}` when absent).
    pub data: serde_json::Value,
}

impl Sources {
    /// Read every `.rego` file under `dir` (hidden entries skipped) and its `data.json`.
    pub fn read(dir: &Path) -> Result<Sources, PolicyError> {
        let mut files = Vec::new();
        collect_rego(dir, dir, &mut files)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.is_empty() {
            return Err(PolicyError::Empty(dir.to_owned()));
        }
        let data_path = dir.join("data.json");
        let data = match std::fs::read_to_string(&data_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| PolicyError::Data { path: data_path.clone(), message: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(source) => return Err(PolicyError::Read { path: data_path, source }),
        };
        if !data.is_object() {
            return Err(PolicyError::Data { path: data_path, message: "expected a JSON object".into() });
        }
        Ok(Sources { dir: dir.to_owned(), files, data })
    }

    /// Parse every file into a fresh engine with the data loaded; all parse errors at once.
    pub fn engine(&self) -> Result<Engine, PolicyError> {
        let mut engine = Engine::new();
        // INVARIANT: a built-in that fails (a malformed date, a bad format) is an error of the
        // whole evaluation, never an undefined value that silently drops a deny rule.
        engine.set_strict_builtin_errors(true);
        let mut errors = Vec::new();
        for file in &self.files {
            if let Err(e) = engine.add_policy(file.path.clone(), file.text.clone()) {
                errors.push(Diagnostic::from_regorus(&file.path, &e.to_string()));
            }
        }
        if !errors.is_empty() {
            return Err(PolicyError::Invalid(errors));
        }
        let data = regorus::Value::from(self.data.clone());
        engine
            .add_data(data)
            .map_err(|e| PolicyError::Data { path: self.dir.join("data.json"), message: e.to_string() })?;
        Ok(engine)
    }
}

fn collect_rego(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> Result<(), PolicyError> {
    let read_err = |source| PolicyError::Read { path: dir.to_owned(), source };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_rego(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rego") {
            let text =
                std::fs::read_to_string(&path).map_err(|source| PolicyError::Read { path: path.clone(), source })?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push(SourceFile { path: rel, text });
        }
    }
    Ok(())
}

/// A loaded, compiled policy set, ready to decide. Immutable: a reload builds a new one.
///
/// INVARIANT: there is one evaluator. The server, `toolgate policy eval` and `toolgate policy
/// test` all decide with a clone of this set's prepared engine (the regorus interpreter, strict
/// built-in errors), so the authoring tools and the server cannot disagree on a revision.
pub struct PolicySet {
    sources: Sources,
    revision: String,
    engine: Engine,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet").field("dir", &self.sources.dir).field("revision", &self.revision).finish()
    }
}

impl PolicySet {
    /// Read and compile the set in `dir`. `min_justification_len`, when given, replaces
    /// `data.settings.min_justification_len` (the server's `[policy]` setting wins over the file).
    pub fn load(dir: &Path, min_justification_len: Option<u64>) -> Result<PolicySet, PolicyError> {
        let mut sources = Sources::read(dir)?;
        if let Some(len) = min_justification_len
            && let Some(data) = sources.data.as_object_mut()
        {
            let settings = data.entry("settings").or_insert_with(|| serde_json::json!({}));
            match settings.as_object_mut() {
                Some(settings) => {
                    settings.insert("min_justification_len".into(), len.into());
                }
                None => {
                    return Err(PolicyError::Data {
                        path: dir.join("data.json"),
                        message: "`settings` must be an object".into(),
                    });
                }
            }
        }
        PolicySet::compile(sources)
    }

    /// Compile read sources: parse, and check that both decision rules exist and compile.
    pub fn compile(sources: Sources) -> Result<PolicySet, PolicyError> {
        let mut engine = sources.engine()?;
        for point in Point::ALL {
            let rule = point.rule();
            if !defines_rule(&engine, &sources, point) {
                return Err(PolicyError::MissingRule(rule.to_owned()));
            }
            engine
                .compile_with_entrypoint(&rule.into())
                .map_err(|e| PolicyError::Invalid(vec![Diagnostic::from_regorus("", &e.to_string())]))?;
        }
        // Coverage is only switched on in clones (explain, tests); print() output goes nowhere.
        engine.set_gather_prints(true);
        let revision = revision(&sources);
        Ok(PolicySet { sources, revision, engine })
    }

    /// Content hash of the files and data that make the set.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// What the set was built from.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// A clone of the prepared engine (policies and data loaded, strict built-in errors): the
    /// one evaluator of decisions and of the set's own tests.
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Evaluate a decision point's rule on `input`, returning the raw value (possibly undefined).
    /// Any error, a failing built-in included, is an error of the evaluation.
    pub fn evaluate(&self, point: Point, input: &serde_json::Value) -> Result<regorus::Value, PolicyError> {
        let mut engine = self.engine();
        engine.set_input(regorus::Value::from(input.clone()));
        engine.eval_rule(point.rule().to_owned()).map_err(|e| eval_error(point, &e))
    }

    /// Evaluate with coverage on; returns the value and the covered lines.
    pub fn evaluate_covered(
        &self,
        point: Point,
        input: &serde_json::Value,
    ) -> Result<(regorus::Value, regorus::coverage::Report), PolicyError> {
        let mut engine = self.engine();
        engine.set_enable_coverage(true);
        engine.set_input(regorus::Value::from(input.clone()));
        let value = engine.eval_rule(point.rule().to_owned()).map_err(|e| eval_error(point, &e))?;
        let report = engine.get_coverage_report().map_err(|e| eval_error(point, &e))?;
        Ok((value, report))
    }
}

fn eval_error(point: Point, err: &impl std::fmt::Display) -> PolicyError {
    PolicyError::Eval { rule: point.rule().to_owned(), message: err.to_string() }
}

/// Whether some file declares the decision rule of `point` (regorus reports a missing entry
/// point as an opaque compile error; this names it).
fn defines_rule(engine: &Engine, sources: &Sources, point: Point) -> bool {
    let package = format!("toolgate.{}", point.as_str());
    sources.files.iter().any(|f| {
        super::testing::package_of(&f.text).as_deref() == Some(package.as_str())
            && engine.has_declared_rule_rooted_at(&f.path, "decision").unwrap_or(false)
    })
}

fn revision(sources: &Sources) -> String {
    let mut hash = Sha256::new();
    for file in &sources.files {
        hash.update(file.path.as_bytes());
        hash.update([0]);
        hash.update(file.text.as_bytes());
        hash.update([0]);
    }
    hash.update(sources.data.to_string().as_bytes());
    let digest = hex::encode(hash.finalize());
    format!("sha256:{}", &digest[..16])
}
