//! Built-in plugin `docker`: list, read the logs of and restart the host's containers, through the
//! `containers` host interface (the host talks to the engine; the plugin never sees its socket).
//!
//! # Layout
//! - this file: the three tools;
//! - `name`: the container name grammar every parameter is checked against first.

pub mod name;

use toolgate_sdk::containers::{self, ContainerDetails, ContainerSummary};
use toolgate_sdk::prelude::*;

/// Most log lines one call returns.
pub const MAX_TAIL: u32 = 1000;

/// How long `verify` waits at most for a health check still `starting`. The engine ends
/// `starting` itself, by the container's own start period, interval and retries: the wait follows
/// the container, this is only a bound (inside the plugin's default 600 s call deadline).
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
const HEALTH_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

toolgate_sdk::plugin!(name = "docker", tools = [DockerListContainers, DockerLogs, DockerRestart]);

/// Output of `docker_list_containers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListOutput {
    /// Every container, stopped ones included: id, name, image, state, status.
    pub containers: Vec<ContainerSummary>,
}

/// `docker_list_containers`: every container on the host.
pub struct DockerListContainers;

impl Tool for DockerListContainers {
    const NAME: &'static str = "docker_list_containers";
    const DESCRIPTION: &'static str =
        "Lists the host's containers, stopped ones included, with id, name, image, state and status.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::ContainersRead];
    type Params = NoParams;
    type Output = ListOutput;

    fn invoke(_: NoParams) -> Result<ListOutput, Error> {
        Ok(ListOutput { containers: containers::list(true)? })
    }
}

/// Parameters of `docker_logs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// Container name (not its id: the policy's scopes are by name).
    #[schemars(length(min = 1, max = 255))]
    pub container: String,
    /// How many of the latest lines to return (1 to 1000).
    #[serde(default = "default_tail")]
    #[schemars(range(min = 1, max = 1000))]
    pub tail: u32,
}

fn default_tail() -> u32 {
    100
}

/// Output of `docker_logs`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogsOutput {
    /// The container as named in the call.
    pub container: String,
    /// Output lines, oldest first, standard output and error interleaved.
    pub lines: Vec<String>,
    /// True when the host cut the text at its cap.
    pub truncated: bool,
}

/// `docker_logs`: the last lines of a container's output.
pub struct DockerLogs;

impl Tool for DockerLogs {
    const NAME: &'static str = "docker_logs";
    const DESCRIPTION: &'static str = "Returns the last lines (at most 1000) of a container's output.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::ContainersRead];
    type Params = LogsParams;
    type Output = LogsOutput;

    fn invoke(params: LogsParams) -> Result<LogsOutput, Error> {
        name::validate("container", &params.container)?;
        if !(1..=MAX_TAIL).contains(&params.tail) {
            return Err(Error::invalid_params(format!("`tail`: {} is not between 1 and {MAX_TAIL}", params.tail)));
        }
        let named = by_name(&params.container)?;
        let logs = containers::logs(&named.id, params.tail)?;
        Ok(LogsOutput {
            container: params.container,
            lines: logs.text.lines().map(str::to_owned).collect(),
            truncated: logs.truncated,
        })
    }
}

/// Parameters naming one container.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerParams {
    /// Container name (not its id: the policy's scopes are by name).
    #[schemars(length(min = 1, max = 255))]
    pub container: String,
}

/// Output of `docker_restart`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestartOutput {
    /// Full container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Whether it ran before the restart.
    pub previous_running: bool,
    /// When it was started before the restart (RFC 3339).
    pub previous_started_at: Option<String>,
    /// Engine state after the restart.
    pub state: String,
    /// Whether it runs after the restart.
    pub running: bool,
    /// When it was started by the restart (RFC 3339).
    pub started_at: Option<String>,
    /// Health after the restart, when it has a health check: `starting`, `healthy`, `unhealthy`.
    pub health: Option<String>,
}

/// `docker_restart`: restart a container; verified by inspecting it (running, started anew, and
/// healthy when it has a health check, waiting while the check is `starting`). A restart cannot be
/// undone, so it returns no undo record: a failed verify leaves the action `failed`.
pub struct DockerRestart;

impl Tool for DockerRestart {
    const NAME: &'static str = "docker_restart";
    const DESCRIPTION: &'static str = "Restarts a container. Verify checks it runs again, started anew, and is healthy when it has a health check (waiting while the check is still starting). A restart cannot be undone.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::ContainersRead, Capability::ContainersManage];
    const SUPPORTS_VERIFY: bool = true;
    type Params = ContainerParams;
    type Output = RestartOutput;

    fn invoke(params: ContainerParams) -> Result<RestartOutput, Error> {
        name::validate("container", &params.container)?;
        let before = by_name(&params.container)?;
        // By id from here on: the name could be given to another container meanwhile.
        containers::restart(&before.id)?;
        let after = containers::inspect(&before.id)?;
        Ok(RestartOutput {
            id: after.id,
            name: after.name,
            previous_running: before.running,
            previous_started_at: before.started_at,
            state: after.state,
            running: after.running,
            started_at: after.started_at,
            health: after.health,
        })
    }

