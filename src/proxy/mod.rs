//! The proxy: one request's lifecycle, as named phases. Read this first.
//!
//! 1. **route**: normalise the path, match host, path and method (404 if
//!    nothing matches; nothing is forwarded).
//! 2. **query**: the query string through the route's `query` rules; the
//!    leak guard over the path's segments (no rule names them).
//! 3. **headers**: the header allow-list (`headers.rs`), then the upstream's
//!    injected headers.
//! 4. **body**: the route's `body_format`, else the content type, picks
//!    the format (unknown: 415); the content encoding is decoded under a
//!    cap (unknown: 415, bomb: 413).
//!    JSON and forms are buffered (413 past the limit, 408 past the body
//!    timeout), transformed and re-encoded with a new `Content-Length`;
//!    NDJSON streams line by line.
//! 5. **forward**: the pooled upstream client, with the response timeout
//!    (502 unreachable, 504 too slow). A streamed body that fails midway
//!    aborts the upstream request: the upstream never gets the raw rest.
//! 6. **response**: streamed back untouched, or through the route's
//!    response rules (JSON buffered; NDJSON and SSE event by event).
//!
//! A `pass_through` route skips phases 2 to 4 and the response rules: what
//! the client sent leaves unchanged but for hop-by-hop headers and Host.
//!
//! Every error goes through `respond.rs`, the one mapping to a status and a
//! `{"error", "reason"}` body that never quotes the request.

pub mod body;
pub mod encoding;
pub mod headers;
pub mod respond;
pub mod route;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use tracing::{debug, warn, Instrument};

use crate::engine::{Format, NdjsonStream, SseStream, UnknownFields};
use crate::privacy::consent::Decision;
use crate::snapshot::{Route, Runtime, Snapshot};
use crate::telemetry::metrics::{Dropped, RouteMetrics};
use body::{FailureSlot, LineTransform, StreamingBody};
use encoding::Coding;
pub use respond::ProxyError;
use upstream::UpstreamBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Response streams (SSE) may idle for long; the upstream's own keep-alive
/// bounds them, this only stops a stream that is truly dead.
const RESPONSE_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Pass-through bodies up to this size (declared by Content-Length) are
/// read whole before they are forwarded.
const WHOLE_PASS_THROUGH: u64 = 64 * 1024;

/// The request handler. Cheap to clone: one per connection.
#[derive(Clone)]
pub struct ProxyService {
    runtime: Arc<Runtime>,
}

impl ProxyService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }

    pub fn metrics(&self) -> &crate::telemetry::metrics::Metrics {
        &self.runtime.metrics
    }

    /// Serves one request; never fails, errors become responses.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<BoxBody>, Infallible> {
        let started = Instant::now();
        let id = RequestId::next();
        let span = tracing::debug_span!("request", id = id.as_str());
        // Pin the snapshot for the whole request: a rotation or reload that
        // lands meanwhile applies to the next request, not to this one.
        let snap = self.runtime.snapshot();
        let method = req.method().clone();
        let h2 = req.version() == http::Version::HTTP_2;
        let mut seen = Seen::default();
        let rt = &self.runtime;
        // Instrumented only when the span is on: wrapping moves the whole
        // request future (kilobytes), for nothing when debug logs are off.
        let res = if span.is_disabled() {
            proxy(rt, &snap, req, peer, &mut seen).await
        } else {
            proxy(rt, &snap, req, peer, &mut seen)
                .instrument(span.clone())
                .await
        };
        let _enter = span.enter();
        let route = seen.route.as_ref().map(|r| &r.name);
        let mut res = match res {
            Ok(res) => {
                debug!(route = route.map(|r| r.as_str()), %method, status = res.status().as_u16(), "forwarded");
                res
            }
            Err(e) => {
                warn!(route = route.map(|r| r.as_str()), %method, status = e.status().as_u16(), reason = e.code(), "refused");
                if let Some(reason) = e.dropped() {
                    rt.metrics.dropped(reason, 1);
                }
                e.into_response()
            }
        };
        match seen.route {
            Some(r) => r.answered(&rt.metrics, res.status().as_u16()),
            None => rt.metrics.request(&NO_ROUTE, res.status().as_u16()),
        }
        if let (Some(r), Some(upstream)) = (&seen.route, seen.upstream) {
            r.timing(started.elapsed(), upstream);
        }
        if let Ok(v) = HeaderValue::from_bytes(&id.0) {
            res.headers_mut().insert(REQUEST_ID, v);
        }
        // An HTTP/1.1 client that stops reading is caught by its socket's
        // send timeout; an h2 stream can stall while its connection flows.
        if h2 && !res.body().is_end_stream() {
            let runtime = self.runtime.clone();
            res = res.map(|b| {
                body::boxed(body::Unread::new(b, snap.limits.send_timeout, move || {
                    debug!("an h2 client stopped reading its response: stream let go");
                    runtime.metrics.send_timeout();
                }))
            });
        }
        Ok(res)
    }
}

