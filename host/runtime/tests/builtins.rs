//! The built-in tools end to end through the real pieces: the plugins built from `plugins/`
//! (`cargo xtask plugins`), the repo's exec policy, the sandbox on the real Docker engine, this
//! machine's mount table, and real containers for the docker tools and the listener
//! `network_listeners` must find. The systemd and apt tools act on a real Debian system in
//! `tests/tests/real_host.rs`; here, without a system bus, they answer `unavailable`.

#[path = "builtins_support/fixture.rs"]
mod fixture;

use anyhow::Context;
use fixture::{Fixture, TestContainer, tool_error};
use serde_json::{Value, json};
use toolgate_core::model::Role;
use toolgate_runtime::ToolErrorKind;
use toolgate_sandbox::MountConfig;

async fn fixture() -> anyhow::Result<Fixture> {
    Fixture::new(None).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_tools_list_read_logs_restart_and_verify() -> anyhow::Result<()> {
    let fx = fixture().await?;
    let name = unique("toolgate-e2e-web");
    let web = TestContainer::start(&fx.base_image, &name, &["sh", "-c", "echo hello from e2e; exec sleep 300"])?;

    let list = fx.invoke(Role::Viewer, "docker_list_containers", json!({})).await?.output;
    let listed =
        list["containers"].as_array().context("containers")?.iter().find(|c| c["name"] == name.as_str()).cloned();
    let listed = listed.with_context(|| format!("`{name}` not listed: {list}"))?;
    assert_eq!(listed["state"], "running", "{listed}");
    assert_eq!(listed["id"], web.id.as_str(), "{listed}");

    // `docker run -d` returns once the container started, not once its `echo` ran: wait for the
    // line to be logged (bounded), then read it through the tool.
    for _ in 0..50 {
        if docker_logs_of(&web.id).contains("hello from e2e") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logs = fx.invoke(Role::Viewer, "docker_logs", json!({"container": name, "tail": 10})).await?.output;
    assert_eq!(logs["lines"], json!(["hello from e2e"]), "{logs}");

    let params = json!({"container": name});
    let before = web.inspect("{{.State.StartedAt}}")?;
    let out = fx.invoke(Role::Admin, "docker_restart", params.clone()).await?;
    let after = web.inspect("{{.State.StartedAt}}")?;
    assert_ne!(before, after, "a restart starts the container anew");
    assert_eq!(out.output["previous_running"], true, "{}", out.output);
    assert_eq!(out.output["running"], true, "{}", out.output);
    assert_ne!(out.output["started_at"], out.output["previous_started_at"], "{}", out.output);
    assert!(fx.verify(Role::Admin, "docker_restart", &params, &out).await?.ok);
    // The old process is gone: a restart has nothing to undo and returns no undo record.
    assert!(out.undo.is_none(), "{:?}", out.undo);

    // By id, the scopes by name would not see which container it is: refused, nothing restarted.
    let started = web.inspect("{{.State.StartedAt}}")?;
    for reference in [web.id.as_str(), &web.id[..12]] {
        let (kind, message) =
            tool_error(fx.invoke(Role::Admin, "docker_restart", json!({"container": reference})).await);
        assert_eq!(kind, ToolErrorKind::InvalidParams, "{message}");
        assert!(message.contains(&format!("reached `{name}` by its id")), "{message}");
        let (kind, _) = tool_error(fx.invoke(Role::Viewer, "docker_logs", json!({"container": reference})).await);
        assert_eq!(kind, ToolErrorKind::InvalidParams);
    }
    assert_eq!(web.inspect("{{.State.StartedAt}}")?, started, "not restarted by id");

    // Stopped since: the same restart no longer verifies.
    fixture_docker(&["stop", &web.id])?;
    let verdict = fx.verify(Role::Admin, "docker_restart", &params, &out).await?;
    assert!(!verdict.ok, "{verdict:?}");

    let (kind, message) =
        tool_error(fx.invoke(Role::Viewer, "docker_logs", json!({"container": unique("toolgate-e2e-absent")})).await);
    assert_ne!(kind, ToolErrorKind::InvalidParams, "{message}");
    assert!(message.contains("toolgate-e2e-absent"), "{message}");
    assert!(fx.commands().is_empty(), "the docker tools run no command: {:?}", fx.commands());
    drop(web);
    fx.shutdown().await;
    Ok(())
}

/// A container whose health check passes only some seconds after each start (longer than the
/// plugin's 5 s execution limit and than the 3 s the verify used to wait): verify waits for the
/// engine's verdict, as the container's own start period and interval make it, then passes.
#[tokio::test(flavor = "multi_thread")]
async fn docker_restart_verifies_a_slow_health_check_once_it_turns_healthy() -> anyhow::Result<()> {
    let fx = fixture().await?;
    let name = unique("toolgate-e2e-slow");
    let health = ["--health-cmd", "test -f /tmp/ready", "--health-interval", "4s", "--health-start-period", "60s"];
    let ready_later = "rm -f /tmp/ready; sleep 6; touch /tmp/ready; exec sleep 300";
    let slow = TestContainer::start_with(
        &fx.base_image,
        &name,
        &[&["--network", "none"][..], &health].concat(),
        &["sh", "-c", ready_later],
    )?;
    let params = json!({"container": name});
    let out = fx.invoke(Role::Admin, "docker_restart", params.clone()).await?;
    assert_eq!(out.output["health"], "starting", "{}", out.output);
    let started = std::time::Instant::now();
    let verdict = fx.verify(Role::Admin, "docker_restart", &params, &out).await?;
    assert!(verdict.ok, "{verdict:?}");
    assert!(verdict.detail.contains("healthy"), "{verdict:?}");
    assert_eq!(slow.inspect("{{.State.Health.Status}}")?, "healthy");
    assert!(started.elapsed() > std::time::Duration::from_secs(5), "it waited for the health check, not a guess");
    Ok(())
}

fn fixture_docker(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn files_write_read_list_verify_and_roll_back() -> anyhow::Result<()> {
    let fx = fixture().await?;
    std::fs::create_dir_all(fx.workspace.join("conf"))?;
    std::fs::write(fx.workspace.join("conf/app.ini"), "port = 80\n")?;

    let params = json!({"path": "conf/app.ini", "content": "port = 8080\n"});
    let out = fx.invoke(Role::Admin, "write_file", params.clone()).await?;
    assert_eq!(out.output["created"], false, "{}", out.output);
    assert_eq!(out.output["bytes"], 12, "{}", out.output);
    assert!(fx.verify(Role::Admin, "write_file", &params, &out).await?.ok);
    let read = fx.invoke(Role::Viewer, "read_file", json!({"path": "conf/app.ini"})).await?.output;
    assert_eq!(read["data"], "port = 8080\n", "{read}");
    assert_eq!(read["sha256"], out.output["sha256"], "{read}");
    fx.rollback(Role::Admin, "write_file", &out).await?;
    assert_eq!(std::fs::read_to_string(fx.workspace.join("conf/app.ini"))?, "port = 80\n");
    let verdict = fx.verify(Role::Admin, "write_file", &params, &out).await?;
    assert!(!verdict.ok, "rolled back, the write no longer verifies: {verdict:?}");

    // A new file: rollback removes it. Shell syntax in content is data, written as is.
    let params = json!({"path": "conf/new.txt", "content": "$(id); rm -rf /\n"});
    let out = fx.invoke(Role::Admin, "write_file", params.clone()).await?;
    assert_eq!(out.output["created"], true, "{}", out.output);
    assert_eq!(std::fs::read_to_string(fx.workspace.join("conf/new.txt"))?, "$(id); rm -rf /\n");
    let list = fx.invoke(Role::Viewer, "list_dir", json!({"path": "conf"})).await?.output;
    let names: Vec<&str> =
        list["entries"].as_array().context("entries")?.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["app.ini", "new.txt"], "{list}");
    fx.rollback(Role::Admin, "write_file", &out).await?;
    assert!(!fx.workspace.join("conf/new.txt").exists());
    fx.shutdown().await;
    Ok(())
}

/// The host's file systems, from its mount table: no command, no container.
#[tokio::test(flavor = "multi_thread")]
async fn disk_usage_reports_the_host_filesystems_without_a_command() -> anyhow::Result<()> {
    let fx = fixture().await?;
    let out = fx.invoke(Role::Viewer, "disk_usage", json!({})).await?.output;
    let filesystems = out["filesystems"].as_array().context("filesystems")?;
    let root = filesystems.iter().find(|f| f["mount"] == "/").with_context(|| format!("no `/`: {out}"))?;
    assert!(root["size_bytes"].as_u64().unwrap_or(0) > 0, "{root}");
    assert!(filesystems.iter().all(|f| f["fs_type"] != "proc" && f["fs_type"] != "sysfs"), "{out}");
    assert!(fx.commands().is_empty(), "disk_usage runs no command: {:?}", fx.commands());
    fx.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn network_listeners_finds_a_listener_in_the_namespace_it_reads() -> anyhow::Result<()> {
    let base = fixture::sandbox_image().await?;
    let listener =
        TestContainer::start_networked(&base, &unique("toolgate-e2e-listener"), &["nc", "-l", "-p", "8080"])?;
    let fx = Fixture::new(Some(&listener)).await?;
    let out = fx.invoke(Role::Viewer, "network_listeners", json!({})).await?.output;
    let listeners = out["listeners"].as_array().context("listeners")?;
    let found = listeners.iter().find(|l| l["port"] == 8080).with_context(|| format!("no listener on 8080: {out}"))?;
    assert_eq!(found["protocol"].as_str().map(|p| p.starts_with("tcp")), Some(true), "{found}");
    assert_eq!(found["uid"], 65534, "{found}");
    drop(listener);
    fx.shutdown().await;
    Ok(())
}

/// The embedded default `host-net` profile, unchanged: the host's `/proc/1/net` read-only in a
/// container without network. A socket this test process listens on (in the host's network
/// namespace, like `serve` itself) is among the host's listeners.
#[tokio::test(flavor = "multi_thread")]
async fn network_listeners_with_the_default_profile_finds_a_listener_of_this_host() -> anyhow::Result<()> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = socket.local_addr()?.port();
    let fx = fixture().await?;
    let out = fx.invoke(Role::Viewer, "network_listeners", json!({})).await?.output;
    let listeners = out["listeners"].as_array().context("listeners")?;
    let found = listeners
        .iter()
        .find(|l| l["port"] == port && l["address"] == "127.0.0.1")
        .with_context(|| format!("no listener on 127.0.0.1:{port}: {out}"))?;
    assert_eq!(found["protocol"], "tcp", "{found}");
    assert!(
        fx.commands()
            .iter()
            .any(|(kind, allowed, cmd)| kind == "exec" && *allowed && cmd.starts_with("cat /host/proc/net/tcp")),
        "{:?}",
        fx.commands()
    );
    drop(socket);
    fx.shutdown().await;
    Ok(())
}

/// The `journal` profile as shipped, but on the busybox image (no `journalctl`), without the
/// journal group, and with `machine_id` (which may not exist) as its machine id.
fn journal_on_busybox(p: &mut fixture::Profiles, machine_id: std::path::PathBuf) -> anyhow::Result<()> {
    let mut journal = toolgate_sandbox::SandboxConfig::default().profiles.remove("journal").context("journal")?;
    journal.image = p.base.clone();
    journal.groups = vec![];
    journal.mounts =
        vec![MountConfig { source: machine_id, target: "/etc/machine-id".into(), read_only: true, optional: false }];
    p.profiles.insert("journal".into(), journal);
    Ok(())
}

/// A machine without what a profile needs (a host path, a program in the image): the tools of
/// that profile answer `unavailable` saying what is missing, nothing else is affected.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_without_a_bus_or_a_journal_answers_unavailable_and_the_rest_works() -> anyhow::Result<()> {
    let fx = Fixture::with_profiles(None, |p| {
        // The journal's profile as shipped, but this machine has no machine id at that path.
        let missing = p.scratch.join("no-machine-id");
        journal_on_busybox(p, missing)
    })
    .await?;
    for (role, tool, params) in [
        (Role::Viewer, "systemd_status", json!({"unit": "nginx"})),
        (Role::Admin, "systemd_restart", json!({"unit": "nginx"})),
        (Role::Admin, "apt_install", json!({"package": "htop"})),
    ] {
        let (kind, message) = tool_error(fx.invoke(role, tool, params).await);
        assert_eq!(kind, ToolErrorKind::Unavailable, "{tool}: {message}");
        assert!(message.contains("[system]"), "{tool}: {message}");
    }
    let (kind, message) = tool_error(fx.invoke(Role::Viewer, "systemd_logs", json!({"unit": "nginx"})).await);
    assert_eq!(kind, ToolErrorKind::Unavailable, "{message}");
    assert!(message.contains("no-machine-id") && message.contains("sandbox.profiles.journal.mounts"), "{message}");

    let out = fx.invoke(Role::Viewer, "disk_usage", json!({})).await?.output;
    assert!(!out["filesystems"].as_array().context("filesystems")?.is_empty(), "{out}");
    fx.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn run_command_follows_the_exec_allowlist_of_each_role() -> anyhow::Result<()> {
    let fx = fixture().await?;
    std::fs::write(fx.workspace.join("notes.txt"), "hello\n")?;
    let out = fx.invoke(Role::Viewer, "run_command", json!({"command": "ls"})).await?.output;
    assert_eq!(out["argv"], json!(["ls"]), "{out}");
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(out["stdout"], "notes.txt\n", "the workspace is the working directory: {out}");
    let ran = |fx: &Fixture| fx.commands().iter().filter(|(kind, ..)| kind == "exec").count();
    assert_eq!(ran(&fx), 1, "{:?}", fx.commands());

    // The shipped classes are read commands only: a restart is no command of `run_command` (the
    // `systemd_restart` tool restarts units over D-Bus), refused for every role before the sandbox.
    let restart = json!({"command": "systemctl restart nginx.service"});
    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        let (kind, message) = tool_error(fx.invoke(role, "run_command", restart.clone()).await);
        assert_eq!(kind, ToolErrorKind::Denied, "{role:?}: {message}");
        let refusal =
            "`systemctl restart nginx.service` is not a command tool \"run_command\" may run (command_not_allowed)";
        assert!(message.contains(refusal), "{role:?}: {message}");
    }
    assert_eq!(ran(&fx), 1, "the denied commands never reached the sandbox: {:?}", fx.commands());

    // An allowed command reaches the sandbox; one that fails answers its exit code, not an error.
    let out = fx.invoke(Role::Operator, "run_command", json!({"command": "cat /nonexistent"})).await?.output;
    assert_eq!(out["argv"], json!(["cat", "/nonexistent"]), "{out}");
    assert_ne!(out["exit_code"], 0, "{out}");
    assert!(out["stderr"].as_str().is_some_and(|e| e.contains("/nonexistent")), "{out}");
    assert_eq!(ran(&fx), 2, "{:?}", fx.commands());

    let (kind, message) = tool_error(fx.invoke(Role::Operator, "run_command", json!({"command": "rm -rf /"})).await);
    assert_eq!(kind, ToolErrorKind::Denied, "{message}");
    assert_eq!(ran(&fx), 2, "{:?}", fx.commands());
    fx.shutdown().await;
    Ok(())
}

/// A command the exec policy allows whose program the profile's image lacks answers `unavailable`
/// naming the program and the `image` key to set: here the `journal` profile on the busybox image,
/// which has no `journalctl`.
#[tokio::test(flavor = "multi_thread")]
async fn a_program_missing_from_the_profiles_image_answers_unavailable_naming_it() -> anyhow::Result<()> {
    let fx = Fixture::with_profiles(None, |p| {
        let machine_id = p.scratch.join("machine-id");
        std::fs::write(&machine_id, "0123456789abcdef0123456789abcdef\n")?;
        journal_on_busybox(p, machine_id)
    })
    .await?;
    let (kind, message) = tool_error(fx.invoke(Role::Viewer, "systemd_logs", json!({"unit": "nginx"})).await);
    assert_eq!(kind, ToolErrorKind::Unavailable, "{message}");
    assert!(message.contains("`journalctl` is not in the image"), "{message}");
    assert!(message.contains("sandbox.profiles.journal.image"), "{message}");
    let allowed = fx.commands().iter().filter(|(kind, allowed, _)| kind == "exec_decision" && *allowed).count();
    assert_eq!(allowed, 1, "the exec policy allowed it: {:?}", fx.commands());
    fx.shutdown().await;
    Ok(())
}

/// Every string parameter of every tool, with each classic injection: `invalid-params` naming the
/// field, and nothing reaches the exec policy, the sandbox or the host.
#[tokio::test(flavor = "multi_thread")]
async fn injections_in_every_string_parameter_are_refused_before_anything_runs() -> anyhow::Result<()> {
    let fx = fixture().await?;
    let payloads = ["nginx; rm -rf /", "$(id)", "../..", "nginx\nrm -rf /"];
    let fields: [(&str, &str, Value); 9] = [
        ("systemd_status", "unit", json!({})),
        ("systemd_logs", "unit", json!({})),
        ("systemd_restart", "unit", json!({})),
        ("docker_logs", "container", json!({})),
        ("docker_restart", "container", json!({})),
        ("apt_install", "package", json!({})),
        ("run_command", "command", json!({})),
        ("read_file", "path", json!({})),
        ("write_file", "path", json!({"content": "x"})),
    ];
    for (tool, field, mut params) in fields {
        for payload in payloads {
            params[field] = json!(payload);
            let result = fx.invoke(Role::Admin, tool, params.clone()).await;
            match (tool, field, payload) {
                // A command line made only of a relative path is no injection: the allowlist
                // refuses it (see below, nothing runs either way).
                ("run_command", _, "../..") => {
                    assert_eq!(tool_error(result).0, ToolErrorKind::Denied, "{tool} {payload:?}");
                }
                // A workspace path goes to the host's file API, never to a shell or an argv:
                // `$(id)` is an ordinary (odd) file name and is taken literally.
                ("read_file", _, "$(id)") => {
                    let (kind, message) = tool_error(result);
                    assert_ne!(kind, ToolErrorKind::InvalidParams, "{message}");
                    assert!(message.contains("$(id)"), "{message}");
                }
                ("write_file", _, "$(id)") => {
                    assert_eq!(result?.output["created"], true);
                    assert_eq!(std::fs::read_to_string(fx.workspace.join("$(id)"))?, "x");
                }
                _ => {
                    let (kind, message) = tool_error(result);
                    assert_eq!(kind, ToolErrorKind::InvalidParams, "{tool}.{field} = {payload:?}: {message}");
                    assert!(message.contains(&format!("`{field}`")), "{tool}.{field} = {payload:?}: {message}");
                }
            }
        }
    }
    for path in ["/etc/passwd", "conf/../../etc"] {
        let (kind, message) = tool_error(fx.invoke(Role::Admin, "list_dir", json!({"path": path})).await);
        assert_eq!(kind, ToolErrorKind::InvalidParams, "{path}: {message}");
    }
    let executed: Vec<_> = fx.commands().into_iter().filter(|(kind, ..)| kind == "exec").collect();
    assert!(executed.is_empty(), "no container may be created: {executed:?}");
    assert!(fx.commands().iter().all(|(_, allowed, _)| !allowed), "{:?}", fx.commands());
    let written: Vec<_> =
        std::fs::read_dir(&fx.workspace)?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
    assert_eq!(written, ["$(id)"], "only the literal file name was written");
    fx.shutdown().await;
    Ok(())
}

/// What the Docker CLI says the container logged (empty when it cannot tell).
fn docker_logs_of(id: &str) -> String {
    std::process::Command::new("docker")
        .args(["logs", id])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
