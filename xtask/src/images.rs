//! Debian images, built offline with `debootstrap` from Debian's package mirror (no image is ever
//! pulled from a registry):
//!
//! - `toolgate-debian`: the sandbox image for commands that need Debian's own tools (`journalctl`,
//!   `ps`, `ip`, `git`), running as `nobody` (65534) like the busybox image.
//! - `toolgate-test-debian-system` (tests only): a Debian system that boots under systemd with
//!   D-Bus, logind, polkit and PackageKit, that `toolgate_tests::debian` starts and drives.
//!
//! A rootfs is not reproducible byte for byte, so an image is tagged by its recipe: the first 12
//! hex digits of the SHA-256 of the suite, the packages, every change layered in and
//! [`RECIPE_VERSION`]. An image whose tag exists is not built again. Each image's reference is
//! written to `<target>/images/<repository>.ref`, where the tests read it, and the alias
//! `<repository>:12` follows the newest build.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Part of every recipe: bump it to rebuild the images when the build changes in a way the
/// recipes do not show.
const RECIPE_VERSION: &str = "1";

const SUITE: &str = "bookworm";

/// The tag every build also gets: the Debian release.
const ALIAS: &str = "12";

const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What an image is made of; its `Debug` text is what its tag hashes.
#[derive(Debug)]
struct Image {
    repository: &'static str,
    /// Packages on top of debootstrap's `minbase` variant.
    include: &'static [&'static str],
    /// `docker import --change` lines.
    changes: &'static [&'static str],
    /// Applied to the rootfs in order, before the import.
    layers: &'static [Layer],
}

