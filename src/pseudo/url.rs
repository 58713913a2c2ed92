//! URLs keep their shape: scheme, host and path stay (a path segment holding
//! an email becomes an email token); userinfo goes; query parameters are
//! kept, tokenised or dropped by name; the fragment goes unless a rule keeps
//! it.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

use super::Pseudonymiser;
use crate::engine::plan::UrlSpec;

/// Query parameters that carry personal data in the wild, tokenised when a
/// rule names none of its own.
pub const PERSONAL_PARAMS: &[&str] = &[
    "email",
    "e-mail",
    "mail",
    "name",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "fname",
    "lname",
    "full_name",
    "fullname",
    "user",
    "username",
    "user_id",
    "userid",
    "uid",
    "phone",
    "tel",
    "mobile",
    "ip",
];

/// Base used to parse relative URLs (`/page?email=...`); stripped again.
const RELATIVE_BASE: &str = "http://relative.invalid";

/// Values analytics SDKs put where a URL would be (PostHog's and Mixpanel's
/// `$referrer` when there was none): passed as they are, not read as a path.
const SENTINELS: &[&str] = &["$direct"];

impl Pseudonymiser {
    /// Rewrites a URL. `None` if it does not parse.
    pub fn url(&self, raw: &str, spec: &UrlSpec) -> Option<String> {
        let mut out = String::new();
        self.url_into(raw, spec, &mut out).then_some(out)
    }

    /// [`url`](Self::url), appending to `out`; `false`, with `out` as it
    /// was, if the URL does not parse.
    pub(crate) fn url_into(&self, raw: &str, spec: &UrlSpec, out: &mut String) -> bool {
        let trimmed = raw.trim();
        if SENTINELS.contains(&trimmed) {
            out.push_str(trimmed);
            return true;
        }
        if self.plain_url(trimmed, spec, out) {
            return true;
        }
        match self.parsed_url(trimmed, spec) {
            Some(u) => {
                out.push_str(&u);
                true
            }
            None => false,
        }
    }

    /// [`url`](Self::url) through the URL parser.
    fn parsed_url(&self, trimmed: &str, spec: &UrlSpec) -> Option<String> {
        let (mut url, relative) = match Url::parse(trimmed) {
            Ok(u) => (u, false),
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                (Url::parse(RELATIVE_BASE).ok()?.join(trimmed).ok()?, true)
            }
            Err(_) => return None,
        };
        // Userinfo is credentials or an account name: never forwarded.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        // The path stays, but an email in it (`/users/jose@example.es`) is
        // as personal as one in a parameter: it becomes the email token.
        if let Some(path) = self.path_without_emails(url.path()) {
            url.set_path(&path);
        }
        if let Some(query) = url.query() {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .filter_map(|(k, v)| self.param(spec, k, v))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if pairs.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        if !spec.keep_fragment {
            url.set_fragment(None);
        }
        if relative {
            let s = url.as_str();
            // A scheme-relative input (`//host/path`, or `\\host` which the
            // URL parser reads the same way) brings its own host: only the
            // scheme came from the base, so only the scheme is removed.
            match s.strip_prefix(RELATIVE_BASE) {
                Some(path) if url.host_str() == Some("relative.invalid") => Some(path.to_owned()),
                _ => Some(s.strip_prefix("http:").unwrap_or(s).to_owned()),
            }
        } else {
            Some(url.into())
        }
    }

