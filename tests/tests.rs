//! scrim's integration tests: one binary, one module per area.
//!
//! `cargo test --all-targets` runs them all; `PROPTEST_CASES` bounds the
//! property tests (64 cases each unless set).

mod admin; // admin API: tokens and roles on every endpoint, audit log, reveal and look-up round trips
mod cli; // `scrim transform` and `scrim demo`: exit codes, messages, NDJSON streaming
mod engine; // the rule engine, table-driven: every action and kind, selectors, headers, errors
mod keyring; // key ring: rotation under load, two processes on one ring, crash safety, refusals, no leaks, schedules
mod privacy; // consent (header, cookie, per-event field, GPC), objections across replicas, leak guard
mod props; // property tests: no raw value survives, valid JSON, deterministic, NDJSON chunking
mod proxy; // end to end over real sockets
mod proxy_support; // recording upstream, scrim from config text, clients, certs, leak checks
mod rules; // every shipped rule file checks clean and transforms its fixture; `check` diagnostics
mod support; // shared helpers: test key, engines from TOML, the scrim binary, leak checks

mod envelope; // Sentry envelopes and the store endpoint: framing, allow-list per item, errors, through the proxy
mod operations; // metrics, logs without personal data, SIGHUP reload and SIGTERM drain under load, certificate reload
mod processors;
mod reliability; // the reliability and security suite behind docs/reliability.md: hostile input, faults, load, access
mod ropa; // `scrim ropa`: records of processing regenerated from the rule files and a config
mod unknown_fields; // unknown-field report: names and counts per route, never values; admin endpoint // product-analytics processors (Segment, PostHog, Mixpanel, Amplitude, Snowplow): documented payloads, deep leak checks, body_format
