//! The leak guard: a last scan of what is about to leave, after the rules.
//!
//! It looks for email addresses, IP addresses, and the request's own
//! identifiers: a value the rules pseudonymised in one field (an email, a
//! name, an id) and that shows up again, raw, elsewhere in the same event
//! (typically in free text). Pseudonyms and generalised values are not
//! findings: `k<N>_...` tokens, IPs in the token ranges, IPs whose host part
//! was zeroed by generalisation.
//!
//! Per route, `leak_guard = "scrub"` (the default) replaces what it finds by
//! pseudonyms, and `"refuse"` rejects the request with 422 naming the path,
//! never the value. `"off"` disables it.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde_json::Value;

use crate::engine::scrub;
use crate::engine::spec::IpMode;
use crate::pseudo::{token, Pseudonymiser};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeakMode {
    Off,
    #[default]
    Scrub,
    Refuse,
}

/// A leak found in refuse mode: where, never what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub path: String,
}

static FINDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(crate::engine::scrub::address_patterns!()).expect("the leak pattern is valid")
});

/// The identifiers the rules pseudonymised in this event, each with its
/// pseudonym. Kept lower-cased, as the guard compares them, and only those
/// it can look for: lower-cased once here rather than at every scan. All
/// in one string, so that an event's identifiers cost one or two
/// allocations, not two each.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Each identifier, then its pseudonym, back to back.
    text: String,
    /// Per identifier: where it starts, where its pseudonym starts and
    /// where that ends, in `text`.
    at: Vec<[usize; 3]>,
}

impl Seen {
    pub fn push(&mut self, raw: &str, token: &str) {
        if !usable(raw) {
            return;
        }
        if self.text.capacity() == 0 {
            // Room for a few identifiers and their pseudonyms at once: grown
            // push by push, the string was reallocated at every one.
            self.text.reserve(256);
        }
        let start = self.text.len();
        // ASCII and Latin-1 letters are lowered on the stack; anything else
        // takes Unicode's mapping, which has context (a final sigma) and so
        // runs over the whole string, as the texts it is compared with do.
        let mut stack = [0u8; 128];
        let lowered = (raw.len() <= stack.len())
            .then(|| crate::pseudo::normalize::latin1_lower_into(raw, &mut stack))
            .flatten();
        match lowered {
            Some(lower) => self.text.push_str(lower),
            None => self.text.push_str(&raw.to_lowercase()),
        }
        let token_start = self.text.len();
        self.text.push_str(token);
        self.at.push([start, token_start, self.text.len()]);
    }

    fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.at
            .iter()
            .map(|&[start, token, end]| (&self.text[start..token], &self.text[token..end]))
    }
}

/// Characters that could make a raw value match across JSON syntax.
fn usable(raw: &str) -> bool {
    let syntax = |c: char| matches!(c, '"' | '\\' | '{' | '}' | '[' | ']' | ':' | ',');
    if raw.is_ascii() {
        // ASCII's control characters are C0 and DEL, told without the
        // Unicode tables `char::is_control` reads.
        raw.len() >= 4
            && !raw
                .bytes()
                .any(|b| b < 0x20 || b == 0x7f || syntax(char::from(b)))
    } else {
        raw.chars().count() >= 4 && !raw.chars().any(|c| c.is_control() || syntax(c))
    }
}

/// Does lower-casing change a character of `t` beyond ASCII? Only then
/// does a case-insensitive test need Unicode's full mapping; otherwise
/// lower-casing ASCII letters gives the same text.
fn has_non_ascii_case(t: &str) -> bool {
    // Only the characters beyond ASCII are decoded (at their lead bytes),
    // and sixteen bytes without one are passed over at once (no early exit
    // within them, which vectorises).
    let b = t.as_bytes();
    (0..b.len()).step_by(16).any(|at| {
        let chunk = &b[at..b.len().min(at + 16)];
        chunk.iter().fold(false, |lead, &c| lead | (c >= 0xC0))
            && chunk.iter().enumerate().any(|(i, &c)| {
                c >= 0xC0
                    && t[at + i..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.to_lowercase().ne(std::iter::once(c)))
            })
    })
}

