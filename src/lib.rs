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
//! - [`cli`]: `scrim transform`, `scrim check`, `scrim demo`.
//!
//! Invariants every module keeps: allow-list minimisation, fail closed,
//! keyed and domain-separated pseudonyms, no key material and no personal
//! data in errors or logs.

#![forbid(unsafe_code)]

pub mod cli;
pub mod engine;
pub mod keyring;
pub mod pseudo;
