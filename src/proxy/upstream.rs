//! The connection to one upstream, with a connect timeout here and the
//! response timeout in the proxy.
//!
//! One lean pool per upstream ([`HttpClient`]): on the hot path a request
//! costs a lock and a scan of a short list, where hyper-util's pool hashed
//! its key, checked out through futures and spawned a task per request to
//! give the connection back.
//! - `http://` upstreams (a sidecar, a collector in the same cluster):
//!   HTTP/1.1 over kept connections.
//! - `https://` upstreams: rustls with the system roots plus an optional
//!   CA file, ALPN offering h2 then http/1.1. An upstream that picks h2
//!   gets one multiplexed connection, shared by all requests; one that
//!   picks http/1.1 gets kept connections, as in clear.
//!
//! An HTTP/1.1 connection carries one request at a time, until its
//! response body has been read, and an upstream gets at most
//! `max_connections` of them: a request past it waits for a slot, first
//! come first served, within the response timeout. Every connection costs
//! buffers and a task in scrim, so without the cap a thousand clients
//! sending at once would open a thousand connections upstream. An event
//! stream (`text/event-stream`) gives its slot back once its head is in:
//! it lasts as long as its client listens, and a cap on exchanges must not
//! make the 257th viewer of a live stream wait for the first to leave (the
//! client connection limit, `[limits] max_connections`, bounds streams).
//! Likewise a request whose body still streams from its client takes no
//! slot: a slow upload would hold one for as long as its client trickles,
//! and a few hundred such clients would hold back every other request.
//! Bodies read whole first (the usual case) take one once they are read.
//!
//! A pool outlives the snapshot that built it: a key rotation, a change to
//! the objection register or a reload that leaves an upstream as it was
//! hands the new snapshot the same pool ([`client`] with the one before).
//! Otherwise each of them would drop every kept connection, so that the
//! next requests all paid a connect (and a TLS handshake) at once, and
//! for as long as the old snapshot's requests ran, the two pools together
//! could hold twice the upstream's `max_connections`.
//!
//! A request goes again, once, when the upstream cannot have processed it:
//! a kept connection closed before it was sent, an h2 connection closed
//! while it was queued, or an h2 upstream that refused its stream
//! (`REFUSED_STREAM`, or a `GOAWAY` whose last stream id is below it,
//! RFC 9113 section 8.7). The last two need the body again: only a body
//! held whole in memory ([`Outgoing::replay`]) can go twice.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::gauge::Gauge;
use rustls::pki_types::ServerName;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{BoxBody, BoxError};
use crate::config::UpstreamConfig;
use crate::telemetry::metrics::{Metrics, UpstreamMetrics};

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

/// The client of one upstream, counting in `metrics` (under the upstream's
/// name) the requests that waited for one of its connections and the
/// connections busy. `before`,
/// the same upstream's client in the running snapshot, is handed back
/// (pool, kept connections and slots) when it was built from the same
/// settings and CA file contents; otherwise a new client is built.
pub fn client(
    cfg: &UpstreamConfig,
    metrics: &Metrics,
    before: Option<&HttpClient>,
) -> Result<HttpClient, UpstreamError> {
    let settings = Settings::of(cfg)?;
    if let Some(c) = before.filter(|c| c.inner.settings == settings) {
        return Ok(c.clone());
    }
    let tls = if cfg.scheme == http::uri::Scheme::HTTP {
        None
    } else {
        Some(tls(cfg, settings.ca.as_deref())?)
    };
    Ok(HttpClient::new(
        cfg,
        settings,
        tls,
        metrics.upstream(&cfg.name),
    ))
}

/// What a pool is built from: when a rebuilt snapshot's upstream has the
/// same, it keeps the pool. The CA file is compared by its contents, so a
/// reload after the file was replaced trusts the new one.
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    ca: Option<Vec<u8>>,
    connect_timeout: Duration,
    /// Connections kept in the pool's idle list, at most.
    max_idle: usize,
    max_connections: usize,
    /// How long a kept connection may wait for its next request.
    idle_timeout: Duration,
}

