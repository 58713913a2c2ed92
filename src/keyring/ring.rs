//! The key ring in memory, and the operations the security team runs on
//! it: init, rotate, retire. Each operation takes an exclusive lock beside
//! the ring file, re-reads the ring under it, and writes atomically, so two
//! replicas (or an admin call and a scheduled rotation) never lose a write.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::kek::Kek;
use super::store::{self, State, StoredVersion};
use super::{KeyError, KeyMaterial, KeyRingError, KeySource, MIN_SECRET_BYTES};

/// One version as held in memory. Retired versions hold no material.
#[derive(Debug, Clone)]
pub struct HeldVersion {
    pub id: u32,
    pub created: DateTime<Utc>,
    pub state: State,
    pub retired: Option<DateTime<Utc>>,
    pub material: Option<Arc<KeyMaterial>>,
}

#[derive(Debug, Clone)]
pub struct KeyRing {
    versions: Vec<HeldVersion>,
}

impl KeyRing {
    /// Reads, authenticates and opens a ring. Any doubt is an error.
    pub fn load(path: &Path, kek: &Kek) -> Result<Self, KeyRingError> {
        let stored = store::read(path, kek)?;
        Self::open_all(&stored, kek)
    }

    fn open_all(stored: &[StoredVersion], kek: &Kek) -> Result<Self, KeyRingError> {
        let mut versions = Vec::with_capacity(stored.len());
        let mut active = 0;
        for v in stored {
            if versions.iter().any(|h: &HeldVersion| h.id == v.id) || v.id == 0 {
                return Err(KeyRingError::Invalid("duplicate or zero version id"));
            }
            let material = match (v.state, store::open(kek, v)?) {
                (State::Retired, None) => None,
                (State::Retired, Some(_)) => {
                    return Err(KeyRingError::Invalid(
                        "a retired version still holds material",
                    ))
                }
                (_, None) => return Err(KeyRingError::Invalid("a held version has no material")),
                (_, Some(m)) => Some(Arc::new(
                    KeyMaterial::new(v.id, m.to_vec())
                        .map_err(|_| KeyRingError::Sealed { id: v.id })?,
                )),
            };
            if v.state == State::Active {
                active += 1;
            }
            versions.push(HeldVersion {
                id: v.id,
                created: v.created,
                state: v.state,
                retired: v.retired,
                material,
            });
        }
        if active != 1 {
            return Err(KeyRingError::Invalid(
                "a ring has exactly one active version",
            ));
        }
        versions.sort_by_key(|v| v.id);
        Ok(Self { versions })
    }

    pub fn versions(&self) -> &[HeldVersion] {
        &self.versions
    }

    pub fn active_version(&self) -> &HeldVersion {
        self.versions
            .iter()
            .find(|v| v.state == State::Active)
            .expect("load checked there is exactly one active version")
    }

    /// Versions whose material is still held (active and previous).
    pub fn held(&self) -> impl Iterator<Item = &Arc<KeyMaterial>> {
        self.versions.iter().filter_map(|v| v.material.as_ref())
    }

    pub fn get(&self, id: u32) -> Option<&Arc<KeyMaterial>> {
        self.versions
            .iter()
            .find(|v| v.id == id)
            .and_then(|v| v.material.as_ref())
    }

    /// When version `id` stopped making new pseudonyms: the creation time of
    /// the version after it.
    pub fn superseded_at(&self, id: u32) -> Option<DateTime<Utc>> {
        self.versions
            .iter()
            .filter(|v| v.id > id)
            .map(|v| v.created)
            .min()
    }

    /// Creates a new ring with one active version. Refuses to overwrite.
    pub fn init(path: &Path, kek: &Kek) -> Result<Self, KeyRingError> {
        let _lock = lock(path)?;
        if path.exists() {
            return Err(KeyRingError::Exists {
                path: path.display().to_string(),
            });
        }
        let v = new_version(kek, 1, Utc::now())?;
        store::write(path, kek, std::slice::from_ref(&v))?;
        Self::load(path, kek)
    }

    /// Makes a new active version; the active one becomes previous.
    pub fn rotate(path: &Path, kek: &Kek) -> Result<Self, KeyRingError> {
        Self::rotate_if(path, kek, |_| true).map(|(r, _)| r)
    }

    /// Rotates only if `due` says so for the ring as re-read under the lock
    /// (so replicas racing on a schedule rotate once). Returns whether it did.
    pub fn rotate_if(
        path: &Path,
        kek: &Kek,
        due: impl FnOnce(&KeyRing) -> bool,
    ) -> Result<(Self, bool), KeyRingError> {
        let _lock = lock(path)?;
        let mut stored = store::read(path, kek)?;
        let current = Self::open_all(&stored, kek)?;
        if !due(&current) {
            return Ok((current, false));
        }
        let next_id = stored.iter().map(|v| v.id).max().unwrap_or(0) + 1;
        for v in &mut stored {
            if v.state == State::Active {
                v.state = State::Previous;
            }
        }
        stored.push(new_version(kek, next_id, Utc::now())?);
        store::write(path, kek, &stored)?;
        Ok((Self::open_all(&stored, kek)?, true))
    }

    /// Destroys version `id`'s material. The active version cannot be
    /// retired: rotate first.
    pub fn retire(path: &Path, kek: &Kek, id: u32) -> Result<Self, KeyRingError> {
        let _lock = lock(path)?;
        let mut stored = store::read(path, kek)?;
        Self::open_all(&stored, kek)?;
        let v = stored
            .iter_mut()
            .find(|v| v.id == id)
            .ok_or(KeyRingError::NoSuchVersion { id })?;
        match v.state {
            State::Active => return Err(KeyRingError::RetireActive { id }),
            State::Retired => return Err(KeyRingError::AlreadyRetired { id }),
            State::Previous => {}
        }
        v.state = State::Retired;
        v.retired = Some(Utc::now());
        v.sealed = None;
        store::write(path, kek, &stored)?;
        Self::open_all(&stored, kek)
    }
}

impl KeySource for KeyRing {
    fn active(&self) -> Result<Arc<KeyMaterial>, KeyError> {
        self.active_version()
            .material
            .clone()
            .ok_or(KeyError::Missing)
    }

    fn active_created(&self) -> Option<DateTime<Utc>> {
        Some(self.active_version().created)
    }

    fn previous(&self) -> Option<Arc<KeyMaterial>> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.state == State::Previous)
            .and_then(|v| v.material.clone())
    }
}

fn new_version(kek: &Kek, id: u32, created: DateTime<Utc>) -> Result<StoredVersion, KeyRingError> {
    let mut material = zeroize::Zeroizing::new(vec![0u8; MIN_SECRET_BYTES]);
    getrandom::fill(&mut material).map_err(|_| KeyRingError::Random)?;
    Ok(StoredVersion {
        id,
        created,
        state: State::Active,
        retired: None,
        sealed: Some(store::seal(kek, id, &material)?),
    })
}

/// An exclusive lock on `<ring>.lock`, released on drop.
pub(crate) fn lock(path: &Path) -> Result<File, KeyRingError> {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    let lock_path: PathBuf = path.with_file_name(name);
    let io = |source| KeyRingError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    f.lock().map_err(io)?;
    Ok(f)
}
