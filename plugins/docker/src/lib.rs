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

/// How long `verify` waits for a health check still `starting`: 12 polls of 250 ms, 3 s.
const HEALTH_POLLS: u32 = 12;
const HEALTH_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

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
    /// Container name or id.
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
        let logs = containers::logs(&params.container, params.tail)?;
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
    /// Container name or id.
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

/// What `rollback` needs: the container and whether it ran before.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartUndo {
    /// Full container id (stable even if the container is renamed).
    pub id: String,
    /// Whether it ran before the restart.
    pub was_running: bool,
    /// When it was started before the restart.
    pub previous_started_at: Option<String>,
}

/// Output of a `docker_restart` rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RestartRollback {
    /// Full container id.
    pub id: String,
    /// What was done: `start`, `stop`, or `none` when it already was as before.
    pub action: String,
    /// Whether it runs now.
    pub running: bool,
}

/// `docker_restart`: restart a container; verified by inspecting it (running, healthy when it has
/// a health check, started anew), rolled back by stopping or starting it to its previous state.
pub struct DockerRestart;

impl Tool for DockerRestart {
    const NAME: &'static str = "docker_restart";
    const DESCRIPTION: &'static str = "Restarts a container. Verify checks it runs again (and is healthy when it has a health check); rollback brings it back to running or stopped as before.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::ContainersRead, Capability::ContainersManage];
    const SUPPORTS_VERIFY: bool = true;
    type Params = ContainerParams;
    type Output = WithUndo<RestartOutput, RestartUndo>;

    fn invoke(params: ContainerParams) -> Result<Self::Output, Error> {
        name::validate("container", &params.container)?;
        let before = containers::inspect(&params.container)?;
        // By id from here on: the name could be given to another container meanwhile.
        containers::restart(&before.id)?;
        let after = containers::inspect(&before.id)?;
        let undo = RestartUndo {
            id: before.id.clone(),
            was_running: before.running,
            previous_started_at: before.started_at.clone(),
        };
        let output = RestartOutput {
            id: after.id,
            name: after.name,
            previous_running: before.running,
            previous_started_at: before.started_at,
            state: after.state,
            running: after.running,
            started_at: after.started_at,
            health: after.health,
        };
        Ok(WithUndo::new(output, undo))
    }

    fn verify(params: ContainerParams, output: RestartOutput) -> Result<Verdict, Error> {
        name::validate("output.id", &output.id)?;
        let mut now = containers::inspect(&output.id)?;
        // A health check reports `starting` until its first probe after the restart: give it a
        // few seconds before judging, well inside the plugin's deadline.
        for _ in 0..HEALTH_POLLS {
            if !(now.running && now.health.as_deref() == Some("starting")) {
                break;
            }
            std::thread::sleep(HEALTH_POLL_INTERVAL);
            now = containers::inspect(&output.id)?;
        }
        Ok(judge_restart(&params.container, output.previous_started_at.as_deref(), &now))
    }

    fn rollback(undo: RestartUndo) -> Result<serde_json::Value, Error> {
        // The undo record came back from storage: check it as if a caller had typed it.
        name::validate("undo.id", &undo.id)?;
        let now = containers::inspect(&undo.id)?;
        let action = match (undo.was_running, now.running) {
            (true, false) => {
                containers::start(&undo.id)?;
                "start"
            }
            (false, true) => {
                containers::stop(&undo.id)?;
                "stop"
            }
            _ => "none",
        };
        let running = containers::inspect(&undo.id)?.running;
        let restored = RestartRollback { id: undo.id, action: action.to_owned(), running };
        serde_json::to_value(restored).map_err(|e| Error::failed(format!("cannot encode the rollback output: {e}")))
    }
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
        let err = PLUGIN
            .rollback("docker_restart", r#"{"id":"web;x","was_running":true,"previous_started_at":null}"#)
            .expect_err("undo");
        assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`undo.id`")), "{err}");
    }

    #[test]
    fn the_manifest_declares_what_each_tool_may_touch() {
        let m = PLUGIN.manifest();
        let restart = m.tools.iter().find(|t| t.name == "docker_restart").expect("docker_restart");
        assert_eq!(restart.category, Category::Sensitive);
        assert!(restart.supports_verify && restart.supports_rollback);
        assert_eq!(restart.capabilities.len(), 2);
        let list = m.tools.iter().find(|t| t.name == "docker_list_containers").expect("list");
        assert_eq!(list.capabilities.len(), 1);
        let out: serde_json::Value = serde_json::from_str(&list.output_schema).expect("schema");
        assert!(out.to_string().contains("\"status\""), "{out}");
    }
}
