//! Request headers are an allow-list like everything else.
//!
//! - hop-by-hop headers (and any the `Connection` header names) never pass;
//! - framing headers (`Content-Type`, `Content-Length`, `Content-Encoding`,
//!   `Accept*`) are the proxy's own business: kept or recomputed;
//! - every other header passes only through a `header` rule of the route's
//!   rule file (pseudonymised, generalised, kept, replaced) or the file's
//!   `default = "keep"`; `Cookie` cookie by cookie, `X-Forwarded-For`
//!   address by address;
//! - scrim appends the client's address to `X-Forwarded-For` only where a
//!   rule for that header exists, and then in the rule's form.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::engine::unknown::Target;
use crate::engine::{Engine, UnknownFields};

/// Hop-by-hop headers (RFC 9110, 7.6.1, and the old `Keep-Alive` and
/// `Proxy-Connection`). One match on the (lower-case) name: asked of every
/// header of every request and response.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// Headers the proxy manages itself and forwards when present.
const FRAMING: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
];

/// Builds the upstream request's headers from the client's.
pub fn request_headers(
    incoming: &HeaderMap,
    engine: &Engine,
    peer: IpAddr,
    strip_accept_encoding: bool,
) -> HeaderMap {
    request_headers_reporting(incoming, engine, peer, strip_accept_encoding, None)
}

/// [`request_headers`], recording in `unknown` the names of the headers
/// and cookies dropped because no rule named them.
pub fn request_headers_reporting(
    incoming: &HeaderMap,
    engine: &Engine,
    peer: IpAddr,
    strip_accept_encoding: bool,
    mut unknown: Option<&mut UnknownFields>,
) -> HeaderMap {
    let rules = engine.rules();
    let mut unnamed = |name: &str| {
        if let Some(u) = unknown.as_deref_mut() {
            if !rules.default_keep() && rules.header_rule(name).is_none() {
                u.record(Target::Header, name);
            }
        }
    };
    let mut out = HeaderMap::with_capacity(incoming.len());
    let named_by_connection = ConnectionNames::of(incoming);
    for (name, value) in incoming {
        let n = name.as_str();
        if is_hop_by_hop(name)
            || named_by_connection.names(n)
            || n == "host"
            || n == "content-length"
            || n == "content-encoding"
            || n == "x-forwarded-for"
        {
            if n == "x-forwarded-for" {
                unnamed(n);
            }
            continue;
        }
        if FRAMING.contains(name) {
            if !(strip_accept_encoding && name == header::ACCEPT_ENCODING) {
                // Copied, not shared: a shared value would keep the client
                // connection's whole read buffer alive while the request
                // waits on the upstream.
                let copy = HeaderValue::from_bytes(value.as_bytes());
                out.append(name.clone(), copy.unwrap_or_else(|_| value.clone()));
            }
            continue;
        }
        if name == header::COOKIE {
            continue; // all Cookie fields at once, below
        }
        unnamed(n);
        let Ok(text) = value.to_str() else {
            // Non-ASCII header values cannot be rewritten safely: dropped.
            continue;
        };
        if let Some(v) = engine
            .header(n, text)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            out.append(name.clone(), v);
        }
    }
    // HTTP/2 clients send each cookie as its own field; joined with "; " they
    // become the one Cookie header HTTP/1.1 allows (RFC 9113, 8.2.3).
    let cookies: Vec<&str> = incoming
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !cookies.is_empty() && !named_by_connection.names("cookie") {
        if let Some(v) = engine
            .cookies_reporting(&cookies.join("; "), unknown)
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            out.insert(header::COOKIE, v);
        }
    }
    if engine.rules().header_rule("x-forwarded-for").is_some() {
        let mut chain: Vec<String> = incoming
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        chain.push(peer.to_canonical().to_string());
        let rewritten: Vec<String> = chain
            .iter()
            .filter_map(|ip| engine.header("x-forwarded-for", ip))
            .collect();
        if !rewritten.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&rewritten.join(", ")) {
                out.insert("x-forwarded-for", v);
            }
        }
    }
    out
}

