//! The immutable bundle a request pins: routes with their compiled rules
//! bound to the active key, upstream clients, and limits. A request takes
//! one `Arc<Snapshot>` when it starts and keeps it to the end, so nothing
//! that replaces the snapshot (a reload, a key rotation) changes the rules
//! under a request in flight.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ProxyLimits, RouteConfig};
use crate::engine::Engine;
use crate::keyring::{KeyError, KeySource};
use crate::privacy::objections::Objections;
use crate::proxy::upstream::{self, HttpClient, UpstreamError};

pub struct Snapshot {
    pub routes: Vec<Route>,
    pub limits: ProxyLimits,
    /// Every upstream's client by name, for the next snapshot to keep.
    upstreams: HashMap<String, HttpClient>,
}

pub struct Route {
    pub cfg: RouteConfig,
    pub engine: Arc<Engine>,
    pub response_engine: Option<Arc<Engine>>,
    /// Shadow mode's candidate, bound to the same key.
    pub shadow_engine: Option<Arc<Engine>>,
    pub client: HttpClient,
    pub metrics: crate::telemetry::metrics::RouteMetrics,
    /// The route's unknown-field counts, resolved once per snapshot.
    pub unknown: Arc<crate::engine::UnknownTally>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Snapshot {
    /// Binds every route's rules to the active key and gives each upstream
    /// a pooled client (routes to one upstream share its pool): the one
    /// `before` had, when the upstream is unchanged, else a new one.
    pub fn build(
        cfg: &Config,
        keys: &dyn KeySource,
        objections: &Arc<Objections>,
        metrics: &crate::telemetry::metrics::Metrics,
        unknown: &crate::engine::unknown::UnknownRegistry,
        before: Option<&Snapshot>,
    ) -> Result<Self, SnapshotError> {
        let mut clients: HashMap<String, HttpClient> = HashMap::new();
        for (name, u) in &cfg.upstreams {
            let kept = before.and_then(|b| b.upstreams.get(name));
            let client = upstream::client(u, metrics, kept)?;
            clients.insert(name.clone(), client);
        }
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            // Bridging applies only within the grace period after a rotation.
            let grace =
                chrono::Duration::from_std(cfg.keys.bridge_grace).unwrap_or(chrono::Duration::MAX);
            let bridging = keys
                .active_created()
                .is_some_and(|t| chrono::Utc::now() - t < grace);
            let previous = if bridging { keys.previous() } else { None };
            let engine = Arc::new(
                Engine::new(r.rules.clone(), keys, cfg.limits.engine.clone())?
                    .with_previous(previous.as_deref())
                    .with_guard(r.leak_guard)
                    .with_objections(Some(objections.clone())),
            );
            let response_engine = match &r.response_rules {
                Some(rules) => Some(Arc::new(
                    Engine::new(rules.clone(), keys, cfg.limits.engine.clone())?
                        .with_guard(r.leak_guard),
                )),
                None => None,
            };
            let client = clients
                .get(&r.upstream.name)
                .cloned()
                .expect("config validation resolved every route's upstream");
            routes.push(Route {
                cfg: r.clone(),
                engine,
                response_engine,
                shadow_engine: match &r.shadow_rules {
                    Some(rules) => Some(Arc::new(
                        Engine::new(rules.clone(), keys, cfg.limits.engine.clone())?
                            .with_guard(r.leak_guard)
                            .with_objections(Some(objections.clone())),
                    )),
                    None => None,
                },
                client,
                metrics: metrics.route(&r.name),
                unknown: unknown.tally(&unknown_label(r)),
            });
        }
        Ok(Self {
            routes,
            limits: cfg.limits.clone(),
            upstreams: clients,
        })
    }
}

// === Runtime ===

/// Where a running scrim takes its keys from.
pub enum Keys {
    /// One development key (tests, `SCRIM_KEY`).
    Dev(crate::keyring::DevKeySource),
    /// The key ring, re-read when its file changes.
    Ring {
        path: std::path::PathBuf,
        kek: crate::keyring::kek::Kek,
    },
}

