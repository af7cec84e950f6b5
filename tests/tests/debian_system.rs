//! The Debian test system (`toolgate_tests::debian`) that the system tests stand on: it boots
//! under systemd and runs its test unit, keeps a journal the host reads, offers its system bus on
//! a host socket until the bus is stopped, installs its test package through PackageKit from the
//! local repository alone (trusted, as PackageKit's default `only-trusted` install requires), and
//! leaves nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use toolgate_tests::debian::{DebianSystem, SERVICE_UID, SERVICE_USER, TEST_PACKAGE, TEST_UNIT};

/// `f` until it gives `Some`, for at most `wait`.
fn eventually<T>(wait: Duration, mut f: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<Option<T>> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(found) = f()? {
            return Ok(Some(found));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_system_runs_its_test_unit_and_the_host_reads_its_journal() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    // A clean boot: no unit failed.
    assert_eq!(system.run(&["systemctl", "--failed", "--plain", "--no-legend"])?.trim(), "");
    assert_eq!(system.run(&["systemctl", "is-active", TEST_UNIT])?.trim(), "active");
    // The unit's first line, with the shell's PID in it.
    let started = eventually(Duration::from_secs(10), || {
        let log = system.run(&["journalctl", "--unit", TEST_UNIT, "--output", "cat", "--no-pager"])?;
        Ok(log.lines().find_map(|l| l.strip_prefix("toolgate-test started ").map(str::to_owned)))
    })?;
    assert!(started.as_deref().is_some_and(|pid| pid.parse::<u32>().is_ok()), "{started:?}");

    // The journal is in the host directory, under the machine id the host file holds.
    let machine_id = std::fs::read_to_string(system.machine_id_file())?.trim().to_owned();
    assert_eq!(system.run(&["cat", "/etc/machine-id"])?.trim(), machine_id);
    let journal = system.journal_dir().join(&machine_id);
    assert!(
        journal.join("system.journal").is_file(),
        "{:?}",
        std::fs::read_dir(system.journal_dir())?.collect::<Vec<_>>()
    );
    assert_eq!(std::fs::metadata(&journal)?.gid(), system.journal_gid()?);

    // The service account is there, without a login shell.
    let account = system.run(&["getent", "passwd", SERVICE_USER])?;
    assert!(account.starts_with(&format!("{SERVICE_USER}:x:{SERVICE_UID}:")), "{account}");
    assert!(account.trim().ends_with("/usr/sbin/nologin"), "{account}");
    Ok(())
}

#[test]
fn packagekit_installs_the_test_package_from_the_local_repository_as_trusted() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    system.run(&["pkcon", "refresh"])?;
    let resolved = system.run(&["pkcon", "resolve", TEST_PACKAGE])?;
    assert!(resolved.contains(&format!("Available    {TEST_PACKAGE}-1.0.all")), "{resolved}");

    // `pkcon install` asks for trusted packages only unless told `--allow-untrusted`.
    system.run(&["pkcon", "--noninteractive", "install", TEST_PACKAGE])?;
    let log = system.run(&["journalctl", "--unit", "packagekit.service", "--no-pager"])?;
    assert!(log.contains("package-install auth (only_trusted:1)"), "{log}");
    let installed = system.run(&["cat", "/usr/share/toolgate-test-pkg/hello.txt"])?;
    assert_eq!(installed, "hello from toolgate-test-pkg\n");
    Ok(())
}

/// Lets `{user}` refresh PackageKit's sources, which polkit otherwise refuses to a process
/// outside any session.
const REFRESH_RULES: &str = r#"polkit.addRule(function(action, subject) {
    if (action.id == "org.freedesktop.packagekit.system-sources-refresh" && subject.user == "{user}") {
        return polkit.Result.YES;
    }
});
"#;

#[test]
fn polkit_judges_the_service_account_by_the_rules_installed_and_removed() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    let refresh = ["runuser", "--user", SERVICE_USER, "--", "pkcon", "refresh"];
    let denied = system.exec(&refresh)?;
    let said = format!("{}{}", String::from_utf8_lossy(&denied.stdout), String::from_utf8_lossy(&denied.stderr));
    assert!(!denied.status.success() && said.contains("Failed to obtain authentication"), "{said}");

    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("50-toolgate-test.rules");
    std::fs::write(&rules, REFRESH_RULES.replace("{user}", SERVICE_USER))?;
    system.install_polkit_rules(&rules)?;
    system.run(&refresh)?;

    system.remove_polkit_rules("50-toolgate-test.rules")?;
    assert!(!system.exec(&refresh)?.status.success());
    Ok(())
}

#[test]
fn the_host_reaches_the_system_bus_until_it_is_stopped_and_nothing_is_left_after_drop() -> anyhow::Result<()> {
    let system = DebianSystem::boot()?;
    let address = system.bus_address();
    let socket = address.strip_prefix("unix:path=").map(std::path::PathBuf::from);
    let socket = socket.ok_or_else(|| anyhow::anyhow!("bus address `{address}`"))?;
    let meta = std::fs::metadata(&socket)?;
    assert!(meta.file_type().is_socket() && meta.mode() & 0o006 == 0o006, "{meta:?}");

    // The bus answers a host process: the D-Bus handshake as this process's own uid.
    let uid = std::fs::metadata("/proc/self")?.uid();
    let mut stream = UnixStream::connect(&socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let hex: String = uid.to_string().bytes().map(|b| format!("{b:02x}")).collect();
    stream.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    assert!(answer.starts_with("OK "), "{answer:?}");

    system.stop_bus()?;
    let refused = UnixStream::connect(&socket).map_err(|e| e.kind());
    assert_eq!(refused.err(), Some(std::io::ErrorKind::ConnectionRefused));

    let (name, dir) = (system.name().to_owned(), system.journal_dir().to_owned());
    drop(system);
    let left = std::process::Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter", &format!("name=^{name}$")])
        .output()?;
    assert!(left.status.success() && left.stdout.is_empty(), "{left:?}");
    assert!(!dir.exists(), "{} is left", dir.display());
    Ok(())
}