    /// What a query parameter becomes: kept, tokenised, or dropped (`None`).
    fn param<'q>(
        &self,
        spec: &UrlSpec,
        k: Cow<'q, str>,
        v: Cow<'q, str>,
    ) -> Option<(Cow<'q, str>, Cow<'q, str>)> {
        match fate(spec, &k, &v) {
            Fate::Token => {
                let token = self.param_token(&v);
                Some((k, Cow::Owned(token)))
            }
            Fate::Keep => Some((k, v)),
            Fate::Drop => None,
        }
    }

    /// The common case without the URL parser: an `http(s)` URL in printable
    /// ASCII with a plain lower-case host name, no userinfo, no port, and a
    /// path that the parser would leave as it is and that holds no email.
    /// For such a URL the parser's serialisation is the input itself, so the
    /// query and fragment are cut out of the text and rewritten exactly as
    /// the general path does, appended to `out`. `false`, with nothing
    /// written: not such a URL, take the general path.
    fn plain_url(&self, s: &str, spec: &UrlSpec, out: &mut String) -> bool {
        let Some(rest) = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
        else {
            return false;
        };
        // The parser drops tabs and newlines, trims controls and spaces,
        // reads `\` as `/` and percent-encodes non-ASCII: none of that here.
        // (No early exit: the fold vectorises.)
        let odd = s
            .bytes()
            .fold(false, |odd, b| odd | !b.is_ascii_graphic() | (b == b'\\'));
        if odd {
            return false;
        }
        let host_end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (host, after) = rest.split_at(host_end);
        if !plain_host(host) {
            return false;
        }
        // One scan for the `?` and `#` (a `?` after the `#` is fragment).
        let (path, query, fragment) = match memchr::memchr2(b'?', b'#', after.as_bytes()) {
            None => (after, None, None),
            Some(i) if after.as_bytes()[i] == b'#' => (&after[..i], None, Some(&after[i + 1..])),
            Some(i) => {
                let q = &after[i + 1..];
                match memchr::memchr(b'#', q.as_bytes()) {
                    Some(j) => (&after[..i], Some(&q[..j]), Some(&q[j + 1..])),
                    None => (&after[..i], Some(q), None),
                }
            }
        };
        if !plain_path(path) {
            return false;
        }
        if spec.keep_fragment && fragment.is_some_and(|f| f.contains(['"', '<', '>', '`'])) {
            return false;
        }
        out.reserve(s.len() + 64);
        out.push_str(&s[..s.len() - rest.len()]);
        out.push_str(host);
        out.push_str(if path.is_empty() { "/" } else { path });
        if let Some(query) = query {
            // `form_urlencoded::parse` and a `Serializer`, as the general
            // path has them, except that a pair with nothing to decode or
            // encode is neither decoded nor encoded.
            let mark = out.len();
            out.push('?');
            let mut first = true;
            // Room for a percent-encoded value (an email parameter's `%40`)
            // to be decoded without allocating; one for the whole query.
            let mut room = [0u8; 128];
            for seg in query.split('&').filter(|seg| !seg.is_empty()) {
                let (k, v) = match memchr::memchr(b'=', seg.as_bytes()) {
                    Some(i) => (&seg[..i], &seg[i + 1..]),
                    None => (seg, ""),
                };
                let plain = form_plain(k) && form_plain(v);
                let (k, v) = if plain {
                    (Cow::Borrowed(k), Cow::Borrowed(v))
                } else {
                    (form_decode(k), form_decode_in(v, &mut room))
                };
                let fate = fate(spec, &k, &v);
                if fate == Fate::Drop {
                    continue;
                }
                if !first {
                    out.push('&');
                }
                first = false;
                // Plain input passed through needs no encoding.
                let put = |out: &mut String, t: &Cow<'_, str>| match t {
                    Cow::Borrowed(t) if plain => out.push_str(t),
                    t => out.extend(form_urlencoded::byte_serialize(t.as_bytes())),
                };
                put(out, &k);
                out.push('=');
                if fate == Fate::Keep {
                    put(out, &v);
                } else {
                    // The token is written in place, then encoded as
                    // `byte_serialize` would: usually only its `@`.
                    let at = out.len();
                    self.param_token_into(&v, out);
                    encode_tail(out, at);
                }
            }
            if first {
                out.truncate(mark);
            }
        }
        if let (true, Some(f)) = (spec.keep_fragment, fragment) {
            out.push('#');
            out.push_str(f);
        }
        true
    }

    /// The path with every segment that holds an email replaced by the
    /// segment's email token; `None` when no segment holds one.
    fn path_without_emails(&self, path: &str) -> Option<String> {
        if !path.contains('@') && !path.contains("%40") {
            return None;
        }
        let mut changed = false;
        let segments: Vec<Cow<'_, str>> = path
            .split('/')
            .map(|seg| {
                let decoded = percent_decode_str(seg).decode_utf8_lossy();
                if contains_email(&decoded) {
                    changed = true;
                    Cow::Owned(self.email(&decoded, &Default::default()))
                } else {
                    Cow::Borrowed(seg)
                }
            })
            .collect();
        changed.then(|| segments.join("/"))
    }

    /// A parameter value that looks like an email keeps the email shape (and
    /// the email token, so it joins with email fields); anything else
    /// becomes an id token.
    fn param_token(&self, v: &str) -> String {
        let mut out = String::with_capacity(64);
        self.param_token_into(v, &mut out);
        out
    }

    /// [`param_token`](Self::param_token), appending to `out`.
    fn param_token_into(&self, v: &str, out: &mut String) {
        if memchr::memchr(b'@', v.as_bytes()).is_some() {
            self.email_into(v, &Default::default(), out);
        } else {
            self.push_token(out, crate::engine::spec::Kind::Id, super::normalize::id(v));
        }
    }
}