/// One line of a subject look-up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LookupRow {
    pub purpose: String,
    pub recipient: String,
    pub version: u32,
    pub kind: &'static str,
    pub pseudonym: String,
}

/// One route's unknown-field report (`GET /unknown-fields`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteUnknown {
    /// The route's 1-based position in the config.
    pub route: usize,
    /// Its path match (`/events/*` for a prefix).
    pub path: String,
    pub host: Option<String>,
    pub purpose: String,
    pub fields: Vec<UnknownField>,
    /// Occurrences past the cap of distinct names per route.
    pub overflow: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnknownField {
    /// `body`, `query`, `header` or `cookie`.
    pub target: &'static str,
    /// A selector-like path; personal or overlong keys as placeholders.
    pub name: String,
    pub count: u64,
}

/// A route's key in the unknown-field registry: by position and match, so a
/// reload that keeps the route keeps its counts.
fn unknown_label(r: &RouteConfig) -> String {
    format!("{} {:?} {:?}", r.index, r.host, r.path)
}

/// Why a reveal failed; says nothing about the token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevealError {
    #[error("not a reversible token")]
    NotAToken,
    #[error("no route serves that purpose")]
    UnknownPurpose,
    #[error("key version {version} is retired or unknown; the token can no longer be opened")]
    VersionNotHeld { version: u32 },
    #[error("the token does not open for that purpose and field")]
    DoesNotOpen,
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Ring(#[from] crate::keyring::KeyRingError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("scrim runs on a development key; key ring operations need [keys] ring")]
    NoRing,
    #[error("no objection register: set [privacy] objections = \"PATH\" in the config")]
    NoRegister,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
}

/// The objection register's key: from the KEK with a ring (stable across
/// rotations), else from the development key.
fn register_key(keys: &Keys) -> Result<crate::privacy::objections::RegisterKey, KeyError> {
    Ok(crate::privacy::objections::RegisterKey::new(match keys {
        Keys::Ring { kek, .. } => kek.subkey("objections"),
        Keys::Dev(dev) => crate::pseudo::derive_key(&*dev.active()?, "objections"),
    }))
}

/// The shared state of a running scrim: the config, the keys, and the
/// current snapshot behind an atomic pointer. Requests load the pointer once;
/// a rotation or reload stores a new snapshot without blocking them.
pub struct Runtime {
    config: arc_swap::ArcSwap<Config>,
    keys: Keys,
    ring: arc_swap::ArcSwapOption<crate::keyring::ring::KeyRing>,
    snapshot: arc_swap::ArcSwap<Snapshot>,
    /// Modification time and length of the ring file when last read.
    ring_stamp: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
    objections: arc_swap::ArcSwap<Objections>,
    objections_stamp: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
    /// Unknown-field counts per route, kept across rotations and reloads.
    unknown: crate::engine::unknown::UnknownRegistry,
    /// Shadow-mode differences per route, since start.
    pub shadow: crate::privacy::shadow::ShadowReport,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// The listeners' certificates, re-read by [`reload`](Self::reload).
    certs: std::sync::Mutex<Vec<Arc<crate::server::tls::ReloadableCert>>>,
    /// Set when shutdown starts: readiness turns false so that load
    /// balancers stop sending while requests in flight finish.
    draining: std::sync::atomic::AtomicBool,
    /// Held by everything that builds and installs a snapshot (a reload, a
    /// ring change, the objection register), so that one cannot install a
    /// snapshot built from state another has already replaced.
    changes: std::sync::Mutex<()>,
}

