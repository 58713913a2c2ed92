//! Bodies: buffered under a size limit and a time limit (JSON, form), or
//! streamed through a line transform (NDJSON requests and responses, SSE
//! responses) frame by frame, in memory bounded by the longest line.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::encoding::{Coding, Decoder, Encoder};
use super::respond::ProxyError;
use super::BoxError;
use crate::engine::{Engine, EngineError, NdjsonStream, SseStream, Stats};

/// Told the totals when a stream ends well.
pub type StatsSink = Box<dyn FnOnce(&Stats) + Send>;

/// Reads a whole body: 413 past `limit` bytes, 408 past `timeout`. Copied
/// out, even when it came in one frame: hyper's frames share the
/// connection's read buffer, which a body kept while its request waits on
/// the upstream (pass-through) would hold on to.
pub async fn collect<B>(body: B, limit: u64, timeout: Duration) -> Result<Vec<u8>, ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let read = async {
        let mut body = body;
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ProxyError::ClientGone)?;
            if let Ok(data) = frame.into_data() {
                if buf.len() as u64 + data.len() as u64 > limit {
                    return Err(ProxyError::BodyTooLarge { limit });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyError::ClientTimeout)?
}

/// A line-oriented transform a streaming body runs.
pub enum LineTransform {
    Ndjson(NdjsonStream),
    Sse(SseStream),
}

impl LineTransform {
    fn push(&mut self, engine: &Engine, data: &[u8], out: &mut Vec<u8>) -> Result<(), EngineError> {
        match self {
            LineTransform::Ndjson(s) => s.push(engine, data, out),
            LineTransform::Sse(s) => s.push(engine, data, out),
        }
    }

    fn finish(self, engine: &Engine, out: &mut Vec<u8>) -> Result<Stats, EngineError> {
        match self {
            LineTransform::Ndjson(s) => s.finish(engine, out),
            LineTransform::Sse(s) => {
                s.finish();
                Ok(Stats::default())
            }
        }
    }
}

/// Where a streaming body reports why it stopped, so the proxy can answer
/// the client with the real cause (400, 408, 413) instead of a 502.
pub type FailureSlot = Arc<Mutex<Option<ProxyError>>>;

/// A body rewritten as it streams: decode, transform complete lines,
/// re-encode and flush, so each line leaves as soon as it is complete.
/// On any error the stream ends with an error: the peer sees an aborted
/// body, never the untransformed rest.
pub struct StreamingBody<B> {
    inner: B,
    engine: Arc<Engine>,
    transform: Option<LineTransform>,
    decoder: Option<Decoder>,
    encoder: Option<Encoder>,
    failure: FailureSlot,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    on_stats: Option<StatsSink>,
}

impl<B> StreamingBody<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inner: B,
        engine: Arc<Engine>,
        transform: LineTransform,
        coding: Coding,
        decoded_cap: u64,
        idle: Duration,
        failure: FailureSlot,
    ) -> Result<Self, ProxyError> {
        Ok(Self {
            inner,
            engine,
            transform: Some(transform),
            decoder: Some(Decoder::streaming(coding, decoded_cap)?),
            encoder: Some(Encoder::new(coding)),
            failure,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            on_stats: None,
        })
    }

    /// Reports the stream's totals when it ends without error.
    pub fn with_stats(mut self, sink: StatsSink) -> Self {
        self.on_stats = Some(sink);
        self
    }

    fn fail(&mut self, e: ProxyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let msg = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(e);
        }
        self.transform = None;
        Poll::Ready(Some(Err(msg.into())))
    }

    fn process(&mut self, data: &[u8]) -> Result<Vec<u8>, ProxyError> {
        let (Some(dec), Some(tr), Some(enc)) = (
            self.decoder.as_mut(),
            self.transform.as_mut(),
            self.encoder.as_mut(),
        ) else {
            return Ok(Vec::new());
        };
        let decoded = dec.push(data)?;
        let mut out = Vec::new();
        tr.push(&self.engine, &decoded, &mut out)
            .map_err(ProxyError::Malformed)?;
        Ok(if out.is_empty() {
            Vec::new()
        } else {
            enc.push(&out, true)
        })
    }

    fn end(&mut self) -> Result<Vec<u8>, ProxyError> {
        let (Some(dec), Some(mut tr), Some(mut enc)) = (
            self.decoder.take(),
            self.transform.take(),
            self.encoder.take(),
        ) else {
            return Ok(Vec::new());
        };
        let decoded = dec.finish()?;
        let mut out = Vec::new();
        tr.push(&self.engine, &decoded, &mut out)
            .map_err(ProxyError::Malformed)?;
        let stats = tr
            .finish(&self.engine, &mut out)
            .map_err(ProxyError::Malformed)?;
        if let Some(sink) = self.on_stats.take() {
            sink(&stats);
        }
        let mut bytes = enc.push(&out, false);
        bytes.extend(enc.finish());
        Ok(bytes)
    }
}