/// What becomes of one query parameter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Token,
    Keep,
    Drop,
}

fn fate(spec: &UrlSpec, k: &str, v: &str) -> Fate {
    let personal = if spec.pseudonymise_params.is_empty() {
        PERSONAL_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k))
    } else {
        spec.pseudonymise_params
            .iter()
            .any(|p| p.eq_ignore_ascii_case(k))
    };
    if personal {
        Fate::Token
    } else if spec.keep_params.iter().any(|p| p == k) {
        Fate::Keep
    } else if spec.keep_unnamed_params {
        // Free text keeps parameters it does not know, but not an email
        // that one of them carries.
        if contains_email(v) {
            Fate::Token
        } else {
            Fate::Keep
        }
    } else {
        Fate::Drop
    }
}

/// Form-encodes `out[at..]` in place, as `form_urlencoded::byte_serialize`
/// does. A token's only such byte is usually the `@` of an email token,
/// which is spliced in without re-encoding the rest.
fn encode_tail(out: &mut String, at: usize) {
    let tail = &out.as_bytes()[at..];
    let mut odd = tail
        .iter()
        .enumerate()
        .filter(|(_, &b)| !FORM_PLAIN[usize::from(b)]);
    match (odd.next(), odd.next()) {
        (None, _) => {}
        (Some((i, b'@')), None) => out.replace_range(at + i..at + i + 1, "%40"),
        _ => {
            let raw = out.split_off(at);
            out.extend(form_urlencoded::byte_serialize(raw.as_bytes()));
        }
    }
}

/// One name or value of a query pair decoded as `form_urlencoded::parse`
/// decodes it: `+` is a space, then percent-decoding, the result read as
/// UTF-8 with invalid sequences replaced. Borrowed when there is nothing to
/// decode.
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('+') {
        return percent_decode_str(s).decode_utf8_lossy();
    }
    let spaced = s.replace('+', " ");
    let decoded = match percent_decode_str(&spaced).decode_utf8_lossy() {
        Cow::Owned(d) => Some(d),
        Cow::Borrowed(_) => None,
    };
    Cow::Owned(decoded.unwrap_or(spaced))
}

/// [`form_decode`], decoded into `room` when the value has no `+`, fits
/// and decodes to valid UTF-8, as an email parameter does: its `%40` alone
/// made `form_decode` allocate and read the decoded bytes twice. Otherwise
/// as [`form_decode`].
fn form_decode_in<'s>(s: &'s str, room: &'s mut [u8]) -> Cow<'s, str> {
    if s.len() <= room.len() && !s.contains('+') {
        let mut n = 0;
        for b in percent_encoding::percent_decode_str(s) {
            room[n] = b;
            n += 1;
        }
        if let Ok(text) = std::str::from_utf8(&room[..n]) {
            return Cow::Borrowed(text);
        }
    }
    form_decode(s)
}

/// The bytes `form_urlencoded::byte_serialize` leaves as they are.
static FORM_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_');
        b += 1;
    }
    t
};

