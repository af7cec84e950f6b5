//! TLS with rustls: a certificate from config serves HTTPS; bad files refuse to start.

use std::process::Command;

use toolgate_tests::{Server, run_cli};

fn openssl_cert(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    anyhow::ensure!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    Ok((cert.display().to_string(), key.display().to_string()))
}

fn curl(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let out = Command::new("curl").args(["-s", "-i", "--max-time", "10"]).args(args).output()?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[test]
fn serves_https_with_the_configured_certificate() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let (cert, key) = openssl_cert(certs.path())?;
    let server = Server::start(&[("TOOLGATE_HTTP_TLS_CERT", &cert), ("TOOLGATE_HTTP_TLS_KEY", &key)])?;
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let (ok, response) = curl(&["--cacert", &cert, &server.url("/healthz")])?;
    assert!(ok, "{response}");
    assert!(response.starts_with("HTTP/2 200") || response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.to_ascii_lowercase().contains("strict-transport-security: max-age="), "{response}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = server.url("/healthz").replacen("https://", "http://", 1);
    let (_, response) = curl(&[&plain])?;
    assert!(!response.contains("200"), "{response}");
    Ok(())
}

#[test]
fn unusable_tls_files_refuse_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.pem").display().to_string();
    let out = run_cli(
        dir.path(),
        &[("TOOLGATE_HTTP_TLS_CERT", &missing), ("TOOLGATE_HTTP_TLS_KEY", &missing)],
        &["serve"],
        "",
    )?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_cli(dir.path(), &[("TOOLGATE_HTTP_TLS_CERT", &missing)], &["serve"], "")?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be set together"));
    Ok(())
}
