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

/// The email, IPv6 and IPv4 alternatives, shared with the leak guard
/// (`privacy::guard`), which looks for the same shapes.
macro_rules! address_patterns {
    () => {
        concat!(
            r"(?P<email>[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,})",
            r"|(?P<ip6>[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*[0-9A-Fa-f:])",
            r"|(?P<ip4>(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b))",
        )
    };
}
pub(crate) use address_patterns;

static DETECTOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<url>(?-u:\b)https?://[^\s<>\x22'`]+)|",
        address_patterns!(),
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
    let mut out = String::new();
    if scrub_into(p, url, text, found, &mut out) {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// [`scrub`], appending the scrubbed text to `out` (replacements are
/// written there directly, not built apart and copied). `false`, with
/// `out` as it was, when nothing was replaced.
pub(crate) fn scrub_into(
    p: &Pseudonymiser,
    url: &UrlSpec,
    text: &str,
    found: &mut Found,
    out: &mut String,
) -> bool {
    // A long text is cut into windows that can hold a match, which is the
    // pre-check done more precisely: none, and the regex never runs.
    (text.len() > WINDOWED || may_hold_personal(text)) && replace_found(p, url, text, found, out)
}

/// [`scrub_into`] without the pre-check.
fn replace_found(
    p: &Pseudonymiser,
    url: &UrlSpec,
    text: &str,
    found: &mut Found,
    out: &mut String,
) -> bool {
    let mut last = 0;
    for (start, mut s) in detections(text) {
        let detected = Detected::of(s);
        if detected == Detected::Ip6 {
            // An address may end in `::`, and then run into a following
            // `:` ("2001:db8::: x"): the longest prefix that parses is the IP.
            s = ip6_prefix(s).unwrap_or(s);
        }
        let end = start + s.len();
        let mark = out.len();
        if last == 0 {
            // Tokens are about as long as what they replace.
            out.reserve(text.len() + 64);
        }
        out.push_str(&text[last..start]);
        let at = out.len();
        let replaced = match detected {
            Detected::Url => {
                let (core, tail) = split_trailing_punct(s);
                let ok = p.url_into(core, url, out);
                out.push_str(tail);
                ok
            }
            Detected::Email => {
                p.email_into(s, &Default::default(), out);
                true
            }
            // `ip` parses the match itself (`None` if it is no address).
            Detected::Ip6 | Detected::Ip4 => match p.ip(s, IpMode::Token) {
                Some(ip) => {
                    crate::pseudo::push_ip(out, ip);
                    true
                }
                None => false,
            },
            Detected::Phone => match phone(s) {
                Some(n) => {
                    p.push_token(out, Kind::Phone, &n);
                    true
                }
                None => false,
            },
        };
        if replaced && out[at..] != *s {
            last = end;
            found.replaced += 1;
        } else {
            out.truncate(mark);
        }
    }
    if last == 0 {
        return false;
    }
    out.push_str(&text[last..]);
    true
}

/// Past this length a text is searched window by window: finding the
/// windows costs about what the regex does on a short text, and each
/// search has a fixed cost, so short texts are searched whole.
const WINDOWED: usize = 256;

/// The detector's matches in `text`, with their offsets: exactly what
/// `DETECTOR.find_iter(text)` finds, but in a long text the regex reads
/// only the [`windows`] that can hold a match. `find_iter` runs the lazy
/// DFA only; a capturing search would run a backtracker over every match
/// as well. The matched text alone tells which alternative matched (see
/// `Detected::of`).
fn detections(text: &str) -> impl Iterator<Item = (usize, &str)> + '_ {
    let (whole, windows) = if text.len() > WINDOWED {
        (None, windows(text))
    } else {
        (Some(0..text.len()), Vec::new())
    };
    matches_in(text, whole.into_iter().chain(windows))
}

