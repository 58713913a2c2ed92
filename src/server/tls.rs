//! Inbound TLS from PEM files: rustls with the ring provider, ALPN h2 and
//! http/1.1; the certificate is re-read on reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the certificate and key do not form a valid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A listener's certificate, re-read on reload: the acceptor keeps its
/// config and asks this resolver for the current key at every handshake, so
/// a renewed certificate applies to new connections without a restart and
/// open connections keep the one they negotiated.
#[derive(Debug)]
pub struct ReloadableCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl ReloadableCert {
    /// Reads and checks the files; nothing is installed.
    pub fn read(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        certified_key(&self.cert, &self.key)
    }

    /// Installs what [`read`](Self::read) returned.
    pub fn install(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let key_pem = read(key)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey {
            path: key.display().to_string(),
        })?;
    Ok(Arc::new(CertifiedKey::from_der(certs, key, &provider())?))
}

/// An acceptor over the PEM files, and the handle that reloads them.
pub fn acceptor(cert: &Path, key: &Path) -> Result<(TlsAcceptor, Arc<ReloadableCert>), TlsError> {
    let resolver = Arc::new(ReloadableCert {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        current: ArcSwap::new(certified_key(cert, key)?),
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(cfg)), resolver))
}