    fn verify(params: ContainerParams, output: RestartOutput) -> Result<Verdict, Error> {
        name::validate("output.id", &output.id)?;
        let mut now = containers::inspect(&output.id)?;
        // A health check reports `starting` until the engine has judged it by the container's
        // own start period, interval and retries: wait for that verdict.
        let started = std::time::Instant::now();
        while now.running && now.health.as_deref() == Some("starting") && started.elapsed() < HEALTH_WAIT {
            std::thread::sleep(HEALTH_POLL_INTERVAL);
            now = containers::inspect(&output.id)?;
        }
        Ok(judge_restart(&params.container, output.previous_started_at.as_deref(), &now))
    }
}

/// The container named `container`, refused when the engine found it by another reference (an
/// id or an id prefix): policy scopes list names (`shop-*`), and a container reached by an id
/// that happens to match a listed prefix would slip past them.
fn by_name(container: &str) -> Result<ContainerDetails, Error> {
    let found = containers::inspect(container)?;
    if found.name != container {
        return Err(Error::invalid_params(format!(
            "`container`: `{container}` is not a container's name (it reached `{}` by its id): name the container, \
             as the policy's scopes do",
            found.name
        )));
    }
    Ok(found)
}

/// Whether `now` shows the restart had its effect: running, started after `previous_started_at`,
/// and healthy when the container has a health check.
pub fn judge_restart(container: &str, previous_started_at: Option<&str>, now: &ContainerDetails) -> Verdict {
    if !now.running {
        return Verdict::fail(format!("container `{container}` is `{}`, not running", now.state));
    }
    if now.started_at.is_none() || now.started_at.as_deref() == previous_started_at {
        return Verdict::fail(format!(
            "container `{container}` was not started again (started at {:?})",
            now.started_at
        ));
    }
    match now.health.as_deref() {
        None => {
            Verdict::pass(format!("container `{container}` runs since {}", now.started_at.as_deref().unwrap_or("?")))
        }
        Some("healthy") => Verdict::pass(format!("container `{container}` runs and is healthy")),
        Some(health) => Verdict::fail(format!("container `{container}` runs but its health is `{health}`")),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    fn details(running: bool, started_at: Option<&str>, health: Option<&str>) -> ContainerDetails {
        ContainerDetails {
            id: "3f2a9c1b7d4e".repeat(5) + "abcd",
            name: "web".into(),
            image: "nginx:1.25".into(),
            state: if running { "running" } else { "exited" }.into(),
            running,
            started_at: started_at.map(str::to_owned),
            health: health.map(str::to_owned),
            restart_count: 0,
        }
    }

    #[test]
    fn verify_wants_a_new_start_and_health_when_checked() {
        let before = Some("2026-11-24T01:00:00.000000000Z");
        let later = Some("2026-11-24T02:00:00.000000000Z");
        assert!(judge_restart("web", before, &details(true, later, None)).ok);
        assert!(judge_restart("web", before, &details(true, later, Some("healthy"))).ok);
        assert!(!judge_restart("web", before, &details(true, later, Some("unhealthy"))).ok);
        assert!(!judge_restart("web", before, &details(true, later, Some("starting"))).ok);
        assert!(!judge_restart("web", before, &details(false, later, None)).ok);
        assert!(!judge_restart("web", before, &details(true, before, None)).ok, "same start time: not restarted");
    }

    #[test]
    fn bad_containers_and_tails_are_refused_before_the_engine_is_called() {
        // Natively no host exists: reaching it would panic, so an `Err` proves nothing ran.
        for c in ["nginx; rm -rf /", "$(id)", "../..", "web\n"] {
            let params = serde_json::json!({ "container": c }).to_string();
            for tool in ["docker_logs", "docker_restart"] {
                let err = PLUGIN.invoke(tool, &params).expect_err(c);
                assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`container`")), "{tool} {c}: {err}");
            }
        }
        let err = PLUGIN.invoke("docker_logs", r#"{"container":"web","tail":5000}"#).expect_err("cap");
        assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`tail`")), "{err}");
    }

    #[test]
    fn the_manifest_declares_what_each_tool_may_touch() {
        let m = PLUGIN.manifest();
        let restart = m.tools.iter().find(|t| t.name == "docker_restart").expect("docker_restart");
        assert_eq!(restart.category, Category::Sensitive);
        assert!(restart.supports_verify && !restart.supports_rollback, "a restart cannot be undone");
        assert_eq!(restart.capabilities.len(), 2);
        let list = m.tools.iter().find(|t| t.name == "docker_list_containers").expect("list");
        assert_eq!(list.capabilities.len(), 1);
        let out: serde_json::Value = serde_json::from_str(&list.output_schema).expect("schema");
        assert!(out.to_string().contains("\"status\""), "{out}");
    }
}