/// The detector's matches in each of `windows` of `text`, with offsets.
fn matches_in<'t>(
    text: &'t str,
    windows: impl IntoIterator<Item = std::ops::Range<usize>, IntoIter: 't>,
) -> impl Iterator<Item = (usize, &'t str)> + 't {
    windows.into_iter().flat_map(move |w| {
        DETECTOR
            .find_iter(&text[w.clone()])
            .map(move |m| (w.start + m.start(), m.as_str()))
    })
}

/// Stretches of `text` that hold every match of the detector, in order and
/// apart. Each alternative's matches contain a mark, and lie within the run
/// of the characters the alternative can match around it:
/// - an email, an `@`: the local part's characters before, the domain's
///   after;
/// - an IPv6 address, a `:` followed by at most four hex digits and another
///   `:` (how one starts): hex digits, `:` and `.` around;
/// - a URL, `http://` or `https://`: up to the next ASCII space, `<`, `>`,
///   quote or backtick;
/// - an IPv4 address, a `.` between ASCII digits: digits and dots around;
/// - a phone number, eight or more characters of digits, spaces, tabs,
///   `(`, `)`, `.`, `-` and `+` with a digit among them.
///
/// Bytes beyond ASCII count as any letter or digit (Unicode letters and
/// digits are in the classes), so a window is never too short. Windows are
/// widened to the nearest byte that is no ASCII word character, so that the
/// detector's `\b` reads the same at a window's ends as in the whole text,
/// and merged where they touch.
fn windows(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let wide = |c: u8| c >= 0x80;
    let local = |c: u8| {
        wide(c) || c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
    };
    let domain = |c: u8| wide(c) || c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let ip6 = |c: u8| c.is_ascii_hexdigit() || matches!(c, b':' | b'.');
    let ip4 = |c: u8| c.is_ascii_digit() || c == b'.';
    let phone = |c: u8| {
        wide(c)
            || c.is_ascii_digit()
            || matches!(c, b' ' | b'\t' | b'(' | b')' | b'.' | b'-' | b'+')
    };
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // Where the run of `class` bytes around `i` starts, and where it ends.
    fn back(b: &[u8], i: usize, class: impl Fn(u8) -> bool) -> usize {
        b[..i].iter().rposition(|&c| !class(c)).map_or(0, |p| p + 1)
    }
    fn ahead(b: &[u8], i: usize, class: impl Fn(u8) -> bool) -> usize {
        b[i..]
            .iter()
            .position(|&c| !class(c))
            .map_or(b.len(), |p| i + p)
    }
    let mut found: Vec<std::ops::Range<usize>> = Vec::new();
    // Phone runs, around each digit (or byte beyond ASCII) not in one yet;
    // sixteen bytes without one are passed over at once.
    let digitish = |c: u8| c.is_ascii_digit() | wide(c);
    let mut covered = 0;
    let mut runs_in = |at: usize, chunk: &[u8]| {
        for (j, &c) in chunk.iter().enumerate() {
            let i = at + j;
            if i >= covered && digitish(c) {
                let run = back(b, i, phone)..ahead(b, i, phone);
                covered = run.end;
                if run.len() >= 8 {
                    found.push(run);
                }
            }
        }
    };
    let mut chunks = b.chunks_exact(16);
    for (n, chunk) in (&mut chunks).enumerate() {
        // No early exit within the chunk: the fold vectorises.
        if chunk.iter().fold(false, |any, &c| any | digitish(c)) {
            runs_in(n * 16, chunk);
        }
    }
    runs_in(b.len() - chunks.remainder().len(), chunks.remainder());
    // A mark inside a window found already would find that window again, or
    // one inside it (no class's run crosses a `//`, an `@` or whitespace
    // differently): skipped, which keeps a run of marks linear.
    let mut covered = 0;
    for i in memchr::memchr3_iter(b'@', b':', b'.', b) {
        if i < covered {
            continue;
        }
        let before = found.len();
        match b[i] {
            b'@' => found.push(back(b, i, local)..ahead(b, i + 1, domain)),
            b':' => {
                if starts_ip6(b, i) {
                    found.push(back(b, i, ip6)..ahead(b, i, ip6));
                }
                if b[i + 1..].starts_with(b"//") {
                    let scheme = if b[..i].ends_with(b"https") { 5 } else { 4 };
                    if b[..i].ends_with(b"http") || scheme == 5 {
                        let end = ahead(b, i, |c: u8| {
                            !(c.is_ascii_whitespace()
                                || matches!(c, b'<' | b'>' | b'"' | b'\'' | b'`'))
                        });
                        found.push(i - scheme..end);
                    }
                }
            }
            _ if dot_between_digits(b, i) => found.push(back(b, i, ip4)..ahead(b, i, ip4)),
            _ => {}
        }
        covered = found[before..]
            .iter()
            .fold(covered, |end, w| end.max(w.end));
    }
    for w in &mut found {
        *w = back(b, w.start, word)..ahead(b, w.end, word);
    }
    found.sort_unstable_by_key(|w| w.start);
    // Merged in place: a window that starts before the last kept one ends
    // is folded into it.
    found.dedup_by(|w, kept| {
        let touches = w.start <= kept.end;
        if touches {
            kept.end = kept.end.max(w.end);
        }
        touches
    });
    found
}

/// The kind of the first personal value found in `text` (`"url"`,
/// `"email"`, `"ip"`, `"phone"`), by the same detection as [`scrub`], without
/// replacing anything. For naming object keys that are themselves personal.
pub(crate) fn personal_kind(text: &str) -> Option<&'static str> {
    if !may_hold_personal(text) {
        return None;
    }
    for m in DETECTOR.find_iter(text) {
        let s = m.as_str();
        let kind = match Detected::of(s) {
            Detected::Url => Some("url"),
            Detected::Email => Some("email"),
            Detected::Ip6 => ip6_prefix(s).map(|_| "ip"),
            Detected::Ip4 => s.parse::<IpAddr>().ok().map(|_| "ip"),
            Detected::Phone => phone(s).map(|_| "phone"),
        };
        if kind.is_some() {
            return kind;
        }
    }
    None
}

