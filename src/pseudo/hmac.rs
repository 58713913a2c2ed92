//! Keyed HMAC-SHA256 under per-(purpose, recipient, kind) keys.
//!
//! The root secret never keys an HMAC directly. HKDF-SHA256 derives one key
//! per purpose, recipient and kind, so the same email gives unlinkable tokens
//! for analytics and for support (invariant 3), and an email token can never
//! be confused with a name token of the same text. The HMAC is keyed once
//! here: the two padded key blocks are compressed up front, so a short value
//! costs two SHA-256 compressions and nothing else.

use hkdf::Hkdf;
use sha2::block_api::compress256;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::token::TOKEN_BYTES;
use crate::keyring::KeyMaterial;

/// HKDF salt; bumping it would change every pseudonym, so it is versioned.
const SALT: &[u8] = b"scrim/pseudonymise/v1";

/// Derives 32 bytes of key for `label` under the root secret.
pub(crate) fn derive(root: &KeyMaterial, label: &[&str]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(SALT), root.secret());
    let mut info = Vec::with_capacity(64);
    for (i, part) in label.iter().enumerate() {
        if i > 0 {
            // NUL cannot occur in ids validated by `compile`, so the
            // concatenation is unambiguous.
            info.push(0);
        }
        info.extend_from_slice(part.as_bytes());
    }
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(&info, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// A keyed HMAC-SHA256, held as its two precomputed midstates.
///
/// HMAC(k, m) = H((k ^ opad) || H((k ^ ipad) || m)). With a 32-byte key
/// both padded key blocks are one SHA-256 block each, so their compressions
/// are done once here; a value then costs the compressions of its own
/// blocks plus one for the outer hash, driven through `sha2`'s
/// `compress256`. The `hmac` crate computes the same thing per call but
/// clones, buffers and zeroizes its whole keyed state every time, which
/// cost as much again as the compressions. Tests pin the output against
/// the `hmac` crate.
pub(crate) struct KeyedMac {
    inner: [u32; 8],
    outer: [u32; 8],
}

/// The SHA-256 initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

const BLOCK: usize = 64;

impl KeyedMac {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let mut pad = Zeroizing::new([[0u8; BLOCK]; 1]);
        let mut midstate = |byte: u8| {
            for (i, b) in pad[0].iter_mut().enumerate() {
                *b = key.get(i).copied().unwrap_or(0) ^ byte;
            }
            let mut state = IV;
            compress256(&mut state, &pad[..]);
            state
        };
        let inner = midstate(0x36);
        let outer = midstate(0x5c);
        Self { inner, outer }
    }

    pub(crate) fn digest(&self, data: &[u8]) -> [u8; TOKEN_BYTES] {
        // Inner hash over the key block (already in `inner`) and `data`.
        let mut state = self.inner;
        let full = data.len() / BLOCK * BLOCK;
        let (blocks, rest) = data.split_at(full);
        let (blocks, _) = blocks.as_chunks::<BLOCK>();
        compress256(&mut state, blocks);
        // Padding: 0x80, zeros, then the message length in bits (key block
        // included) as a big-endian u64, in one or two final blocks.
        let mut tail = [[0u8; BLOCK]; 2];
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        flat[rest.len()] = 0x80;
        let n = if rest.len() < BLOCK - 8 { 1 } else { 2 };
        let bits = ((BLOCK + data.len()) as u64) * 8;
        flat[n * BLOCK - 8..n * BLOCK].copy_from_slice(&bits.to_be_bytes());
        compress256(&mut state, &tail[..n]);
        // Outer hash over the key block (in `outer`) and the inner digest.
        let mut block = [[0u8; BLOCK]; 1];
        for (chunk, word) in block[0].chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        block[0][32] = 0x80;
        block[0][BLOCK - 8..].copy_from_slice(&(((BLOCK + 32) * 8) as u64).to_be_bytes());
        let mut out_state = self.outer;
        compress256(&mut out_state, &block);
        let mut out = [0u8; TOKEN_BYTES];
        for (chunk, word) in out.chunks_exact_mut(4).zip(out_state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

impl Drop for KeyedMac {
    fn drop(&mut self) {
        // The midstates stand for the key: whoever holds them can compute
        // every token.
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

impl std::fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedMac(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit, Mac};

    use super::*;

    /// The midstate HMAC is the `hmac` crate's HMAC-SHA256, truncated, at
    /// every length around the block and padding boundaries.
    #[test]
    fn matches_the_hmac_crate() {
        let mut next = crate::testing::xorshift(0x243f_6a88_85a3_08d3);
        for round in 0..8 {
            let mut key = [0u8; 32];
            key.iter_mut().for_each(|b| *b = next() as u8);
            if round == 0 {
                key = [0; 32];
            }
            let ours = KeyedMac::new(&key);
            for len in 0..=300 {
                let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                let mut theirs = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                theirs.update(&data);
                let full = theirs.finalize().into_bytes();
                assert_eq!(ours.digest(&data)[..], full[..TOKEN_BYTES], "length {len}");
            }
        }
    }
}