/// Whether `hay` holds `needle` (lower case) with ASCII letters in any
/// case, other bytes as they are: what a search of the ASCII-lower-cased
/// `hay` finds, without lower-casing it. The search jumps between the
/// places of the needle's rarest byte in JSON text, then compares there.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    // The first of the rarest bytes. A plain loop over two locals:
    // `min_by_key` over `(index, &byte)` kept its pair on the stack, and
    // the stores and reloads of it cost more than the search that follows.
    let (mut k, mut rank) = (0, u8::MAX);
    for (i, &c) in needle.iter().enumerate() {
        let r = RANK[usize::from(c)];
        if r < rank {
            (k, rank) = (i, r);
        }
    }
    let c = needle[k];
    let at = |h: usize| {
        h.checked_sub(k)
            .and_then(|start| hay.get(start..start + needle.len()))
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
    };
    if c.is_ascii_lowercase() {
        memchr::memchr2_iter(c, c.to_ascii_uppercase(), hay).any(at)
    } else {
        memchr::memchr_iter(c, hay).any(at)
    }
}

/// The longest identifier [`contains_ascii_ci`] looks for.
const SHORT_NEEDLE: usize = 64;

/// How common a byte is in JSON events, case folded: bytes not listed
/// (`@`, `+`, most punctuation, bytes beyond ASCII) are the rarest, then
/// from `j` to the most common, `"`.
static RANK: [u8; 256] = {
    const ORDER: &[u8] = b"jqzxk_bvyw-gfpm9876543210ucdlhrsinoa:,te \"";
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < ORDER.len() {
        let c = ORDER[i];
        t[c as usize] = (i + 1) as u8;
        t[c.to_ascii_uppercase() as usize] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The request's own identifiers in `t`, in any case, replaced by their
/// pseudonyms. A substring test finds them; the automaton that replaces
/// them is built only when one is there. Text whose only case differences
/// could be beyond ASCII (`SØREN` for `Søren`) is tested with Unicode's
/// mapping, and refused rather than let through when the replacement
/// (which matches ASCII letters in any case) cannot reach what was found.
fn own_identifiers<'t>(
    t: &'t str,
    seen: &Seen,
    mode: LeakMode,
    found: &mut u32,
) -> Result<Cow<'t, str>, Finding> {
    if seen.is_empty() {
        return Ok(Cow::Borrowed(t));
    }
    let own = seen.iter();
    // ASCII identifiers are compared by ASCII letters: what Unicode's
    // mapping adds (a Kelvin sign for a `k`) is no way a name or an email
    // is written back into a message.
    let unicode = own.clone().any(|(raw, _)| !raw.is_ascii()) && has_non_ascii_case(t);
    let holds = |text: &str| {
        if unicode {
            let hay = text.to_lowercase();
            own.clone()
                .any(|(raw, _)| memchr::memmem::find(hay.as_bytes(), raw.as_bytes()).is_some())
        } else {
            // Comparing at each place of the rarest byte costs up to the
            // identifier's length per place: past `SHORT_NEEDLE` bytes (an
            // identifier and a text both made of one letter would be
            // quadratic), a search of the lower-cased text, which is linear.
            let mut lower: Option<Vec<u8>> = None;
            own.clone().any(|(raw, _)| {
                if raw.len() <= SHORT_NEEDLE {
                    contains_ascii_ci(text.as_bytes(), raw.as_bytes())
                } else {
                    let hay = lower.get_or_insert_with(|| text.as_bytes().to_ascii_lowercase());
                    memchr::memmem::find(hay, raw.as_bytes()).is_some()
                }
            })
        }
    };
    if !holds(t) {
        return Ok(Cow::Borrowed(t));
    }
    if mode == LeakMode::Refuse {
        return Err(Finding);
    }
    let ac = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(own.clone().map(|(raw, _)| raw))
        .expect("literal patterns build");
    let tokens: Vec<&str> = own.clone().map(|(_, token)| token).collect();
    *found += ac.find_iter(t).count() as u32;
    let replaced = ac.replace_all(t, &tokens);
    if unicode && holds(&replaced) {
        return Err(Finding);
    }
    Ok(Cow::Owned(replaced))
}