/// The cheap exit before the regex: every replacement holds an `@` (an
/// email), a `:` (a URL, an IPv6 address), an ASCII digit, a `.` and another
/// digit (an IPv4 address), or at least eight ASCII digits (a phone number;
/// Unicode digits alone never make one, see [`phone`]). A full stop in
/// prose is none of these. Object keys, short and plain, all go through
/// here, so it reads eight bytes at a time as one `u64` (no per-byte loop:
/// a key costs one or two words).
#[inline]
pub(crate) fn may_hold_personal(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 8 {
        // Too short for eight digits: only a mark can make it personal.
        return bytes.iter().any(|&b| matches!(b, b'@' | b':')) || digit_dot_digit(bytes);
    }
    let mut digits = 0u32;
    let mut dots = false;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if has_mark(word) {
            return true;
        }
        dots |= has_byte(word, b'.');
        digits += digit_count(word);
    }
    let rest = chunks.remainder().len();
    if rest > 0 {
        // The last eight bytes, shifted so that only the `rest` not read
        // yet remain (the bytes shifted in are zero: neither marks nor
        // digits).
        let tail = &bytes[bytes.len() - 8..];
        let word = u64::from_le_bytes(tail.try_into().expect("eight bytes")) >> (8 * (8 - rest));
        if has_mark(word) {
            return true;
        }
        dots |= has_byte(word, b'.');
        digits += digit_count(word);
    }
    digits >= 8 || (dots && digits >= 2 && digit_dot_digit(bytes))
}

/// Whether a `.` stands between two ASCII digits.
fn digit_dot_digit(b: &[u8]) -> bool {
    memchr::memchr_iter(b'.', b).any(|i| dot_between_digits(b, i))
}

/// Is `b[i]` a `.` between two ASCII digits, as in every IPv4 address?
pub(crate) fn dot_between_digits(b: &[u8], i: usize) -> bool {
    b[i] == b'.'
        && i > 0
        && b[i - 1].is_ascii_digit()
        && b.get(i + 1).is_some_and(u8::is_ascii_digit)
}

/// Is `b[i]` a `:` followed by at most four hex digits and another `:`,
/// as the first `:` of every IPv6 match is?
pub(crate) fn starts_ip6(b: &[u8], i: usize) -> bool {
    b[i] == b':'
        && b[i + 1..]
            .iter()
            .take(5)
            .position(|c| !c.is_ascii_hexdigit())
            .is_some_and(|k| b[i + 1 + k] == b':')
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of every zero byte of `w`, exactly (no false positives from
/// borrows: the low seven bits are added without carrying into the next
/// byte).
#[inline]
fn zero_bytes(w: u64) -> u64 {
    !(((w & !HI).wrapping_add(!HI)) | w) & HI
}

/// Whether a byte of `w` is `@` or `:`.
#[inline]
fn has_mark(w: u64) -> bool {
    has_byte(w, b'@') | has_byte(w, b':')
}

#[inline]
fn has_byte(w: u64, b: u8) -> bool {
    zero_bytes(w ^ (LO * u64::from(b))) != 0
}

/// How many bytes of `w` are ASCII digits.
#[inline]
fn digit_count(w: u64) -> u32 {
    // Per byte, on its low seven bits (at most 0x7f + 0x50, so no carry into
    // the next byte): the high bit says `>= '0'`, then `>= ':'`.
    let low = w & !HI;
    let ge_0 = low.wrapping_add(LO * (0x80 - u64::from(b'0'))) & HI;
    let ge_colon = low.wrapping_add(LO * (0x80 - u64::from(b':'))) & HI;
    (ge_0 & !ge_colon & !w & HI).count_ones()
}

fn ip6_prefix(mut s: &str) -> Option<&str> {
    loop {
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(s);
        }
        s = s.strip_suffix(':')?;
    }
}

/// Which alternative of the detector produced a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Detected {
    Url,
    Email,
    Ip6,
    Ip4,
    Phone,
}

