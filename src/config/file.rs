//! The config file as written (`scrim.toml`). Validated into
//! [`Config`](super::Config) by [`super::load`]; nothing here is read on the
//! request path.
//!
//! ```toml
//! [[listener]]
//! addr = "127.0.0.1:8080"
//!
//! [keys]
//! file = "/run/secrets/scrim.key"     # or SCRIM_KEY in the environment
//!
//! [upstream.posthog]
//! url = "https://eu.i.posthog.com"
//! headers = { "X-Api-Key" = "${POSTHOG_KEY}" }
//!
//! [[route]]
//! path_prefix = "/e/"
//! methods = ["POST"]
//! upstream = "posthog"
//! rules = "rules/audience-analytics.toml"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Spanned<ListenerSpec>>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub keys: KeysSpec,
    #[serde(default, rename = "upstream")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSpec>>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RouteSpec>>,
    pub admin: Option<Spanned<AdminSpec>>,
    #[serde(default)]
    pub privacy: PrivacySpec,
    #[serde(default)]
    pub log: LogSpec,
}

/// `[log]`: what scrim writes on stderr. `RUST_LOG`, when set, overrides
/// `level`; `--log-format` overrides `format`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// A `tracing` filter: "info" (default), "debug", "scrim=trace,info", ...
    pub level: Option<Spanned<String>>,
    /// "text" (default) or "json".
    pub format: Option<crate::telemetry::LogFormat>,
}

/// `[privacy]`: state shared by every route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySpec {
    /// The objection register (GDPR art. 21); created on first use. Replicas
    /// sharing it pick up changes within `[keys] reload_interval_ms`.
    pub objections: Option<PathBuf>,
}

/// The admin API: its own listener, loopback unless configured otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSpec {
    /// Default "127.0.0.1:9901".
    pub addr: Option<Spanned<String>>,
    pub tls: Option<TlsSpec>,
    /// Append-only JSON-lines audit log of every admin action.
    pub audit_log: Option<PathBuf>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<Spanned<AdminTokenSpec>>,
}

