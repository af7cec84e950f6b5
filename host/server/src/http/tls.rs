//! Optional TLS (rustls, ring provider): the certificate chain and key come from
//! `http.tls_cert` and `http.tls_key` (PEM files). ALPN offers HTTP/2 and HTTP/1.1; `conn`
//! serves each accepted connection by what was agreed.

use std::path::Path;
use std::sync::Arc;

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
