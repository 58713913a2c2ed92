//! Prometheus metrics, served as text on the admin listener (`GET /metrics`).
//!
//! Labels are bounded by the config: a route's name, a status code, an
//! action or a reason. Nothing from a request becomes a label, so no value
//! (and no personal data) can reach a time series.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `scrim_requests_total` | route, status | requests answered; route "none" when nothing matched |
//! | `scrim_request_bytes_total` | route | body bytes received from clients, as sent (compressed) |
//! | `scrim_upstream_bytes_total` | route | body bytes sent on to the upstream |
//! | `scrim_fields_total` | route, action | values by what the rules did: kept, dropped, pseudonymised, ... |
//! | `scrim_events_dropped_total` | reason | no_consent, objection, leak_guard, fail_closed |
//! | `scrim_leaks_scrubbed_total` | | values the leak guard scrubbed after the rules |
//! | `scrim_upstream_duration_seconds` | route | histogram: request sent to response head |
//! | `scrim_added_duration_seconds` | route | histogram: scrim's own time on a forwarded request |
//! | `scrim_upstream_waits_total` | upstream | requests that waited for a connection, all `max_connections` being busy |
//! | `scrim_upstream_busy` | upstream | HTTP/1.1 connections carrying a request that holds a slot, against `max_connections` |
//! | `scrim_key_version` | | the active key version |
//! | `scrim_reloads_total` | outcome | reloads (SIGHUP, admin API): ok or refused |
//! | `scrim_send_timeouts_total` | | client connections closed, and h2 streams let go, because the client stopped reading (`send_timeout_ms`) |

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: Arc<String>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteAction {
    route: Arc<String>,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Why an event was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A consent purpose without consent, or `Sec-GPC: 1`.
    NoConsent,
    /// The subject objected (GDPR art. 21).
    Objection,
    /// The leak guard refused what the rules left.
    LeakGuard,
    /// The body could not be read or rewritten, so nothing of it left.
    FailClosed,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::NoConsent => "no_consent",
            Dropped::Objection => "objection",
            Dropped::LeakGuard => "leak_guard",
            Dropped::FailClosed => "fail_closed",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to about 13 s: scrim's own time sits at the low end, upstreams
    // at the high end.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// Every metric scrim keeps. One per process, shared by reloads.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    bytes_in: Family<RouteLabel, Counter>,
    bytes_out: Family<RouteLabel, Counter>,
    fields: Family<RouteAction, Counter>,
    dropped: Family<ReasonLabel, Counter>,
    leaks_scrubbed: Counter,
    upstream: HistogramFamily<RouteLabel>,
    added: HistogramFamily<RouteLabel>,
    upstream_waits: Family<UpstreamLabel, Counter>,
    upstream_busy: Family<UpstreamLabel, Gauge>,
    key_version: Gauge,
    reloads: Family<OutcomeLabel, Counter>,
    send_timeouts: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("scrim");
        let requests = Family::default();
        let bytes_in = Family::default();
        let bytes_out = Family::default();
        let fields = Family::default();
        let dropped = Family::<ReasonLabel, Counter>::default();
        let leaks_scrubbed = Counter::default();
        let upstream = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let added = HistogramFamily::new_with_constructor(latency_histogram as fn() -> _);
        let upstream_waits = Family::<UpstreamLabel, Counter>::default();
        let upstream_busy = Family::<UpstreamLabel, Gauge>::default();
        let key_version = Gauge::default();
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        registry.register(
            "request_bytes",
            "Body bytes received from clients, as sent",
            bytes_in.clone(),
        );
        registry.register(
            "upstream_bytes",
            "Body bytes sent on to the upstream",
            bytes_out.clone(),
        );
        registry.register("fields", "Values by the action applied", fields.clone());
        registry.register(
            "events_dropped",
            "Events not forwarded, by reason",
            dropped.clone(),
        );
        registry.register(
            "leaks_scrubbed",
            "Values the leak guard scrubbed after the rules",
            leaks_scrubbed.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response head",
            upstream.clone(),
        );
        registry.register(
            "added_duration_seconds",
            "Time scrim itself spent on a forwarded request",
            added.clone(),
        );
        registry.register(
            "upstream_waits",
            "Requests that waited for an upstream connection, all max_connections being busy",
            upstream_waits.clone(),
        );
        registry.register(
            "upstream_busy",
            "Upstream HTTP/1.1 connections busy with a request that holds a slot",
            upstream_busy.clone(),
        );
        registry.register("key_version", "The active key version", key_version.clone());
        registry.register("reloads", "Reloads by outcome", reloads.clone());
        let send_timeouts = Counter::default();
        registry.register(
            "send_timeouts",
            "Client connections closed, and h2 streams let go, because the client stopped reading its response",
            send_timeouts.clone(),
        );
        // Every reason and outcome shows from the start at 0, so a rate()
        // over them works before the first one happens.
        for r in [
            Dropped::NoConsent,
            Dropped::Objection,
            Dropped::LeakGuard,
            Dropped::FailClosed,
        ] {
            dropped.get_or_create_owned(&ReasonLabel { reason: r.label() });
        }
        for outcome in ["ok", "refused"] {
            reloads.get_or_create_owned(&OutcomeLabel { outcome });
        }
        Self {
            registry,
            requests,
            bytes_in,
            bytes_out,
            fields,
            dropped,
            leaks_scrubbed,
            upstream,
            added,
            upstream_waits,
            upstream_busy,
            key_version,
            reloads,
            send_timeouts,
        }
    }

    /// The handles one route's requests update, made once per snapshot so
    /// the request path takes no lock to find them.
    pub fn route(&self, name: &Arc<String>) -> RouteMetrics {
        let route = RouteLabel {
            route: name.clone(),
        };
        let reason = |r: Dropped| {
            self.dropped
                .get_or_create_owned(&ReasonLabel { reason: r.label() })
        };
        RouteMetrics {
            name: name.clone(),
            answered_200: self.requests.get_or_create_owned(&RouteStatus {
                route: name.clone(),
                status: 200,
            }),
            bytes_in: self.bytes_in.get_or_create_owned(&route),
            bytes_out: self.bytes_out.get_or_create_owned(&route),
            upstream: self.upstream.get_or_create_owned(&route),
            added: self.added.get_or_create_owned(&route),
            fields: ACTIONS.map(|action| {
                self.fields.get_or_create_owned(&RouteAction {
                    route: name.clone(),
                    action,
                })
            }),
            no_consent: reason(Dropped::NoConsent),
            objection: reason(Dropped::Objection),
            leaks_scrubbed: self.leaks_scrubbed.clone(),
        }
    }

    pub fn request(&self, route: &Arc<String>, status: u16) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.clone(),
                status,
            })
            .inc();
    }

    pub fn dropped(&self, reason: Dropped, n: u64) {
        if n > 0 {
            self.dropped
                .get_or_create(&ReasonLabel {
                    reason: reason.label(),
                })
                .inc_by(n);
        }
    }

    /// Events not forwarded for `reason`, since start.
    pub fn dropped_count(&self, reason: Dropped) -> u64 {
        self.dropped
            .get(&ReasonLabel {
                reason: reason.label(),
            })
            .map_or(0, |c| c.get())
    }

    /// What consent, objections and the leak guard did since start, for
    /// the admin API's `GET /privacy`: read from the same counters as
    /// `/metrics`, so the two never disagree.
    pub fn privacy_json(&self) -> serde_json::Value {
        serde_json::json!({
            "withheld_consent": self.dropped_count(Dropped::NoConsent),
            "withheld_objection": self.dropped_count(Dropped::Objection),
            "leaks_scrubbed": self.leaks_scrubbed.get(),
            "leaks_refused": self.dropped_count(Dropped::LeakGuard),
        })
    }

    /// The handles of one upstream's metrics (shown from the start, at 0).
    pub fn upstream(&self, upstream: &str) -> UpstreamMetrics {
        let label = UpstreamLabel {
            upstream: upstream.to_owned(),
        };
        UpstreamMetrics {
            waits: self.upstream_waits.get_or_create_owned(&label),
            busy: self.upstream_busy.get_or_create_owned(&label),
        }
    }

    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A client connection closed, or an h2 stream let go, by the send timeout.
    pub fn send_timeout(&self) {
        self.send_timeouts.inc();
    }

    pub fn set_key_version(&self, v: u32) {
        self.key_version.set(i64::from(v));
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `action` label of `scrim_fields_total`, in [`RouteMetrics::fields`]
/// order.
const ACTIONS: [&str; 8] = [
    "kept",
    "dropped",
    "pseudonymised",
    "generalised",
    "scrubbed",
    "replaced",
    "decoded",
    "encrypted",
];

/// One upstream's metric handles, shared by the clients a reload builds
/// for it (the busy count spans the old pool's last requests and the new).
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    /// Requests that waited for a connection slot.
    pub waits: Counter,
    /// Slots taken.
    pub busy: Gauge,
}