/// The route label of requests that matched none.
static NO_ROUTE: std::sync::LazyLock<Arc<String>> =
    std::sync::LazyLock::new(|| Arc::new("none".to_owned()));

/// Given back to the client so a failed request can be found in the logs.
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-scrim-request-id");

/// A request id: 16 hex digits, a per-process random prefix and a counter.
/// Never taken from the request: a client-chosen id could carry anything
/// into the logs. Written in place: no allocation per request.
struct RequestId([u8; 16]);

impl RequestId {
    fn next() -> Self {
        static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u32::from_le_bytes(b)
        });
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let v = (u64::from(*PREFIX) << 32) | u64::from(n);
        let mut id = [0u8; 16];
        for (i, d) in id.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        Self(id)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// What the request handler learns for its metrics as the request goes.
/// Borrowed from the snapshot the request pinned: cloning a route's
/// metrics would cost an atomic increment and decrement per counter.
#[derive(Default)]
struct Seen<'s> {
    route: Option<&'s RouteMetrics>,
    /// Time from sending upstream to the response head.
    upstream: Option<Duration>,
}

async fn proxy<'s>(
    rt: &Runtime,
    snap: &'s Snapshot,
    req: Request<Incoming>,
    peer: SocketAddr,
    seen: &mut Seen<'s>,
) -> Result<Response<BoxBody>, ProxyError> {
    let limits = &snap.limits;

    // --- phase 1: route ---------------------------------------------------
    let host = req.uri().host().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let path = route::normalise(req.uri().path()).ok_or(ProxyError::NoRoute)?;
    let route: &Route = snap
        .routes
        .iter()
        .find(|r| route::matches(&r.cfg, host, &path, req.method()))
        .ok_or(ProxyError::NoRoute)?;
    let engine = &route.engine;
    seen.route = Some(&route.metrics);

    // --- phase 1b: consent ------------------------------------------------
    // A consent purpose without consent (or with `Sec-GPC: 1`) forwards
    // nothing, and still answers success so that SDKs do not retry.
    if let Some(consent) = &engine.rules().consent {
        if consent.decide(req.headers()) == Decision::Refused {
            rt.metrics.dropped(Dropped::NoConsent, 1);
            debug!(route = %route.cfg.name, "withheld: no consent");
            return Ok(withheld());
        }
    }

    // --- phase 2: query -----------------------------------------------------
    // The names (never the values) of what no rule named, for the
    // unknown-field report; lent from a per-thread pool, so a request that
    // drops the fields the last one did allocates nothing for it. A
    // pass-through route names nothing and borrows none.
    let mut unknown = None;
    let mut query = String::new();
    let pass_through = route.cfg.pass_through;
    if let Some(q) = req.uri().query().filter(|q| !q.is_empty()) {
        if pass_through {
            query.push_str(q);
        } else {
            let unknown = unknown.get_or_insert_with(UnknownFields::lend);
            engine
                .query_reporting(q, &mut query, unknown)
                .map_err(refused)?;
        }
    }
    let upstream = &route.cfg.upstream;
    let rewritten = route::rewrite(&route.cfg, &path);
    let mut path_stats = crate::engine::Stats::default();
    let rewritten = if pass_through {
        std::borrow::Cow::Borrowed(rewritten.as_ref())
    } else {
        route::guard_path(&rewritten, engine, &mut path_stats).map_err(refused)?
    };
    if path_stats.leaks_scrubbed > 0 {
        route.metrics.record(&path_stats);
    }
    let mut path_and_query =
        String::with_capacity(upstream.base_path.len() + rewritten.len() + 1 + query.len());
    path_and_query.push_str(&upstream.base_path);
    path_and_query.push_str(&rewritten);
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    // From parts rather than `Uri::builder()`, whose steps each move the
    // whole of a URI's parts through a `Result`: asked of every request.
    let invalid = || ProxyError::BadRequest("the rewritten path is not a valid URI");
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(upstream.scheme.clone());
    uri.authority = Some(upstream.authority.clone());
    uri.path_and_query =
        Some(http::uri::PathAndQuery::try_from(path_and_query).map_err(|_| invalid())?);
    let uri = Uri::from_parts(uri).map_err(|_| invalid())?;

    // --- phase 3: headers ---------------------------------------------------
    let (mut parts, incoming) = req.into_parts();
    let incoming = body::Counted::new(incoming, route.metrics.bytes_in.clone());
    let declared_len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if pass_through {
        // Unchanged but for hop-by-hop headers and Host (the upstream's).
        let mut headers = std::mem::take(&mut parts.headers);
        headers::strip_hop_by_hop(&mut headers, false);
        headers.remove(header::HOST);
        for (name, value) in &upstream.headers {
            headers.insert(name.clone(), value.clone());
        }
        // A small body of declared length is read whole first, as nginx
        // buffers request bodies: it leaves with its head in one write (an
        // h2 upstream that answers before reading a body that came apart
        // from its head, as nginx's `return` does, counts it against the
        // connection as a flood), and it can go again if an h2 upstream
        // refuses it unprocessed. Larger and chunked bodies stream.
        let body = match declared_len {
            Some(n) if n <= WHOLE_PASS_THROUGH && !incoming.is_end_stream() => Outbound::Whole(
                Bytes::from(body::collect(incoming, n, limits.body_timeout).await?),
            ),
            _ => Outbound::Streamed(body::boxed(incoming)),
        };
        let method = std::mem::take(&mut parts.method);
        // What is left of the request head pins the connection's read
        // buffer (hyper parses without copying): let it go before the wait.
        drop(parts);
        let (up, progress) = upstream_request(route, body, method, uri, headers);
        let res = forward(route, up, &progress, &FailureSlot::default(), seen).await?;
        return Ok(passed_back(res, upstream.response_timeout));
    }
    let mut unknown = unknown.unwrap_or_else(UnknownFields::lend);
    let mut headers = headers::request_headers_reporting(
        &parts.headers,
        engine,
        peer.ip(),
        route.response_engine.is_some(),
        Some(&mut unknown),
    );

    // --- phase 4: body ------------------------------------------------------
    let coding = Coding::from_header(parts.headers.get(header::CONTENT_ENCODING))?;
    let has_body = !incoming.is_end_stream() && declared_len != Some(0);
    let failure = FailureSlot::default();
    let body = if !has_body {
        Outbound::Streamed(Empty::new().map_err(|never| match never {}).boxed_unsync())
    } else {
        // A route may declare the real format (sendBeacon posts JSON as text/plain).
        let format = match route.cfg.body_format {
            Some(declared) => declared,
            None => body_format(parts.headers.get(header::CONTENT_TYPE))?,
        };
        if let Some(v) = coding.header_value() {
            headers.insert(header::CONTENT_ENCODING, v);
        }
        match format {
            Format::Ndjson => {
                let streaming = StreamingBody::new(
                    incoming,
                    engine.clone(),
                    LineTransform::Ndjson(NdjsonStream::new().reporting_to(route.unknown.clone())),
                    coding,
                    limits.max_decoded_bytes,
                    limits.body_timeout,
                    failure.clone(),
                )?
                .with_stats(Box::new({
                    let metrics = route.metrics.clone();
                    move |s| metrics.record(s)
                }));
                Outbound::Streamed(body::boxed(streaming))
            }
            format => {
                if declared_len.is_some_and(|n| n > limits.max_body_bytes) {
                    return Err(ProxyError::BodyTooLarge {
                        limit: limits.max_body_bytes,
                    });
                }
                let raw =
                    body::collect(incoming, limits.max_body_bytes, limits.body_timeout).await?;
                let decoded = encoding::decode_all(coding, &raw, limits.max_decoded_bytes)?;
                let mut out = Vec::with_capacity(decoded.len());
                let stats = engine
                    .transform_reporting(format, &decoded, &mut out, &mut unknown)
                    .map_err(refused)?;
                route.metrics.record(&stats);
                if let Some(candidate) = &route.shadow_engine {
                    // The candidate's output is compared, never forwarded.
                    let mut shadow = Vec::with_capacity(out.len());
                    let ok = candidate.transform(format, &decoded, &mut shadow).is_ok();
                    rt.shadow
                        .record(route.cfg.index, &out, ok.then_some(shadow.as_slice()));
                }
                if out.is_empty() && stats.withheld_consent + stats.withheld_objection > 0 {
                    debug!(route = %route.cfg.name, "withheld: consent or objection");
                    return Ok(withheld());
                }
                let encoded = Bytes::from(encoding::encode_all(coding, out));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.len()));
                Outbound::Whole(encoded)
            }
        }
    };
    for (name, value) in &upstream.headers {
        headers.insert(name.clone(), value.clone());
    }
    if !unknown.is_empty() {
        route.unknown.merge(&unknown);
    }

    // --- phase 5: forward ---------------------------------------------------
    let method = std::mem::take(&mut parts.method);
    drop(parts);
    let (up, progress) = upstream_request(route, body, method, uri, headers);
    let res = forward(route, up, &progress, &failure, seen).await?;

    // --- phase 6: response --------------------------------------------------
    let Some(resp_engine) = &route.response_engine else {
        return Ok(passed_back(res, upstream.response_timeout));
    };
    let (mut parts, body) = res.into_parts();
    let coding = Coding::from_header(parts.headers.get(header::CONTENT_ENCODING))
        .map_err(|_| ProxyError::UpstreamBadResponse)?;
    let ctype = parts.headers.get(header::CONTENT_TYPE).cloned();
    let is_sse = body.is_event_stream();
    headers::strip_hop_by_hop(&mut parts.headers, true);
    if let Some(v) = coding.header_value() {
        parts.headers.insert(header::CONTENT_ENCODING, v);
    }
    if body.is_end_stream() {
        return Ok(Response::from_parts(parts, body::boxed(body)));
    }
    let transform = if is_sse {
        Some(LineTransform::Sse(SseStream::new()))
    } else {
        match body_format(ctype.as_ref()).map_err(|_| ProxyError::UpstreamBadResponse)? {
            Format::Ndjson => Some(LineTransform::Ndjson(NdjsonStream::new())),
            _ => None,
        }
    };
    if let Some(transform) = transform {
        let streaming = StreamingBody::new(
            body,
            resp_engine.clone(),
            transform,
            coding,
            limits.max_decoded_bytes,
            RESPONSE_IDLE,
            FailureSlot::default(),
        )?;
        return Ok(Response::from_parts(parts, body::boxed(streaming)));
    }
    let format = body_format(ctype.as_ref()).map_err(|_| ProxyError::UpstreamBadResponse)?;
    let raw = body::collect(body, limits.max_body_bytes, upstream.response_timeout)
        .await
        .map_err(|_| ProxyError::UpstreamBadResponse)?;
    let decoded = encoding::decode_all(coding, &raw, limits.max_decoded_bytes)
        .map_err(|_| ProxyError::UpstreamBadResponse)?;
    let mut out = Vec::with_capacity(decoded.len());
    resp_engine
        .transform(format, &decoded, &mut out)
        .map_err(|_| ProxyError::UpstreamBadResponse)?;
    let encoded = encoding::encode_all(coding, out);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(encoded.len()));
    Ok(Response::from_parts(
        parts,
        whole_body(Bytes::from(encoded)),
    ))
}