/// Stretches of `t` that could hold an address, in order: each holds an
/// `@`, a `:` followed by up to four hex digits and another `:` (how an
/// IPv6 address starts), or a digit, a `.` and up to three digits and
/// another `.` (how an IPv4 address starts), and runs to the nearest ASCII
/// byte on either side that no address the guard looks for can hold. Every
/// match of the full pattern lies in one stretch (and a stretch's ends read
/// as non-word characters, as the bytes cut off did), so scanning them
/// finds what scanning all of `t` finds, while the regex reads a few dozen
/// bytes of a JSON document instead of all of it.
fn stretches(t: &str) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let b = t.as_bytes();
    let inside = |c: u8| INSIDE[usize::from(c)];
    let mut covered = 0;
    memchr::memchr3_iter(b'@', b':', b'.', b).filter_map(move |i| {
        if i < covered {
            return None;
        }
        let anchor = match b[i] {
            b'@' => true,
            b':' => scrub::starts_ip6(b, i),
            // The first dot of an IPv4 address: up to three digits and
            // another dot after it.
            _ => {
                scrub::dot_between_digits(b, i)
                    && b[i + 1..]
                        .iter()
                        .take(4)
                        .position(|c| !c.is_ascii_digit())
                        .is_some_and(|k| b[i + 1 + k] == b'.')
            }
        };
        if !anchor {
            return None;
        }
        let start = b[..i]
            .iter()
            .rposition(|&c| !inside(c))
            .map_or(0, |p| p + 1);
        let end = b[i..]
            .iter()
            .position(|&c| !inside(c))
            .map_or(b.len(), |p| i + p);
        covered = end;
        Some(start..end)
    })
}

/// The bytes a stretch runs over: ASCII letters, digits and `._%+-@:`, and
/// every byte beyond ASCII. One load per byte: the stretches' ends are
/// found byte by byte, and the comparisons this replaces were most of it.
static INSIDE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c >= 0x80
            || c.is_ascii_alphanumeric()
            || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-' | b'@' | b':');
        b += 1;
    }
    t
};

/// A stretch in which the regex could find no finding, told without
/// running it: most stretches of a document the rules have passed are
/// their own output or look like addresses only in part.
/// - Without an `@`, three `.`, a `::` or seven `:` it holds no email and
///   nothing that parses as an IP (an IPv4 address has three dots, an IPv6
///   address a `::`, seven colons, or six and an IPv4 address): a
///   timestamp, a version number, a clock time.
/// - One pseudonym or generalised value, as the rules write them: an email
///   token on a plain domain, or an IP that is no finding (a token, a
///   zeroed host part). The one match the regex finds is the whole stretch.
fn settled(part: &str) -> bool {
    let b = part.as_bytes();
    let count = |c: u8| b.iter().filter(|&&x| x == c).count();
    if !b.contains(&b'@') && count(b'.') < 3 && count(b':') < 7 && !part.contains("::") {
        return true;
    }
    if let Some((local, domain)) = part.split_once('@') {
        return token::is_shaped(local) && plain_domain(domain);
    }
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return part.parse::<std::net::Ipv4Addr>().is_ok() && !finding(part, false);
    }
    b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':')
        && part.parse::<std::net::Ipv6Addr>().is_ok()
        && !finding(part, false)
}

/// Dot-separated labels of ASCII letters, digits and hyphens, the last of
/// two or more letters: a domain the email pattern takes whole.
fn plain_domain(d: &str) -> bool {
    let Some((_, tld)) = d.rsplit_once('.') else {
        return false;
    };
    tld.len() >= 2
        && tld.bytes().all(|c| c.is_ascii_alphabetic())
        && d.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

/// Is this match a real finding (not a pseudonym or a generalised value)?
fn finding(m: &str, email: bool) -> bool {
    if email {
        let local = m.rsplit_once('@').map_or(m, |(l, _)| l);
        return !token::is_shaped(local);
    }
    match m.trim_end_matches(':').parse::<IpAddr>() {
        Err(_) => false,
        Ok(IpAddr::V4(a)) => {
            let o = a.octets();
            // 240.0.0.0/4 holds IP tokens; a zero host part is generalised.
            o[0] < 240 && o[3] != 0
        }
        Ok(IpAddr::V6(a)) => {
            let s = a.segments();
            let token = s[0] == 0x2001 && s[1] == 0x0db8;
            let generalised = s[3..].iter().all(|&x| x == 0);
            !token && !generalised && !a.is_loopback() && !a.is_unspecified()
        }
    }
}

/// Refuse mode found personal data in a text (which, it does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding;

/// Scans one text; in scrub mode returns it with findings replaced.
/// `Err(Finding)` in refuse mode when something was found.
pub fn text<'t>(
    t: &'t str,
    seen: &Seen,
    mode: LeakMode,
    p: &Pseudonymiser,
    found: &mut u32,
) -> Result<Cow<'t, str>, Finding> {
    if mode == LeakMode::Off {
        return Ok(Cow::Borrowed(t));
    }
    // The request's own identifiers first: they may contain an email.
    let cur = own_identifiers(t, seen, mode, found)?;
    let mut out = String::new();
    let mut last = 0;
    for range in stretches(&cur) {
        let part = &cur[range.clone()];
        if settled(part) {
            continue;
        }
        // `find_iter` stays on the regex's DFA; which branch matched follows
        // from the match itself (only an email holds an `@`), so no capture
        // groups need resolving.
        for m in FINDER.find_iter(part) {
            let email = m.as_str().contains('@');
            if !finding(m.as_str(), email) {
                continue;
            }
            if mode == LeakMode::Refuse {
                return Err(Finding);
            }
            let replacement = if email {
                p.email(m.as_str(), &Default::default())
            } else {
                match p.ip(m.as_str().trim_end_matches(':'), IpMode::Token) {
                    Some(ip) => ip.to_string(),
                    None => continue,
                }
            };
            out.push_str(&cur[last..range.start + m.start()]);
            out.push_str(&replacement);
            last = range.start + m.end();
            *found += 1;
        }
    }
    if last == 0 {
        return Ok(cur);
    }
    out.push_str(&cur[last..]);
    Ok(Cow::Owned(out))
}

