//! The key ring file.
//!
//! ```json
//! {"format": "scrim-keyring", "format_version": 1,
//!  "versions": [{"id": 2, "created": "...", "state": "active",
//!                "retired": null, "sealed": "<base64 nonce||ct||tag>"}, ...],
//!  "mac": "<base64 HMAC-SHA256 over the versions array>"}
//! ```
//!
//! - Each version's material is sealed with AES-256-GCM under a subkey of the
//!   KEK; the associated data binds the version id and its use, so a sealed
//!   blob moved to another version does not open.
//! - An HMAC (another KEK subkey) covers the whole versions array, so editing
//!   a state, a date or the order, or dropping a version, is detected; so is a
//!   wrong KEK, which the error cannot tell apart from tampering.
//! - Writes are atomic: a temporary file in the same directory, fsync,
//!   rename over the ring, fsync of the directory. A crash at any point leaves
//!   either the old ring or the new one, never a mix. Files are 0600.
//! - Nothing here writes over a ring it could not read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::kek::Kek;
use super::KeyRingError;
use crate::pseudo::aead;

pub const FORMAT: &str = "scrim-keyring";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Makes every new pseudonym.
    Active,
    /// Held for look-ups, reveals and bridging; makes no new pseudonyms.
    Previous,
    /// Material destroyed; its pseudonyms are unlinkable for good.
    Retired,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredVersion {
    pub id: u32,
    pub created: DateTime<Utc>,
    pub state: State,
    pub retired: Option<DateTime<Utc>>,
    /// `None` once retired.
    pub sealed: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingFile {
    pub format: String,
    pub format_version: u32,
    pub versions: Vec<StoredVersion>,
    pub mac: String,
}

/// Associated data for a version's sealed material.
pub fn version_aad(id: u32) -> Vec<u8> {
    format!("scrim-keyring/v1\0version={id}\0use=pseudonymisation-root").into_bytes()
}

fn mac_of(kek: &Kek, versions: &[StoredVersion]) -> Vec<u8> {
    let key = kek.subkey("ring-mac");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_ref()).expect("HMAC takes any key");
    mac.update(FORMAT.as_bytes());
    mac.update(&FORMAT_VERSION.to_be_bytes());
    mac.update(&serde_json::to_vec(versions).expect("versions serialise"));
    mac.finalize().into_bytes().to_vec()
}

/// Reads and authenticates a ring file. Material stays sealed.
pub fn read(path: &Path, kek: &Kek) -> Result<Vec<StoredVersion>, KeyRingError> {
    let bytes = fs::read(path).map_err(|source| KeyRingError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let file: RingFile = serde_json::from_slice(&bytes).map_err(|e| KeyRingError::Corrupt {
        path: path.display().to_string(),
        why: if e.is_eof() {
            "truncated".into()
        } else {
            "not a key ring file".into()
        },
    })?;
    if file.format != FORMAT {
        return Err(KeyRingError::Corrupt {
            path: path.display().to_string(),
            why: "not a key ring file".into(),
        });
    }
    if file.format_version != FORMAT_VERSION {
        return Err(KeyRingError::UnknownFormat {
            path: path.display().to_string(),
            version: file.format_version,
        });
    }
    let given = BASE64.decode(file.mac.as_bytes()).unwrap_or_default();
    let expected = mac_of(kek, &file.versions);
    if !bool::from(given.ct_eq(&expected)) {
        return Err(KeyRingError::Integrity {
            path: path.display().to_string(),
        });
    }
    Ok(file.versions)
}

/// Writes a ring atomically, replacing `path`.
pub fn write(path: &Path, kek: &Kek, versions: &[StoredVersion]) -> Result<(), KeyRingError> {
    let file = RingFile {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        versions: versions.to_vec(),
        mac: BASE64.encode(&mac_of(kek, versions)),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("the ring serialises");
    write_atomic(path, &bytes).map_err(|source| KeyRingError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Replaces `path` with `bytes` atomically and durably, owner-only: a
/// temporary file beside it, fsync, rename, fsync of the directory. Shared
/// by every file scrim keeps state in.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = create_private(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // A full or failing disk: the file being replaced is untouched, and
        // no partial temporary file is left to take up space.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fail_point("after-temp-write");
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the directory is.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Seals fresh material for version `id`.
pub fn seal(kek: &Kek, id: u32, material: &[u8]) -> Result<String, KeyRingError> {
    let key = kek.subkey("version-seal");
    let sealed = aead::seal(&key, &version_aad(id), material).map_err(|_| KeyRingError::Random)?;
    Ok(BASE64.encode(&sealed))
}

/// Opens version `id`'s material.
pub fn open(
    kek: &Kek,
    v: &StoredVersion,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, KeyRingError> {
    let Some(sealed) = &v.sealed else {
        return Ok(None);
    };
    let bytes = BASE64
        .decode(sealed.as_bytes())
        .map_err(|_| KeyRingError::Sealed { id: v.id })?;
    let key = kek.subkey("version-seal");
    aead::open(&key, &version_aad(v.id), &bytes)
        .map(|p| Some(zeroize::Zeroizing::new(p)))
        .map_err(|_| KeyRingError::Sealed { id: v.id })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

fn create_private(path: &Path) -> std::io::Result<File> {
    if std::env::var("SCRIM_FAIL_POINT").is_ok_and(|v| v == "temp-create-erofs") {
        // What the kernel answers on a read-only file system (EROFS).
        return Err(std::io::Error::from_raw_os_error(30));
    }
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// A warning when `path` (the ring, the KEK file) can be read or written by
/// others: it names the file and its mode, never its contents. Group access
/// is left alone: it is how a Kubernetes Secret reaches a non-root pod
/// (mode 0440, group fsGroup), and granting it is a deliberate choice.
/// `None` when the file is private, or cannot be inspected (the load that
/// follows reports that).
pub fn exposure_warning(path: &Path, what: &str) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o007 != 0).then(|| {
            format!(
                "{what} {} is accessible to others (mode {mode:04o}); \
                 make it private: chmod 600 {}",
                path.display(),
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = (path, what);
        None
    }
}

/// Fault injection for tests, through `SCRIM_FAIL_POINT`:
/// `after-temp-write` aborts the process between the temporary write and the
/// rename (crash safety); `temp-create-erofs` makes creating the temporary
/// file fail with EROFS, as on a read-only file system.
fn fail_point(name: &str) {
    if std::env::var("SCRIM_FAIL_POINT").is_ok_and(|v| v == name) {
        std::process::abort();
    }
}