/// Hop-by-hop headers (and any the `Connection` header names) removed in
/// place, for responses and pass-through requests; when the body is
/// rewritten, the length and encoding headers go too (the caller sets new
/// ones). A map with nothing to remove, the usual case, is not touched.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, body_rewritten: bool) {
    let framing = |name: &HeaderName| {
        body_rewritten && (name == header::CONTENT_LENGTH || name == header::CONTENT_ENCODING)
    };
    // Without a hop-by-hop header there is no `Connection` header either,
    // so nothing it names: the usual request is looked at once and left.
    let counted = headers
        .keys()
        .filter(|n| is_hop_by_hop(n) || framing(n))
        .count();
    if counted == 0 {
        return;
    }
    let named_by_connection = ConnectionNames::of(headers);
    let doomed = |name: &HeaderName| {
        is_hop_by_hop(name) || named_by_connection.names(name.as_str()) || framing(name)
    };
    // What `Connection` names was read above, before it goes. One at a
    // time, without a list: there are one or two (most often `Connection`
    // itself), and a map holds a handful of headers. No more can go than
    // were counted and named, so once that many have, the map is not
    // searched again (the usual `Connection: keep-alive` names nothing,
    // and goes at the first search).
    let mut left = counted + named_by_connection.0.len();
    while left > 0 {
        let Some(name) = headers.keys().find(|n| doomed(n)).cloned() else {
            break;
        };
        headers.remove(name);
        left -= 1;
    }
}

/// The header names a `Connection` header lists (lower case). Most
/// messages list only `keep-alive` or `close`, which name no header left to
/// remove: then nothing is copied.
struct ConnectionNames(Vec<String>);

impl ConnectionNames {
    fn of(h: &HeaderMap) -> Self {
        let tokens = || {
            h.get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| {
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case("keep-alive")
                        && !t.eq_ignore_ascii_case("close")
                })
        };
        if tokens().next().is_none() {
            return Self(Vec::new());
        }
        Self(tokens().map(str::to_ascii_lowercase).collect())
    }

    fn names(&self, n: &str) -> bool {
        self.0.iter().any(|t| t == n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes()).unwrap();
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut v: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
        // Headers in, whether the body was rewritten, names left.
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case] = &[
            // Nothing to strip.
            (
                &[("content-type", "text/plain"), ("x-a", "1")],
                false,
                &["content-type", "x-a"],
            ),
            // The usual response: `Connection` alone, naming nothing.
            (
                &[("connection", "keep-alive"), ("x-a", "1")],
                false,
                &["x-a"],
            ),
            (&[("connection", "Close")], false, &[]),
            // `Connection` naming a header: both go.
            (
                &[
                    ("connection", "keep-alive, X-Trace"),
                    ("x-trace", "t"),
                    ("x-a", "1"),
                ],
                false,
                &["x-a"],
            ),
            (
                &[
                    ("connection", "close"),
                    ("connection", "x-trace"),
                    ("x-trace", "t"),
                ],
                false,
                &[],
            ),
            // Other hop-by-hop headers, with or without `Connection`.
            (
                &[
                    ("keep-alive", "timeout=5"),
                    ("connection", "keep-alive"),
                    ("x-a", "1"),
                ],
                false,
                &["x-a"],
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("te", "trailers"),
                    ("x-a", "1"),
                ],
                false,
                &["x-a"],
            ),
            // A rewritten body's length and encoding go with them.
            (
                &[
                    ("content-length", "3"),
                    ("content-encoding", "gzip"),
                    ("x-a", "1"),
                ],
                true,
                &["x-a"],
            ),
            (
                &[("content-length", "3"), ("x-a", "1")],
                false,
                &["content-length", "x-a"],
            ),
            (
                &[("content-length", "3"), ("connection", "keep-alive")],
                true,
                &[],
            ),
        ];
        for (pairs, rewritten, left) in cases {
            let mut h = map(pairs);
            strip_hop_by_hop(&mut h, *rewritten);
            assert_eq!(names(&h), *left, "{pairs:?}, rewritten: {rewritten}");
        }
    }
}