/// Text that form-urlencoding leaves as it is, both ways: only the bytes
/// `form_urlencoded::byte_serialize` does not escape (no `+`, no `%`).
fn form_plain(s: &str) -> bool {
    s.bytes().all(|b| FORM_PLAIN[usize::from(b)])
}

/// A host the URL parser keeps as it is: dot-separated non-empty labels of
/// lower-case ASCII letters, digits and hyphens, none of them punycode, the
/// last starting with a letter (so that the host is not read as an IPv4
/// address).
fn plain_host(host: &str) -> bool {
    let b = host.as_bytes();
    let mut label = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'.' if i > label => label = i + 1,
            b'a'..=b'z' | b'0'..=b'9' => {}
            // `xn--` starts a punycode label.
            b'-' if !(i == label + 2 && b[label..i] == *b"xn" && b.get(i + 1) == Some(&b'-')) => {}
            _ => return false,
        }
    }
    b.get(label).is_some_and(u8::is_ascii_lowercase)
}

/// A path the URL parser keeps as it is and that cannot hold an email:
/// empty or absolute; unreserved characters, sub-delimiters, `:` and `/`;
/// `%` only before two hex digits and never encoding `@` or `.`; no `.` or
/// `..` segment.
fn plain_path(path: &str) -> bool {
    static PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'/'
                );
            b += 1;
        }
        t
    };
    let b = path.as_bytes();
    if !(b.is_empty() || b[0] == b'/') {
        return false;
    }
    let mut segment = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            let ok = match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) => {
                    h.is_ascii_hexdigit()
                        && l.is_ascii_hexdigit()
                        && !matches!((h, l), (b'4', b'0') | (b'2', b'e' | b'E'))
                }
                _ => false,
            };
            if !ok {
                return false;
            }
        } else if !PLAIN[usize::from(c)] {
            return false;
        } else if c == b'/' {
            if matches!(&b[segment..i], b"." | b"..") {
                return false;
            }
            segment = i + 1;
        }
    }
    !matches!(&b[segment..], b"." | b"..")
}

