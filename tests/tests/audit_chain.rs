//! The keyed audit chain through the real binary: a log rewritten without the key is caught at
//! the first changed entry, a server never continues a log it cannot sign for, `toolgate audit
//! adopt` continues one explicitly, and the head is logged for anchors.

use std::path::{Path, PathBuf};
use std::process::Output;

use hmac::{Hmac, Mac};
use redb::ReadableTable;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use toolgate_tests::{AUDIT_KEY, Server, client, run_cli, send};

const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit_v1");

/// How a forger links entry `seq` after `prev` over the event's bytes.
type Link = dyn Fn(&str, u64, &[u8]) -> String;

fn unkeyed(prev: &str, seq: u64, event: &[u8]) -> String {
    hex::encode(Sha256::new().chain_update(format!("{prev}\n{seq}\n")).chain_update(event).finalize())
}

fn keyed(key: &'static str) -> impl Fn(&str, u64, &[u8]) -> String {
    move |prev, seq, event| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        mac.update(format!("{prev}\n{seq}\n").as_bytes());
        mac.update(event);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Rewrite the stopped server's log from entry `from` to `to`: `edit` changes entry `from`'s
/// event, then each of them is linked anew with `link`, as someone with write access to the
/// database would. Entries after `to` are left as they are.
fn rechain(data_dir: &Path, from: u64, to: u64, edit: impl Fn(&mut Value), link: &Link) -> anyhow::Result<()> {
    let db = redb::Database::create(data_dir.join("toolgate.redb"))?;
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(AUDIT)?;
        let entries: Vec<(u64, Value)> = table
            .iter()?
            .map(|item| -> anyhow::Result<(u64, Value)> {
                let (k, v) = item?;
                Ok((k.value(), serde_json::from_slice(v.value())?))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut prev = String::new();
        for (seq, mut entry) in entries {
            if seq < from || seq > to {
                prev = entry["hash"].as_str().unwrap_or_default().to_owned();
                continue;
            }
            if seq == from {
                edit(&mut entry["event"]);
            }
            let event = serde_json::to_vec(&entry["event"])?;
            let prev_hash = if seq == 1 { "0".repeat(64) } else { prev.clone() };
            let hash = link(&prev_hash, seq, &event);
            let bytes = format!(
                r#"{{"seq":{seq},"prev_hash":"{prev_hash}","hash":"{hash}","event":{}}}"#,
                String::from_utf8_lossy(&event)
            );
            table.insert(seq, bytes.as_bytes())?;
            prev = hash;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Change entry `seq`'s event in place, its links left as they were.
fn tamper(data_dir: &Path, seq: u64, edit: impl Fn(&mut Value)) -> anyhow::Result<()> {
    let db = redb::Database::create(data_dir.join("toolgate.redb"))?;
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(AUDIT)?;
        let bytes = table.get(seq)?.map(|v| v.value().to_vec()).ok_or_else(|| anyhow::anyhow!("no entry {seq}"))?;
        let mut entry: Value = serde_json::from_slice(&bytes)?;
        edit(&mut entry["event"]);
        table.insert(seq, serde_json::to_vec(&entry)?.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// `toolgate audit <args>` on `dir`, with `env`; its exit, stdout and stderr.
fn audit(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out: Output = run_cli(dir, env, &[&["audit"], args].concat(), "")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A server that wrote a few audit entries (one per `get_audit_log` call), stopped.
async fn log_with_entries(calls: usize) -> anyhow::Result<tempfile::TempDir> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    for _ in 0..calls {
        let (status, body) = send(
            client()
                .post(server.url("/api/v1/tools/get_audit_log/execute"))
                .bearer_auth(&admin)
                .json(&json!({"params": {"last_n": 1}})),
        )
        .await?;
        anyhow::ensure!(status.is_success(), "{status} {body}");
    }
    server.stop()
}

/// How many entries the log holds, as `toolgate audit verify --json` counts them (it must verify).
fn entries(dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<u64> {
    let (ok, out, err) = audit(dir, env, &["verify", "--json"])?;
    anyhow::ensure!(ok, "{out}{err}");
    let report: Value = serde_json::from_str(&out)?;
    report["entries"].as_u64().ok_or_else(|| anyhow::anyhow!("no entries in {out}"))
}

/// A key file of `content`, 0600, outside any data directory.
fn key_file(dir: &Path, name: &str, content: &str, mode: u32) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(path)
}

#[tokio::test]
async fn a_log_rechained_without_the_key_is_caught_at_the_first_changed_entry_and_not_served() -> anyhow::Result<()> {
    let data = log_with_entries(4).await?;
    let dir = data.path();
    let n = entries(dir, &[])?;
    assert!(n >= 4, "{n} entries");

    // Entry 2 turned into a refusal, every link from it recomputed the way the log was chained
    // before it had a key: each link is consistent, but not signed.
    let forge = |event: &mut Value| event["reason"] = json!("forged");
    rechain(dir, 2, u64::MAX, forge, &unkeyed)?;
    let (ok, out, _) = audit(dir, &[], &["verify"])?;
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN at entry 2: it is chained without the audit key"), "{out}");
    // The same with a guessed key.
    rechain(dir, 2, u64::MAX, forge, &keyed("0123456789abcdef0123456789abcdef-guess"))?;
    let (ok, out, _) = audit(dir, &[], &["verify"])?;
    assert!(!ok && out.contains("BROKEN at entry 2: its content does not match its signed link"), "{out}");

    // The server does not continue it.
    let served = run_cli(dir, &[], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("newest entry ({n}) is not signed with the configured key")), "{stderr}");
    assert!(stderr.contains("toolgate audit adopt"), "{stderr}");

    // Only the key re-signs a log: whoever holds it can (that is what it protects).
    rechain(dir, 2, u64::MAX, forge, &keyed(AUDIT_KEY))?;
    assert_eq!(entries(dir, &[])?, n);
    Ok(())
}

#[tokio::test]
async fn another_key_is_refused_until_adopted_and_the_adopted_log_then_serves_and_verifies() -> anyhow::Result<()> {
    let data = log_with_entries(3).await?;
    let dir = data.path();
    let n = entries(dir, &[])?;
    let keys = tempfile::tempdir()?;
    let other = key_file(
        keys.path(),
        "other.key",
        "9c2e7a41d0b83f56e1a9c4d7b2f0836a5e1d9c7b3a2f4e6d8c0b1a3f5e7d9c2b\n",
        0o600,
    )?;
    let other = other.display().to_string();
    let with_other = [("TOOLGATE_AUDIT_KEY_FILE", other.as_str())];

    let served = run_cli(dir, &with_other, &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success() && stderr.contains("toolgate audit adopt"), "{stderr}");
    let (ok, out, _) = audit(dir, &with_other, &["verify"])?;
    assert!(!ok && out.contains("BROKEN at entry 1:"), "{out}");

    let (ok, out, err) = audit(dir, &with_other, &["adopt", "--json"])?;
    assert!(ok, "{out}{err}");
    let adopted: Value = serde_json::from_str(&out)?;
    assert_eq!((adopted["previous"].as_str(), adopted["unchecked_from"].as_u64()), (Some("other_key"), Some(1)));
    assert!(adopted["previous_head"].as_str().is_some_and(|h| h.starts_with(&format!("{n}:"))), "{adopted}");
    assert!(adopted["head"].as_str().is_some_and(|h| h.starts_with(&format!("{}:", n + 1))), "{adopted}");
    let (ok, out, _) = audit(dir, &with_other, &["adopt"])?;
    assert!(!ok, "a second adoption has nothing to adopt: {out}");
    let (ok, out, err) = audit(dir, &with_other, &["verify", "--json"])?;
    let report: Value = serde_json::from_str(&out)?;
    assert!(ok && report["entries"] == n + 1 && report["adopted"] == n + 1, "{out}{err}");

    // It starts, appends under the new key, and the whole log verifies.
    let password = std::fs::read_to_string(dir.join("initial-admin-password"))?;
    let server = Server::start_in(data, &with_other)?;
    let admin = server.login("admin", password.trim()).await?;
    let call = client().post(server.url("/api/v1/tools/get_audit_log/execute")).bearer_auth(&admin);
    let (status, body) = send(call.json(&json!({"params": {"last_n": 1}}))).await?;
    assert!(status.is_success(), "{status} {body}");
    let data = server.stop()?;
    let dir = data.path();
    assert!(entries(dir, &with_other)? > n + 1);

    // An entry the adoption pinned, changed in place afterwards (its links, made with the other
    // key, cannot be checked): the adoption no longer matches what it pinned.
    tamper(dir, 2, |event| event["reason"] = json!("forged"))?;
    let (ok, out, _) = audit(dir, &with_other, &["verify"])?;
    let broken = format!("BROKEN at entry {}: the entries before it differ from those it adopted", n + 1);
    assert!(!ok && out.contains(&broken), "{out}");
    Ok(())
}

#[tokio::test]
async fn an_unkeyed_log_is_adopted_and_a_later_change_to_it_is_named() -> anyhow::Result<()> {
    let data = log_with_entries(3).await?;
    let dir = data.path();
    let n = entries(dir, &[])?;
    // The log as a version without keyed chains wrote it.
    rechain(dir, 1, u64::MAX, |_| {}, &unkeyed)?;
    let served = run_cli(dir, &[], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success() && stderr.contains("chained without a key"), "{stderr}");

    let (ok, out, err) = audit(dir, &[], &["adopt"])?;
    assert!(ok && out.contains(&format!("audit log adopted: head {n}:")), "{out}{err}");
    assert!(!out.contains("another key"), "an unkeyed log is checked whole: {out}");
    assert_eq!(entries(dir, &[])?, n + 1);

    // Entry 2 changed in place: named, as each unkeyed link is checked.
    let data_copy = tempfile::tempdir()?;
    std::fs::copy(dir.join("toolgate.redb"), data_copy.path().join("toolgate.redb"))?;
    tamper(dir, 2, |event| event["reason"] = json!("forged"))?;
    let (ok, out, _) = audit(dir, &[], &["verify"])?;
    assert!(!ok && out.contains("BROKEN at entry 2: its content does not match its hash"), "{out}");
    // Entry 2 changed and the unkeyed links recomputed up to the adoption, which nobody without
    // the key can re-sign: caught there.
    let dir = data_copy.path();
    rechain(dir, 2, n, |event| event["reason"] = json!("forged"), &unkeyed)?;
    let (ok, out, _) = audit(dir, &[], &["verify"])?;
    let broken = format!("BROKEN at entry {}: its link to the previous entry does not match", n + 1);
    assert!(!ok && out.contains(&broken), "{out}");
    Ok(())
}

#[test]
fn production_refuses_an_audit_key_that_is_missing_exposed_weak_or_inside_the_data_dir() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let keys = tempfile::tempdir()?;
    let refusal = |key: &str| -> anyhow::Result<String> {
        let out = run_cli(dir.path(), &[("TOOLGATE_AUDIT_KEY_FILE", key)], &["serve"], "")?;
        anyhow::ensure!(!out.status.success(), "it started with `{key}`");
        anyhow::ensure!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let err = refusal("")?;
    assert!(err.contains("TOOLGATE_AUDIT_KEY_FILE"), "{err}");
    let good = "6f1c0d9a4b7e2f3a8c5d6e7f9012ab34cd56ef7890a1b2c3d4e5f60718293a4b";
    let inside = key_file(dir.path(), "audit.key", good, 0o600)?;
    assert!(refusal(&inside.display().to_string())?.contains("is inside the data directory"));
    let exposed = key_file(keys.path(), "exposed.key", good, 0o644)?;
    assert!(refusal(&exposed.display().to_string())?.contains("open to other users (mode 644)"));
    let weak = key_file(keys.path(), "weak.key", &"x".repeat(64), 0o600)?;
    assert!(refusal(&weak.display().to_string())?.contains("too weak"));
    assert!(!dir.path().join("toolgate.redb").exists(), "a refused start stores nothing");
    Ok(())
}

#[tokio::test]
async fn the_chain_head_is_logged_at_start_and_at_a_clean_stop() -> anyhow::Result<()> {
    let data = log_with_entries(2).await?;
    let (_, out, _) = audit(data.path(), &[], &["verify"])?;
    let head = out.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(head.len() > 64 && head.contains(':'), "{out}");

    let server = Server::start_in(data, &[("TOOLGATE_LOG", "info")])?;
    let started = server.stderr();
    let start_line = started.lines().find(|l| l.contains("audit chain head")).unwrap_or_default();
    assert!(start_line.contains("start") && start_line.contains(&head), "{started}");
    let data = server.terminate()?;
    let (_, out, _) = audit(data.path(), &[], &["verify"])?;
    let stopped_head = out.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let log = std::fs::read_dir(data.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("stderr-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.lines().any(|l| l.contains("audit chain head") && l.contains("stop") && l.contains(&stopped_head)),
        "{log}"
    );
    Ok(())
}