impl Detected {
    /// The alternative that produced the match `s`, told from its text.
    ///
    /// Leftmost-first matching takes, at the match start, the first
    /// alternative that matches there, and each alternative leaves a mark no
    /// later one can produce: only `url` starts with `http://` or `https://`
    /// (the others cannot contain `/`, and `ip6` cannot start with `h`); of
    /// the rest only `email` contains `@`; then only `ip6` contains `:`; and
    /// a `phone` match of the exact `ip4` shape would have matched `ip4` at
    /// the same start first (its start is `\b` or `+`, its end `\d\b`).
    fn of(s: &str) -> Self {
        if s.starts_with("http://") || s.starts_with("https://") {
            Detected::Url
        } else if s.contains('@') {
            Detected::Email
        } else if s.contains(':') {
            Detected::Ip6
        } else if is_ip4_shaped(s) {
            Detected::Ip4
        } else {
            Detected::Phone
        }
    }
}

/// `[0-9]{1,3}(\.[0-9]{1,3}){3}`, the detector's `ip4`. (An address in
/// other scripts' digits is no IPv4 address; such text may be a phone.)
fn is_ip4_shaped(s: &str) -> bool {
    let mut groups = 0;
    for part in s.split('.') {
        if !(1..=3).contains(&part.len()) || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        groups += 1;
    }
    groups == 4
}

