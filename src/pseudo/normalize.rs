//! Per-kind normalisation before hashing, so that spellings of one value give
//! one token: `Søren@X.dk ` and `søren@x.dk`, `Zoë  Çelik` and `zoë çelik`,
//! `::ffff:192.0.2.1` and `192.0.2.1`.

use std::borrow::Cow;
use std::net::IpAddr;

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Trimmed, NFKC, lower-cased. With `strip_plus_tag`, `a+news@x` becomes `a@x`.
pub fn email(raw: &str, strip_plus_tag: bool) -> Cow<'_, str> {
    let t = raw.trim();
    let mut s = nfkc_lower(t);
    if strip_plus_tag {
        if let Some(at) = s.rfind('@') {
            if let Some(plus) = s[..at].find('+') {
                let mut o = String::with_capacity(s.len());
                o.push_str(&s[..plus]);
                o.push_str(&s[at..]);
                s = Cow::Owned(o);
            }
        }
    }
    s
}

/// NFKC, lower-cased, inner whitespace runs collapsed to one space, trimmed.
pub fn name(raw: &str) -> String {
    name_cow(raw).into_owned()
}

/// [`name`], borrowed when `raw` is already in that form.
pub(crate) fn name_cow(raw: &str) -> Cow<'_, str> {
    let trimmed = raw.trim();
    // ASCII (NFKC leaves it as it is): lower-case and collapse in one copy.
    let ascii = trimmed.is_ascii();
    let lower = if ascii {
        Cow::Borrowed(trimmed)
    } else {
        nfkc_lower(trimmed)
    };
    let upper = ascii && trimmed.bytes().any(|b| b.is_ascii_uppercase());
    if !upper && is_collapsed(&lower) {
        return lower;
    }
    let mut out = String::with_capacity(lower.len());
    for (i, word) in lower.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if ascii {
        out.make_ascii_lowercase();
    }
    Cow::Owned(out)
}

/// Whether joining `s.split_whitespace()` with single spaces gives `s`: no
/// whitespace at either end, and only single ASCII spaces between words.
fn is_collapsed(s: &str) -> bool {
    let mut prev_space = true;
    for c in s.chars() {
        let space = c.is_whitespace();
        if space && (c != ' ' || prev_space) {
            return false;
        }
        prev_space = space;
    }
    !prev_space || s.is_empty()
}

/// Parsed and canonical; IPv4-mapped IPv6 becomes IPv4. `None` if not an IP.
pub fn ip(raw: &str) -> Option<IpAddr> {
    raw.trim()
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Digits only, keeping a leading `+`: `+45 12 34-56 78` is `+4512345678`.
pub fn phone(raw: &str) -> String {
    let t = raw.trim();
    let mut out = String::with_capacity(t.len());
    if t.starts_with('+') {
        out.push('+');
    }
    out.extend(t.chars().filter(char::is_ascii_digit));
    out
}

/// Identifiers are case-sensitive: only surrounding whitespace goes.
pub fn id(raw: &str) -> &str {
    raw.trim()
}

fn nfkc_lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else if let Some(lower) = latin1_lower(s) {
        Cow::Owned(lower)
    } else if is_nfkc_quick(s.chars()) == IsNormalized::Yes {
        // Already NFKC (the common case): the quick check costs a fraction
        // of normalising.
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Owned(s.nfkc().collect::<String>().to_lowercase())
    }
}

/// Text of ASCII and the Latin-1 letters U+00C0 to U+00FF (the Nordic,
/// French, Spanish, German names and emails this proxy mostly sees),
/// lower-cased; `None` for anything else. These letters are NFKC already
/// (precomposed, no compatibility mapping, none composes with what
/// follows), and each capital is its small letter less 0x20, so neither
/// the normalisation check nor Unicode's case tables are needed.
fn latin1_lower(s: &str) -> Option<String> {
    let mut out = vec![0; s.len()];
    latin1_lower_into(s, &mut out)?;
    Some(String::from_utf8(out).expect("lower-casing Latin-1 keeps UTF-8 valid"))
}

