//! The admin API, on its own listener (loopback unless configured), for the
//! security team, the privacy officer and operators.
//!
//! | method | path                    | roles              | does |
//! |--------|-------------------------|--------------------|------|
//! | GET    | `/healthz`              | none               | the process is up |
//! | GET    | `/readyz`               | none               | routes and an active key are loaded; 503 once shutdown starts |
//! | GET    | `/metrics`              | none               | Prometheus text (`telemetry/metrics.rs`); counts only |
//! | GET    | `/keys`                 | security, operator | key versions: id, created, state (no material) |
//! | POST   | `/keys/rotate`          | security           | new active version; the old one becomes previous |
//! | POST   | `/keys/{id}/retire`     | security           | destroys a previous version's material |
//! | POST   | `/reveal`               | security           | `{purpose, field, token}` -> the value of a reversible token |
//! | POST   | `/lookup`               | security, privacy-officer | `{kind, value}` -> the subject's pseudonyms per purpose and version |
//! | POST   | `/reload`               | security, operator | re-reads the config, rules and key ring |
//! | POST   | `/objections`           | security, privacy-officer | `{kind, value}`: the subject objected (art. 21); stored as an HMAC |
//! | DELETE | `/objections`           | security, privacy-officer | `{kind, value}`: the objection is withdrawn |
//! | GET    | `/shadow`               | security, operator, privacy-officer | shadow mode: per route, requests compared and differing paths (no values) |
//! | GET    | `/privacy`              | security, operator, privacy-officer | counts: withheld (consent, objection), leaks scrubbed and refused |
//! | GET    | `/unknown-fields`       | security, operator, privacy-officer | per route, names (never values) and counts of body fields, query parameters, headers and cookies dropped because no rule named them |
//!
//! Bearer tokens only (`auth.rs`): 401 without a known token, 403 for a role
//! without the right. Every call except the probes is appended to the audit
//! log (`audit.rs`), including refused ones.

pub mod audit;
pub mod auth;
mod handlers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::AdminConfig;
use crate::snapshot::Runtime;

/// Shared by every admin request.
pub struct Admin {
    pub runtime: Arc<Runtime>,
    pub config: AdminConfig,
    pub audit: audit::AuditLog,
}

/// A warning when the admin API listens beyond loopback without TLS: its
/// bearer tokens would then cross the network in clear.
pub fn exposure_warning(cfg: &AdminConfig) -> Option<String> {
    let addr = cfg.listener.addr;
    (!addr.ip().is_loopback() && cfg.listener.tls.is_none()).then(|| {
        format!(
            "the admin API listens on {addr}, beyond loopback, without TLS: its bearer \
             tokens cross the network in clear; set [admin] tls = {{ cert, key }} or a \
             loopback addr"
        )
    })
}

/// Every warning about how `cfg` exposes secrets: the admin API beyond
/// loopback without TLS, a key ring or KEK file readable by others. Logged
/// at start and printed by `scrim check -c`.
pub fn startup_warnings(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(w) = cfg.admin.as_ref().and_then(exposure_warning) {
        out.push(w);
    }
    let files = [
        (cfg.keys.ring.as_deref(), "the key ring"),
        (cfg.keys.kek_file.as_deref(), "the KEK file"),
    ];
    for (path, what) in files {
        if let Some(w) = path.and_then(|p| crate::keyring::store::exposure_warning(p, what)) {
            out.push(w);
        }
    }
    out
}

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(
    admin: Arc<Admin>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let admin = admin.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handlers::handle(&admin, req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acc) => {
                    if let Ok(s) = acc.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}
