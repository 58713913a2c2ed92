//! The key-encryption key: the secret that seals the ring's key material at
//! rest. It lives apart from the ring (an environment variable or a mounted
//! secret file), is zeroized on drop, and never printed.

use std::fmt;
use std::path::Path;

use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER_PERMISSIVE};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::KeyError;

pub struct Kek {
    bytes: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    /// `SCRIM_KEK`: 32 bytes, base64 or hex.
    pub fn from_env() -> Result<Self, KeyError> {
        let raw = Zeroizing::new(std::env::var("SCRIM_KEK").map_err(|_| KeyError::MissingKek)?);
        Self::from_text(&raw, "SCRIM_KEK")
    }

    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = super::read_secret_file(path)?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// From a file when one is given, else from the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, KeyError> {
        match file {
            Some(p) => Self::from_file(p),
            None => Self::from_env(),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            bytes: Zeroizing::new(bytes),
        }
    }

    fn from_text(text: &str, origin: &str) -> Result<Self, KeyError> {
        let t = text.trim().as_bytes();
        let decoded = [&HEXLOWER_PERMISSIVE, &BASE64, &BASE64_NOPAD]
            .iter()
            .find_map(|e| e.decode(t).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| KeyError::Encoding {
                origin: origin.into(),
            })?;
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::KekLength {
                origin: origin.into(),
                len: decoded.len(),
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A subkey for one use (sealing versions, the ring's MAC), so the KEK
    /// itself never keys a primitive.
    pub(crate) fn subkey(&self, label: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(b"scrim/kek/v1"), self.bytes.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(label.as_bytes(), out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}
