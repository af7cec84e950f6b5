//! The project's own sandbox image, built offline from Debian's static busybox: `FROM scratch`,
//! `/bin/busybox` and one symlink per applet, an `/etc/passwd` whose only non-root user is
//! `nobody` (65534), empty `/tmp` and `/workspace`. No shell is ever the entrypoint; `sh` is there
//! only as a program a profile's policy may allow like any other.
//!
//! The tag is the first 12 hex digits of the SHA-256 of the build context, so a changed busybox
//! or definition gives a new image, and an unchanged one is reused.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, PruneImagesOptionsBuilder};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{MANAGED_LABEL, SandboxError};

/// Repository of the project's image; the tag is the content hash.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "toolgate-sandbox";

/// Label naming the project's image, so that only its own leftovers are pruned.
const IMAGE_LABEL: &str = "toolgate.image";

const DOCKERFILE: &str = "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nUSER 65534:65534\nWORKDIR /tmp\n";
const PASSWD: &str = "root:x:0:0:root:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// The build context (a tar archive) of the image, and its tag `toolgate-sandbox:<hash>`.
pub fn image_context(busybox: &Path) -> Result<(Vec<u8>, String), SandboxError> {
    let binary = std::fs::read(busybox)
        .map_err(|e| SandboxError::Unavailable(format!("cannot read `{}`: {e}", busybox.display())))?;
    let applets = applets(busybox)?;
    let tar = build_tar(&binary, &applets)
        .map_err(|e| SandboxError::Failed(format!("cannot write the image build context: {e}")))?;
    let hash = hex::encode(Sha256::digest(&tar));
    Ok((tar, format!("{DEFAULT_IMAGE_REPOSITORY}:{}", &hash[..12])))
}

/// The applets this busybox provides, from `busybox --list` (the build's only host process).
fn applets(busybox: &Path) -> Result<Vec<String>, SandboxError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| SandboxError::Unavailable(format!("cannot run `{} --list`: {e}", busybox.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.[".contains(c)))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    if !out.status.success() || names.is_empty() {
        return Err(SandboxError::Unavailable(format!("`{} --list` listed no applets", busybox.display())));
    }
    Ok(names)
}

fn build_tar(busybox: &[u8], applets: &[String]) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    // INVARIANT: fixed metadata (mtime 0, owner root) so that the same inputs hash the same.
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let file = |tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
        tar.append_data(&mut h, path, data)
    };
    file(&mut tar, "Dockerfile", 0o644, DOCKERFILE.as_bytes())?;
    for dir in ["rootfs/bin", "rootfs/etc"] {
        tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), dir, std::io::empty())?;
    }
    // World-writable with the sticky bit, as usual; the container mounts a tmpfs over it anyway.
    tar.append_data(&mut header(tar::EntryType::Directory, 0o1777, 0), "rootfs/tmp", std::io::empty())?;
    tar.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), "rootfs/workspace", std::io::empty())?;
    file(&mut tar, "rootfs/bin/busybox", 0o755, busybox)?;
    file(&mut tar, "rootfs/etc/passwd", 0o644, PASSWD.as_bytes())?;
    file(&mut tar, "rootfs/etc/group", 0o644, GROUP.as_bytes())?;
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut h, format!("rootfs/bin/{applet}"), "busybox")?;
    }
    tar.into_inner()
}

/// Build the project's image from `busybox` unless an image with its content tag exists; return
/// the tag. Idempotent, and safe to call from several threads or processes at once: concurrent
/// builds of the same context produce the same image under the same tag.
pub async fn ensure_image(docker: &Docker, busybox: &Path) -> Result<String, SandboxError> {
    // One build at a time in this process; other processes may still race, see below.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let (context, tag) = image_context(busybox)?;
    let _guard = BUILDING.lock().await;
    if docker.inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    tracing::info!(image = %tag, "building the sandbox image");
    let labels = HashMap::from([(MANAGED_LABEL, "1"), (IMAGE_LABEL, DEFAULT_IMAGE_REPOSITORY)]);
    let options = BuildImageOptionsBuilder::default().dockerfile("Dockerfile").t(&tag).rm(true).labels(&labels).build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| SandboxError::Unavailable(format!("building image `{tag}`: {e}")))?;
        if let Some(error) = step.error_detail.and_then(|d| d.message) {
            return Err(SandboxError::Unavailable(format!("building image `{tag}`: {error}")));
        }
    }
    docker
        .inspect_image(&tag)
        .await
        .map_err(|e| SandboxError::Unavailable(format!("image `{tag}` missing after its build: {e}")))?;
    // Two processes building at once leave the loser's image untagged: remove such leftovers.
    // Filtered on this image's own label: other untagged images may be in use by their builders.
    let filters = HashMap::from([
        ("dangling", vec!["true".to_owned()]),
        ("label", vec![format!("{IMAGE_LABEL}={DEFAULT_IMAGE_REPOSITORY}")]),
    ]);
    let prune = PruneImagesOptionsBuilder::default().filters(&filters).build();
    if let Err(e) = docker.prune_images(Some(prune)).await {
        tracing::debug!(error = %e, "cannot prune dangling sandbox images");
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_and_its_tag_are_reproducible() -> anyhow::Result<()> {
        let busybox = Path::new("/bin/busybox");
        let (a, tag_a) = image_context(busybox)?;
        let (b, tag_b) = image_context(busybox)?;
        assert_eq!(a, b);
        assert_eq!(tag_a, tag_b);
        assert!(tag_a.starts_with("toolgate-sandbox:") && tag_a.len() == "toolgate-sandbox:".len() + 12, "{tag_a}");
        Ok(())
    }

    #[test]
    fn a_missing_busybox_is_a_clear_error() {
        let err = image_context(Path::new("/nonexistent/busybox")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("/nonexistent/busybox"), "{err}");
    }
}