impl<B> Body for StreamingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.transform.is_none() {
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        return this.fail(ProxyError::ClientTimeout);
                    }
                    return Poll::Pending;
                }
                Poll::Ready(f) => f,
            };
            let deadline = Instant::now() + this.idle;
            this.sleep.as_mut().reset(deadline);
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers are not forwarded: no rule names them.
                        continue;
                    };
                    match this.process(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => return this.fail(e),
                    }
                }
                Some(Err(_)) => return this.fail(ProxyError::ClientGone),
                None => {
                    return match this.end() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => this.fail(e),
                    };
                }
            }
        }
    }
}

/// Who a forwarded request body is waiting on. The response timeout runs
/// only while scrim waits on the upstream (to take the next frame, or to
/// answer after the last), not while a client is still streaming its body:
/// the body timeout bounds that.
#[derive(Clone)]
pub struct Progress(Arc<Mutex<(Instant, bool)>>);

impl Progress {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new((Instant::now(), false))))
    }

    /// When the upstream is late; `None` while the client is the one awaited.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let (last, waiting_on_client) = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        (!waiting_on_client).then_some(last + timeout)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// A response body that ends with an error when the upstream sends nothing
/// for `idle`: a response that stalls after its head would otherwise hold
/// the client's connection for ever.
pub struct Idle<B> {
    inner: B,
    idle: Duration,
    /// Armed the first time the upstream makes us wait: a body that is
    /// already there when read (most are) never touches the timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> Idle<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
        }
    }
}