impl Runtime {
    pub fn new(config: Config, keys: Keys) -> Result<Arc<Self>, RuntimeError> {
        let objections = Arc::new(match &config.objections {
            Some(p) => Objections::load(p, register_key(&keys)?)?,
            None => Objections::empty(register_key(&keys)?),
        });
        let metrics = Arc::new(crate::telemetry::metrics::Metrics::new());
        let unknown = crate::engine::unknown::UnknownRegistry::default();
        let (ring, snapshot) = match &keys {
            Keys::Dev(dev) => (
                None,
                Snapshot::build(&config, dev, &objections, &metrics, &unknown, None)?,
            ),
            Keys::Ring { path, kek } => {
                let ring = crate::keyring::ring::KeyRing::load(path, kek)?;
                let snap = Snapshot::build(&config, &ring, &objections, &metrics, &unknown, None)?;
                (Some(Arc::new(ring)), snap)
            }
        };
        let rt = Arc::new(Self {
            config: arc_swap::ArcSwap::from_pointee(config),
            keys,
            ring: arc_swap::ArcSwapOption::new(ring),
            snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
            ring_stamp: std::sync::Mutex::new(None),
            unknown,
            objections: arc_swap::ArcSwap::new(objections),
            objections_stamp: std::sync::Mutex::new(None),
            shadow: Default::default(),
            metrics,
            certs: Default::default(),
            draining: Default::default(),
            changes: Default::default(),
        });
        rt.note_key_version(&rt.snapshot());
        *rt.ring_stamp.lock().expect("fresh mutex") = rt.stamp();
        *rt.objections_stamp.lock().expect("fresh mutex") = rt.objections_file_stamp();
        Ok(rt)
    }

    /// The objection register as last read.
    pub fn objections(&self) -> Arc<Objections> {
        self.objections.load_full()
    }

    fn objections_file_stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        let m = std::fs::metadata(self.config().objections.as_ref()?).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Adds or removes a subject from the objection register and applies it
    /// at once. Returns whether the register changed.
    pub fn object(
        &self,
        kind: crate::engine::spec::Kind,
        value: &str,
        add: bool,
    ) -> Result<bool, RuntimeError> {
        let _changing = self.changing();
        let cfg = self.config();
        let path = cfg.objections.as_ref().ok_or(RuntimeError::NoRegister)?;
        let (set, changed) = Objections::update(path, register_key(&self.keys)?, kind, value, add)?;
        self.objections.store(Arc::new(set));
        self.rebuild()?;
        if let Ok(mut s) = self.objections_stamp.lock() {
            *s = self.objections_file_stamp();
        }
        Ok(changed)
    }

    /// Re-reads the objection register if its file changed (another replica
    /// wrote it). Returns whether it changed.
    pub fn refresh_objections(&self) -> Result<bool, RuntimeError> {
        let _changing = self.changing();
        let cfg = self.config();
        let Some(path) = cfg.objections.as_ref() else {
            return Ok(false);
        };
        let now = self.objections_file_stamp();
        if self.objections_stamp.lock().map(|s| *s).unwrap_or(None) == now {
            return Ok(false);
        }
        let set = Objections::load(path, register_key(&self.keys)?)?;
        self.objections.store(Arc::new(set));
        self.rebuild()?;
        if let Ok(mut s) = self.objections_stamp.lock() {
            *s = now;
        }
        Ok(true)
    }

    /// A new snapshot from the current config, keys and register.
    fn rebuild(&self) -> Result<(), RuntimeError> {
        let cfg = self.config();
        let snap = match (&self.keys, self.ring()) {
            (_, Some(ring)) => self.build(&cfg, ring.as_ref())?,
            (Keys::Dev(dev), None) => self.build(&cfg, dev)?,
            (Keys::Ring { .. }, None) => return Err(RuntimeError::NoRing),
        };
        self.store(snap);
        Ok(())
    }

    /// A snapshot of `cfg` under `keys`, with the current objection
    /// register, this runtime's metrics and unknown-field tallies, and the
    /// running snapshot's upstream pools where their upstream is unchanged.
    fn build(&self, cfg: &Config, keys: &dyn KeySource) -> Result<Snapshot, SnapshotError> {
        let running = self.snapshot();
        Snapshot::build(
            cfg,
            keys,
            &self.objections(),
            &self.metrics,
            &self.unknown,
            Some(&running),
        )
    }

