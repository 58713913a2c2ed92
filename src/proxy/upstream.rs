//! The connection to one upstream, with a connect timeout here and the
//! response timeout in the proxy.
//!
//! - `https://` upstreams: a pooled hyper-util client over rustls (system
//!   roots plus an optional CA file; ALPN h2 and http/1.1).
//! - `http://` upstreams (a sidecar, a collector in the same cluster): a
//!   lean pool of HTTP/1.1 connections ([`Plain`]). On the hot path it costs
//!   a lock and a scan of a short list, where hyper-util's pool hashes its
//!   key, checks out through futures and spawns a task per request to give
//!   the connection back.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{BoxBody, BoxError};
use crate::config::UpstreamConfig;

type TlsClient = Client<HttpsConnector<HttpConnector>, BoxBody>;

/// The client of one upstream; cheap to clone (routes to one upstream share
/// its pool).
#[derive(Clone)]
pub enum HttpClient {
    Plain(Plain),
    Tls(Box<TlsClient>),
}

impl HttpClient {
    /// Sends `req` (absolute URI) and resolves to the response head.
    pub async fn request(&self, req: Request<BoxBody>) -> Result<Response<Incoming>, BoxError> {
        match self {
            HttpClient::Plain(p) => p.request(req).await,
            HttpClient::Tls(c) => Ok(c.request(req).await?),
        }
    }
}

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
    if cfg.scheme == http::uri::Scheme::HTTP {
        return Ok(HttpClient::Plain(Plain::new(cfg)));
    }
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
    Ok(HttpClient::Tls(Box::new(
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.idle_timeout)
            .pool_max_idle_per_host(cfg.max_idle)
            .build(https),
    )))
}

/// HTTP/1.1 connections to one plain-HTTP upstream.
#[derive(Clone)]
pub struct Plain {
    inner: Arc<PlainInner>,
}

struct PlainInner {
    /// The upstream's name in the config, for the logs.
    name: String,
    /// `host:port`, resolved at each connect (DNS may move).
    addr: String,
    host: HeaderValue,
    connect_timeout: Duration,
    /// Entries of `idle` at most.
    max_idle: usize,
    idle_timeout: Duration,
    /// Connections given back after their last response head arrived: an
    /// entry is usable again once hyper says it is ready (its last response
    /// body has been read), which a checkout tests without waiting.
    idle: Mutex<Vec<Pooled>>,
}

struct Pooled {
    sender: http1::SendRequest<BoxBody>,
    /// When it idles out, counted from when it was given back (a response
    /// body may still be read for a while after).
    expires: Instant,
}

impl Pooled {
    /// Closed, or ready but idle past the upstream's idle timeout: to be
    /// dropped.
    fn gone(&self, now: Instant) -> bool {
        self.sender.is_closed() || (self.sender.is_ready() && now >= self.expires)
    }
}

/// Every third of the idle timeout, drops the pool's closed and idled-out
/// connections, until the pool is gone.
async fn sweep(pool: Weak<PlainInner>, idle_timeout: Duration) {
    let mut every = tokio::time::interval((idle_timeout / 3).max(Duration::from_millis(10)));
    every.tick().await;
    loop {
        every.tick().await;
        let Some(inner) = pool.upgrade() else { return };
        let mut idle = inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        idle.retain(|p| !p.gone(now));
    }
}

impl Plain {
    fn new(cfg: &UpstreamConfig) -> Self {
        let port = cfg.authority.port_u16().unwrap_or(80);
        let inner = Arc::new(PlainInner {
            name: cfg.name.clone(),
            addr: format!("{}:{port}", cfg.authority.host()),
            host: HeaderValue::from_str(cfg.authority.as_str())
                .expect("an authority is a valid header value"),
            connect_timeout: cfg.connect_timeout,
            max_idle: cfg.max_idle,
            idle_timeout: cfg.idle_timeout,
            idle: Mutex::new(Vec::new()),
        });
        // Checkouts and give-backs drop what idled out, but only while
        // requests come: a sweep now and then closes what a quiet upstream
        // would otherwise keep open. It ends with the client (a reload
        // builds new ones). Without a runtime (`scrim check`) nothing sends.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&inner), cfg.idle_timeout));
        }
        Self { inner }
    }

    async fn request(&self, mut req: Request<BoxBody>) -> Result<Response<Incoming>, BoxError> {
        // HTTP/1.1 wants the origin form and a Host header.
        let origin = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = http::Uri::from(origin);
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, self.inner.host.clone());
        }
        let name = &self.inner.name;
        let req = match self.checkout() {
            None => req,
            Some(mut sender) => {
                tracing::trace!(upstream = %name, "reusing a kept upstream connection");
                match sender.try_send_request(req).await {
                    Ok(res) => {
                        self.give_back(sender);
                        return Ok(res);
                    }
                    // A kept connection the upstream closed before the
                    // request went out: the request was not sent, so it may
                    // go again on a fresh one. Anything else failed after
                    // sending.
                    Err(mut e) => match e.take_message() {
                        Some(req) => {
                            tracing::debug!(upstream = %name, "a kept upstream connection had closed; sending on a new one");
                            req
                        }
                        None => return Err(e.into_error().into()),
                    },
                }
            }
        };
        let mut sender = self.connect().await?;
        let res = sender.send_request(req).await?;
        self.give_back(sender);
        Ok(res)
    }

    /// A connection ready for a request, dropping the closed and the idle
    /// for too long on the way. Busy ones stay for later. From the newest:
    /// the one given back last is often still busy, the ones before it ready,
    /// so a checkout looks at few entries even with many connections.
    fn checkout(&self) -> Option<http1::SendRequest<BoxBody>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].gone(now) {
                // What `swap_remove` moves here was looked at already.
                idle.swap_remove(i);
            } else if idle[i].sender.is_ready() {
                return Some(idle.swap_remove(i).sender);
            }
        }
        None
    }

    fn give_back(&self, sender: http1::SendRequest<BoxBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Checkouts take from the newest end, so after a burst the oldest
        // would never be looked at: when the first entry has closed or idled
        // out, sweep them all (then the first is fresh again: rarely done).
        let now = Instant::now();
        if idle.first().is_some_and(|p| p.gone(now)) {
            idle.retain(|p| !p.gone(now));
        }
        if self.inner.max_idle == 0 {
            return;
        }
        if idle.len() >= self.inner.max_idle {
            // Dropping the handle closes the connection once its response,
            // if one is still being read, is done.
            idle.remove(0);
        }
        idle.push(Pooled {
            sender,
            expires: now + self.inner.idle_timeout,
        });
    }

    async fn connect(&self) -> Result<http1::SendRequest<BoxBody>, BoxError> {
        let tcp = tokio::time::timeout(
            self.inner.connect_timeout,
            tokio::net::TcpStream::connect(self.inner.addr.as_str()),
        )
        .await
        .map_err(|_| "connect timed out")??;
        tcp.set_nodelay(true)?;
        tracing::debug!(upstream = %self.inner.name, "opened an upstream connection");
        let (sender, conn) = http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}
