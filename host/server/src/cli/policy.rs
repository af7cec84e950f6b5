//! `toolgate policy`: authoring tools for the Rego policy set. Works on files alone, with the
//! `[policy]` section of the configuration (directory, justification length) the server reads.
//!
//! - `test [DIR] [--coverage]`: every `test_*` rule must be true (the semantics of `opa test`).
//! - `eval --input FILE [--point action|exec|host] [--explain]`: print the decision document.
//! - `check [DIR]`: parse and compile errors as `file:line:col: message`, the line and a caret.
//!
//! `eval` and `test` decide through [`PolicyEngine`], exactly as the server does: the same
//! evaluator, strict built-in errors, and a `policy_error` denial for any failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use toolgate_policy::{Point, PolicyConfig, PolicyEngine, PolicyError, TestReport, testing};

/// Subcommands of `toolgate policy`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Run every `test_*` rule of the policy files; non-zero exit on any failure.
    Test {
        /// Policy directory (default: `policy.dir` of the configuration, `TOOLGATE_POLICY_DIR`).
        dir: Option<PathBuf>,
        /// Print per-file line coverage.
        #[arg(long)]
        coverage: bool,
    },
    /// Evaluate one decision and print the decision document.
    Eval {
        /// JSON file holding the input document (`-` for stdin).
        #[arg(long)]
        input: PathBuf,
        /// Decision point; by default `exec` when the input has an `argv`, `host` when it has an
        /// `interface`, else `action`.
        #[arg(long)]
        point: Option<Point>,
        /// Also show which policy lines took part in the decision.
        #[arg(long)]
        explain: bool,
        /// Policy directory (default: `policy.dir` of the configuration, `TOOLGATE_POLICY_DIR`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Parse and compile the policy set; report errors with their location.
    Check {
        /// Policy directory (default: `policy.dir` of the configuration, `TOOLGATE_POLICY_DIR`).
        dir: Option<PathBuf>,
    },
}

/// Run `toolgate policy` with the server's `[policy]` section; a directory given on the command
/// line replaces `policy.dir`.
pub fn run(args: Args, policy: &PolicyConfig) -> anyhow::Result<ExitCode> {
    let with_dir = |dir: Option<PathBuf>| PolicyConfig {
        dir: dir.unwrap_or_else(|| policy.dir.clone()),
        // The authoring tools report failing tests themselves instead of refusing the set.
        test_on_reload: false,
        ..policy.clone()
    };
    match args {
        Args::Test { dir, coverage } => test(&with_dir(dir), coverage),
        Args::Eval { input, point, explain, dir } => eval(&with_dir(dir), &input, point, explain),
        Args::Check { dir } => check(&with_dir(dir)),
    }
}

fn test(config: &PolicyConfig, coverage: bool) -> anyhow::Result<ExitCode> {
    let engine = match PolicyEngine::load(config) {
        Ok(engine) => engine,
        Err(e) => return Ok(report_invalid(&e)),
    };
    let report = testing::run(&engine.active(), coverage);
    print_tests(&report);
    Ok(if report.failed() == 0 && !report.outcomes.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_tests(report: &TestReport) {
    for o in &report.outcomes {
        let verdict = if o.passed { "PASS" } else { "FAIL" };
        match &o.detail {
            Some(detail) => println!("{verdict} {}: {} ({detail})", o.file, o.name),
            None => println!("{verdict} {}: {}", o.file, o.name),
        }
    }
    for c in &report.coverage {
        println!("coverage {}: {:.1}% ({}/{} lines)", c.file, c.percent(), c.covered, c.total);
        if !c.not_covered.is_empty() {
            let lines: Vec<String> = c.not_covered.iter().map(u32::to_string).collect();
            println!("  not covered: {}", lines.join(", "));
        }
    }
    let failed = report.failed();
    println!("{} passed, {failed} failed", report.outcomes.len() - failed);
    if report.outcomes.is_empty() {
        println!("no test_* rule found");
    }
}

fn eval(config: &PolicyConfig, input: &Path, point: Option<Point>, explain: bool) -> anyhow::Result<ExitCode> {
    let text = if input == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the input from stdin")?
    } else {
        std::fs::read_to_string(input).with_context(|| format!("cannot read input file `{}`", input.display()))?
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("input file `{}` is not JSON", input.display()))?;
    let point = point.unwrap_or(if doc.get("argv").is_some() {
        Point::Exec
    } else if doc.get("interface").is_some() {
        Point::Host
    } else {
        Point::Action
    });
    let engine = match PolicyEngine::load(config) {
        Ok(engine) => engine,
        Err(e) => return Ok(report_invalid(&e)),
    };
    // The server's decision function, on the document as given.
    let decision = engine.decide(point, &doc);
    println!("{}", serde_json::to_string_pretty(&decision)?);
    if explain {
        explain_lines(&engine, point, &doc);
    }
    Ok(ExitCode::SUCCESS)
}

/// The policy lines an evaluation touched (coverage of one evaluation by the same engine).
fn explain_lines(engine: &PolicyEngine, point: Point, doc: &serde_json::Value) {
    let report = match engine.active().evaluate_covered(point, doc) {
        Ok((_, report)) => report,
        Err(e) => return println!("\nexplain: the evaluation failed: {e}"),
    };
    println!("\nexplain: lines of `{}` that took part", point.rule());
    for file in &report.files {
        let lines: Vec<&str> = file.code.split('\n').collect();
        for line in &file.covered {
            let src = lines.get(*line as usize - 1).map_or("", |l| l.trim_end());
            println!("{}:{line}: {src}", file.path);
        }
    }
}

fn check(config: &PolicyConfig) -> anyhow::Result<ExitCode> {
    match PolicyEngine::load(config) {
        Ok(engine) => {
            let set = engine.active();
            println!("ok: {} files, revision {}", set.sources().files.len(), set.revision());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(report_invalid(&e)),
    }
}

/// Errors in the set: printed in full on stderr, and a failing exit.
fn report_invalid(err: &PolicyError) -> ExitCode {
    eprintln!("{err}");
    ExitCode::FAILURE
}
