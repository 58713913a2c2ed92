//! Where pseudonymisation keys come from.
//!
//! The engine sees keys only through [`KeySource`]: the active version and its
//! secret bytes. In production that is the [`ring::KeyRing`]: versions
//! sealed with AES-256-GCM under a key-encryption key ([`kek::Kek`]) kept
//! apart, stored atomically ([`store`]), rotated and retired by the security
//! team. For development and tests, [`DevKeySource`] takes one key from
//! `SCRIM_KEY` / `SCRIM_KEY_VERSION` or a file; the demo uses
//! [`DevKeySource::ephemeral`].
//! A missing key is an error, never a built-in default: a default key would be
//! public, and every pseudonym made with it reversible by dictionary.
//!
//! Secrets live in [`Zeroizing`] buffers and [`KeyMaterial`]'s `Debug` prints
//! only the version, so a key cannot reach a log through `{:?}`.

pub mod kek;
pub mod ring;
pub mod store;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use data_encoding::{BASE64, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER_PERMISSIVE};
use zeroize::Zeroizing;

/// Shortest secret accepted: 256 bits, the HMAC-SHA256 block-size sweet spot.
pub const MIN_SECRET_BYTES: usize = 32;

/// One key version and its secret.
pub struct KeyMaterial {
    version: u32,
    secret: Zeroizing<Vec<u8>>,
}

/// Why no key could be had. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no pseudonymisation key: set SCRIM_KEY to a base64 or hex secret of at least \
         {MIN_SECRET_BYTES} bytes (e.g. `head -c 32 /dev/urandom | base64`), or pass --key-file"
    )]
    Missing,
    #[error("the key in {origin} is not valid base64 or hex")]
    Encoding { origin: String },
    #[error("the key in {origin} is {len} bytes; at least {MIN_SECRET_BYTES} are required")]
    TooShort { origin: String, len: usize },
    #[error("key version in {origin} must be a whole number from 1 to 65535")]
    Version { origin: String },
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random generator failed")]
    Random,
    #[error(
        "no key-encryption key: set SCRIM_KEK to 32 bytes in base64 or hex, or configure kek_file"
    )]
    MissingKek,
    #[error("the KEK in {origin} is {len} bytes; it must be exactly 32")]
    KekLength { origin: String, len: usize },
}

/// Supplies keys to the engine: the active version, and the previous one
/// (for bridging across a rotation). Implemented by the key ring and by the
/// development sources.
pub trait KeySource: Send + Sync {
    fn active(&self) -> Result<Arc<KeyMaterial>, KeyError>;

    /// The most recent previous version still held, if any.
    fn previous(&self) -> Option<Arc<KeyMaterial>> {
        None
    }

    /// When the active version was created, if known (for bridging grace).
    fn active_created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }
}

/// Why a key ring could not be read or changed. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is {why}; it was not changed")]
    Corrupt { path: String, why: String },
    #[error("{path} has key ring format version {version}, which this scrim does not know; it was not changed")]
    UnknownFormat { path: String, version: u32 },
    #[error(
        "{path} failed its integrity check: the KEK is wrong, or the file was modified; \
         it was not changed"
    )]
    Integrity { path: String },
    #[error("key version {id} does not open under this KEK (swapped or modified material)")]
    Sealed { id: u32 },
    #[error("invalid key ring: {0}")]
    Invalid(&'static str),
    #[error("{path} already exists; `keys init` never overwrites a ring")]
    Exists { path: String },
    #[error("no key version {id}")]
    NoSuchVersion { id: u32 },
    #[error("version {id} is active; rotate first, then retire it")]
    RetireActive { id: u32 },
    #[error("version {id} is already retired")]
    AlreadyRetired { id: u32 },
    #[error("the system random generator failed")]
    Random,
}

// === impl KeyMaterial ===

impl KeyMaterial {
    pub fn new(version: u32, secret: Vec<u8>) -> Result<Self, KeyError> {
        let secret = Zeroizing::new(secret);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::TooShort {
                origin: "key material".into(),
                len: secret.len(),
            });
        }
        Ok(Self { version, secret })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("version", &self.version)
            .field("secret", &"<redacted>")
            .finish()
    }
}

// === DevKeySource ===

