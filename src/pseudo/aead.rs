//! AES-256-GCM, the one authenticated cipher scrim uses: for key material at
//! rest under the KEK, and for reversible tokens. Nonces are 96 random bits;
//! associated data binds every ciphertext to what it is (a key version and
//! its use, or a purpose, field and version), so a ciphertext moved to
//! another place fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;

pub const NONCE_BYTES: usize = 12;
pub const TAG_BYTES: usize = 16;

/// Opening failed: wrong key, wrong associated data, or modified bytes.
/// Deliberately says no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct OpenError;

/// Encrypts `plain`; returns `nonce || ciphertext || tag`.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)?;
    let cipher = Aes256Gcm::new_from_slice(key).expect("32 bytes is an AES-256 key");
    let ct = cipher
        .encrypt((&nonce).into(), Payload { msg: plain, aad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(NONCE_BYTES + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts `nonce || ciphertext || tag` sealed with the same key and `aad`.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(OpenError);
    }
    let (nonce, ct) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| OpenError)?;
    let cipher = Aes256Gcm::new_from_slice(key).expect("32 bytes is an AES-256 key");
    cipher
        .decrypt((&nonce).into(), Payload { msg: ct, aad })
        .map_err(|_| OpenError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = [3u8; 32];
        let s = seal(&k, b"purpose=a", b"secret").unwrap();
        assert_eq!(open(&k, b"purpose=a", &s).unwrap(), b"secret");
        assert_eq!(open(&k, b"purpose=b", &s), Err(OpenError));
        assert_eq!(open(&[4u8; 32], b"purpose=a", &s), Err(OpenError));
        let mut t = s.clone();
        t[NONCE_BYTES] ^= 1;
        assert_eq!(open(&k, b"purpose=a", &t), Err(OpenError));
        assert_eq!(open(&k, b"purpose=a", &s[..10]), Err(OpenError));
        // Random nonces: sealing twice differs.
        assert_ne!(seal(&k, b"", b"x").unwrap(), seal(&k, b"", b"x").unwrap());
    }
}
