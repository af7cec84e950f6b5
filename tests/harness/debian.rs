//! A real Debian system for the tests that drive one: a container of the image
//! `toolgate-test-debian-system` (built offline by `cargo xtask images`) booted under systemd,
//! with D-Bus, logind, polkit and PackageKit, the service account [`SERVICE_USER`], a test unit
//! [`TEST_UNIT`] a local apt repository holding [`TEST_PACKAGE`] and [`UNLISTED_PACKAGE`], and nginx
//! ([`NGINX_UNIT`]).
//!
//! From the host a test reaches its system bus through a socket in a host directory
//! ([`DebianSystem::bus_address`]; a host process whose uid exists inside, such as
//! [`SERVICE_UID`], is judged by the polkit inside), and reads its persistent journal
//! ([`DebianSystem::journal_dir`]). The container has no route out of the host; its only apt
//! source is the local repository. Dropping the system removes the container and its directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The gateway's service account inside the system.
pub const SERVICE_USER: &str = "toolgate";
pub const SERVICE_UID: u32 = 61000;
pub const SERVICE_GID: u32 = 61000;

/// A unit that runs from boot: it logs `toolgate-test started <pid>`, then a tick every 5 s.
pub const TEST_UNIT: &str = "toolgate-test.service";

/// Version 1.0, in the local repository (`/srv/repo`), not installed; installs
/// `/usr/share/toolgate-test-pkg/hello.txt`.
pub const TEST_PACKAGE: &str = "toolgate-test-pkg";

/// Also in the local repository, not installed, and on no policy list: installing it must be
/// refused by policy.
pub const UNLISTED_PACKAGE: &str = "toolgate-test-unlisted";

/// A real service with a configuration check (`nginx -t`) and a reload, installed and running.
pub const NGINX_UNIT: &str = "nginx.service";

/// The image repository; `<target>/images/<IMAGE>.ref` names the current build.
const IMAGE: &str = "toolgate-test-debian-system";

/// The systems' network: internal, so no way out of the host, but with a default route, without
/// which GLib's network monitor, and PackageKit with it, says the system is offline and refuses to
/// refresh (as it does with `--network none`).
const NETWORK: &str = "toolgate-test-internal";

/// How long a boot may take (about 1.2 s on an idle machine).
const BOOT: Duration = Duration::from_secs(60);

/// A booted Debian system, removed on drop.
pub struct DebianSystem {
    /// The container's name, unique per boot.
    name: String,
    /// Holds `bus/` (mounted at `/run-host`), `journal/` (at `/var/log/journal`) and `machine-id`
    /// (at `/etc/machine-id`).
    dir: tempfile::TempDir,
    journal_dir: PathBuf,
    machine_id_file: PathBuf,
}

