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
use crate::proxy::upstream::{self, HttpClient, UpstreamError};

pub struct Snapshot {
    pub routes: Vec<Route>,
    pub limits: ProxyLimits,
}

pub struct Route {
    pub cfg: RouteConfig,
    pub engine: Arc<Engine>,
    pub response_engine: Option<Arc<Engine>>,
    pub client: HttpClient,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl Snapshot {
    /// Binds every route's rules to the active key and builds one pooled
    /// client per upstream (routes to one upstream share its pool).
    pub fn build(cfg: &Config, keys: &dyn KeySource) -> Result<Self, SnapshotError> {
        let mut clients: HashMap<&str, HttpClient> = HashMap::new();
        for (name, u) in &cfg.upstreams {
            clients.insert(name.as_str(), upstream::client(u)?);
        }
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let engine = Arc::new(Engine::new(
                r.rules.clone(),
                keys,
                cfg.limits.engine.clone(),
            )?);
            let response_engine = match &r.response_rules {
                Some(rules) => Some(Arc::new(Engine::new(
                    rules.clone(),
                    keys,
                    cfg.limits.engine.clone(),
                )?)),
                None => None,
            };
            let client = clients
                .get(r.upstream.name.as_str())
                .cloned()
                .expect("config validation resolved every route's upstream");
            routes.push(Route {
                cfg: r.clone(),
                engine,
                response_engine,
                client,
            });
        }
        Ok(Self {
            routes,
            limits: cfg.limits.clone(),
        })
    }
}
