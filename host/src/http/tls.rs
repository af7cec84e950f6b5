//! Optional TLS (rustls, ring provider): the certificate chain and key come from
//! `http.tls_cert` and `http.tls_key` (PEM files). Each accepted connection is handshaken, then
//! served by hyper with the client address attached as axum's `ConnectInfo`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

use super::HttpError;

/// A TLS acceptor from PEM files; errors name the file and what is wrong with it.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, HttpError> {
    let tls_err = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        HttpError::Config(format!("tls {what} `{}`: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("certificate", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err("certificate", cert, &e))?;
    if chain.is_empty() {
        return Err(tls_err("certificate", cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("key", key, &e))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("setup for", cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_err("key or certificate", key, &e))?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serve `app` over TLS until `shutdown` completes. A failed handshake drops that connection only.
pub async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone().layer(axum::Extension(ConnectInfo::<SocketAddr>(addr)));
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "tls handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) =
                Builder::new(TokioExecutor::new()).serve_connection_with_upgrades(TokioIo::new(tls), service).await
            {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
}