/// One change to a rootfs after `debootstrap` (paths are absolute inside the rootfs).
#[derive(Debug)]
enum Layer {
    /// A file with its mode; parents created, whatever was there replaced.
    File(&'static str, u32, &'static str),
    /// Text appended to an existing file (accounts).
    Append(&'static str, &'static str),
    /// A symbolic link `path -> target`, whatever was there replaced.
    Symlink(&'static str, &'static str),
    /// A directory, parents created.
    Dir(&'static str),
    /// Every entry of a directory that is not a directory removed (apt's downloads and lists).
    RemoveFiles(&'static str),
    /// A flat apt repository in a directory: the packages built here and their `Packages` index.
    Repository(&'static str, &'static [Package]),
}

/// A Debian package built with `dpkg-deb` at image build time.
#[derive(Debug)]
struct Package {
    /// `DEBIAN/control`.
    control: &'static str,
    /// What it installs: absolute path and content (mode 0644).
    files: &'static [(&'static str, &'static str)],
}

const DEBIAN: Image = Image {
    repository: "toolgate-debian",
    // `systemd` brings `journalctl`; without `systemd-sysv` nothing here is an init system.
    include: &["systemd", "procps", "iproute2", "git", "ca-certificates"],
    changes: &[
        "LABEL toolgate.image=toolgate-debian",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "USER 65534:65534",
        "WORKDIR /tmp",
    ],
    layers: &[
        Layer::RemoveFiles("/var/cache/apt/archives"),
        Layer::RemoveFiles("/var/lib/apt/lists"),
        // No machine id baked in: a container mounts the one of the system it looks at.
        Layer::File("/etc/machine-id", 0o444, ""),
    ],
};

const TEST_SYSTEM: Image = Image {
    repository: "toolgate-test-debian-system",
    // `packagekit-tools` is `pkcon`, for the tests' own look at PackageKit; `nginx` is a real
    // service with a configuration check and a reload, for the managed-files tests.
    include: &[
        "systemd",
        "systemd-sysv",
        "dbus",
        "libpam-systemd",
        "polkitd",
        "packagekit",
        "packagekit-tools",
        "nginx",
    ],
    changes: &[
        "LABEL toolgate.test=1",
        "LABEL toolgate.image=toolgate-test-debian-system",
        // `docker import` takes no STOPSIGNAL: the fixture gives `--stop-signal SIGRTMIN+3`.
        r#"CMD ["/lib/systemd/systemd"]"#,
    ],
    layers: &[
        // The system bus is socket-activated, so its own `<listen>` config is ignored: the socket
        // unit also listens where the host reaches it (a host directory mounted at /run-host).
        Layer::File(
            "/etc/systemd/system/dbus.socket.d/toolgate.conf",
            0o644,
            "[Socket]\nListenStream=/run-host/system_bus_socket\n",
        ),
        Layer::Dir("/run-host"),
        // The gateway's service account, without a login shell.
        Layer::Append("/etc/passwd", "toolgate:x:61000:61000:Toolgate:/nonexistent:/usr/sbin/nologin\n"),
        Layer::Append("/etc/group", "toolgate:x:61000:\n"),
        Layer::Append("/etc/shadow", "toolgate:!:19000:0:99999:7:::\n"),
        // Its existence makes journald's storage persistent (the tests mount a host directory here).
        Layer::Dir("/var/log/journal"),
        Layer::File("/etc/systemd/system/toolgate-test.service", 0o644, TEST_UNIT),
        Layer::Symlink(
            "/etc/systemd/system/multi-user.target.wants/toolgate-test.service",
            "/etc/systemd/system/toolgate-test.service",
        ),
        // The only source apt knows: the container has no way out, refreshes touch this alone.
        Layer::Repository("/srv/repo", &[TEST_PACKAGE, UNLISTED_PACKAGE]),
        Layer::File("/etc/apt/sources.list", 0o644, "deb [trusted=yes] file:/srv/repo ./\n"),
        Layer::RemoveFiles("/etc/apt/sources.list.d"),
        Layer::RemoveFiles("/var/cache/apt/archives"),
        Layer::RemoveFiles("/var/lib/apt/lists"),
        // A machine id per boot (the fixture mounts one), and D-Bus reads the same. Nothing to
        // commit to disk then: the unit that would try fails on the mount and degrades the boot.
        Layer::File("/etc/machine-id", 0o444, ""),
        Layer::Symlink("/var/lib/dbus/machine-id", "/etc/machine-id"),
        Layer::Symlink("/etc/systemd/system/systemd-machine-id-commit.service", "/dev/null"),
    ],
};

/// `$$` is an escaped `$` for systemd: the shell gets `$$`, its PID.
const TEST_UNIT: &str = r#"[Unit]
Description=Toolgate test service

[Service]
Type=simple
ExecStart=/bin/sh -c 'echo "toolgate-test started $$$$"; while :; do sleep 5; echo "toolgate-test tick"; done'

[Install]
WantedBy=multi-user.target
"#;

const TEST_PACKAGE: Package = Package {
    control: "Package: toolgate-test-pkg
Version: 1.0
Architecture: all
Maintainer: Toolgate tests <tests@toolgate.invalid>
Section: misc
Priority: optional
Description: package of the Toolgate test system's local repository
 Installs /usr/share/toolgate-test-pkg/hello.txt and nothing else.
",
    files: &[("/usr/share/toolgate-test-pkg/hello.txt", "hello from toolgate-test-pkg\n")],
};

/// A package the repository has but no policy list names: the install must be refused by policy.
const UNLISTED_PACKAGE: Package = Package {
    control: "Package: toolgate-test-unlisted
Version: 1.0
Architecture: all
Maintainer: Toolgate tests <tests@toolgate.invalid>
Section: misc
Priority: optional
Description: package of the test repository that no policy list names
 Installs /usr/share/toolgate-test-unlisted/hello.txt and nothing else.
",
    files: &[("/usr/share/toolgate-test-unlisted/hello.txt", "hello from toolgate-test-unlisted\n")],
};

/// Build each image whose recipe has no image yet; write every reference file.
pub fn ensure_images(root: &Path) -> anyhow::Result<()> {
    if !docker_ok(&["info"]) {
        bail!("the Debian images need the Docker engine, which does not answer (`docker info`): start it");
    }
    super::ensure_debian_package("debootstrap", Path::new("/usr/sbin/debootstrap"))?;
    let dir = super::target_dir(root).join("images");
    std::fs::create_dir_all(&dir)?;
    for image in [&DEBIAN, &TEST_SYSTEM] {
        let reference = format!("{}:{}", image.repository, recipe_tag(image)?);
        if !docker_ok(&["image", "inspect", &reference]) {
            build(image, &reference, &dir)?;
        }
        super::run(Command::new("docker").args(["tag", &reference, &format!("{}:{ALIAS}", image.repository)]))?;
        std::fs::write(dir.join(format!("{}.ref", image.repository)), format!("{reference}\n"))?;
    }
    Ok(())
}

/// The first 12 hex digits of the SHA-256 of the recipe.
fn recipe_tag(image: &Image) -> anyhow::Result<String> {
    let recipe = format!("{RECIPE_VERSION}\n{SUITE}\n{image:?}");
    Ok(sha256_hex(recipe.as_bytes())?[..12].to_owned())
}

/// debootstrap, the layers, `docker import`, in a build directory removed afterwards.
fn build(image: &Image, reference: &str, images_dir: &Path) -> anyhow::Result<()> {
    let build = BuildDir(images_dir.join(format!("{}.build-{}", image.repository, std::process::id())));
    build.remove()?;
    let rootfs = build.0.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mirror = mirror();
    eprintln!("xtask: building {reference} from {mirror} (debootstrap takes a minute or two)");
    let started = std::time::Instant::now();
    super::run(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={}", image.include.join(","))])
            .arg(SUITE)
            .arg(&rootfs)
            .arg(&mirror),
    )?;
    for layer in image.layers {
        apply(layer, &rootfs, &build.0).with_context(|| format!("layering {layer:?}"))?;
    }
    import(&rootfs, image.changes, reference)?;
    eprintln!("xtask: built {reference} in {:.0?}", started.elapsed());
    build.remove()
}

/// `tar -C rootfs -c . | docker import --change … - reference`.
fn import(rootfs: &Path, changes: &[&str], reference: &str) -> anyhow::Result<()> {
    // Numeric owners: the ids of the rootfs count, not what this machine's names map to.
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let archive = tar.stdout.take().context("tar has no stdout")?;
    // In a block: the command holds the pipe's reading end until dropped, and tar, writing to a
    // pipe nobody reads, would never end if the import fails.
    let imported = {
        let mut import = Command::new("docker");
        import.arg("import");
        for change in changes {
            import.args(["--change", change]);
        }
        import.args(["-", reference]).stdin(archive).stdout(Stdio::null()).status()
    };
    let tarred = tar.wait()?;
    // The import's failure first: it makes tar fail too (a broken pipe).
    let imported = imported.context("cannot start docker")?;
    if !imported.success() {
        bail!("docker import of {reference} failed: {imported}");
    }
    if !tarred.success() {
        bail!("tar of {} failed: {tarred}", rootfs.display());
    }
    Ok(())
}

fn apply(layer: &Layer, rootfs: &Path, build: &Path) -> anyhow::Result<()> {
    match *layer {
        Layer::File(path, mode, content) => {
            let path = inside(rootfs, path)?;
            std::fs::create_dir_all(path.parent().context("a file at /")?)?;
            remove_entry(&path)?;
            std::fs::write(&path, content)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        Layer::Append(path, text) => {
            std::fs::OpenOptions::new().append(true).open(inside(rootfs, path)?)?.write_all(text.as_bytes())?;
        }
        Layer::Symlink(path, target) => {
            let path = inside(rootfs, path)?;
            std::fs::create_dir_all(path.parent().context("a link at /")?)?;
            remove_entry(&path)?;
            std::os::unix::fs::symlink(target, &path)?;
        }
        Layer::Dir(path) => std::fs::create_dir_all(inside(rootfs, path)?)?,
        Layer::RemoveFiles(path) => {
            for entry in std::fs::read_dir(inside(rootfs, path)?)? {
                let entry = entry?;
                if !entry.file_type()?.is_dir() {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
        Layer::Repository(path, packages) => {
            let repo = inside(rootfs, path)?;
            std::fs::create_dir_all(&repo)?;
            let mut index = String::new();
            for package in packages {
                let deb = build_package(package, build, &repo)?;
                index.push_str(&packages_stanza(package.control, &deb)?);
            }
            std::fs::write(repo.join("Packages"), index)?;
        }
    }
    Ok(())
}

/// `dpkg-deb --build` of `package` into `repo`, named as Debian names packages; returns the file.
fn build_package(package: &Package, build: &Path, repo: &Path) -> anyhow::Result<PathBuf> {
    let field = |name: &str| control_field(package.control, name).with_context(|| format!("no {name} in control"));
    // A tree of its own: files of another package built here must not end up in this one.
    let tree = build.join(format!("package-{}", field("Package")?));
    std::fs::create_dir_all(tree.join("DEBIAN"))?;
    std::fs::write(tree.join("DEBIAN/control"), package.control)?;
    for (path, content) in package.files {
        let file = inside(&tree, path)?;
        std::fs::create_dir_all(file.parent().context("a package file at /")?)?;
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    }
    let deb = repo.join(format!("{}_{}_{}.deb", field("Package")?, field("Version")?, field("Architecture")?));
    // Owned by root whatever the build runs as.
    super::run(Command::new("dpkg-deb").args(["--build", "--root-owner-group"]).arg(&tree).arg(&deb))?;
    Ok(deb)
}

/// The `Packages` entry of `deb` (what `dpkg-scanpackages` writes): its control fields, then
/// where it is and its checksum.
fn packages_stanza(control: &str, deb: &Path) -> anyhow::Result<String> {
    let name = deb.file_name().and_then(|n| n.to_str()).context("package file name")?;
    let bytes = std::fs::read(deb)?;
    Ok(format!(
        "{}\nFilename: ./{name}\nSize: {}\nSHA256: {}\n\n",
        control.trim_end(),
        bytes.len(),
        sha256_hex(&bytes)?
    ))
}

fn control_field<'a>(control: &'a str, name: &str) -> Option<&'a str> {
    control.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
}

/// `path` (absolute inside the rootfs) under `rootfs`, refused when a directory on the way is a
/// symbolic link: an absolute one would lead out of the rootfs, to this machine's own files.
fn inside(rootfs: &Path, path: &str) -> anyhow::Result<PathBuf> {
    let full = rootfs.join(path.trim_start_matches('/'));
    for dir in full.ancestors().skip(1).take_while(|d| d.starts_with(rootfs) && *d != rootfs) {
        if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!("`{path}` goes through the link {}", dir.display());
        }
    }
    Ok(full)
}

/// Remove a file or link if there is one.
fn remove_entry(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// A build directory, removed when the build ends, however it ends.
struct BuildDir(PathBuf);

impl BuildDir {
    /// Remove the directory, after unmounting what debootstrap may have left mounted in it when
    /// it was interrupted (`/proc`, `/sys`, and in a container `/dev` bound from the host, whose
    /// device nodes a recursive delete must never reach).
    fn remove(&self) -> anyhow::Result<()> {
        if !self.0.exists() {
            return Ok(());
        }
        let mut mounts = mounts_below(&self.0)?;
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in &mounts {
            let _ = Command::new("umount").args(["--lazy", mount]).status();
        }
        let left = mounts_below(&self.0)?;
        if !left.is_empty() {
            bail!("{} still has mounts ({left:?}); not removing it", self.0.display());
        }
        std::fs::remove_dir_all(&self.0).with_context(|| format!("removing {}", self.0.display()))
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("xtask: {e:#}");
        }
    }
}

/// Mount points at or below `dir` (field 5 of `/proc/self/mountinfo`).
fn mounts_below(dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = dir.canonicalize()?;
    let dir = dir.to_str().context("build directory is not UTF-8")?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/')))
        .map(str::to_owned)
        .collect())
}

/// The mirror this machine's apt uses for the suite: the first `URIs:` of a stanza of
/// `/etc/apt/sources.list.d/debian.sources` whose `Suites:` has it, else the first `deb` line of
/// `/etc/apt/sources.list` for it, else Debian's own.
fn mirror() -> String {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    read("/etc/apt/sources.list.d/debian.sources")
        .and_then(|text| mirror_of_deb822(&text))
        .or_else(|| read("/etc/apt/sources.list").and_then(|text| mirror_of_list(&text)))
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned())
}

fn mirror_of_deb822(text: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<&str>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
        } else if let Some(stanza) = stanzas.last_mut() {
            stanza.push(line);
        }
    }
    stanzas.iter().find_map(|stanza| {
        let words = |name: &str| {
            stanza.iter().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).unwrap_or_default().split_whitespace()
        };
        if !words("Types").any(|t| t == "deb") || !words("Suites").any(|s| s == SUITE) {
            return None;
        }
        words("URIs").next().map(str::to_owned)
    })
}