    fn changing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, snap: Snapshot) {
        self.note_key_version(&snap);
        self.snapshot.store(Arc::new(snap));
    }

    fn note_key_version(&self, snap: &Snapshot) {
        if let Some(r) = snap.routes.first() {
            self.metrics.set_key_version(r.engine.key_version());
        }
    }

    /// Adds a listener's certificate to what reloads re-read.
    pub fn add_cert(&self, cert: Arc<crate::server::tls::ReloadableCert>) {
        if let Ok(mut certs) = self.certs.lock() {
            certs.push(cert);
        }
    }

    /// Readiness turns false: shutdown has begun.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The snapshot a new request pins.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The key ring as last read; `None` on a development key.
    pub fn ring(&self) -> Option<Arc<crate::keyring::ring::KeyRing>> {
        self.ring.load_full()
    }

    fn ring_path(&self) -> Result<(&std::path::Path, &crate::keyring::kek::Kek), RuntimeError> {
        match &self.keys {
            Keys::Ring { path, kek } => Ok((path, kek)),
            Keys::Dev(_) => Err(RuntimeError::NoRing),
        }
    }

    fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        let (path, _) = self.ring_path().ok()?;
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Re-reads the ring if its file changed since the last read, and
    /// installs a snapshot bound to its active version. A ring that fails to
    /// load leaves the running snapshot in place. Returns whether it changed.
    pub fn refresh_ring(&self) -> Result<bool, RuntimeError> {
        let _changing = self.changing();
        let (path, kek) = self.ring_path()?;
        let now = self.stamp();
        {
            let last = self.ring_stamp.lock().map(|l| *l).unwrap_or(None);
            if now == last {
                return Ok(false);
            }
        }
        let ring = crate::keyring::ring::KeyRing::load(path, kek)?;
        self.install(ring)?;
        if let Ok(mut l) = self.ring_stamp.lock() {
            *l = now;
        }
        Ok(true)
    }

    fn install(&self, ring: crate::keyring::ring::KeyRing) -> Result<(), RuntimeError> {
        let snap = self.build(&self.config(), &ring)?;
        self.ring.store(Some(Arc::new(ring)));
        self.store(snap);
        Ok(())
    }

    /// Rotates the ring and switches to the new version at once.
    pub fn rotate(&self) -> Result<u32, RuntimeError> {
        let _changing = self.changing();
        let (path, kek) = self.ring_path()?;
        let ring = crate::keyring::ring::KeyRing::rotate(path, kek)?;
        let id = ring.active_version().id;
        self.install(ring)?;
        if let Ok(mut l) = self.ring_stamp.lock() {
            *l = self.stamp();
        }
        Ok(id)
    }

    pub fn retire(&self, id: u32) -> Result<(), RuntimeError> {
        let _changing = self.changing();
        self.retire_unlocked(id)
    }

    fn retire_unlocked(&self, id: u32) -> Result<(), RuntimeError> {
        let (path, kek) = self.ring_path()?;
        let ring = crate::keyring::ring::KeyRing::retire(path, kek, id)?;
        self.install(ring)?;
        if let Ok(mut l) = self.ring_stamp.lock() {
            *l = self.stamp();
        }
        Ok(())
    }

    /// Re-reads the config file (rules included), the listeners'
    /// certificates and the ring, and installs the result only if all of it
    /// is valid; otherwise nothing changes and the errors are returned.
    /// Requests in flight keep the snapshot they pinned. Listeners are bound
    /// once: changing their addresses needs a restart.
    pub fn reload(&self) -> Result<(), RuntimeError> {
        let r = self.try_reload();
        self.metrics.reload(r.is_ok());
        match &r {
            Ok(()) => tracing::info!(
                routes = self.snapshot().routes.len(),
                "configuration reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "reload refused; the running configuration stays")
            }
        }
        r
    }

    fn try_reload(&self) -> Result<(), RuntimeError> {
        let _changing = self.changing();
        let path = self.config().path.clone();
        let cfg = crate::config::load(&path)?;
        let certs = self.certs.lock().map(|c| c.clone()).unwrap_or_default();
        let keys = certs
            .iter()
            .map(|c| c.read())
            .collect::<Result<Vec<_>, _>>()?;
        let (ring, snap) = match &self.keys {
            Keys::Dev(dev) => (None, self.build(&cfg, dev)?),
            Keys::Ring { path, kek } => {
                let ring = crate::keyring::ring::KeyRing::load(path, kek)?;
                let snap = self.build(&cfg, &ring)?;
                (Some(ring), snap)
            }
        };
        // Everything is valid: install it all.
        for (c, k) in certs.iter().zip(keys) {
            c.install(k);
        }
        if let Some(ring) = ring {
            self.ring.store(Some(Arc::new(ring)));
        }
        crate::telemetry::set_level(cfg.log.level.as_deref());
        let old = self.config();
        let bound = |c: &Config| {
            let addrs: Vec<_> = c.listeners.iter().map(|l| l.addr).collect();
            let admin = c.admin.as_ref().map(|a| a.listener.addr);
            let l = &c.limits;
            (
                addrs,
                admin,
                l.max_connections,
                l.header_timeout,
                l.send_timeout,
                l.max_header_bytes,
                l.drain_timeout,
            )
        };
        if bound(&old) != bound(&cfg) {
            tracing::warn!(
                "listener addresses or connection limits changed: they apply after a restart"
            );
        }
        self.config.store(Arc::new(cfg));
        self.store(snap);
        Ok(())
    }

    /// Scheduled key maintenance: rotation when the active version is older
    /// than `rotate_every`, retirement of previous versions whose longest
    /// retention has passed. Safe to run on every replica at once: the
    /// ring's lock and a re-check under it make it happen once.
    pub fn maintain_keys(&self) -> Result<(), RuntimeError> {
        let _changing = self.changing();
        let cfg = self.config();
        let Ok((path, kek)) = self.ring_path() else {
            return Ok(());
        };
        if let Some(every) = cfg.keys.rotate_every {
            let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
            let (ring, rotated) = crate::keyring::ring::KeyRing::rotate_if(path, kek, |r| {
                chrono::Utc::now() - r.active_version().created >= every
            })?;
            if rotated {
                tracing::info!(
                    version = ring.active_version().id,
                    "key rotated on schedule"
                );
                self.install(ring)?;
            }
        }
        if cfg.keys.auto_retire {
            // The longest retention of any purpose this config serves; a
            // purpose kept "while the service is used" holds every version.
            let longest = cfg
                .routes
                .iter()
                .filter(|r| !r.pass_through)
                .flat_map(|r| std::iter::once(&r.rules).chain(r.response_rules.iter()))
                .map(|rules| rules.purpose.retention.as_duration())
                .try_fold(std::time::Duration::ZERO, |acc, d| d.map(|d| acc.max(d)));
            if let (Some(longest), Some(ring)) = (longest, self.ring()) {
                let longest = chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::MAX);
                for v in ring.versions() {
                    let expired = v.state == crate::keyring::store::State::Previous
                        && ring
                            .superseded_at(v.id)
                            .is_some_and(|t| chrono::Utc::now() - t >= longest);
                    if expired {
                        tracing::info!(version = v.id, "key version retired: retention passed");
                        self.retire_unlocked(v.id)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Per route of the current config: the names (never the values) of the
    /// body fields, query parameters, headers and cookies dropped because no
    /// rule named them, with counts.
    pub fn unknown_fields(&self) -> Vec<RouteUnknown> {
        self.config()
            .routes
            .iter()
            .map(|r| {
                let (fields, overflow) = self
                    .unknown
                    .get(&unknown_label(r))
                    .map(|t| t.report())
                    .unwrap_or_default();
                RouteUnknown {
                    route: r.index,
                    path: match &r.path {
                        crate::config::PathMatch::Exact(p) => p.clone(),
                        crate::config::PathMatch::Prefix(p) => format!("{p}*"),
                    },
                    host: r.host.clone(),
                    purpose: r.rules.purpose.id.clone(),
                    fields: fields
                        .into_iter()
                        .map(|(target, name, count)| UnknownField {
                            target: target.as_str(),
                            name,
                            count,
                        })
                        .collect(),
                    overflow,
                }
            })
            .collect()
    }

    /// Every purpose this config serves: (purpose id, recipient).
    pub fn purposes(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in self.config().routes.iter().filter(|r| !r.pass_through) {
            for rules in std::iter::once(&r.rules).chain(r.response_rules.iter()) {
                let p = (rules.purpose.id.clone(), rules.purpose.recipient.clone());
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Held key versions (active first, then previous, newest first).
    fn held_keys(&self) -> Vec<Arc<crate::keyring::KeyMaterial>> {
        match (&self.keys, self.ring()) {
            (_, Some(ring)) => {
                let mut v: Vec<_> = ring.held().cloned().collect();
                v.sort_by_key(|k| std::cmp::Reverse(k.version()));
                let active = ring.active_version().id;
                v.sort_by_key(|k| k.version() != active);
                v
            }
            (Keys::Dev(dev), None) => dev.active().into_iter().collect(),
            (Keys::Ring { .. }, None) => Vec::new(),
        }
    }

    /// A data subject's pseudonyms for every purpose and every key version
    /// still held, so the recipients' records can be found, exported or
    /// erased.
    pub fn lookup(&self, kind: crate::engine::spec::Kind, value: &str) -> Vec<LookupRow> {
        let mut rows = Vec::new();
        for key in self.held_keys() {
            for (purpose, recipient) in self.purposes() {
                let p = crate::pseudo::Pseudonymiser::new(&key, &purpose, &recipient);
                if let Some(token) = p.subject_token(kind, value) {
                    rows.push(LookupRow {
                        purpose: purpose.clone(),
                        recipient: recipient.clone(),
                        version: key.version(),
                        kind: kind.as_str(),
                        pseudonym: token,
                    });
                }
            }
        }
        rows
    }

    /// Opens a reversible token made by the `encrypt` rule `field` of
    /// `purpose`, with the key version the token names.
    pub fn reveal(&self, purpose: &str, field: &str, token: &str) -> Result<String, RevealError> {
        let (version, _) = crate::pseudo::parse_encrypted(token).ok_or(RevealError::NotAToken)?;
        let (_, recipient) = self
            .purposes()
            .into_iter()
            .find(|(p, _)| p == purpose)
            .ok_or(RevealError::UnknownPurpose)?;
        let key = self
            .held_keys()
            .into_iter()
            .find(|k| k.version() == version)
            .ok_or(RevealError::VersionNotHeld { version })?;
        crate::pseudo::Pseudonymiser::new(&key, purpose, &recipient)
            .reveal(field, token)
            .map_err(|_| RevealError::DoesNotOpen)
    }

    /// A pseudonym of `value` for the audit log: keyed like any other, under
    /// a purpose of its own, so the log names subjects without naming them.
    pub fn audit_pseudonym(&self, value: &str) -> String {
        match self.held_keys().first() {
            Some(k) => crate::pseudo::Pseudonymiser::new(k, "audit", "audit")
                .token(crate::engine::spec::Kind::Id, value),
            None => "unavailable".into(),
        }
    }

    /// Polls the ring for changes and runs key maintenance every
    /// `reload_interval`, until the returned task is aborted.
    pub fn spawn_key_watcher(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let ring = matches!(self.keys, Keys::Ring { .. });
        if !ring && self.config().objections.is_none() {
            return None;
        }
        let rt = self.clone();
        Some(tokio::spawn(async move {
            loop {
                let every = rt.config().keys.reload_interval;
                tokio::time::sleep(every).await;
                match rt.refresh_objections() {
                    Ok(true) => tracing::info!(
                        subjects = rt.objections().len(),
                        "objection register reloaded"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "objection register not reloaded; keeping the current one")
                    }
                }
                if !ring {
                    continue;
                }
                match rt.refresh_ring() {
                    Ok(true) => tracing::info!(
                        version = rt.ring().map(|r| r.active_version().id),
                        "key ring reloaded"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "key ring not reloaded; keeping the current keys")
                    }
                }
                if let Err(e) = rt.maintain_keys() {
                    tracing::error!(error = %e, "scheduled key maintenance failed");
                }
            }
        }))
    }
}