/// A request body as it leaves: held whole (and so able to go again if an
/// h2 upstream refuses it unprocessed), or streamed.
enum Outbound {
    Whole(Bytes),
    Streamed(BoxBody),
}

/// The request to the upstream: its body counted as sent and its progress
/// tracked (for the response timeout, see [`forward`]); a whole body also
/// rides along as [`upstream::Outgoing::replay`], so that it can go again.
fn upstream_request(
    route: &Route,
    body: Outbound,
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
) -> (upstream::Outgoing, body::Progress) {
    let progress = body::Progress::new();
    // One box around the whole stack: a whole body boxed on its own too
    // would cost every request an allocation and a dynamic call per frame.
    let (body, replay) = match body {
        Outbound::Whole(b) => (http_body_util::Either::Left(Full::new(b.clone())), Some(b)),
        Outbound::Streamed(b) => (http_body_util::Either::Right(b), None),
    };
    let body = body::Counted::new(body, route.metrics.bytes_out.clone());
    let mut up = Request::new(body::boxed(body::Tracked::new(body, progress.clone())));
    *up.method_mut() = method;
    *up.uri_mut() = uri;
    *up.headers_mut() = headers;
    (upstream::Outgoing { req: up, replay }, progress)
}

fn whole_body(b: Bytes) -> BoxBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// A response passed back unchanged but for hop-by-hop headers, its body
/// cut if it stalls (see [`response_idle`]).
fn passed_back(res: Response<UpstreamBody>, response_timeout: Duration) -> Response<BoxBody> {
    let (mut parts, body) = res.into_parts();
    let idle = response_idle(&body, response_timeout);
    headers::strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body::boxed(body::Idle::new(body, idle)))
}

