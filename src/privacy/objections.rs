//! The objection register (GDPR art. 21).
//!
//! The privacy officer adds or removes a subject by email or id through the
//! admin API. The register stores only an HMAC of the normalised value, under
//! a key derived from the KEK (or the development key), so the file names no
//! one and is useless without the key. It is written atomically with a MAC
//! over its entries, and replicas re-read it on the same interval as the key
//! ring. The engine withholds events of legitimate-interest purposes whose
//! pseudonymised emails or ids match an entry.

use std::collections::HashSet;
use std::path::Path;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::engine::spec::Kind;
use crate::keyring::KeyRingError;
use crate::pseudo::normalize;

const FORMAT: &str = "scrim-objections";
const FORMAT_VERSION: u32 = 1;

/// Kinds a subject can be registered by.
pub fn supported(kind: Kind) -> bool {
    matches!(kind, Kind::Email | Kind::Id)
}

/// The key the register's HMACs are made under.
pub struct RegisterKey {
    key: Zeroizing<[u8; 32]>,
    /// Keyed once: every pseudonymised email and id is checked against the
    /// register on the request path.
    entries: crate::pseudo::hmac::KeyedMac,
}

impl RegisterKey {
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self {
            entries: crate::pseudo::hmac::KeyedMac::new(&bytes),
            key: bytes,
        }
    }

    fn mac(&self, label: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes any key");
        m.update(label);
        m
    }

    /// The first 16 bytes of HMAC(`entry\0` kind `\0` normalised value).
    fn entry(&self, kind: Kind, value: &str) -> [u8; 16] {
        let norm = match kind {
            Kind::Email => normalize::email(value, false),
            _ => std::borrow::Cow::Borrowed(normalize::id(value)),
        };
        let kind = kind.as_str().as_bytes();
        let mut data = Vec::with_capacity(7 + kind.len() + norm.len());
        data.extend_from_slice(b"entry\0");
        data.extend_from_slice(kind);
        data.push(0);
        data.extend_from_slice(norm.as_bytes());
        self.entries.digest(&data)
    }
}

impl std::fmt::Debug for RegisterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegisterKey(<redacted>)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFile {
    format: String,
    format_version: u32,
    /// Base64 of each entry's 16-byte HMAC, sorted.
    entries: Vec<String>,
    mac: String,
}

/// The register in memory: membership tests only.
pub struct Objections {
    key: RegisterKey,
    entries: HashSet<[u8; 16]>,
}

impl std::fmt::Debug for Objections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objections")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Objections {
    pub fn empty(key: RegisterKey) -> Self {
        Self {
            key,
            entries: HashSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Has the subject with this (raw) value of `kind` objected? An empty
    /// register, the usual case, answers without computing the entry.
    pub fn contains(&self, kind: Kind, value: &str) -> bool {
        supported(kind)
            && !self.entries.is_empty()
            && self.entries.contains(&self.key.entry(kind, value))
    }

    fn file_mac(&self, entries: &[String]) -> Vec<u8> {
        let mut m = self.key.mac(b"file\0");
        for e in entries {
            m.update(e.as_bytes());
            m.update(b"\n");
        }
        m.finalize().into_bytes().to_vec()
    }

    /// Reads the register; a missing file is an empty register.
    pub fn load(path: &Path, key: RegisterKey) -> Result<Self, KeyRingError> {
        let mut set = Self::empty(key);
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
            Err(source) => {
                return Err(KeyRingError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let corrupt = || KeyRingError::Corrupt {
            path: path.display().to_string(),
            why: "not an objection register".into(),
        };
        let file: RegisterFile = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
        if file.format != FORMAT {
            return Err(corrupt());
        }
        if file.format_version != FORMAT_VERSION {
            return Err(KeyRingError::UnknownFormat {
                path: path.display().to_string(),
                version: file.format_version,
            });
        }
        let given = BASE64.decode(file.mac.as_bytes()).unwrap_or_default();
        if !bool::from(given.ct_eq(&set.file_mac(&file.entries))) {
            return Err(KeyRingError::Integrity {
                path: path.display().to_string(),
            });
        }
        for e in &file.entries {
            let raw = BASE64.decode(e.as_bytes()).map_err(|_| corrupt())?;
            set.entries
                .insert(<[u8; 16]>::try_from(raw.as_slice()).map_err(|_| corrupt())?);
        }
        Ok(set)
    }

    fn save(&self, path: &Path) -> Result<(), KeyRingError> {
        let mut entries: Vec<String> = self.entries.iter().map(|e| BASE64.encode(e)).collect();
        entries.sort();
        let file = RegisterFile {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            mac: BASE64.encode(&self.file_mac(&entries)),
            entries,
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("the register serialises");
        crate::keyring::store::write_atomic(path, &bytes).map_err(|source| KeyRingError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Adds (or with `add = false` removes) a subject, under the file lock,
    /// re-reading the register first so concurrent writers lose nothing.
    /// Returns the register as written and whether it changed.
    pub fn update(
        path: &Path,
        key: RegisterKey,
        kind: Kind,
        value: &str,
        add: bool,
    ) -> Result<(Self, bool), KeyRingError> {
        let _lock = crate::keyring::ring::lock(path)?;
        let mut set = Self::load(path, key)?;
        let entry = set.key.entry(kind, value);
        let changed = if add {
            set.entries.insert(entry)
        } else {
            set.entries.remove(&entry)
        };
        if changed {
            set.save(path)?;
        }
        Ok((set, changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RegisterKey {
        RegisterKey::new(Zeroizing::new([5u8; 32]))
    }

    /// The precomputed key gives the same entries as the `hmac` crate, so
    /// registers written before stay readable.
    #[test]
    fn entries_match_the_hmac_crate() {
        let key = key();
        for (kind, value, norm) in [
            (Kind::Email, " Søren@Example.DK", "søren@example.dk"),
            (Kind::Id, "u-48213", "u-48213"),
        ] {
            let mut m = key.mac(b"entry\0");
            m.update(kind.as_str().as_bytes());
            m.update(b"\0");
            m.update(norm.as_bytes());
            let full = m.finalize().into_bytes();
            assert_eq!(key.entry(kind, value)[..], full[..16], "{value}");
        }
    }

    #[test]
    fn add_check_remove_and_never_store_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("objections.json");
        let (set, changed) =
            Objections::update(&p, key(), Kind::Email, " Søren@Example.dk", true).unwrap();
        assert!(changed);
        assert!(set.contains(Kind::Email, "søren@example.dk"));
        assert!(!set.contains(Kind::Id, "søren@example.dk"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.to_lowercase().contains("søren") && !text.contains("example"));
        let loaded = Objections::load(&p, key()).unwrap();
        assert!(loaded.contains(Kind::Email, "SØREN@example.dk"));
        // Another key cannot read it.
        assert!(matches!(
            Objections::load(&p, RegisterKey::new(Zeroizing::new([6u8; 32]))),
            Err(KeyRingError::Integrity { .. })
        ));
        let (set, changed) =
            Objections::update(&p, key(), Kind::Email, "søren@example.dk", false).unwrap();
        assert!(changed && set.is_empty());
    }
}