impl<B> Body for Idle<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err("the upstream stalled mid-response".into())));
                }
                Poll::Pending
            }
            Poll::Ready(f) => {
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body that adds the bytes it passes to a counter.
pub struct Counted<B> {
    inner: B,
    counter: prometheus_client::metrics::counter::Counter,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: prometheus_client::metrics::counter::Counter) -> Self {
        Self { inner, counter }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that reports its [`Progress`].
pub struct Tracked<B> {
    inner: B,
    progress: Progress,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, progress: Progress) -> Self {
        Self { inner, progress }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        let mut p = self.progress.0.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Poll::Pending => p.1 = true,
            Poll::Ready(_) => *p = (Instant::now(), false),
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Boxes any body into the proxy's body type.
pub fn boxed<B>(b: B) -> super::BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// A response body to an h2 client, let go when the client stops taking
/// it. The socket's send timeout cannot see this: an h2 client that keeps
/// reading its connection but withholds one stream's flow-control window
/// stalls that stream alone, and hyper, waiting for window, stops asking
/// the body for data. Nothing polls the body then, so a watchdog task
/// tells the stall: once the client has been handed the head or a frame and
/// has not asked for the next within `limit`, the body is dropped, which
/// ends the upstream exchange and frees its connection. Waiting on the
/// upstream (an idle event stream) is not the client's stall and is never
/// cut here. Data goes to hyper in pieces of at most [`UNREAD_PIECE`]:
/// hyper asks for more only once a piece has left, and a large frame
/// (hyper reads up to hundreds of KiB at once from a fast upstream) could
/// take longer than the limit to reach a slow client that keeps reading.
pub struct Unread {
    shared: Arc<Mutex<Watched>>,
    watchdog: tokio::task::AbortHandle,
}

/// The most an h2 stream is handed at once by [`Unread`].
const UNREAD_PIECE: usize = 16 * 1024;

struct Watched {
    /// `None` once the body ended or was cut.
    body: Option<super::BoxBody>,
    /// What is left of a frame handed on in pieces.
    rest: Bytes,
    ended: bool,
    /// Since when the client owes a read: `None` while the body waits on
    /// the upstream.
    owed_since: Option<Instant>,
}

impl Unread {
    /// Watches `body`; `on_cut` runs if the client stalls it.
    pub fn new(
        body: super::BoxBody,
        limit: Duration,
        on_cut: impl FnOnce() + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Mutex::new(Watched {
            body: Some(body),
            rest: Bytes::new(),
            ended: false,
            // The head is on its way: a read is owed from now.
            owed_since: Some(Instant::now()),
        }));
        let watched = shared.clone();
        let watchdog = tokio::spawn(async move {
            let mut wake = Instant::now() + limit;
            loop {
                tokio::time::sleep_until(wake).await;
                let mut w = watched.lock().unwrap_or_else(|p| p.into_inner());
                match w.owed_since {
                    Some(since) if since + limit <= Instant::now() => {
                        let body = w.body.take();
                        drop(w);
                        drop(body);
                        on_cut();
                        return;
                    }
                    Some(since) => wake = since + limit,
                    None => wake = Instant::now() + limit,
                }
            }
        })
        .abort_handle();
        Self { shared, watchdog }
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

impl Body for Unread {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut guard = self.watched();
        let w = &mut *guard;
        let Some(inner) = w.body.as_mut() else {
            return Poll::Ready(Some(Err("the client stopped reading its response".into())));
        };
        if w.rest.is_empty() {
            let polled = Pin::new(inner).poll_frame(cx);
            match polled {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => w.rest = data,
                    Err(trailers) => {
                        w.owed_since = Some(Instant::now());
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                },
                // Waiting on the upstream: nothing is owed.
                Poll::Pending => {
                    w.owed_since = None;
                    return Poll::Pending;
                }
                done => {
                    w.owed_since = None;
                    w.body = None;
                    w.ended = true;
                    self.watchdog.abort();
                    return done;
                }
            }
        }
        let piece = w.rest.len().min(UNREAD_PIECE);
        let piece = w.rest.split_to(piece);
        w.owed_since = Some(Instant::now());
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    /// A cut body is not at its end: told so, hyper would end the stream
    /// as if the response were whole.
    fn is_end_stream(&self) -> bool {
        let w = self.watched();
        w.ended
            || (w.rest.is_empty() && w.body.as_ref().is_some_and(http_body::Body::is_end_stream))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let w = self.watched();
        let mut hint = w
            .body
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_default();
        let rest = w.rest.len() as u64;
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn watched(body: super::super::BoxBody, limit: Duration) -> (Unread, Arc<AtomicBool>) {
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let unread = Unread::new(body, limit, move || flag.store(true, Ordering::SeqCst));
        (unread, cut)
    }

    fn frames(n: usize) -> super::super::BoxBody {
        let frames = (0..n).map(|i| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![i as u8; 10]))));
        boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn a_large_frame_goes_on_in_pieces_and_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let body = boxed(Full::new(Bytes::from(data.clone())));
        let (mut unread, cut) = watched(body, Duration::from_secs(10));
        assert_eq!(unread.size_hint().exact(), Some(100_000));
        let mut got = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = unread.frame().await {
            let piece = frame.unwrap().into_data().unwrap();
            assert!(piece.len() <= UNREAD_PIECE, "{}", piece.len());
            got.extend_from_slice(&piece);
            pieces += 1;
            assert_eq!(
                unread.size_hint().exact(),
                Some((data.len() - got.len()) as u64)
            );
        }
        assert_eq!(got, data);
        assert_eq!(pieces, 7);
        assert!(unread.is_end_stream());
        assert!(!cut.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_body_not_asked_for_more_within_the_limit_is_let_go() {
        let (mut unread, cut) = watched(frames(3), Duration::from_millis(50));
        assert!(unread.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(cut.load(Ordering::SeqCst), "the watchdog did not cut");
        assert!(!unread.is_end_stream(), "a cut body is not a whole one");
        assert!(unread.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_body_waiting_on_its_upstream_is_never_cut() {
        let idle = futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>();
        let (mut unread, cut) = watched(boxed(StreamBody::new(idle)), Duration::from_millis(50));
        let first = tokio::time::timeout(Duration::from_millis(20), unread.frame()).await;
        assert!(first.is_err(), "the idle body answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!cut.load(Ordering::SeqCst), "an upstream's silence was cut");
        let again = tokio::time::timeout(Duration::from_millis(20), unread.frame()).await;
        assert!(again.is_err(), "the idle body answered");
    }
}