/// Does `s` contain `local@domain.tld` anywhere: a non-empty local part and
/// a dotted domain name around one of its `@`?
fn contains_email(s: &str) -> bool {
    let local_char = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    s.match_indices('@').any(|(at, _)| {
        let local_ok = s[..at].chars().next_back().is_some_and(local_char);
        let domain: String = s[at + 1..]
            .chars()
            .take_while(|&c| domain_char(c))
            .collect();
        let labels: Vec<&str> = domain.trim_end_matches(['.', '-']).split('.').collect();
        local_ok && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyMaterial;

    #[test]
    fn tails_are_encoded_as_byte_serialize_encodes() {
        for s in [
            "",
            "k1_4m0fmq5tb1kg8b6d0pc0kv3n4o",
            "k1_4m0fmq5tb1kg8b6d0pc0kv3n4o@pseudonym.invalid",
            "k1_x@søren.dk",
            "a@b@c",
            "a b+c",
            "@",
            "x@",
        ] {
            let mut out = String::from("p=q&k=");
            out.push_str(s);
            encode_tail(&mut out, 6);
            let want: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
            assert_eq!(out, format!("p=q&k={want}"), "{s:?}");
        }
    }

    #[test]
    fn form_decoding_is_form_urlencoded() {
        for s in [
            "",
            "a",
            "+",
            "a+b",
            "%",
            "%2",
            "%20",
            "%zz",
            "%2x",
            "%%41",
            "%41%",
            "%C3%AB",
            "%FF",
            "%c3",
            "%E6%97%A5",
            "a%40b.dk",
            "%2B+%2b",
            "%ed%a0%80",
        ] {
            let pair = format!("k={s}");
            let (_, theirs) = form_urlencoded::parse(pair.as_bytes()).next().unwrap();
            assert_eq!(form_decode(s), theirs, "{s:?}");
            let mut room = [0u8; 128];
            assert_eq!(form_decode_in(s, &mut room), theirs, "{s:?}");
            // Too long for the room: the general path.
            let mut small = [0u8; 2];
            assert_eq!(form_decode_in(s, &mut small), theirs, "{s:?}");
        }
    }

    /// Wherever the fast path answers, it answers what the URL parser does.
    #[test]
    fn plain_urls_match_the_parser() {
        const SCHEMES: &[&str] = &["https://", "http://", "HTTP://", "ftp://", "https:/"];
        const HOSTS: &[&str] = &[
            "x.io",
            "webinars.example.com",
            "a-b.c-d.dk",
            "-a.dk",
            "a-.dk",
            "localhost",
            "1.2.3.4",
            "1.2.3.a",
            "a.123",
            "a1.b2-c",
            "a.0x10",
            "Example.com",
            "xn--bcher-kva.de",
            "a..b",
            "a.b.",
            "",
            "u@x.io",
            "x.io:443",
            "x.io:80",
            "x.io:8080",
            "_x.io",
            "é.dk",
        ];
        const PATH: &[&str] = &[
            // Pieces the fast path takes first, then the ones it leaves.
            "/", "w", "live", ".", "%41", "~", "!", "$", "&", "(", ")", "*", "+", ",", ";", "=",
            ":", "-", "_", "/.", "/..", "%2e", "%2E", "%40", "%zz", "%4", "@", "a@b.dk", "'", "|",
            "^", "`", "{", "}", "[", "]", "\\", "\"", "<", ">", " ", "\t", "é",
        ];
        const QUERY: &[&str] = &[
            "utm_source=newsletter",
            "email=anna%40example.com",
            "Email=Anna+Schmidt%40Example.com",
            "email=a@b.dk",
            "uid=42",
            "ref=a%40b.dk",
            "x=1",
            "x",
            "=",
            "&",
            "&&",
            "+",
            "%20",
            "%zz",
            "%",
            "'",
            "\"",
            "<",
            ">",
            "`",
            "{",
            "|",
            "^",
            "?",
            "/",
            "é",
            " ",
            "name=Zo%C3%AB",
            "%FF",
            "email=%E6%97%A5%40b.jp",
            "email=%ZZ%40b.dk",
            "email=%C3%40b.dk",
        ];
        const FRAGMENT: &[&str] = &[
            "", "#", "#top", "#a b", "#\"x\"", "#`", "#<", "#%20", "#?x=1",
        ];
        let p = Pseudonymiser::new(&KeyMaterial::new(1, vec![3; 32]).unwrap(), "t", "r");
        let specs = [
            UrlSpec::default(),
            UrlSpec {
                keep_params: vec!["utm_source".into(), "x".into(), "".into()],
                keep_fragment: true,
                ..Default::default()
            },
            UrlSpec {
                keep_unnamed_params: true,
                pseudonymise_params: vec!["ref".into()],
                ..Default::default()
            },
        ];
        let mut xorshift = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: usize| (xorshift() % n as u64) as usize;
        let mut fast = 0;
        for _ in 0..30_000 {
            let mut s = String::new();
            s.push_str(SCHEMES[next(4).min(next(SCHEMES.len()))]);
            s.push_str(HOSTS[next(HOSTS.len()).min(next(HOSTS.len()))]);
            for _ in 0..next(5) {
                s.push('/');
                for _ in 0..next(3) {
                    s.push_str(PATH[next(PATH.len()).min(next(PATH.len()))]);
                }
            }
            if next(4) > 0 {
                s.push('?');
                for i in 0..next(5) {
                    if i > 0 {
                        s.push('&');
                    }
                    for _ in 0..1 + next(2) {
                        s.push_str(QUERY[next(QUERY.len())]);
                    }
                }
            }
            s.push_str(FRAGMENT[next(FRAGMENT.len())]);
            for spec in &specs {
                let mut ours = String::from("before ");
                if p.plain_url(&s, spec, &mut ours) {
                    fast += 1;
                    assert_eq!(
                        ours.strip_prefix("before ").map(str::to_owned),
                        p.parsed_url(&s, spec),
                        "{s:?}"
                    );
                } else {
                    assert_eq!(ours, "before ", "{s:?}");
                }
            }
        }
        assert!(fast > 10_000, "{fast}");
    }
}
