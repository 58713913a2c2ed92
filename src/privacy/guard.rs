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

use crate::engine::spec::IpMode;
use crate::pseudo::Pseudonymiser;

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

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^k\d+_[0-9a-v]{26}$").expect("the token pattern is valid"));

/// A raw identifier and the pseudonym the rules gave it in this event.
pub type Seen = Vec<(String, String)>;

/// Characters that could make a raw value match across JSON syntax.
fn usable(raw: &str) -> bool {
    raw.chars().count() >= 4
        && !raw
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '{' | '}' | '[' | ']' | ':' | ','))
}

/// Lower case for a case-insensitive substring test. ASCII text, the
/// common case, is lower-cased byte by byte (and not copied when there is
/// nothing to lower); other text goes through Unicode's full mapping.
fn lower(s: &str) -> Cow<'_, [u8]> {
    if !s.is_ascii() {
        return Cow::Owned(s.to_lowercase().into_bytes());
    }
    if !s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(s.as_bytes());
    }
    Cow::Owned(s.to_ascii_lowercase().into_bytes())
}

/// Does `t` hold one of the usable raw identifiers, in any case?
fn holds_any(t: &str, seen: &Seen) -> bool {
    let hay = lower(t);
    seen.iter()
        .filter(|(raw, _)| usable(raw))
        .any(|(raw, _)| memchr::memmem::find(&hay, &lower(raw)).is_some())
}

/// Is this match a real finding (not a pseudonym or a generalised value)?
fn finding(m: &str, email: bool) -> bool {
    if email {
        let local = m.rsplit_once('@').map_or(m, |(l, _)| l);
        return !TOKEN.is_match(local);
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
    let mut cur: Cow<'t, str> = Cow::Borrowed(t);
    // The request's own identifiers first: they may contain an email. A
    // substring test on lower-cased text finds them cheaply; the automaton
    // that replaces them is built only when one is there.
    if seen.iter().any(|(raw, _)| usable(raw)) && holds_any(t, seen) {
        if mode == LeakMode::Refuse {
            return Err(Finding);
        }
        let own: Vec<&(String, String)> = seen.iter().filter(|(raw, _)| usable(raw)).collect();
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(own.iter().map(|(raw, _)| raw.as_str()))
            .expect("literal patterns build");
        let tokens: Vec<&str> = own.iter().map(|(_, tok)| tok.as_str()).collect();
        *found += ac.find_iter(cur.as_ref()).count() as u32;
        cur = Cow::Owned(ac.replace_all(cur.as_ref(), &tokens));
    }
    // Emails need an `@`; IPs need a digit beside a `.` or a `:`.
    let bytes = cur.as_bytes();
    let maybe_ip = bytes.windows(2).any(|w| {
        (w[0].is_ascii_hexdigit() && (w[1] == b'.' || w[1] == b':'))
            || ((w[0] == b'.' || w[0] == b':') && w[1].is_ascii_hexdigit())
    });
    if !bytes.contains(&b'@') && !maybe_ip {
        return Ok(cur);
    }
    let mut out = String::new();
    let mut last = 0;
    // `find_iter` stays on the regex's DFA; which branch matched follows
    // from the match itself (only an email holds an `@`), so no capture
    // groups need resolving.
    for m in FINDER.find_iter(cur.as_ref()) {
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
        out.push_str(&cur[last..m.start()]);
        out.push_str(&replacement);
        last = m.end();
        *found += 1;
    }
    if last == 0 {
        return Ok(cur);
    }
    out.push_str(&cur[last..]);
    Ok(Cow::Owned(out))
}

/// Scans a JSON document that is about to leave. In scrub mode rewrites it
/// in place (and checks it still parses); in refuse mode reports the path
/// of the first finding.
pub fn json(
    doc: &mut Vec<u8>,
    seen: &Seen,
    mode: LeakMode,
    p: &Pseudonymiser,
    found: &mut u32,
) -> Result<(), Leak> {
    if mode == LeakMode::Off {
        return Ok(());
    }
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
            *doc = o.into_bytes();
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
        json(&mut bytes, &vec![], LeakMode::Scrub, &p, &mut n).unwrap();
        assert_eq!(n, 0);
        assert_eq!(bytes, doc.into_bytes());
    }

    #[test]
    fn own_identifiers_and_stray_emails_are_scrubbed_or_refused() {
        let p = p();
        let seen: Seen = vec![("José Núñez".into(), "Participant k1_abc".into())];
        let doc = r#"{"name":"Participant k1_abc","msg":"josé núñez here, mail jose@example.es from 198.51.100.7"}"#;
        let mut bytes = doc.as_bytes().to_vec();
        let mut n = 0;
        json(&mut bytes, &seen, LeakMode::Scrub, &p, &mut n).unwrap();
        let out = String::from_utf8(bytes).unwrap();
        assert!(
            !out.contains("jose@example.es") && !out.contains("198.51.100.7"),
            "{out}"
        );
        assert!(out.contains("Participant k1_abc here"), "{out}");
        assert_eq!(n, 3);
        let mut bytes = doc.as_bytes().to_vec();
        let err = json(&mut bytes, &seen, LeakMode::Refuse, &p, &mut 0).unwrap_err();
        assert_eq!(err.path, "msg");
    }
}