/// One route's pre-resolved metric handles.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    pub name: Arc<String>,
    /// `scrim_requests_total{route, status="200"}`, resolved once: most
    /// requests end there, and the family's look-up hashes the route's name.
    answered_200: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    upstream: Histogram,
    added: Histogram,
    /// Per [`ACTIONS`] entry.
    fields: [Counter; 8],
    no_consent: Counter,
    objection: Counter,
    leaks_scrubbed: Counter,
}

impl RouteMetrics {
    /// A request of this route answered `status`.
    pub fn answered(&self, metrics: &Metrics, status: u16) {
        if status == 200 {
            self.answered_200.inc();
        } else {
            metrics.request(&self.name, status);
        }
    }

    /// What the rules did to one body: values by action, events withheld,
    /// leaks scrubbed. Only counters the stats move are touched.
    pub fn record(&self, s: &Stats) {
        let by_action = [
            s.kept,
            s.dropped,
            s.pseudonymised,
            s.generalised,
            s.scrubbed,
            s.replaced,
            s.decoded,
            s.encrypted,
        ];
        for (counter, n) in self.fields.iter().zip(by_action) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
        for (counter, n) in [
            (&self.no_consent, s.withheld_consent),
            (&self.objection, s.withheld_objection),
            (&self.leaks_scrubbed, s.leaks_scrubbed),
        ] {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }

    /// A forwarded request: the upstream's share and scrim's own.
    pub fn timing(&self, total: Duration, upstream: Duration) {
        self.upstream.observe(upstream.as_secs_f64());
        self.added
            .observe(total.saturating_sub(upstream).as_secs_f64());
    }
}