/// [`latin1_lower`] written over `out[..s.len()]` (which must be that
/// long), for a caller with a buffer on the stack. On the bytes: U+00C0 to
/// U+00FF are `C3 80` to `C3 BF` in UTF-8, and a capital's small letter is
/// its second byte plus 0x20 (still a continuation byte).
pub(crate) fn latin1_lower_into<'o>(s: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let b = s.as_bytes();
    let out = &mut out[..b.len()];
    if s.is_ascii() {
        out.copy_from_slice(b);
        out.make_ascii_lowercase();
        return std::str::from_utf8(out).ok();
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c @ 0..=0x7f => {
                out[i] = c.to_ascii_lowercase();
                i += 1;
            }
            0xc3 => {
                // A lead byte is followed by its continuation in valid UTF-8.
                let c = b[i + 1];
                out[i] = 0xc3;
                out[i + 1] = if (0x80..=0x9e).contains(&c) && c != 0x97 {
                    c + 0x20
                } else {
                    c
                };
                i += 2;
            }
            _ => return None,
        }
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_letters_lower_as_nfkc_and_unicode_do() {
        let general = |s: &str| s.nfkc().collect::<String>().to_lowercase();
        for c in '\u{80}'..='\u{24f}' {
            for s in [c.to_string(), format!("Ab{c}Z"), format!("{c}{c}.x@Y.dk")] {
                if let Some(fast) = latin1_lower(&s) {
                    assert_eq!(fast, general(&s), "{:?}", s);
                }
            }
        }
        assert!(latin1_lower("Søren.Ødegård@Example.dk").is_some());
        assert!(latin1_lower("ª").is_none() && latin1_lower("Ā").is_none());
        // Pairs of Latin-1 letters and the marks that compose with letters.
        for a in '\u{c0}'..='\u{ff}' {
            for b in ['a', 'Z', '\u{c5}', '\u{e9}', '\u{ff}'] {
                let s = format!("{a}{b}");
                assert_eq!(latin1_lower(&s).unwrap(), general(&s), "{s:?}");
            }
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email(" Søren@X.dk ", false), "søren@x.dk");
        assert_eq!(email("A+News@x.dk", true), "a@x.dk");
        assert_eq!(email("A+News@x.dk", false), "a+news@x.dk");
        // Fullwidth letters fold under NFKC.
        assert_eq!(email("ＡＢ@x.dk", false), "ab@x.dk");
    }

    #[test]
    fn names() {
        assert_eq!(name("  Søren   Ødegård "), "søren ødegård");
        assert_eq!(name("ZOË\tÇELIK"), "zoë çelik");
        // Decomposed é (e + U+0301) equals the precomposed one.
        assert_eq!(name("Jose\u{301} Núñez"), name("José Núñez"));
    }

    #[test]
    fn names_collapse_exactly_like_split_whitespace() {
        for raw in [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            " a",
            "a ",
            "a\tb",
            "a\u{a0}b",
            "a\u{3000}b",
            "ab cd ef",
            "a \u{2003}b",
        ] {
            let lower = nfkc_lower(raw);
            let joined = lower.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(is_collapsed(&lower), joined == lower, "{raw:?}");
        }
        for raw in [
            "Anna  Schmidt",
            "anna schmidt",
            " ANNA\x0bSCHMIDT ",
            "a",
            "",
            "A\tB\r\nC",
        ] {
            let reference = raw.trim().to_ascii_lowercase();
            let reference = reference.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(name(raw), reference, "{raw:?}");
        }
        // Fullwidth letters and ligatures are not NFKC: the slow path folds them.
        assert_eq!(name("Ｚｏë ﬁsh"), "zoë fish");
    }

    #[test]
    fn ips() {
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(
            ip("2001:0db8:0000:0000:0000:0000:0000:0001"),
            ip("2001:db8::1")
        );
        assert_eq!(ip("nope"), None);
    }

    #[test]
    fn phones() {
        assert_eq!(phone("+45 12 34-56 78"), "+4512345678");
        assert_eq!(phone("(555) 123-4567"), "5551234567");
    }
}
