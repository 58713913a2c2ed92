//! scrim: a pseudonymising reverse proxy for webinar and event data.
//!
//! Modules, in the order a payload meets them:
//!
//! - [`engine`]: the rule engine. Rule files (`rules/*.toml`) are compiled
//!   once into a plan; payloads (JSON, NDJSON, forms, query strings, headers,
//!   cookies) are walked in one pass and everything no rule names is dropped.
//! - [`pseudo`]: the pseudonymiser. Keyed HMAC-SHA256 under keys derived
//!   per purpose, recipient and kind; tokens carry the key version and keep
//!   the shape of what they replace (an email stays an email, an IP an IP).
//! - [`keyring`]: where keys come from, behind the narrow [`keyring::KeySource`].
//! - [`config`]: `scrim.toml`, validated once into [`config::Config`].
//! - [`snapshot`]: routes bound to compiled rules and the active key; one
//!   `Arc<Snapshot>` is pinned per request.
//! - [`proxy`]: one request's lifecycle as named phases (start there).
//! - [`server`]: listeners, TLS, HTTP/1.1 and HTTP/2, connection limits,
//!   graceful drain.
//! - [`telemetry`]: logging setup; logs carry rule ids, routes and reasons,
//!   never values.
//! - [`cli`]: `scrim run`, `scrim demo`, `scrim transform`, `scrim check`.
//!
//! Invariants every module keeps: allow-list minimisation, fail closed,
//! keyed and domain-separated pseudonyms, no key material and no personal
//! data in errors or logs.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod engine;
pub mod keyring;
pub mod privacy;
pub mod proxy;
pub mod pseudo;
pub mod server;
pub mod snapshot;
pub mod telemetry;

#[cfg(test)]
mod testing;