fn mirror_of_list(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options (`[arch=amd64 trusted=yes]`) come before the URI.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next() == Some(SUITE)).then(|| uri.to_owned())
    })
}

fn sha256_hex(data: &[u8]) -> anyhow::Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start sha256sum")?;
    child.stdin.take().context("sha256sum has no stdin")?.write_all(data)?;
    let out = child.wait_with_output()?;
    let hex = String::from_utf8(out.stdout)?;
    match hex.split_whitespace().next() {
        Some(hex) if out.status.success() && hex.len() == 64 => Ok(hex.to_owned()),
        _ => bail!("sha256sum failed: {}", out.status),
    }
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker").args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_the_first_uri_of_the_suites_stanza() {
        let sources = "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n\
                       Types: deb\nURIs: http://mirror.example/debian http://other.example/debian\n\
                       Suites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(mirror_of_deb822(sources).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(mirror_of_deb822("Types: deb-src\nURIs: http://src.example\nSuites: bookworm\n"), None);
    }

    #[test]
    fn the_mirror_of_a_one_line_list_is_its_bookworm_deb_line() {
        let list = "# deb http://old.example/debian bookworm main\ndeb-src http://src.example bookworm main\n\
                    deb http://security.example bookworm-security main\n\
                    deb [arch=amd64 trusted=yes] http://mirror.example/debian bookworm main\n";
        assert_eq!(mirror_of_list(list).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(
            mirror_of_list("deb [trusted=yes] http://one.example bookworm main").as_deref(),
            Some("http://one.example")
        );
        assert_eq!(mirror_of_list("deb http://plain.example bookworm main").as_deref(), Some("http://plain.example"));
    }

    #[test]
    fn a_changed_recipe_changes_the_tag() -> anyhow::Result<()> {
        let tag = recipe_tag(&DEBIAN)?;
        assert_eq!(tag.len(), 12);
        assert_eq!(tag, recipe_tag(&DEBIAN)?);
        let other = Image { include: &["systemd"], ..DEBIAN };
        assert_ne!(tag, recipe_tag(&other)?);
        Ok(())
    }

    #[test]
    fn a_packages_entry_carries_the_control_fields_and_the_checksum() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-packages-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let deb = dir.join("p_1.0_all.deb");
        std::fs::write(&deb, "abc")?;
        let stanza = packages_stanza("Package: p\nVersion: 1.0\n", &deb)?;
        std::fs::remove_dir_all(&dir)?;
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(stanza, format!("Package: p\nVersion: 1.0\nFilename: ./p_1.0_all.deb\nSize: 3\nSHA256: {sha}\n\n"));
        assert_eq!(control_field(TEST_PACKAGE.control, "Version"), Some("1.0"));
        Ok(())
    }

    #[test]
    fn a_layer_never_goes_through_a_link_of_the_rootfs() -> anyhow::Result<()> {
        let rootfs = std::env::temp_dir().join(format!("xtask-rootfs-{}", std::process::id()));
        std::fs::create_dir_all(rootfs.join("etc"))?;
        std::os::unix::fs::symlink("/etc", rootfs.join("host-etc"))?;
        let through_link = inside(&rootfs, "/host-etc/passwd").err().map(|e| e.to_string());
        let plain = inside(&rootfs, "/etc/passwd")?;
        std::fs::remove_dir_all(&rootfs)?;
        assert!(through_link.is_some_and(|e| e.contains("host-etc")));
        assert_eq!(plain, rootfs.join("etc/passwd"));
        Ok(())
    }
}
