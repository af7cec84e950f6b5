//! `SystemBus` against a real Debian 12 booted under systemd in a container: systemd's units and
//! PackageKit's packages over the container's system bus, checked against what `systemctl` and
//! `dpkg` say inside. The test process is root, which polkit allows everything; who may do what
//! is tested with the real binary as the service account.

use std::time::{Duration, Instant};

use toolgate_system::{Packages, Services, SystemBus, SystemConfig, SystemError, UnitVerb};
use toolgate_tests::debian::{DebianSystem, TEST_PACKAGE, TEST_UNIT};

fn bus_of(system: &DebianSystem) -> SystemBus {
    SystemBus::new(&SystemConfig { bus_address: system.bus_address(), job_timeout_secs: 60, ..SystemConfig::default() })
}

/// `systemctl show -P <property> <unit>` inside.
fn show(system: &DebianSystem, property: &str, unit: &str) -> anyhow::Result<String> {
    Ok(system.run(&["systemctl", "show", "-P", property, unit])?.trim().to_owned())
}

/// Whether dpkg says `package` is installed inside.
fn dpkg_installed(system: &DebianSystem, package: &str) -> anyhow::Result<bool> {
    let out = system.exec(&["dpkg-query", "-W", "-f=${Status}", package])?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_status_and_jobs() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    let bus = bus_of(&system);

    let status = bus.status(TEST_UNIT).await?;
    assert_eq!(status.name, TEST_UNIT);
    assert_eq!(
        (status.load_state.as_str(), status.active_state.as_str(), status.sub_state.as_str()),
        ("loaded", "active", "running")
    );
    assert_eq!(status.main_pid.to_string(), show(&system, "MainPID", TEST_UNIT)?);
    assert_eq!(status.description, show(&system, "Description", TEST_UNIT)?);
    assert_eq!(status.unit_file_state, show(&system, "UnitFileState", TEST_UNIT)?);
    assert!(status.active_enter_timestamp_us > 0);
    assert_eq!(bus.status(TEST_UNIT.trim_end_matches(".service")).await?.name, TEST_UNIT, "`.service` is implied");

    let restarted = bus.run(UnitVerb::Restart, TEST_UNIT).await?;
    assert_eq!(restarted.result, "done");
    assert_eq!(restarted.status.active_state, "active");
    assert_ne!(restarted.status.main_pid, status.main_pid, "a new process");
    assert!(restarted.status.active_enter_timestamp_us > status.active_enter_timestamp_us);
    assert_eq!(restarted.status.main_pid.to_string(), show(&system, "MainPID", TEST_UNIT)?);

    let stopped = bus.run(UnitVerb::Stop, TEST_UNIT).await?;
    assert_eq!((stopped.status.active_state.as_str(), stopped.status.main_pid), ("inactive", 0));
    assert_eq!(show(&system, "ActiveState", TEST_UNIT)?, "inactive");
    let started = bus.run(UnitVerb::Start, TEST_UNIT).await?;
    assert_eq!(started.status.active_state, "active");
    assert!(started.status.main_pid > 0);
    assert_eq!(show(&system, "ActiveState", TEST_UNIT)?, "active");
    // Starting what runs already is a job that is done at once.
    assert_eq!(bus.run(UnitVerb::Start, TEST_UNIT).await?.status.main_pid, started.status.main_pid);

    for result in
        [bus.status("toolgate-missing").await.map(drop), bus.run(UnitVerb::Start, "toolgate-missing").await.map(drop)]
    {
        match result {
            Err(SystemError::NotFound(m)) => assert!(m.contains("`toolgate-missing.service`"), "{m}"),
            other => panic!("a missing unit: {other:?}"),
        }
    }
    assert!(matches!(bus.status("no such unit").await, Err(SystemError::InvalidArgument(_))));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_and_a_slow_one() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    system.run(&[
        "sh",
        "-c",
        "printf '[Service]\\nType=oneshot\\nExecStart=/bin/false\\n' > /etc/systemd/system/toolgate-fails.service && \
         printf '[Service]\\nType=oneshot\\nExecStart=/bin/sleep 30\\n' > /etc/systemd/system/toolgate-slow.service && \
         systemctl daemon-reload",
    ])?;
    let bus = bus_of(&system);

    match bus.run(UnitVerb::Start, "toolgate-fails").await {
        Err(SystemError::Failed(m)) => {
            assert!(
                m.contains("`failed`") && m.contains("toolgate-fails.service") && m.contains("failed/failed"),
                "{m}"
            )
        }
        other => panic!("a unit whose start fails: {other:?}"),
    }
    assert_eq!(show(&system, "ActiveState", "toolgate-fails.service")?, "failed");

    let impatient = SystemBus::new(&SystemConfig {
        bus_address: system.bus_address(),
        job_timeout_secs: 1,
        ..SystemConfig::default()
    });
    match impatient.run(UnitVerb::Start, "toolgate-slow").await {
        Err(SystemError::Timeout(m)) => assert!(m.contains("toolgate-slow.service") && m.contains("1 s"), "{m}"),
        other => panic!("a job longer than the timeout: {other:?}"),
    }
    assert_eq!(show(&system, "ActiveState", "toolgate-slow.service")?, "activating", "the job goes on");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_resolved_installed_and_removed() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    let bus = bus_of(&system);
    let name = vec![TEST_PACKAGE.to_owned()];

    bus.refresh().await?;

    let resolved = bus.resolve(&name).await?;
    assert!(!resolved.is_empty());
    for package in &resolved {
        assert_eq!(package.name, TEST_PACKAGE);
        assert!(!package.installed, "{package:?}");
        assert!(
            package.id.starts_with(&format!("{};{};{};", package.name, package.version, package.arch)),
            "{package:?}"
        );
    }
    assert_eq!(resolved[0].version, "1.0");
    assert!(!dpkg_installed(&system, TEST_PACKAGE)?);

    match bus.resolve(&["toolgate-no-such-package".to_owned()]).await {
        Err(SystemError::NotFound(m)) => assert!(m.contains("`toolgate-no-such-package`"), "{m}"),
        other => panic!("an unknown package: {other:?}"),
    }
    match bus.resolve(&[TEST_PACKAGE.to_owned(), "toolgate-no-such-package".to_owned()]).await {
        Err(SystemError::NotFound(m)) => assert!(m.contains("`toolgate-no-such-package`"), "{m}"),
        other => panic!("one unknown package among known ones: {other:?}"),
    }
    assert!(matches!(bus.resolve(&["Not_A_Package".to_owned()]).await, Err(SystemError::InvalidArgument(_))));

    let installed = bus.install(&name).await?;
    let ours = installed.iter().find(|p| p.name == TEST_PACKAGE);
    assert!(ours.is_some_and(|p| p.installed && p.version == "1.0"), "{installed:?}");
    assert!(dpkg_installed(&system, TEST_PACKAGE)?);
    system.run(&["test", "-f", "/usr/share/toolgate-test-pkg/hello.txt"])?;
    let resolved = bus.resolve(&name).await?;
    assert!(resolved.iter().any(|p| p.installed && p.version == "1.0"), "{resolved:?}");
    assert_eq!(bus.install(&name).await?, vec![], "installed already: nothing to do");

    let removed = bus.remove(&name).await?;
    assert!(removed.iter().any(|p| p.name == TEST_PACKAGE && !p.installed), "{removed:?}");
    assert!(!dpkg_installed(&system, TEST_PACKAGE)?);
    assert!(system.exec(&["test", "-e", "/usr/share/toolgate-test-pkg/hello.txt"])?.status.code() == Some(1));
    match bus.remove(&name).await {
        Err(SystemError::NotFound(m)) => assert!(m.contains("not installed"), "{m}"),
        other => panic!("removing what is not installed: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bus_is_reconnected() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    let bus = bus_of(&system);
    bus.status(TEST_UNIT).await?;
    bus.refresh().await?;
    assert!(!bus.resolve(&[TEST_PACKAGE.to_owned()]).await?.is_empty());

    system.stop_bus()?;
    match bus.status(TEST_UNIT).await {
        Err(SystemError::Unavailable(m)) => assert!(m.contains(&system.bus_address()), "{m}"),
        other => panic!("a stopped bus: {other:?}"),
    }
    match bus.resolve(&[TEST_PACKAGE.to_owned()]).await {
        Err(SystemError::Unavailable(_)) => {}
        other => panic!("a stopped bus: {other:?}"),
    }

    system.run(&["systemctl", "start", "dbus.socket"])?;
    // systemd and PackageKit come back to the bus on their own, shortly after it: wait for them,
    // not for Toolgate, which must reconnect on the first call it makes once they are there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while system.exec(&["busctl", "status", "org.freedesktop.systemd1"])?.status.code() != Some(0) {
        anyhow::ensure!(Instant::now() < deadline, "systemd did not come back to the bus");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = bus.status(TEST_UNIT).await?;
    assert_eq!(status.active_state, "active");
    let restarted = bus.run(UnitVerb::Restart, TEST_UNIT).await?;
    assert_ne!(restarted.status.main_pid, status.main_pid);
    assert!(bus.resolve(&[TEST_PACKAGE.to_owned()]).await?.iter().all(|p| p.name == TEST_PACKAGE));
    Ok(())
}