/// Scans a JSON document that is about to leave: `buf[start..]` (the
/// document is scanned where it was written, and copied only when
/// something in it is replaced). In scrub mode rewrites it in place (and
/// checks it still parses); in refuse mode reports the path of the first
/// finding.
pub fn json(
    buf: &mut Vec<u8>,
    start: usize,
    seen: &Seen,
    mode: LeakMode,
    p: &Pseudonymiser,
    found: &mut u32,
) -> Result<(), Leak> {
    if mode == LeakMode::Off {
        return Ok(());
    }
    let doc = &buf[start..];
    let Ok(s) = std::str::from_utf8(doc) else {
        return Err(Leak { path: "$".into() });
    };
    match text(s, seen, mode, p, found) {
        Ok(Cow::Borrowed(_)) => Ok(()),
        Ok(Cow::Owned(o)) => {
            // A replacement must never break the document it sits in.
            if serde_json::from_str::<serde::de::IgnoredAny>(&o).is_err() {
                return Err(Leak { path: "$".into() });
            }
            buf.truncate(start);
            buf.extend_from_slice(o.as_bytes());
            Ok(())
        }
        Err(Finding) => {
            let path = serde_json::from_slice::<Value>(doc)
                .ok()
                .and_then(|v| locate(&v, seen, p, String::new()))
                .unwrap_or_else(|| "$".into());
            Err(Leak { path })
        }
    }
}

