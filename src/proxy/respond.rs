//! The one place errors become HTTP responses. Every error body is
//! `{"error": "<status text>", "reason": "<short reason>"}`; no reason ever
//! quotes the request (it carries personal data), only offsets and limits.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::BoxBody;
use crate::engine::EngineError;

/// Why a request was not forwarded, by blame: the client's, the upstream's
/// or ours.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("{0}")]
    Malformed(EngineError),
    #[error("unsupported content type; scrim reads JSON, NDJSON and form bodies")]
    UnsupportedContentType,
    #[error("unsupported content encoding; scrim reads gzip, deflate, br and zstd")]
    UnsupportedEncoding,
    #[error("body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("decoded body larger than {limit} bytes")]
    DecodedTooLarge { limit: u64 },
    #[error("personal data remained after the rules at `{path}`; nothing was forwarded")]
    Leak { path: String },
    #[error("the compressed body is corrupt")]
    BadEncoding,
    #[error("the client did not send the body in time")]
    ClientTimeout,
    #[error("the client closed the connection")]
    ClientGone,
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream sent a response scrim cannot rewrite")]
    UpstreamBadResponse,
    #[error("internal error")]
    Internal,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) | ProxyError::Malformed(_) | ProxyError::BadEncoding => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::UnsupportedContentType | ProxyError::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ProxyError::BodyTooLarge { .. } | ProxyError::DecodedTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Leak { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            // Nobody reads this one; 400 keeps the logs honest.
            ProxyError::ClientGone => StatusCode::BAD_REQUEST,
            ProxyError::UpstreamUnreachable | ProxyError::UpstreamBadResponse => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the request carried events that were not forwarded because
    /// of this error, and why (for metrics). Errors of routing or of the
    /// upstream are not drops: the events never reached the rules.
    pub fn dropped(&self) -> Option<crate::telemetry::metrics::Dropped> {
        use crate::telemetry::metrics::Dropped;
        match self {
            ProxyError::Leak { .. } => Some(Dropped::LeakGuard),
            ProxyError::Malformed(_)
            | ProxyError::BadEncoding
            | ProxyError::UnsupportedContentType
            | ProxyError::UnsupportedEncoding
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::DecodedTooLarge { .. }
            | ProxyError::Internal => Some(Dropped::FailClosed),
            _ => None,
        }
    }

    /// A stable short code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::Malformed(e) => e.reason.code(),
            ProxyError::UnsupportedContentType => "unsupported_content_type",
            ProxyError::UnsupportedEncoding => "unsupported_encoding",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::DecodedTooLarge { .. } => "decoded_too_large",
            ProxyError::BadEncoding => "bad_encoding",
            ProxyError::Leak { .. } => "leak_guard",
            ProxyError::ClientTimeout => "client_timeout",
            ProxyError::ClientGone => "client_gone",
            ProxyError::UpstreamUnreachable => "upstream_unreachable",
            ProxyError::UpstreamTimeout => "upstream_timeout",
            ProxyError::UpstreamBadResponse => "upstream_bad_response",
            ProxyError::Internal => "internal",
        }
    }

    pub fn into_response(self) -> Response<BoxBody> {
        error_response(self.status(), &self.to_string())
    }
}

/// A JSON error response; `reason` must be free of request data.
pub fn error_response(status: StatusCode, reason: &str) -> Response<BoxBody> {
    let body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("error"),
        "reason": reason,
    });
    json_response(status, &body)
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<BoxBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("a JSON value serialises"));
    let mut res = Response::new(
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}
