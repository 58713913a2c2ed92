//! The connection to one upstream: a pooled hyper-util client over rustls
//! (system roots plus an optional CA file; ALPN h2 and http/1.1), with a
//! connect timeout here and the response timeout in the proxy.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::BoxBody;
use crate::config::UpstreamConfig;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, BoxBody>;

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream `{name}`: cannot read CA file {path}: {source}")]
    CaFile {
        name: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream `{name}`: CA file {path} holds no usable certificate")]
    NoCertificates { name: String, path: String },
}

pub fn client(cfg: &UpstreamConfig) -> Result<HttpClient, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: an upstream that needs
    // them fails its TLS handshake with a 502, which names the problem.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).map_err(|source| UpstreamError::CaFile {
            name: cfg.name.clone(),
            path: path.display().to_string(),
            source,
        })?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(UpstreamError::NoCertificates {
                name: cfg.name.clone(),
                path: path.display().to_string(),
            });
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(cfg.connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build(https))
}
