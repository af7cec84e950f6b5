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

/// A client that opens a connection and never completes the TLS handshake (here: sends half a
/// record header) is closed after `tls_handshake_timeout_secs`; the read deadline of 30 s only
/// keeps a broken server from hanging the test.
#[test]
fn a_stalled_tls_handshake_is_closed_after_its_deadline() -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let certs = tempfile::tempdir()?;
    let (cert, key) = openssl_cert(certs.path())?;
    let server = Server::start(&[
        ("TOOLGATE_HTTP_TLS_CERT", &cert),
        ("TOOLGATE_HTTP_TLS_KEY", &key),
        ("TOOLGATE_HTTP_CONNECTIONS_TLS_HANDSHAKE_TIMEOUT_SECS", "1"),
    ])?;
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut stream = std::net::TcpStream::connect(server.base.trim_start_matches("https://"))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
        stream.write_all(&[0x16, 0x03, 0x01])?;
        stalled.push(stream);
    }
    for stream in &mut stalled {
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => anyhow::bail!("the server kept a stalled handshake open: {e}"),
            }
        }
    }
    let (ok, response) = curl(&["--cacert", &cert, &server.url("/healthz")])?;
    assert!(ok && response.contains(" 200"), "the server still serves whole handshakes: {response}");
    Ok(())
}

/// With TLS the protocol is what ALPN agreed: HTTP/2 for a client that offers it, HTTP/1.1 for
/// one that does not.
#[test]
fn tls_serves_http2_or_http1_as_alpn_agreed() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    let (cert, key) = openssl_cert(certs.path())?;
    let server = Server::start(&[("TOOLGATE_HTTP_TLS_CERT", &cert), ("TOOLGATE_HTTP_TLS_KEY", &key)])?;
    let url = server.url("/healthz");
    let (ok, response) = curl(&["--cacert", &cert, "--http2", &url])?;
    assert!(ok && response.starts_with("HTTP/2 200"), "{response}");
    let (ok, response) = curl(&["--cacert", &cert, "--http1.1", &url])?;
    assert!(ok && response.starts_with("HTTP/1.1 200"), "{response}");
    Ok(())
}