/// A bearer token, stored as the hex SHA-256 of the token (never the token).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenSpec {
    /// Names the token in the audit log.
    pub id: String,
    pub role: Role,
    /// `printf %s "$TOKEN" | sha256sum`
    pub sha256: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Owns the keys: list, rotate, retire, reveal, look-up, reload.
    Security,
    /// Answers data subject requests: look-up.
    PrivacyOfficer,
    /// Runs the service: list keys, reload.
    Operator,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSpec {
    /// `host:port`; port 0 picks a free port.
    pub addr: Spanned<String>,
    /// Serve TLS with these PEM files; ALPN offers h2 and http/1.1.
    pub tls: Option<TlsSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every bound has a safe default; all sizes in bytes, times in milliseconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest request or response body as received (default 10 MiB).
    pub max_body_bytes: Option<u64>,
    /// Largest body after Content-Encoding is decoded (default 50 MiB); for
    /// streamed bodies, the most one received chunk may expand to.
    pub max_decoded_bytes: Option<u64>,
    /// Largest request head (default 64 KiB).
    pub max_header_bytes: Option<usize>,
    /// Time for a client to send the request head (default 10 s).
    pub header_timeout_ms: Option<u64>,
    /// Time for a client to send a buffered body (default 30 s).
    pub body_timeout_ms: Option<u64>,
    /// Time a write to a client may wait for it to read (default 60 s):
    /// a client that stops reading its response is then disconnected (an
    /// h2 stream that stops taking its response is let go).
    pub send_timeout_ms: Option<Spanned<u64>>,
    /// Concurrent client connections (default 10000).
    pub max_connections: Option<usize>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish
    /// before scrim exits anyway (default 30 s).
    pub drain_timeout_ms: Option<u64>,
    /// JSON nesting depth (default 128).
    pub max_depth: Option<usize>,
    /// Longest JSON string (default 1 MiB).
    pub max_string_bytes: Option<usize>,
    /// Longest NDJSON line or SSE event (default 4 MiB).
    pub max_line_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSpec {
    /// The key ring (`scrim keys init`). With it, the KEK comes from
    /// `kek_file` or SCRIM_KEK.
    pub ring: Option<Spanned<PathBuf>>,
    /// The key-encryption key, 32 bytes in base64 or hex (a mounted secret).
    pub kek_file: Option<PathBuf>,
    /// How often the ring file is checked for changes made elsewhere (another
    /// replica, `scrim keys rotate`); default 1000.
    pub reload_interval_ms: Option<u64>,
    /// Rotate automatically when the active version is this old, e.g. "90 days".
    pub rotate_every: Option<Spanned<String>>,
    /// How long after a rotation rules with `bridge = true` also emit the
    /// previous version's token; default "30 days".
    pub bridge_grace: Option<Spanned<String>>,
    /// Retire a previous version once the longest retention of the purposes
    /// it served has passed since it stopped being active. Default false.
    pub auto_retire: Option<bool>,
    /// Development only: a single key file (`v<VERSION>:<secret>`); default
    /// without `ring`: SCRIM_KEY from the environment.
    pub file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `http://` or `https://` base URL; its path is prefixed to every request.
    pub url: Spanned<String>,
    /// Extra PEM CA certificates trusted for this upstream, beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Default 5000.
    pub connect_timeout_ms: Option<u64>,
    /// How long scrim waits on the upstream (for it to take the next frame
    /// of a streamed body, to answer after the last, or for the next piece
    /// of a response body outside event streams); default 30000.
    pub response_timeout_ms: Option<u64>,
    /// Connections kept open for the next request once a response has
    /// come back (default 256; 0 keeps none). Past it the oldest is closed,
    /// so a burst does not leave hundreds open until they idle out.
    pub max_idle_connections: Option<usize>,
    /// HTTP/1.1 connections open to this upstream at once, each carrying
    /// one request until its response body is read (default 256). Past it
    /// requests wait their turn, within the response timeout: scrim's
    /// memory stays bounded however many clients send at once. Event
    /// streams and request bodies that stream from their client take no
    /// slot (they last as long as their client wants). An h2 upstream
    /// multiplexes one connection and is not capped here.
    pub max_connections: Option<usize>,
    /// How long a kept connection may wait for its next request before
    /// scrim closes it; default 90000. Keep it below the upstream's own
    /// keep-alive timeout, so that scrim, not the upstream, closes first.
    pub idle_timeout_ms: Option<u64>,
    /// Headers injected into every request, after the rules ran. `${VAR}` is
    /// replaced from the environment at load, so secrets stay out of the file.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Names the route in metrics and logs (default: its position, "1", "2"...).
    pub name: Option<Spanned<String>>,
    /// Match on the Host header (port ignored), case-insensitive.
    pub host: Option<String>,
    /// Match this exact path...
    pub path: Option<String>,
    /// ...or any path under this prefix.
    pub path_prefix: Option<String>,
    /// Methods matched; default any.
    pub methods: Option<Vec<String>>,
    /// The `[upstream.NAME]` to forward to.
    pub upstream: Spanned<String>,
    /// Replace the matched path (or prefix) with this.
    pub rewrite: Option<String>,
    /// Forward requests and responses unchanged (`true`): no rules, no leak
    /// guard, only hop-by-hop headers removed. For endpoints that carry no
    /// personal data; `scrim check` and the start log name every such route.
    pub pass_through: Option<Spanned<bool>>,
    /// Rule file for the request (relative to the config file).
    pub rules: Option<Spanned<PathBuf>>,
    /// Rule file text inline, instead of `rules`.
    pub inline_rules: Option<Spanned<String>>,
    /// The leak guard after the rules: "scrub" (default), "refuse" (422) or "off".
    pub leak_guard: Option<crate::privacy::guard::LeakMode>,
    /// Shadow mode: a candidate rule file run beside `rules` on live traffic;
    /// where the outputs differ is reported (`GET /shadow` on the admin API),
    /// and nothing of the candidate's output is forwarded.
    pub shadow_rules: Option<Spanned<PathBuf>>,
    /// Rule file for the response; without it the response streams back as is.
    pub response_rules: Option<Spanned<PathBuf>>,
    /// The real format of request bodies on this route, read instead of
    /// their Content-Type: `"json"`, `"ndjson"` or `"form"`. For clients that
    /// must send JSON as `text/plain` (`navigator.sendBeacon`, CORS-simple
    /// requests). A body that does not parse as declared is refused (400).
    pub body_format: Option<Spanned<String>>,
}
