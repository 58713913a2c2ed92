//! Which route a request takes: host, then path (exact or prefix on a
//! normalised path), then method; first match in file order wins.

use std::borrow::Cow;

use http::Method;

use crate::config::{PathMatch, RouteConfig};

/// Whether an absolute path is normal already (see [`normalise`]), in one
/// pass over its bytes: every request's path is asked.
fn is_plain(path: &str) -> bool {
    let b = path.as_bytes();
    // Each segment as its `/` ends it; the leading `/` ends none.
    let mut start = 1;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            b'%' | b';' | b'\\' => return false,
            b'/' => {
                if matches!(&b[start..i], b"" | b"." | b"..") {
                    return false;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    // A last segment may be empty (a trailing `/`), not a dot segment.
    !matches!(&b[start.min(b.len())..], b"." | b"..")
}

/// Normalises a request path for matching: resolves `.` and `..`, collapses
/// `//`. `None` for a path that climbs above the root or is not absolute,
/// which no route may match (a `..` must never escape a prefix route).
pub fn normalise(path: &str) -> Option<Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    // Most paths are normal already: no empty, dot, escaped or
    // `;`-parameter segment, no backslash. They are returned as they are.
    if is_plain(path) {
        return Some(Cow::Borrowed(path));
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => {
                // What some upstreams would still resolve as a separator or a
                // dot segment: an encoded slash or backslash, a backslash,
                // encoded dots, and `..;x` (a dot segment to servlet
                // containers, which cut `;` parameters before resolving).
                if s.contains('\\') {
                    return None;
                }
                // Only an escape or a `;` can hide a separator or a dot
                // segment; plain segments, the usual ones, skip the copies.
                if s.bytes().any(|b| b == b'%' || b == b';') {
                    let lower = s.to_ascii_lowercase();
                    if lower.contains("%2f") || lower.contains("%5c") {
                        return None;
                    }
                    let bare = lower.split(';').next().unwrap_or("").replace("%2e", ".");
                    if bare == "." || bare == ".." {
                        return None;
                    }
                }
                parts.push(s);
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() || (path.ends_with('/') && !parts.is_empty()) {
        out.push('/');
    }
    Some(Cow::Owned(out))
}

/// Does `route` take a request with this host, normalised path and method?
pub fn matches(route: &RouteConfig, host: Option<&str>, path: &str, method: &Method) -> bool {
    if let Some(want) = &route.host {
        let Some(h) = host else { return false };
        let h = host_only(h);
        if !h.eq_ignore_ascii_case(want) {
            return false;
        }
    }
    let path_ok = match &route.path {
        PathMatch::Exact(p) => path == p,
        PathMatch::Prefix(p) => {
            path.starts_with(p.as_str())
                && (p.ends_with('/') || path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        }
    };
    path_ok && (route.methods.is_empty() || route.methods.contains(method))
}

/// The host of a Host header or authority, without its port.
fn host_only(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    }
}

/// The upstream path: the matched part replaced by `rewrite`, if any.
pub fn rewrite<'p>(route: &'p RouteConfig, path: &'p str) -> Cow<'p, str> {
    let Some(to) = &route.rewrite else {
        return Cow::Borrowed(path);
    };
    Cow::Owned(match &route.path {
        PathMatch::Exact(_) => to.clone(),
        PathMatch::Prefix(p) => {
            let rest = &path[p.len().min(path.len())..];
            let mut out = to.clone();
            if !out.ends_with('/') && !rest.is_empty() && !rest.starts_with('/') {
                out.push('/');
            }
            if out.ends_with('/') && rest.starts_with('/') {
                out.pop();
            }
            out.push_str(rest);
            out
        }
    })
}

/// The leak guard over the path that leaves: no rule names path segments,
/// so an email or an IP address in one (`/users/ann%40example.org/events`)
/// is scrubbed in place, or refused in refuse mode, like any other text the
/// rules did not cover. Segments are read percent-decoded.
pub fn guard_path<'p>(
    path: &'p str,
    engine: &crate::engine::Engine,
    stats: &mut crate::engine::Stats,
) -> Result<Cow<'p, str>, crate::engine::EngineError> {
    // Only a segment that could hold an email or an address is decoded and
    // scanned; most paths have none.
    let suspect = |s: &str| {
        s.contains('@')
            || s.contains('%')
            || (s.bytes().any(|b| b.is_ascii_digit()) && (s.contains('.') || s.contains(':')))
    };
    if !path.split('/').any(suspect) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut changed = false;
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if !suspect(seg) {
            out.push_str(seg);
            continue;
        }
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        let scanned = engine.guard_text(&decoded, stats).map_err(|mut e| {
            e.reason = crate::engine::Reason::Leak {
                path: "the request path".into(),
            };
            e
        })?;
        match scanned {
            Cow::Owned(scrubbed) if scrubbed != decoded => {
                changed = true;
                out.extend(percent_encoding::utf8_percent_encode(&scrubbed, SEGMENT));
            }
            _ => out.push_str(seg),
        }
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(path)
    })
}

/// What a path segment must percent-encode (RFC 3986 `pchar` allows the
/// rest; `@` and `:` stay as they are, as tokens carry them).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise("/a//b/./c/").as_deref(), Some("/a/b/c/"));
        assert_eq!(normalise("/a/../b").as_deref(), Some("/b"));
        assert_eq!(normalise("/").as_deref(), Some("/"));
        assert_eq!(normalise("/../etc"), None);
        assert_eq!(normalise("/a/%2e%2e/b"), None);
        assert_eq!(normalise("a"), None);
        assert_eq!(normalise("/a/x%2f..%2f..%2fb"), None);
        assert_eq!(normalise("/a/x%5C..%5Cb"), None);
        assert_eq!(normalise("/a/x\\..\\b"), None);
        assert_eq!(normalise("/a/..;/b"), None);
        assert_eq!(normalise("/a/.%2E;x=1/b"), None);
        assert_eq!(normalise("/a/b;v=1/c").as_deref(), Some("/a/b;v=1/c"));
        // The paths returned as they are give what the full walk gives.
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/pseudo/event"] {
            assert!(matches!(normalise(p), Some(Cow::Borrowed(_))), "{p}");
            let dotted = format!("{p}/./");
            let walked = normalise(&dotted).unwrap();
            assert!(matches!(walked, Cow::Owned(_)), "{dotted}");
            assert_eq!(walked.trim_end_matches('/'), p.trim_end_matches('/'), "{p}");
        }
    }

    /// The one-pass test of a plain path says what the three tests it
    /// replaced said.
    #[test]
    fn plain_paths_are_told_as_before() {
        let before = |path: &str| {
            !path.contains("//")
                && !path.bytes().any(|b| matches!(b, b'%' | b';' | b'\\'))
                && !path.split('/').any(|seg| seg == "." || seg == "..")
        };
        const PIECES: &[&str] = &["/", ".", "..", "a", "bc", "%2e", ";", "\\", "/."];
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let path = format!("/{}", crate::testing::random_text(&mut next, PIECES, 0..8));
            assert_eq!(is_plain(&path), before(&path), "{path:?}");
        }
    }
}