/// The path of the first string (or key) that holds a finding.
fn locate(v: &Value, seen: &Seen, p: &Pseudonymiser, at: String) -> Option<String> {
    let hit = |s: &str| text(s, seen, LeakMode::Refuse, p, &mut 0).is_err();
    match v {
        Value::String(s) if hit(s) => Some(if at.is_empty() { "$".into() } else { at }),
        Value::Object(m) => m.iter().find_map(|(k, c)| {
            let child = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if hit(k) {
                return Some(format!(
                    "{}{{key}}",
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!("{at}.")
                    }
                ));
            }
            locate(c, seen, p, child)
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, c)| locate(c, seen, p, format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::KeyMaterial;
    use crate::testing::random_text;

    /// The characters of `s`, each a piece for [`random_text`].
    fn pieces(s: &str) -> Vec<String> {
        s.chars().map(String::from).collect()
    }

    fn p() -> Pseudonymiser {
        Pseudonymiser::new(&KeyMaterial::new(1, vec![1; 32]).unwrap(), "t", "r")
    }

    #[test]
    fn pseudonyms_and_generalised_values_are_not_findings() {
        let p = p();
        let email = p.email("a@b.dk", &Default::default());
        let doc = format!(
            r#"{{"e":"{email}","ip":"203.0.113.0","v6":"2001:db8:85a3::","tok":"241.2.3.4"}}"#
        );
        let mut bytes = doc.clone().into_bytes();
        let mut n = 0;
        json(&mut bytes, 0, &Seen::default(), LeakMode::Scrub, &p, &mut n).unwrap();
        assert_eq!(n, 0);
        assert_eq!(bytes, doc.into_bytes());
    }

    #[test]
    fn own_identifiers_and_stray_emails_are_scrubbed_or_refused() {
        let p = p();
        let mut seen = Seen::default();
        seen.push("José Núñez", "Participant k1_abc");
        let doc = r#"{"name":"Participant k1_abc","msg":"josé núñez here, mail jose@example.es from 198.51.100.7"}"#;
        let mut bytes = doc.as_bytes().to_vec();
        let mut n = 0;
        json(&mut bytes, 0, &seen, LeakMode::Scrub, &p, &mut n).unwrap();
        let out = String::from_utf8(bytes).unwrap();
        assert!(
            !out.contains("jose@example.es") && !out.contains("198.51.100.7"),
            "{out}"
        );
        assert!(out.contains("Participant k1_abc here"), "{out}");
        assert_eq!(n, 3);
        let mut bytes = doc.as_bytes().to_vec();
        let err = json(&mut bytes, 0, &seen, LeakMode::Refuse, &p, &mut 0).unwrap_err();
        assert_eq!(err.path, "msg");
    }

    /// Matches found stretch by stretch, at their places in the text.
    fn by_stretches(t: &str) -> Vec<(usize, usize)> {
        stretches(t)
            .flat_map(|r| {
                FINDER
                    .find_iter(&t[r.clone()])
                    .map(move |m| (r.start + m.start(), r.start + m.end()))
            })
            .collect()
    }

    #[test]
    fn scanning_stretches_finds_what_scanning_everything_finds() {
        let cases = [
            r#"{"e":"ann@example.org","t":"2024-05-14T09:12:34.567Z","ip":"10.0.0.1"}"#,
            "mail Søren@Ødegård.dk or ann.b+x@ex-ample.co.uk, from [2001:db8::1]:443",
            "::1 :: ::: a:: 1.2.3.4.5 v1.2.3 http://10.1.2.3:8080/x?ip=fe80::1%25eth0",
            "x_1.2.3.4_y 1.2.3.4@x.io @@ a@b ٣.٣.٣.٣ a٣.٣.٣.٣b ²@x.dk é:é: 12:34",
        ];
        for t in cases {
            let whole: Vec<(usize, usize)> =
                FINDER.find_iter(t).map(|m| (m.start(), m.end())).collect();
            assert_eq!(by_stretches(t), whole, "{t}");
        }
        // Random texts over an alphabet of every byte class that matters.
        let alphabet = pieces("aZf09_.:@%+-\" ,/[]{}()\\\n\tøØé٣²");
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let t = random_text(&mut next, &alphabet, 0..40);
            let whole: Vec<(usize, usize)> =
                FINDER.find_iter(&t).map(|m| (m.start(), m.end())).collect();
            assert_eq!(by_stretches(&t), whole, "{t:?}");
        }
    }

    #[test]
    fn settled_stretches_hold_no_finding() {
        let p = p();
        let email = p.email("ann@example.org", &Default::default());
        let kept = p.email(
            "ann@example.org",
            &crate::engine::plan::EmailSpec {
                keep_domain: true,
                ..Default::default()
            },
        );
        let v4 = p.ip("198.51.100.7", IpMode::Token).unwrap().to_string();
        let v6 = p.ip("2001:db8:1::7", IpMode::Token).unwrap().to_string();
        for s in [
            &email,
            &kept,
            &v4,
            &v6,
            "203.0.113.0",
            "2001:db8:85a3::",
            "120.0.0.0",
            "2026-11-29T14:00:00.507+01:00",
            "605.1.15",
        ] {
            assert!(settled(s), "{s}");
        }
        for s in [
            "ann@example.org",
            "198.51.100.7",
            "2a00:1450:4001::7",
            "fe80::1",
            "10.0.0.1",
            "1:2:3:4:5:6:7:8",
            "::ffff:1.2.3.4",
            "k1_4m0fmq5tb1kg8b6d0pc0kv3n4o@x.io@y.io",
        ] {
            assert!(!settled(s), "{s}");
        }
        // Mutations of settled shapes: whatever `settled` still accepts,
        // the scan would have found nothing in.
        let alphabet: Vec<char> = "09afvkx_.:::@-Aé".chars().collect();
        let seeds = [
            email,
            kept,
            v4,
            v6,
            "203.0.113.0".to_owned(),
            "2026-11-29T14:00:00.507+01:00".to_owned(),
            "605.1.15".to_owned(),
            "1:2:3:4:5:6:7".to_owned(),
            "a:b::".to_owned(),
            "10.0.0".to_owned(),
        ];
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut t: Vec<char> = seeds[i % seeds.len()].chars().collect();
            for _ in 0..=next() % 3 {
                let at = (next() % (t.len() as u64 + 1)) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 if at < t.len() => t[at] = c,
                    1 if at < t.len() => {
                        t.remove(at);
                    }
                    _ => t.insert(at, c),
                }
            }
            let t: String = t.into_iter().collect();
            if settled(&t) {
                accepted += 1;
                for m in FINDER.find_iter(&t) {
                    assert!(!finding(m.as_str(), m.as_str().contains('@')), "{t:?}");
                }
            }
        }
        assert!(accepted > 1_000, "only {accepted} mutations were settled");
    }

    #[test]
    fn non_ascii_case_is_found_wherever_it_sits() {
        let reference = |t: &str| {
            t.chars()
                .any(|c| !c.is_ascii() && c.to_lowercase().ne(std::iter::once(c)))
        };
        let alphabet = pieces("aZ ._Øøé’—日Σ𝐀");
        let mut next = crate::testing::xorshift(0x0bad_5eed_1234_5678);
        for _ in 0..5_000 {
            let t = random_text(&mut next, &alphabet, 0..48);
            assert_eq!(has_non_ascii_case(&t), reference(&t), "{t:?}");
        }
    }

    #[test]
    fn ascii_case_insensitive_search_is_a_search_of_the_lowered_text() {
        let alphabet = pieces("aAbBkK@ .\"-1øØ");
        let mut next = crate::testing::xorshift(0x005e_ed0f_ca5e);
        for _ in 0..20_000 {
            let hay = random_text(&mut next, &alphabet, 0..25);
            let needle = random_text(&mut next, &alphabet, 1..5).to_lowercase();
            let want = memchr::memmem::find(hay.to_ascii_lowercase().as_bytes(), needle.as_bytes());
            assert_eq!(
                contains_ascii_ci(hay.as_bytes(), needle.as_bytes()),
                want.is_some(),
                "{hay:?} {needle:?}"
            );
        }
    }

    #[test]
    fn identifiers_are_kept_as_unicode_lowers_them() {
        let raws = [
            "Ann@Example.ORG",
            "Søren Ødegård",
            "ÀÉÎÕÜÝÞ ß ÿ",
            "ΟΔΥΣΣΕΥΣ Σ",
            "Zoë Çelik µ",
            &"Ø".repeat(70),
            &"Anna-Katharina ".repeat(10),
        ];
        let mut seen = Seen::default();
        for (i, raw) in raws.iter().enumerate() {
            seen.push(raw, &format!("k1_{i}"));
        }
        seen.push("a\u{85}bcd", "control");
        seen.push("a:bcd", "syntax");
        seen.push("abc", "short");
        let kept: Vec<_> = seen.iter().collect();
        let want: Vec<_> = raws.iter().map(|r| r.to_lowercase()).collect();
        assert_eq!(kept.len(), raws.len(), "the unusable three are not kept");
        for (i, ((raw, token), want)) in kept.into_iter().zip(&want).enumerate() {
            assert_eq!(raw, want);
            assert_eq!(token, format!("k1_{i}"));
        }
    }

    #[test]
    fn own_identifiers_are_found_in_any_case() {
        let p = p();
        let email = p.email("ann@example.org", &Default::default());
        let mut seen = Seen::default();
        seen.push("Søren Ødegård", "Participant k1_a");
        seen.push("Ann@Example.org", &email);
        let mut n = 0;
        let out = text(
            "hi søren ødegård, ANN@EXAMPLE.ORG",
            &seen,
            LeakMode::Scrub,
            &p,
            &mut n,
        )
        .unwrap();
        assert_eq!(out, format!("hi Participant k1_a, {email}"));
        assert_eq!(n, 2);
        // A difference of case beyond ASCII: found, and since the
        // replacement cannot reach it, refused even in scrub mode.
        for mode in [LeakMode::Scrub, LeakMode::Refuse] {
            let r = text("hi SØREN ØDEGÅRD", &seen, mode, &p, &mut 0);
            assert_eq!(r, Err(Finding), "{mode:?}");
        }
        let r = text("hi Søren", &seen, LeakMode::Refuse, &p, &mut 0);
        assert!(r.is_ok(), "a part of an identifier is not the identifier");
        // An identifier past SHORT_NEEDLE bytes takes the other search.
        let long = "Anna-Katharina ".repeat(6);
        assert!(long.len() > SHORT_NEEDLE);
        let mut seen = Seen::default();
        seen.push(&long, "k1_long");
        let shouted = format!("it was {}!", long.to_uppercase());
        for (t, leaks) in [(shouted.as_str(), true), ("anna-katharina", false)] {
            let r = text(t, &seen, LeakMode::Refuse, &p, &mut 0);
            assert_eq!(r.is_err(), leaks, "{t}");
        }
    }
}