/// Sends `up` and waits for the response head. The response timeout counts
/// while scrim waits on the upstream, not while a client is still streaming
/// its body (the body timeout's job).
async fn forward(
    route: &Route,
    up: upstream::Outgoing,
    progress: &body::Progress,
    failure: &FailureSlot,
    seen: &mut Seen<'_>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let timeout = route.cfg.upstream.response_timeout;
    let sent_at = Instant::now();
    // Boxed: the request's future is kilobytes, and held inline it would be
    // copied with every move of the request's future.
    let mut request = Box::pin(route.client.request(up));
    let sent = loop {
        let wait = progress.deadline(timeout);
        let wake = wait.unwrap_or_else(|| tokio::time::Instant::now() + timeout);
        tokio::select! {
            r = &mut request => break Some(r),
            _ = tokio::time::sleep_until(wake) => {
                if progress
                    .deadline(timeout)
                    .is_some_and(|d| d <= tokio::time::Instant::now())
                {
                    break None;
                }
            }
        }
    };
    seen.upstream = Some(sent_at.elapsed());
    let taken = || failure.lock().ok().and_then(|mut f| f.take());
    let res = match sent {
        Some(Ok(res)) => res,
        Some(Err(_)) => return Err(taken().unwrap_or(ProxyError::UpstreamUnreachable)),
        None => return Err(taken().unwrap_or(ProxyError::UpstreamTimeout)),
    };
    // The upstream answered, but our streamed body may have failed after it
    // started answering; the client must learn its data was refused.
    if let Some(e) = taken() {
        return Err(e);
    }
    Ok(res)
}