fn phone(s: &str) -> Option<String> {
    // The date pattern is at most ten characters long.
    if s.trim().chars().nth(10).is_none() && ISO_DATE.is_match(s.trim()) {
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

    /// [`run`] without the pre-check.
    fn without_precheck(text: &str) -> (String, u32) {
        let mut f = Found::default();
        let mut out = String::new();
        let spec = UrlSpec {
            keep_unnamed_params: true,
            ..Default::default()
        };
        if replace_found(&p(), &spec, text, &mut f, &mut out) {
            (out, f.replaced)
        } else {
            (text.to_owned(), 0)
        }
    }

    /// Group 0 and the detecting group of every match.
    fn detections_of(re: &Regex, text: &str) -> Vec<(usize, usize, &'static str)> {
        re.captures_iter(text)
            .map(|c| {
                let m = c.get(0).unwrap();
                let g = ["url", "email", "ip6", "ip4", "phone"]
                    .into_iter()
                    .find(|g| c.name(g).is_some())
                    .unwrap();
                let kind = match g {
                    "url" => Detected::Url,
                    "email" => Detected::Email,
                    "ip6" => Detected::Ip6,
                    "ip4" => Detected::Ip4,
                    _ => Detected::Phone,
                };
                assert_eq!(Detected::of(m.as_str()), kind, "{text:?}");
                (m.start(), m.end(), g)
            })
            .collect()
    }

    /// Pieces that sit on every boundary the detector tests, next to
    /// ASCII, non-ASCII letters, non-ASCII digits and punctuation.
    const BOUNDARY_PIECES: &[&str] = &[
        "https://x.io/p?email=a@b.dk",
        "http://é.dk",
        "h",
        "(",
        ")",
        "1",
        "42",
        "٣",
        "٣٤",
        "１２",
        "192.0.2.44",
        "10.0.0.1",
        "2001:db8::1",
        "+45 12 34 56 78",
        "(555) 123-4567",
        "2026-11-29",
        "a@b.dk",
        "søren.ødegård@example.dk",
        "é",
        "Søren",
        "ß",
        "—",
        "’",
        "\u{300}",
        "\u{200d}",
        "_",
        " ",
        ".",
        ",",
        "-",
        ":",
        "@",
        "x",
        "call",
        "\t",
        "\n",
        "12345678",
        "1234567",
        "日本",
        "ø1",
        "1ø",
        "2001:db8::",
        "1.2.3.4",
        "1.2.3.4.5",
        "٣.٣.٣.٣",
        "+1.2.3.4",
        "(1.2.3.4)",
        "0000:1",
        "::",
        "a:b:c",
        "mailto:a@b.dk",
        "http://",
        "https://h@x.io",
        "1-2-3-4-5",
        "_",
        "'",
        "<",
        "`",
        "\"",
        "http://x",
        "ftp://x",
        "a_b",
        "1_2.3.4.5",
        "+45",
        "9",
        "\u{a0}",
        "Https://x.io",
    ];

    /// 20,000 texts of one to eight [`BOUNDARY_PIECES`].
    fn boundary_texts() -> impl Iterator<Item = String> {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        (0..20_000).map(move |_| crate::testing::random_text(&mut next, BOUNDARY_PIECES, 1..9))
    }

    #[test]
    fn detected_kind_is_the_capture_group() {
        let mut kinds = std::collections::HashSet::new();
        for text in boundary_texts() {
            kinds.extend(detections_of(&DETECTOR, &text).into_iter().map(|d| d.2));
        }
        assert_eq!(kinds.len(), 5, "{kinds:?}");
    }

    /// The windowed search finds exactly what a search of the whole text
    /// finds.
    #[test]
    fn windows_hold_every_match_of_the_whole_text() {
        for text in boundary_texts() {
            let whole: Vec<(usize, &str)> = DETECTOR
                .find_iter(&text)
                .map(|m| (m.start(), m.as_str()))
                .collect();
            let windowed: Vec<(usize, &str)> = matches_in(&text, windows(&text)).collect();
            assert_eq!(windowed, whole, "{text:?}");
        }
    }

    /// The pre-check lets through every text something is replaced in (the
    /// scrub itself would skip it, so the detector runs here).
    #[test]
    fn the_precheck_passes_every_text_with_a_replacement() {
        let mut passed = 0;
        for text in boundary_texts() {
            if may_hold_personal(&text) {
                passed += 1;
            } else {
                let (out, n) = without_precheck(&text);
                assert_eq!((out.as_str(), n), (text.as_str(), 0), "{text:?}");
            }
        }
        assert!(passed > 1_000 && passed < 20_000, "{passed}");
    }

    /// Long runs of marks: every mark starts a window, and each is found
    /// once, not once per mark (the search stays linear), with the matches
    /// of a search of the whole text.
    #[test]
    fn runs_of_marks_are_windowed_like_the_whole_text() {
        for unit in ["::", "1.", "@a", "http://", "a:b:", "1 ", "é."] {
            let text = unit.repeat(8_000);
            let windows = windows(&text);
            assert!(windows.len() <= 2, "{unit:?}: {} windows", windows.len());
            let windowed: Vec<(usize, &str)> = matches_in(&text, windows).collect();
            let whole: Vec<(usize, &str)> = DETECTOR
                .find_iter(&text)
                .map(|m| (m.start(), m.as_str()))
                .collect();
            assert!(windowed == whole, "{unit:?}");
        }
    }

    /// The word-at-a-time pre-check is the byte loop it replaced.
    #[test]
    fn may_hold_personal_is_the_byte_loop() {
        let reference = |t: &str| {
            let b = t.as_bytes();
            let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
            let ddd = b
                .windows(3)
                .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit());
            b.iter().any(|c| matches!(c, b'@' | b':')) || digits >= 8 || ddd
        };
        const PIECES: &[&str] = &[
            "a", "Z", "0", "9", "/", ";", "?", "@", ":", ".", "-", "_", " ", "é", "٣", "\u{7f}",
            "\u{80}", "\u{ff}", "日", "\0", "12", "1234", "\u{b0}", "\u{ba}", "\u{c0}", "1.2", ".",
            ".", "3",
        ];
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for _ in 0..50_000 {
            let t = crate::testing::random_text(&mut next, PIECES, 0..24);
            assert_eq!(may_hold_personal(&t), reference(&t), "{t:?}");
        }
        for b in 0u8..=127 {
            let t = String::from(char::from(b)).repeat(9);
            assert_eq!(may_hold_personal(&t), reference(&t), "{b}");
        }
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
