//! The token wire format.
//!
//! A token is `k<VERSION>_<26 characters>`: the key version in clear, so an
//! analyst can tell epochs apart and the security team can tell which key a
//! stored token came from, then 128 bits of keyed HMAC-SHA256 in lower-case
//! base32hex (`0-9a-v`), which is safe in email local parts, URLs, DNS labels
//! and file names. Example: `k1_4m0fmq5tb1kg8b6d0pc0kv3n4o`.

use data_encoding::BASE32_DNSSEC;
use std::fmt::Write as _;

/// Bytes of HMAC output kept. 128 bits keeps collisions negligible at any
/// realistic number of data subjects (birthday bound near 2^64).
pub const TOKEN_BYTES: usize = 16;
const B32_LEN: usize = 26;

/// Appends the token for `digest` under key `version` to `out`.
pub fn write(out: &mut String, version: u32, digest: &[u8; TOKEN_BYTES]) {
    let _ = write!(out, "k{version}_");
    BASE32_DNSSEC.encode_append(digest, out);
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
    }
}