/// A single key from the environment, a file, or generated for this process.
#[derive(Debug, Clone)]
pub struct DevKeySource {
    key: Arc<KeyMaterial>,
}

impl DevKeySource {
    /// `SCRIM_KEY` (base64 or hex), `SCRIM_KEY_VERSION` (default 1).
    pub fn from_env() -> Result<Self, KeyError> {
        let Ok(raw) = std::env::var("SCRIM_KEY") else {
            return Err(KeyError::Missing);
        };
        let raw = Zeroizing::new(raw);
        let version = match std::env::var("SCRIM_KEY_VERSION") {
            Ok(v) => parse_version(&v, "SCRIM_KEY_VERSION")?,
            Err(_) => 1,
        };
        Self::from_text(&raw, version, "SCRIM_KEY")
    }

    /// A key file: one line `v<VERSION>:<base64 or hex>`, or just the secret
    /// (version 1). The file may end with a newline.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = read_secret_file(path)?;
        let origin = path.display().to_string();
        let line = text.trim();
        let (version, secret) = match line.split_once(':') {
            Some((v, s)) if v.starts_with('v') => (parse_version(&v[1..], &origin)?, s),
            _ => (1, line),
        };
        Self::from_text(secret, version, &origin)
    }

    /// A fresh random key that lives only as long as this process.
    pub fn ephemeral() -> Result<Self, KeyError> {
        let mut secret = Zeroizing::new(vec![0u8; MIN_SECRET_BYTES]);
        getrandom::fill(&mut secret).map_err(|_| KeyError::Random)?;
        Ok(Self {
            key: Arc::new(KeyMaterial::new(1, secret.to_vec())?),
        })
    }

    /// The active key of another source, held fixed.
    pub fn fixed(source: &dyn KeySource) -> Result<Self, KeyError> {
        Ok(Self {
            key: source.active()?,
        })
    }

    /// A fixed key, for tests and benchmarks.
    pub fn from_bytes(version: u32, secret: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            key: Arc::new(KeyMaterial::new(version, secret.to_vec())?),
        })
    }

    fn from_text(text: &str, version: u32, origin: &str) -> Result<Self, KeyError> {
        let text = text.trim().as_bytes();
        let decoded = [
            &HEXLOWER_PERMISSIVE,
            &BASE64,
            &BASE64_NOPAD,
            &BASE64URL_NOPAD,
        ]
        .iter()
        .find_map(|enc| enc.decode(text).ok())
        .map(Zeroizing::new)
        .ok_or_else(|| KeyError::Encoding {
            origin: origin.into(),
        })?;
        if decoded.len() < MIN_SECRET_BYTES {
            return Err(KeyError::TooShort {
                origin: origin.into(),
                len: decoded.len(),
            });
        }
        Ok(Self {
            key: Arc::new(KeyMaterial::new(version, decoded.to_vec())?),
        })
    }
}

/// Reads a file holding a secret into memory that is zeroized on drop.
pub(crate) fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })
}

fn parse_version(v: &str, origin: &str) -> Result<u32, KeyError> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n),
        _ => Err(KeyError::Version {
            origin: origin.into(),
        }),
    }
}

impl KeySource for DevKeySource {
    fn active(&self) -> Result<Arc<KeyMaterial>, KeyError> {
        Ok(self.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let k = KeyMaterial::new(3, vec![0xAB; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("version: 3"));
        assert!(!dbg.to_lowercase().contains("ab, ab") && !dbg.contains("171"));
    }

    #[test]
    fn short_and_malformed_keys_are_refused() {
        assert!(matches!(
            DevKeySource::from_text("abcd", 1, "test"),
            Err(KeyError::TooShort { .. })
        ));
        assert!(matches!(
            DevKeySource::from_text("not a key!!", 1, "test"),
            Err(KeyError::Encoding { .. })
        ));
        let hex = "00".repeat(32);
        assert_eq!(
            DevKeySource::from_text(&hex, 7, "t")
                .unwrap()
                .active()
                .unwrap()
                .version(),
            7
        );
    }

    #[test]
    fn key_file_with_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, format!("v4:{}\n", BASE64.encode(&[9u8; 32]))).unwrap();
        let k = DevKeySource::from_file(&p).unwrap().active().unwrap();
        assert_eq!(k.version(), 4);
        assert_eq!(k.secret(), &[9u8; 32]);
    }
}