impl DebianSystem {
    /// Boot a fresh container of the test image and wait until systemd says `running` or
    /// `degraded` and the bus socket is on the host side.
    pub fn boot() -> anyhow::Result<DebianSystem> {
        crate::require_docker()?;
        let image = image()?;
        let network = network()?;
        let dir = tempfile::Builder::new().prefix("toolgate-debian-").tempdir()?;
        // Traversable by the service account, which connects to the bus socket from the host.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        for sub in ["bus", "journal"] {
            std::fs::create_dir(dir.path().join(sub))?;
            std::fs::set_permissions(dir.path().join(sub), std::fs::Permissions::from_mode(0o755))?;
        }
        // A machine id of its own: the journal's directory is named after it.
        let id = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().replace('-', "");
        std::fs::write(dir.path().join("machine-id"), format!("{id}\n"))?;
        static BOOTS: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let name =
            format!("toolgate-test-debian-{}-{}-{nanos}", std::process::id(), BOOTS.fetch_add(1, Ordering::Relaxed));
        // Made before `docker run`: its drop removes the container when the run or the boot fails.
        let (journal_dir, machine_id_file) = (dir.path().join("journal"), dir.path().join("machine-id"));
        let system = DebianSystem { name, dir, journal_dir, machine_id_file };
        let mount = |host: &str, inside: &str| format!("{}:{inside}", system.dir.path().join(host).display());
        docker(&[
            "run",
            "--detach",
            "--name",
            &system.name,
            "--label",
            "toolgate.test=1",
            "--network",
            &network,
            // What systemd needs in a container: its cgroups, and tmpfs where it expects them.
            "--cap-add",
            "SYS_ADMIN",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "--volume",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--volume",
            &mount("bus", "/run-host"),
            "--volume",
            &mount("journal", "/var/log/journal"),
            "--volume",
            &mount("machine-id", "/etc/machine-id:ro"),
            // systemd's signal to halt (`docker import` cannot set it in the image).
            "--stop-signal",
            "SIGRTMIN+3",
            &image,
        ])?;
        system.wait_booted()?;
        Ok(system)
    }

    fn wait_booted(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + BOOT;
        let mut state = String::new();
        while Instant::now() < deadline {
            if let Ok(out) = self.exec(&["systemctl", "is-system-running"]) {
                state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if matches!(state.as_str(), "running" | "degraded") && self.bus_socket().exists() {
                    return Ok(());
                }
            }
            if docker(&["inspect", "--format", "{{.State.Running}}", &self.name]).is_ok_and(|r| r == "false") {
                state = "container exited".into();
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let logs = Command::new("docker").args(["logs", "--tail", "80", &self.name]).output();
        let logs =
            logs.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)));
        bail!(
            "the Debian test system `{}` did not boot within {BOOT:?} (state `{state}`, bus socket {}); its console:\n{}",
            self.name,
            if self.bus_socket().exists() { "present" } else { "absent" },
            logs.unwrap_or_else(|e| format!("(docker logs failed: {e})"))
        )
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `unix:path=<host dir>/system_bus_socket`: the system bus, usable by any host uid (the
    /// directory is 0755, the socket 0666).
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.bus_socket().display())
    }

    fn bus_socket(&self) -> PathBuf {
        self.dir.path().join("bus/system_bus_socket")
    }

    /// Run `argv` inside as root; the status is not checked.
    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<Output> {
        Command::new("docker").arg("exec").arg(&self.name).args(argv).output().context("running the docker CLI")
    }

    /// [`DebianSystem::exec`], failing with its stderr unless it succeeds; returns its stdout.
    pub fn run(&self, argv: &[&str]) -> anyhow::Result<String> {
        let out = self.exec(argv)?;
        if !out.status.success() {
            bail!(
                "`{}` failed in {} ({}): {}{}",
                argv.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The host directory mounted at `/var/log/journal`: journald's files, in `<machine id>/`
    /// (owned by root and the group [`DebianSystem::journal_gid`]).
    pub fn journal_dir(&self) -> &Path {
        &self.journal_dir
    }

    /// A host file holding the system's `/etc/machine-id` (mounted there).
    pub fn machine_id_file(&self) -> &Path {
        &self.machine_id_file
    }

    /// The gid of the group `systemd-journal` inside.
    pub fn journal_gid(&self) -> anyhow::Result<u32> {
        let entry = self.run(&["getent", "group", "systemd-journal"])?;
        entry.trim().split(':').nth(2).and_then(|g| g.parse().ok()).with_context(|| format!("group entry `{entry}`"))
    }

    /// Copy a polkit rules file into `/etc/polkit-1/rules.d/`. polkitd is restarted, so that the
    /// rules hold when this returns (its own reload on a change is asynchronous).
    pub fn install_polkit_rules(&self, file: &Path) -> anyhow::Result<()> {
        let name = file.file_name().and_then(|n| n.to_str()).context("a rules file has a name")?;
        let target = format!("/etc/polkit-1/rules.d/{name}");
        docker(&["cp", &file.display().to_string(), &format!("{}:{target}", self.name)])?;
        self.run(&["chmod", "0644", &target])?;
        self.run(&["systemctl", "restart", "polkit.service"]).map(drop)
    }

    /// Remove a rules file [`DebianSystem::install_polkit_rules`] installed, and restart polkitd.
    pub fn remove_polkit_rules(&self, file_name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(!file_name.contains('/'), "`{file_name}` is a file name, not a path");
        self.run(&["rm", "-f", &format!("/etc/polkit-1/rules.d/{file_name}")])?;
        self.run(&["systemctl", "restart", "polkit.service"]).map(drop)
    }

    /// Stop the system bus (socket and service): its socket then refuses connections.
    pub fn stop_bus(&self) -> anyhow::Result<()> {
        self.run(&["systemctl", "stop", "dbus.socket", "dbus.service"]).map(drop)
    }
}

impl Drop for DebianSystem {
    fn drop(&mut self) {
        // journald's directory inside belongs to root: emptied from inside, so that the temporary
        // directory goes even when the tests do not run as root.
        let _ = self.exec(&["sh", "-c", "rm -rf /var/log/journal/*"]);
        if let Err(e) = docker(&["rm", "--force", &self.name]) {
            eprintln!("cannot remove the Debian test system `{}`: {e:#}", self.name);
        }
    }
}

/// The test system image's reference, written by `cargo xtask images`.
fn image() -> anyhow::Result<String> {
    image_of(IMAGE)
}

/// The reference of the plain Debian image (`toolgate-debian`, what the `journal` profile runs),
/// for a container of a test's own.
pub fn debian_image() -> anyhow::Result<String> {
    image_of("toolgate-debian")
}

fn image_of(repository: &str) -> anyhow::Result<String> {
    let file = crate::plugins_dir().with_file_name("images").join(format!("{repository}.ref"));
    let reference = std::fs::read_to_string(&file).map(|r| r.trim().to_owned()).unwrap_or_default();
    if reference.is_empty() || docker(&["image", "inspect", "--format", "{{.Id}}", &reference]).is_err() {
        bail!(
            "the image {repository} is missing (`{}` names none that exists): build it with \
             `cargo xtask images` (or `cargo xtask test`)",
            file.display()
        );
    }
    Ok(reference)
}

/// The id of the systems' network, created on first use and kept (like the images). Two
/// processes creating it at once may leave two networks of that name, and the engine then refuses
/// to attach a container to either ("ambiguous", even by id): the extras are removed.
fn network() -> anyhow::Result<String> {
    let existing = docker(&["network", "ls", "--quiet", "--no-trunc", "--filter", &format!("name=^{NETWORK}$")])?;
    let mut ids = existing.lines();
    if let Some(id) = ids.next() {
        for extra in ids {
            // One in use by another process's system stays; that process removes nothing of ours.
            let _ = docker(&["network", "rm", extra]);
        }
        return Ok(id.to_owned());
    }
    docker(&["network", "create", "--internal", "--label", "toolgate.test=1", NETWORK])
}

/// The docker CLI with `args`: its trimmed stdout, or an error with its stderr.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!("`docker {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