/// The longest pause allowed in a response body passed through: the
/// upstream's response timeout, as for the head; an event stream may idle
/// as long as it likes.
fn response_idle(body: &UpstreamBody, response_timeout: Duration) -> Duration {
    if body.is_event_stream() {
        RESPONSE_IDLE
    } else {
        response_timeout
    }
}

/// The answer to a request withheld for consent or an objection: success,
/// so clients do not retry, and nothing forwarded.
fn withheld() -> Response<BoxBody> {
    let mut res = Response::new(whole_body(Bytes::from_static(b"{}")));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// An engine error as the client sees it: the leak guard's refusal is 422,
/// everything else a malformed body.
fn refused(e: crate::engine::EngineError) -> ProxyError {
    match e.reason {
        crate::engine::Reason::Leak { path } => ProxyError::Leak { path },
        _ => ProxyError::Malformed(e),
    }
}

/// Whether a response is an event stream (`text/event-stream`, any case,
/// parameters aside). Asked of every response, so told from the bytes: a
/// shorter type, the usual `application/json`, is turned down by its length.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let b = v.as_bytes();
    if b.len() < SSE.len() {
        return false;
    }
    let t = b.split(|&c| c == b';').next().unwrap_or_default();
    t.trim_ascii().eq_ignore_ascii_case(SSE)
}

/// The media type without parameters, lower-cased (copied only when it
/// was not lower case already).
fn essence(v: Option<&HeaderValue>) -> Option<std::borrow::Cow<'_, str>> {
    let v = v?.to_str().ok()?;
    let t = v.split(';').next().unwrap_or("").trim();
    Some(if t.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(t.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(t)
    })
}

/// Which engine format reads a body of this content type.
fn body_format(v: Option<&HeaderValue>) -> Result<Format, ProxyError> {
    let Some(t) = essence(v) else {
        return Err(ProxyError::UnsupportedContentType);
    };
    match t.as_ref() {
        "application/json" | "text/json" => Ok(Format::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => Ok(Format::Ndjson),
        "application/x-www-form-urlencoded" => Ok(Format::Form),
        // What the Sentry SDKs send to /api/{project}/envelope/.
        "application/x-sentry-envelope" => Ok(Format::SentryEnvelope),
        t if t.starts_with("application/") && t.ends_with("+json") => Ok(Format::Json),
        _ => Err(ProxyError::UnsupportedContentType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_are_told_by_their_media_type_alone() {
        let of = |t: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
            is_event_stream(&h)
        };
        for t in [
            "text/event-stream",
            "Text/Event-Stream",
            "text/event-stream; charset=utf-8",
            "text/event-stream ;charset=utf-8",
        ] {
            assert!(of(t), "{t}");
            assert_eq!(
                essence(Some(&HeaderValue::from_str(t).unwrap())).as_deref(),
                Some("text/event-stream")
            );
        }
        for t in [
            "application/json",
            "text/event-streams",
            "text/event-stream-x; a=b",
            "application/x-ndjson; text/event-stream",
        ] {
            assert!(!of(t), "{t}");
        }
        assert!(!is_event_stream(&http::HeaderMap::new()));
    }
}
