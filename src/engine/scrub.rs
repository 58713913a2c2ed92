//! Free text (chat messages, questions, comments): personal values found in
//! the text are replaced in place by pseudonyms; the rest stays untouched.
//!
//! Detected, in this order of precedence at one position:
//! - URLs (`http(s)://...`): rewritten by the URL rules (userinfo removed,
//!   personal parameters tokenised, other parameters kept);
//! - emails: the email pseudonym, so they join with email fields;
//! - IPv6 and IPv4 addresses (validated by the standard parser): IP tokens;
//! - phone numbers: 8 to 15 digits with optional `+`, spaces, dots, dashes
//!   and brackets; ISO dates (`2026-11-29`) are not phone numbers.
//!
//! Names in free text cannot be found by pattern; rules that must remove
//! them drop or replace the field.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::plan::UrlSpec;
use super::spec::{IpMode, Kind};
use crate::pseudo::{normalize, Pseudonymiser};

static DETECTOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<url>(?-u:\b)https?://[^\s<>\x22'`]+)",
        r"|(?P<email>[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,})",
        r"|(?P<ip6>[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*[0-9A-Fa-f:])",
        r"|(?P<ip4>(?-u:\b)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?-u:\b))",
        r"|(?P<phone>(?:\+|(?-u:\b))\(?\d[\d \t().\-]{6,}\d(?-u:\b))",
    ))
    .expect("the detector pattern is valid")
});

static ISO_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}$|^\d{1,2}[./-]\d{1,2}[./-]\d{2,4}$")
        .expect("the date pattern is valid")
});

/// What scrubbing one text found and replaced.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub replaced: u32,
}

/// Scrubs `text`. Borrowed back when nothing was found.
pub fn scrub<'a>(
    p: &Pseudonymiser,
    url: &UrlSpec,
    text: &'a str,
    found: &mut Found,
) -> Cow<'a, str> {
    // Cheap exits before the regex: no `@`, `:`, `.` and fewer than 8 digits
    // means nothing above can match.
    let bytes = text.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits < 8 && !bytes.iter().any(|&b| b == b'@' || b == b':' || b == b'.') {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut last = 0;
    for caps in DETECTOR.captures_iter(text) {
        let m = caps.get(0).expect("group 0 always matches");
        let mut s = m.as_str();
        if caps.name("ip6").is_some() {
            // An address may end in `::`, and then run into a following
            // `:` ("2001:db8::: x"): the longest prefix that parses is the IP.
            s = ip6_prefix(s).unwrap_or(s);
        }
        let end = m.start() + s.len();
        let replacement = if caps.name("url").is_some() {
            let (core, tail) = split_trailing_punct(s);
            p.url(core, url).map(|u| format!("{u}{tail}"))
        } else if caps.name("email").is_some() {
            Some(p.email(s, &Default::default()))
        } else if caps.name("ip6").is_some() || caps.name("ip4").is_some() {
            s.parse::<IpAddr>()
                .ok()
                .and_then(|_| p.ip(s, IpMode::Token))
                .map(|ip| ip.to_string())
        } else {
            phone(s).map(|n| p.token(Kind::Phone, &n))
        };
        if let Some(r) = replacement {
            if r != s {
                out.push_str(&text[last..m.start()]);
                out.push_str(&r);
                last = end;
                found.replaced += 1;
            }
        }
    }
    if last == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

/// The kind of the first personal value found in `text` (`"url"`,
/// `"email"`, `"ip"`, `"phone"`), by the same detection as [`scrub`], without
/// replacing anything. For naming object keys that are themselves personal.
pub(crate) fn personal_kind(text: &str) -> Option<&'static str> {
    let bytes = text.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits < 8 && !bytes.iter().any(|&b| b == b'@' || b == b':' || b == b'.') {
        return None;
    }
    for caps in DETECTOR.captures_iter(text) {
        let s = caps.get(0).expect("group 0 always matches").as_str();
        if caps.name("url").is_some() {
            return Some("url");
        } else if caps.name("email").is_some() {
            return Some("email");
        } else if caps.name("ip6").is_some() {
            if ip6_prefix(s).is_some() {
                return Some("ip");
            }
        } else if caps.name("ip4").is_some() {
            if s.parse::<IpAddr>().is_ok() {
                return Some("ip");
            }
        } else if phone(s).is_some() {
            return Some("phone");
        }
    }
    None
}

fn ip6_prefix(mut s: &str) -> Option<&str> {
    loop {
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(s);
        }
        s = s.strip_suffix(':')?;
    }
}

fn phone(s: &str) -> Option<String> {
    if ISO_DATE.is_match(s.trim()) {
        return None;
    }
    let n = normalize::phone(s);
    let digits = n.trim_start_matches('+').len();
    (8..=15).contains(&digits).then_some(n)
}

/// A URL at the end of a sentence keeps its full stop or bracket outside.
fn split_trailing_punct(s: &str) -> (&str, &str) {
    let core = s.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
    (core, &s[core.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyMaterial;

    fn p() -> Pseudonymiser {
        Pseudonymiser::new(&KeyMaterial::new(1, vec![1; 32]).unwrap(), "t", "r")
    }

    fn run(text: &str) -> (String, u32) {
        let mut f = Found::default();
        let spec = UrlSpec {
            keep_unnamed_params: true,
            ..Default::default()
        };
        let out = scrub(&p(), &spec, text, &mut f).into_owned();
        (out, f.replaced)
    }

    #[test]
    fn replaces_in_place() {
        let (out, n) = run("Mail me at Søren.Ødegård@Example.dk or call +45 12 34 56 78!");
        assert_eq!(n, 2);
        assert!(out.starts_with("Mail me at k1_"));
        assert!(out.contains("@pseudonym.invalid or call k1_"));
        assert!(out.ends_with('!'));
        assert!(!out.contains("Ødegård") && !out.contains("12 34"));
    }

    #[test]
    fn ips_and_urls() {
        let (out, n) =
            run("from 192.0.2.44 and 2001:db8::1, see https://x.io/p?email=a@b.dk&ref=chat.");
        assert_eq!(n, 3, "{out}");
        assert!(!out.contains("192.0.2.44") && !out.contains("2001:db8::1,"));
        assert!(out.contains("ref=chat"));
        assert!(!out.contains("a@b.dk") && !out.contains("a%40b.dk"));
        assert!(out.ends_with('.'));
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for t in [
            "See you at 10:30 on 2026-11-29, room 4.",
            "Version 1.2.3 is out",
            "No personal data here",
        ] {
            assert_eq!(run(t), (t.to_owned(), 0), "{t}");
        }
    }
}
