//! Keyed HMAC-SHA256 under per-(purpose, recipient, kind) keys.
//!
//! The root secret never keys an HMAC directly. HKDF-SHA256 derives one key
//! per purpose, recipient and kind, so the same email gives unlinkable tokens
//! for analytics and for support (invariant 3), and an email token can never
//! be confused with a name token of the same text. The HMAC state is keyed
//! once here and cloned per value: a clone copies two SHA-256 states instead
//! of hashing the key again, which keeps one field well under a microsecond.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::token::TOKEN_BYTES;
use crate::keyring::KeyMaterial;

type HmacSha256 = Hmac<Sha256>;

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

/// A keyed HMAC ready to be cloned per value.
#[derive(Clone)]
pub(crate) struct KeyedMac(HmacSha256);

impl KeyedMac {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self(HmacSha256::new_from_slice(key).expect("HMAC accepts any key length"))
    }

    pub(crate) fn digest(&self, data: &[u8]) -> [u8; TOKEN_BYTES] {
        let mut mac = self.0.clone();
        mac.update(data);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TOKEN_BYTES];
        out.copy_from_slice(&full[..TOKEN_BYTES]);
        out
    }
}

impl std::fmt::Debug for KeyedMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedMac(<redacted>)")
    }
}
