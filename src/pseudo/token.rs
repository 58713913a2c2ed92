//! The token wire format.
//!
//! A token is `k<VERSION>_<26 characters>`: the key version in clear, so an
//! analyst can tell epochs apart and the security team can tell which key a
//! stored token came from, then 128 bits of keyed HMAC-SHA256 in lower-case
//! base32hex (`0-9a-v`), which is safe in email local parts, URLs, DNS labels
//! and file names. Example: `k1_4m0fmq5tb1kg8b6d0pc0kv3n4o`.

use data_encoding::BASE32_DNSSEC;

/// Bytes of HMAC output kept. 128 bits keeps collisions negligible at any
/// realistic number of data subjects (birthday bound near 2^64).
pub const TOKEN_BYTES: usize = 16;
const B32_LEN: usize = 26;

/// Appends the token for `digest` under key `version` to `out`.
pub fn write(out: &mut String, version: u32, digest: &[u8; TOKEN_BYTES]) {
    out.push('k');
    push_decimal(out, version);
    out.push('_');
    BASE32_DNSSEC.encode_append(digest, out);
}

/// `n` in decimal, as `write!(out, "{n}")` would put it, without the
/// formatting machinery (a third of the cost of a short token).
pub(crate) fn push_decimal(out: &mut String, mut n: u32) {
    let mut buf = [0u8; 10];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[at..] {
        out.push(char::from(d));
    }
}

/// Whether `s` has a token's shape: `k`, decimal digits, `_`, then 26
/// characters of the base32hex alphabet. Cheaper than [`version_of`],
/// which also decodes: for telling pseudonyms apart from raw values.
pub fn is_shaped(s: &str) -> bool {
    let Some((v, b32)) = s.strip_prefix('k').and_then(|r| r.split_once('_')) else {
        return false;
    };
    !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && b32.len() == B32_LEN
        && b32
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

/// The key version of a token, if `s` is one.
pub fn version_of(s: &str) -> Option<u32> {
    let rest = s.strip_prefix('k')?;
    let (v, b32) = rest.split_once('_')?;
    if b32.len() != B32_LEN || BASE32_DNSSEC.decode(b32.as_bytes()).is_err() {
        return None;
    }
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse() {
        let mut s = String::new();
        write(&mut s, 12, &[0xA5; TOKEN_BYTES]);
        assert!(s.starts_with("k12_"));
        assert_eq!(s.len(), 4 + B32_LEN);
        assert_eq!(version_of(&s), Some(12));
        assert_eq!(version_of("k12_short"), None);
        assert_eq!(version_of("hello"), None);
        assert!(is_shaped(&s));
        for not in [
            "k12_short",
            "hello",
            "k_4m0fmq5tb1kg8b6d0pc0kv3n4o",
            "k1_4m0fmq5tb1kg8b6d0pc0kv3n4w",
        ] {
            assert!(!is_shaped(not), "{not}");
        }
    }

    #[test]
    fn decimal_matches_format() {
        for n in [0, 1, 9, 10, 99, 100, 65535, 1_000_000, u32::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