impl Settings {
    fn of(cfg: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let ca = match &cfg.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| UpstreamError::CaFile {
                name: cfg.name.clone(),
                path: path.display().to_string(),
                source,
            })?),
            None => None,
        };
        Ok(Self {
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            ca,
            connect_timeout: cfg.connect_timeout,
            max_idle: cfg.max_idle,
            max_connections: cfg.max_connections,
            idle_timeout: cfg.idle_timeout,
        })
    }
}

/// The TLS side of an `https://` upstream.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
}

/// `ca`: the contents of the upstream's CA file, if it names one.
fn tls(cfg: &UpstreamConfig, ca: Option<&[u8]>) -> Result<Tls, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: an upstream that needs
    // them fails its TLS handshake with a 502, which names the problem.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let (Some(path), Some(mut pem)) = (&cfg.ca_file, ca) {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem).flatten() {
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
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // `[::1]` is written with brackets in a URL, not in a server name.
    let host = cfg
        .authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server_name =
        ServerName::try_from(host.to_owned()).expect("a URL's host is a DNS name or an IP address");
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// The connections to one upstream; cheap to clone (routes to one
/// upstream share its pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    /// The upstream's name in the config, for the logs.
    name: String,
    /// What it was built from; its timeouts and limits are read there.
    settings: Settings,
    /// `host:port`, resolved at each connect (DNS may move).
    addr: String,
    host: HeaderValue,
    /// For `https://` upstreams.
    tls: Option<Tls>,
    /// The connection of an upstream that chose h2, shared by all
    /// requests and kept until the upstream closes it or goes away (one
    /// connection, so no cap or idle timeout applies), numbered so that a
    /// request refused on it drops this one and not its successor.
    h2: Mutex<Option<Shared>>,
    h2_opened: AtomicU64,
    /// Set while the upstream speaks h2: a new connection is then opened by
    /// one request while the others wait for it, instead of one each.
    speaks_h2: AtomicBool,
    /// Held while the shared connection is opened; when the last attempt
    /// failed.
    h2_connect: tokio::sync::Mutex<Option<Instant>>,
    /// One permit per HTTP/1.1 connection that may be busy at once, held
    /// by a request until its response body has been read.
    slots: Arc<Semaphore>,
    metrics: UpstreamMetrics,
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
async fn sweep(pool: Weak<PoolInner>, idle_timeout: Duration) {
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

/// The shared h2 connection and its number.
#[derive(Clone)]
struct Shared {
    id: u64,
    sender: http2::SendRequest<BoxBody>,
}

/// A request for the upstream.
pub struct Outgoing {
    pub req: Request<BoxBody>,
    /// Its body again, when the proxy holds it whole in memory: an h2
    /// request the upstream refused unprocessed is sent again with it. Kept
    /// beside the request, not as one of its extensions, which would cost
    /// every request a map.
    pub replay: Option<Bytes>,
}

impl Outgoing {
    /// Whether its body is all there (held whole, or empty): only then does
    /// it take a connection slot (see [`HttpClient`]).
    fn whole(&self) -> bool {
        self.replay.is_some() || self.req.body().is_end_stream()
    }
}

/// What a request needs to go again after its body was taken.
struct Again {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

impl Again {
    fn of(req: &Request<BoxBody>, replay: Option<Bytes>) -> Option<Again> {
        // Before the clones: a streamed body cannot go again anyway.
        let body = replay?;
        Some(Again {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
            body,
        })
    }

    fn request(self) -> Request<BoxBody> {
        use http_body_util::BodyExt;
        let mut req = Request::new(
            http_body_util::Full::new(self.body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

/// How an h2 upstream refused a request without processing it.
#[derive(Clone, Copy, PartialEq)]
enum Refusal {
    /// `REFUSED_STREAM`: this stream only; the connection goes on.
    Stream,
    /// A `GOAWAY` sent before it read the stream (h2 fails only the streams
    /// above the frame's last stream id that way; those below it fail with
    /// the connection): the connection is going away.
    GoingAway,
}

fn refusal(e: &hyper::Error) -> Option<Refusal> {
    let e = std::error::Error::source(e)?.downcast_ref::<h2::Error>()?;
    if !e.is_remote() {
        None
    } else if e.is_go_away() {
        Some(Refusal::GoingAway)
    } else if e.reason() == Some(h2::Reason::REFUSED_STREAM) {
        Some(Refusal::Stream)
    } else {
        None
    }
}

/// A fresh connection, by the protocol the upstream chose.
enum Fresh {
    H1(http1::SendRequest<BoxBody>),
    H2(http2::SendRequest<BoxBody>),
}

impl HttpClient {
    fn new(
        cfg: &UpstreamConfig,
        settings: Settings,
        tls: Option<Tls>,
        metrics: UpstreamMetrics,
    ) -> Self {
        let default_port = if tls.is_some() { 443 } else { 80 };
        let port = cfg.authority.port_u16().unwrap_or(default_port);
        let (max_connections, idle_timeout) = (settings.max_connections, settings.idle_timeout);
        let inner = Arc::new(PoolInner {
            name: cfg.name.clone(),
            settings,
            addr: format!("{}:{port}", cfg.authority.host()),
            host: HeaderValue::from_str(cfg.authority.as_str())
                .expect("an authority is a valid header value"),
            tls,
            h2: Mutex::new(None),
            h2_opened: AtomicU64::new(0),
            speaks_h2: AtomicBool::new(false),
            h2_connect: tokio::sync::Mutex::new(None),
            slots: Arc::new(Semaphore::new(max_connections)),
            metrics,
            idle: Mutex::new(Vec::new()),
        });
        // Checkouts and give-backs drop what idled out, but only while
        // requests come: a sweep now and then closes what a quiet upstream
        // would otherwise keep open. It ends with the client (once no
        // snapshot holds it). Without a runtime (`scrim check`) nothing sends.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&inner), idle_timeout));
        }
        Self { inner }
    }

    /// Sends `req` (absolute URI) and resolves to the response head.
    pub async fn request(&self, out: Outgoing) -> Result<Response<UpstreamBody>, BoxError> {
        // Only an upstream that picked h2 has a shared connection to look
        // for: the others never take its lock.
        if self.inner.speaks_h2.load(Ordering::Relaxed) {
            if let Some(h2) = self.h2_sender() {
                return self.send_h2(h2, out).await;
            }
            return match self.shared_h2().await? {
                Ok(h2) => self.send_h2(h2, out).await,
                Err(h1) => {
                    let slot = self.slot_if(out.whole()).await?;
                    self.send_h1(h1, out.req, slot).await
                }
            };
        }
        let slot = self.slot_if(out.whole()).await?;
        let Outgoing { req, replay } = out;
        let name = &self.inner.name;
        let req = match self.checkout() {
            None => req,
            Some(mut sender) => {
                tracing::trace!(upstream = %name, "reusing a kept upstream connection");
                match sender.try_send_request(self.origin_form(req)).await {
                    Ok(res) => {
                        self.give_back(sender);
                        return Ok(UpstreamBody::hold(res, slot));
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
        match self.connect().await? {
            Fresh::H1(sender) => self.send_h1(sender, req, slot).await,
            Fresh::H2(sender) => {
                let h2 = self.keep_h2(sender);
                self.send_h2(h2, Outgoing { req, replay }).await
            }
        }
    }

    /// A slot for a request whose body is `whole` (see [`HttpClient`]);
    /// none for one whose body streams from its client.
    async fn slot_if(&self, whole: bool) -> Result<Option<Slot>, BoxError> {
        if !whole {
            return Ok(None);
        }
        self.slot().await.map(Some)
    }

    /// A slot for one more busy HTTP/1.1 connection, waited for when all
    /// are taken.
    async fn slot(&self) -> Result<Slot, BoxError> {
        let permit = match self.inner.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.inner.metrics.waits.inc();
                tracing::debug!(upstream = %self.inner.name, "all upstream connections are busy; waiting for one");
                self.inner
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| BoxError::from("the upstream's connection slots were closed"))?
            }
        };
        let busy = self.inner.metrics.busy.clone();
        busy.inc();
        Ok(Slot {
            _permit: permit,
            busy,
        })
    }

    async fn send_h1(
        &self,
        mut sender: http1::SendRequest<BoxBody>,
        req: Request<BoxBody>,
        slot: Option<Slot>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let res = sender.send_request(self.origin_form(req)).await?;
        self.give_back(sender);
        Ok(UpstreamBody::hold(res, slot))
    }

    /// Sends on the shared h2 connection; a request the upstream did not
    /// process goes once more, on the connection open by then.
    async fn send_h2(
        &self,
        mut h2: Shared,
        out: Outgoing,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let whole = out.whole();
        let Outgoing { req, replay } = out;
        let again = Again::of(&req, replay);
        let mut e = match h2.sender.try_send_request(req).await {
            Ok(res) => return Ok(UpstreamBody::hold(res, None)),
            Err(e) => e,
        };
        let (req, gone) = match (e.take_message(), again, refusal(e.error())) {
            // Queued on a connection that closed before sending it.
            (Some(req), _, _) => (req, true),
            (None, Some(again), Some(how)) => (again.request(), how == Refusal::GoingAway),
            (None, _, _) => return Err(e.into_error().into()),
        };
        tracing::debug!(upstream = %self.inner.name, "the h2 upstream did not process a request; sending it again");
        if gone {
            self.drop_h2(h2.id);
        }
        match self.shared_h2().await? {
            Ok(mut h2) => Ok(UpstreamBody::hold(h2.sender.send_request(req).await?, None)),
            Err(h1) => {
                let slot = self.slot_if(whole).await?;
                self.send_h1(h1, req, slot).await
            }
        }
    }

    /// The shared h2 connection, opened by this request if there is none
    /// (one request at a time opens it; those waiting then share it). An
    /// upstream that now picks HTTP/1.1 gives that connection instead.
    /// Those waiting while an attempt fails fail with it: waiting their
    /// turn to try again, one connect timeout each, a queue of requests to
    /// an unreachable upstream would wait for all of them.
    async fn shared_h2(&self) -> Result<Result<Shared, http1::SendRequest<BoxBody>>, BoxError> {
        let asked = Instant::now();
        let mut failed = self.inner.h2_connect.lock().await;
        if let Some(h2) = self.h2_sender() {
            return Ok(Ok(h2));
        }
        if failed.is_some_and(|at| at >= asked) {
            return Err("the upstream connection could not be opened".into());
        }
        match self.connect().await {
            Ok(Fresh::H2(sender)) => Ok(Ok(self.keep_h2(sender))),
            Ok(Fresh::H1(sender)) => {
                self.inner.speaks_h2.store(false, Ordering::Relaxed);
                Ok(Err(sender))
            }
            Err(e) => {
                *failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    fn keep_h2(&self, sender: http2::SendRequest<BoxBody>) -> Shared {
        let h2 = Shared {
            id: self.inner.h2_opened.fetch_add(1, Ordering::Relaxed),
            sender,
        };
        *self.inner.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(h2.clone());
        self.inner.speaks_h2.store(true, Ordering::Relaxed);
        h2
    }

    /// Stops sharing connection `id` (going away): requests in flight on it
    /// finish, new ones go to its successor.
    fn drop_h2(&self, id: u64) {
        let mut h2 = self.inner.h2.lock().unwrap_or_else(|e| e.into_inner());
        if h2.as_ref().is_some_and(|h| h.id == id) {
            *h2 = None;
        }
    }

    /// The shared h2 connection, while it is open.
    fn h2_sender(&self) -> Option<Shared> {
        let mut h2 = self.inner.h2.lock().unwrap_or_else(|e| e.into_inner());
        if h2.as_ref().is_some_and(|h| h.sender.is_closed()) {
            tracing::debug!(upstream = %self.inner.name, "the h2 upstream connection closed");
            *h2 = None;
        }
        h2.clone()
    }

    /// HTTP/1.1 wants the origin form and a Host header (h2 takes the
    /// absolute URI as it is).
    fn origin_form(&self, mut req: Request<BoxBody>) -> Request<BoxBody> {
        if req.uri().scheme().is_some() {
            let origin = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            *req.uri_mut() = http::Uri::from(origin);
        }
        if !req.headers().contains_key(header::HOST) {
            req.headers_mut()
                .insert(header::HOST, self.inner.host.clone());
        }
        req
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
        if self.inner.settings.max_idle == 0 {
            return;
        }
        if idle.len() >= self.inner.settings.max_idle {
            // Dropping the handle closes the connection once its response,
            // if one is still being read, is done.
            idle.remove(0);
        }
        idle.push(Pooled {
            sender,
            expires: now + self.inner.settings.idle_timeout,
        });
    }

    /// A new connection. Boxed: a TLS handshake's state is kilobytes, and
    /// every request's future would carry that room, moved with it, though
    /// few requests connect.
    fn connect(
        &self,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Fresh, BoxError>> + Send + '_>> {
        Box::pin(self.open())
    }

    async fn open(&self) -> Result<Fresh, BoxError> {
        let inner = &self.inner;
        let tcp = async {
            let tcp = tokio::net::TcpStream::connect(inner.addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, BoxError>(tcp)
        };
        let within = |_| BoxError::from("connect timed out");
        let deadline = tokio::time::Instant::now() + inner.settings.connect_timeout;
        let tcp = tokio::time::timeout_at(deadline, tcp)
            .await
            .map_err(within)??;
        let Some(tls) = &inner.tls else {
            tracing::debug!(upstream = %inner.name, "opened an upstream connection");
            return handshake_h1(TokioIo::new(tcp)).await;
        };
        let stream = tokio::time::timeout_at(
            deadline,
            tls.connector.connect(tls.server_name.clone(), tcp),
        )
        .await
        .map_err(within)??;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        tracing::debug!(upstream = %inner.name, h2, "opened an upstream connection over TLS");
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            drive(conn);
            Ok(Fresh::H2(sender))
        } else {
            handshake_h1(io).await
        }
    }
}

/// A response body from an upstream. On an HTTP/1.1 connection it holds
/// the connection's slot (see [`HttpClient`]) until it has been read to the
/// end, failed or been dropped: the connection is busy until then.
pub struct UpstreamBody {
    body: Incoming,
    slot: Option<Slot>,
    /// The response is an event stream: told once, when its head came in.
    event_stream: bool,
}

/// A taken connection slot, counted busy until dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    busy: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.busy.dec();
    }
}

impl UpstreamBody {
    fn hold(res: Response<Incoming>, slot: Option<Slot>) -> Response<Self> {
        let event_stream = super::is_event_stream(res.headers());
        res.map(|body| {
            let slot = slot.filter(|_| !body.is_end_stream() && !event_stream);
            UpstreamBody {
                body,
                slot,
                event_stream,
            }
        })
    }

    /// Whether the response is an event stream (`text/event-stream`).
    pub fn is_event_stream(&self) -> bool {
        self.event_stream
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let done = match &polled {
            Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            Poll::Ready(_) => true,
            Poll::Pending => false,
        };
        if done {
            self.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

async fn handshake_h1<I>(io: I) -> Result<Fresh, BoxError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await?;
    drive(conn);
    Ok(Fresh::H1(sender))
}

/// Runs a connection's I/O until it ends.
fn drive<C>(conn: C)
where
    C: std::future::Future<Output = hyper::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
}
