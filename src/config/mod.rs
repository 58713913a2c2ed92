//! Configuration: the file form ([`file::FileConfig`]) validated once into
//! [`Config`], with every problem reported as `file:line:col: error: ...`
//! and what to write instead. `scrim check -c scrim.toml` is `load` plus a
//! report; `scrim run` refuses to start on any error.

pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use crate::engine::compile::line_col;
use crate::engine::{compile_file, compile_str, CompiledRules, Format, Limits};
use file::FileConfig;

/// Connections to one HTTP/1.1 upstream at once, unless its config says.
/// Each costs about 25 KiB in scrim (hyper's buffers and request channel,
/// the socket, its task); 256 of them carry 2,500 requests a second to an
/// upstream that answers in 100 ms.
pub const DEFAULT_UPSTREAM_CONNECTIONS: usize = 256;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    pub limits: ProxyLimits,
    pub keys: KeysConfig,
    pub upstreams: HashMap<String, Arc<UpstreamConfig>>,
    pub routes: Vec<RouteConfig>,
    pub admin: Option<AdminConfig>,
    /// The objection register's file, if any.
    pub objections: Option<PathBuf>,
    pub log: LogConfig,
}

/// `[log]`, validated.
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// A valid `tracing` filter directive; `None`: "info".
    pub level: Option<String>,
    pub format: Option<crate::telemetry::LogFormat>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listener: ListenerConfig,
    pub audit_log: Option<PathBuf>,
    pub tokens: Vec<AdminToken>,
}

#[derive(Debug, Clone)]
pub struct AdminToken {
    pub id: String,
    pub role: file::Role,
    pub sha256: [u8; 32],
}

/// Where keys come from.
#[derive(Debug, Clone, Default)]
pub struct KeysConfig {
    /// The key ring; `None`: a development key (`file`, or SCRIM_KEY).
    pub ring: Option<PathBuf>,
    pub kek_file: Option<PathBuf>,
    pub reload_interval: Duration,
    pub rotate_every: Option<Duration>,
    pub auto_retire: bool,
    pub bridge_grace: Duration,
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Bounds applied by the proxy. Every one maps to a status when crossed.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    pub max_body_bytes: u64,
    pub max_decoded_bytes: u64,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// How long a write to a client may wait for it to read.
    pub send_timeout: Duration,
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    pub engine: Limits,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            max_decoded_bytes: 50 << 20,
            max_header_bytes: 64 << 10,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            engine: Limits::default(),
        }
    }
}

#[derive(Debug)]
pub struct UpstreamConfig {
    pub name: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Base path without a trailing slash ("" for none).
    pub base_path: String,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// Connections kept for reuse, at most.
    pub max_idle: usize,
    /// HTTP/1.1 connections open at once (requests in flight), at most.
    pub max_connections: usize,
    /// How long a kept connection may wait for its next request.
    pub idle_timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// 1-based position in the file.
    pub index: usize,
    /// The route's `name`, else its position: the label in metrics and logs.
    pub name: Arc<String>,
    pub host: Option<String>,
    pub path: PathMatch,
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub upstream: Arc<UpstreamConfig>,
    pub rewrite: Option<String>,
    pub leak_guard: crate::privacy::guard::LeakMode,
    pub rules: Arc<CompiledRules>,
    pub response_rules: Option<Arc<CompiledRules>>,
    /// A candidate rule file compared against `rules` (shadow mode).
    pub shadow_rules: Option<Arc<CompiledRules>>,
    /// Request bodies are read in this format whatever their Content-Type
    /// says (`body_format`); `None`: the Content-Type decides.
    pub body_format: Option<Format>,
    /// Forwarded unchanged (`pass_through = true`): `rules` is then an empty
    /// placeholder that is never applied, and no purpose is served.
    pub pass_through: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// Everything wrong with a configuration, one formatted diagnostic per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub messages: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages.join("\n"))
    }
}

/// The placeholder rules of a pass-through route: never applied (the proxy
/// forwards such a route's requests before any rule would run).
static PASS_THROUGH_RULES: std::sync::LazyLock<Arc<CompiledRules>> =
    std::sync::LazyLock::new(|| {
        let text = "[purpose]\nid = \"pass-through\"\nlegal_basis = \"legitimate-interest\"\n\
                    retention = \"1 day\"\nrecipient = \"pass-through\"\n";
        Arc::new(compile_str(text, "pass-through").expect("the placeholder rules compile"))
    });

/// Reads and validates a config file. Rule files are resolved relative to it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        messages: vec![format!(
            "{}: error: cannot read the file: {e}",
            path.display()
        )],
    })?;
    load_str(&text, path)
}

/// Validates config text; `path` names it in diagnostics and anchors
/// relative paths.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        text,
        name: path.display().to_string(),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        messages: Vec::new(),
    };
    let file: FileConfig = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            cx.error(
                e.span().unwrap_or(0..0),
                e.message().trim(),
                Some("see the example at the top of the config documentation (README)"),
            );
            return Err(cx.finish());
        }
    };
    let cfg = cx.build(file, path);
    if cx.messages.is_empty() {
        Ok(cfg)
    } else {
        Err(cx.finish())
    }
}

struct Cx<'a> {
    text: &'a str,
    name: String,
    base: PathBuf,
    messages: Vec<String>,
}

impl Cx<'_> {
    fn error(&mut self, span: Range<usize>, msg: &str, help: Option<&str>) {
        let (line, col) = line_col(self.text, span.start);
        let mut m = format!("{}:{line}:{col}: error: {msg}", self.name);
        if let Some(h) = help {
            m.push_str("\n  help: ");
            m.push_str(h);
        }
        self.messages.push(m);
    }

    fn finish(self) -> ConfigError {
        ConfigError {
            messages: self.messages,
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn build(&mut self, f: FileConfig, path: &Path) -> Config {
        let d = ProxyLimits::default();
        let l = &f.limits;
        let limits = ProxyLimits {
            max_body_bytes: l.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_decoded_bytes: l.max_decoded_bytes.unwrap_or(d.max_decoded_bytes),
            max_header_bytes: l.max_header_bytes.unwrap_or(d.max_header_bytes).max(1024),
            header_timeout: l
                .header_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.header_timeout),
            body_timeout: l
                .body_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.body_timeout),
            send_timeout: l
                .send_timeout_ms
                .as_ref()
                .map(|ms| Duration::from_millis(*ms.get_ref()))
                .unwrap_or(d.send_timeout),
            max_connections: l.max_connections.unwrap_or(d.max_connections).max(1),
            drain_timeout: l
                .drain_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(d.drain_timeout),
            engine: Limits {
                max_depth: l.max_depth.unwrap_or(d.engine.max_depth),
                max_string_len: l.max_string_bytes.unwrap_or(d.engine.max_string_len),
                max_line_len: l.max_line_bytes.unwrap_or(d.engine.max_line_len),
            },
        };
        if let Some(zero) = l.send_timeout_ms.as_ref().filter(|ms| *ms.get_ref() == 0) {
            // Every write that has to wait at all would fail.
            self.error(
                zero.span(),
                "limits.send_timeout_ms = 0 would disconnect every client that reads slower than scrim writes",
                Some("give it at least 1000 (milliseconds), or leave it out for the default, 60000"),
            );
        }
        if limits.engine.max_depth == 0
            || limits.engine.max_depth > crate::engine::MAX_DEPTH_CEILING
        {
            self.error(
                0..0,
                &format!(
                    "limits.max_depth must be 1 to {}",
                    crate::engine::MAX_DEPTH_CEILING
                ),
                None,
            );
        }

        let mut listeners = Vec::new();
        if f.listeners.is_empty() {
            self.error(
                0..0,
                "no [[listener]]",
                Some("add [[listener]] with addr = \"127.0.0.1:8080\""),
            );
        }
        for l in &f.listeners {
            let spec = l.get_ref();
            match spec.addr.get_ref().parse::<SocketAddr>() {
                Ok(addr) => listeners.push(ListenerConfig {
                    addr,
                    tls: spec.tls.as_ref().map(|t| TlsFiles {
                        cert: self.resolve(&t.cert),
                        key: self.resolve(&t.key),
                    }),
                }),
                Err(_) => self.error(
                    spec.addr.span(),
                    &format!("`{}` is not an address", spec.addr.get_ref()),
                    Some("write host:port with an IP, e.g. \"0.0.0.0:8080\" or \"[::1]:8443\""),
                ),
            }
            if let Some(t) = &spec.tls {
                for p in [&t.cert, &t.key] {
                    if !self.resolve(p).is_file() {
                        self.error(
                            l.span(),
                            &format!("TLS file {} does not exist", self.resolve(p).display()),
                            None,
                        );
                    }
                }
            }
        }

        let mut upstreams = HashMap::new();
        for (name, u) in &f.upstreams {
            if let Some(up) = self.upstream(name, u) {
                upstreams.insert(name.clone(), Arc::new(up));
            }
        }

        let mut routes = Vec::new();
        if f.routes.is_empty() {
            self.error(
                0..0,
                "no [[route]]: every request would get 404",
                Some("add [[route]] with path_prefix, upstream and rules"),
            );
        }
        for (i, r) in f.routes.iter().enumerate() {
            if let Some(route) = self.route(i + 1, r, &upstreams, &limits) {
                if routes.iter().any(|o: &RouteConfig| o.name == route.name) {
                    let span = r.get_ref().name.as_ref().map_or(r.span(), |n| n.span());
                    self.error(
                        span,
                        &format!("two routes are named `{}`", route.name),
                        Some("route names label metrics; give each route its own"),
                    );
                }
                routes.push(route);
            }
        }

        Config {
            path: path.to_path_buf(),
            listeners,
            limits,
            keys: self.keys(&f.keys),
            admin: f.admin.as_ref().and_then(|a| self.admin(a)),
            objections: f.privacy.objections.as_ref().map(|p| self.resolve(p)),
            log: self.log(&f.log),
            upstreams,
            routes,
        }
    }

    fn admin(&mut self, a: &toml::Spanned<file::AdminSpec>) -> Option<AdminConfig> {
        let spec = a.get_ref();
        let addr = match &spec.addr {
            None => SocketAddr::from(([127, 0, 0, 1], 9901)),
            Some(s) => match s.get_ref().parse() {
                Ok(a) => a,
                Err(_) => {
                    self.error(
                        s.span(),
                        &format!("`{}` is not an address", s.get_ref()),
                        Some("write host:port, e.g. \"127.0.0.1:9901\""),
                    );
                    return None;
                }
            },
        };
        let mut tokens = Vec::new();
        for t in &spec.tokens {
            let tok = t.get_ref();
            let hash = data_encoding::HEXLOWER_PERMISSIVE
                .decode(tok.sha256.trim().as_bytes())
                .ok();
            match hash.as_deref().map(<[u8; 32]>::try_from) {
                Some(Ok(h)) => tokens.push(AdminToken {
                    id: tok.id.clone(),
                    role: tok.role,
                    sha256: h,
                }),
                _ => self.error(
                    t.span(),
                    &format!("admin token `{}`: sha256 must be 64 hex digits", tok.id),
                    Some("store the hash, not the token: printf %s \"$TOKEN\" | sha256sum"),
                ),
            }
            if tokens.iter().filter(|x| x.id == tok.id).count() > 1 {
                self.error(
                    t.span(),
                    &format!("admin token id `{}` is used twice", tok.id),
                    None,
                );
            }
        }
        if tokens.is_empty() {
            self.error(
                a.span(),
                "[admin] has no [[admin.token]]: every call would get 401",
                Some("add [[admin.token]] with id, role and sha256"),
            );
        }
        Some(AdminConfig {
            listener: ListenerConfig {
                addr,
                tls: spec.tls.as_ref().map(|t| TlsFiles {
                    cert: self.resolve(&t.cert),
                    key: self.resolve(&t.key),
                }),
            },
            audit_log: spec.audit_log.as_ref().map(|p| self.resolve(p)),
            tokens,
        })
    }

    fn keys(&mut self, k: &file::KeysSpec) -> KeysConfig {
        if k.ring.is_some() && k.file.is_some() {
            self.error(
                0..0,
                "[keys] has `ring` or `file`, not both",
                Some("`file` is for development; use `ring` in production"),
            );
        }
        let rotate_every =
            k.rotate_every
                .as_ref()
                .and_then(|r| match parse_duration(r.get_ref()) {
                    Some(d) => Some(d),
                    None => {
                        self.error(
                            r.span(),
                            "rotate_every is not a period",
                            Some("write e.g. \"90 days\", \"12 hours\" or \"1 year\""),
                        );
                        None
                    }
                });
        let bridge_grace = match &k.bridge_grace {
            None => Duration::from_secs(30 * 86_400),
            Some(g) => parse_duration(g.get_ref()).unwrap_or_else(|| {
                self.error(
                    g.span(),
                    "bridge_grace is not a period",
                    Some("write e.g. \"30 days\""),
                );
                Duration::ZERO
            }),
        };
        if k.ring.is_none() && (rotate_every.is_some() || k.auto_retire == Some(true)) {
            self.error(
                0..0,
                "rotate_every and auto_retire need a key ring",
                Some("add ring = \"PATH\" to [keys] (create it with `scrim keys init`)"),
            );
        }
        KeysConfig {
            ring: k.ring.as_ref().map(|p| self.resolve(p.get_ref())),
            kek_file: k.kek_file.as_ref().map(|p| self.resolve(p)),
            reload_interval: Duration::from_millis(k.reload_interval_ms.unwrap_or(1000).max(10)),
            rotate_every,
            auto_retire: k.auto_retire.unwrap_or(false),
            bridge_grace,
            file: k.file.as_ref().map(|p| self.resolve(p)),
        }
    }

    fn upstream(
        &mut self,
        name: &str,
        u: &toml::Spanned<file::UpstreamSpec>,
    ) -> Option<UpstreamConfig> {
        let spec = u.get_ref();
        let raw = spec.url.get_ref();
        let uri: http::Uri = match raw.parse() {
            Ok(uri) => uri,
            Err(_) => {
                self.error(
                    spec.url.span(),
                    &format!("`{raw}` is not a URL"),
                    Some("write e.g. url = \"https://api.example.com\""),
                );
                return None;
            }
        };
        let scheme = uri.scheme().cloned();
        let Some(scheme) =
            scheme.filter(|s| *s == http::uri::Scheme::HTTP || *s == http::uri::Scheme::HTTPS)
        else {
            self.error(
                spec.url.span(),
                "upstream URLs start with http:// or https://",
                None,
            );
            return None;
        };
        let Some(authority) = uri.authority().cloned() else {
            self.error(spec.url.span(), "the upstream URL has no host", None);
            return None;
        };
        if uri.query().is_some() {
            self.error(
                spec.url.span(),
                "the upstream URL may not have a query string",
                None,
            );
        }
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            let Ok(header) = HeaderName::from_bytes(k.as_bytes()) else {
                self.error(u.span(), &format!("`{k}` is not a header name"), None);
                continue;
            };
            let value = match expand_env(v) {
                Ok(v) => v,
                Err(var) => {
                    self.error(
                        u.span(),
                        &format!(
                            "header `{k}` of upstream `{name}` uses ${{{var}}}, which is not set"
                        ),
                        Some("set the variable in scrim's environment"),
                    );
                    continue;
                }
            };
            match HeaderValue::from_str(&value) {
                Ok(mut hv) => {
                    hv.set_sensitive(true);
                    headers.push((header, hv));
                }
                Err(_) => self.error(
                    u.span(),
                    &format!("the value of header `{k}` is not a valid header value"),
                    None,
                ),
            }
        }
        if spec.max_connections == Some(0) {
            self.error(
                u.span(),
                &format!("upstream `{name}` has max_connections = 0, so no request could go"),
                Some(&format!(
                    "write a number of connections of at least 1, or leave it out for \
                     {DEFAULT_UPSTREAM_CONNECTIONS}"
                )),
            );
        }
        if let Some(ca) = &spec.ca_file {
            if !self.resolve(ca).is_file() {
                self.error(
                    u.span(),
                    &format!("ca_file {} does not exist", self.resolve(ca).display()),
                    None,
                );
            }
        }
        Some(UpstreamConfig {
            name: name.to_owned(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            ca_file: spec.ca_file.as_ref().map(|p| self.resolve(p)),
            connect_timeout: Duration::from_millis(spec.connect_timeout_ms.unwrap_or(5_000)),
            response_timeout: Duration::from_millis(spec.response_timeout_ms.unwrap_or(30_000)),
            max_idle: spec.max_idle_connections.unwrap_or(256),
            max_connections: spec.max_connections.unwrap_or(DEFAULT_UPSTREAM_CONNECTIONS),
            idle_timeout: Duration::from_millis(spec.idle_timeout_ms.unwrap_or(90_000)),
            headers,
        })
    }

    fn log(&mut self, l: &file::LogSpec) -> LogConfig {
        if let Some(level) = &l.level {
            if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level.get_ref()) {
                self.error(
                    level.span(),
                    &format!("log.level is not a valid filter: {e}"),
                    Some(
                        "write a level (\"info\", \"debug\") or directives (\"scrim=debug,info\")",
                    ),
                );
            }
        }
        LogConfig {
            level: l.level.as_ref().map(|l| l.get_ref().clone()),
            format: l.format,
        }
    }

    fn route(
        &mut self,
        index: usize,
        r: &toml::Spanned<file::RouteSpec>,
        upstreams: &HashMap<String, Arc<UpstreamConfig>>,
        _limits: &ProxyLimits,
    ) -> Option<RouteConfig> {
        let span = r.span();
        let spec = r.get_ref();
        let path = match (&spec.path, &spec.path_prefix) {
            (Some(p), None) => PathMatch::Exact(p.clone()),
            (None, Some(p)) => PathMatch::Prefix(p.clone()),
            (None, None) => PathMatch::Prefix("/".into()),
            (Some(_), Some(_)) => {
                self.error(span, "a route has `path` or `path_prefix`, not both", None);
                return None;
            }
        };
        let p = match &path {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        };
        if !p.starts_with('/') {
            self.error(
                span.clone(),
                &format!("route path `{p}` must start with `/`"),
                None,
            );
        }
        let name = match &spec.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref().len() <= 64
                    && n.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    self.error(
                        n.span(),
                        "a route name is 1 to 64 letters, digits, `-`, `_` or `.`",
                        Some("it labels the route's metrics, e.g. name = \"posthog-events\""),
                    );
                }
                n.get_ref().clone()
            }
            None => index.to_string(),
        };
        let mut methods = Vec::new();
        for m in spec.methods.iter().flatten() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => self.error(span.clone(), &format!("`{m}` is not an HTTP method"), None),
            }
        }
        let upstream = match upstreams.get(spec.upstream.get_ref()) {
            Some(u) => u.clone(),
            None => {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                self.error(
                    spec.upstream.span(),
                    &format!("no [upstream.{}]", spec.upstream.get_ref()),
                    Some(&format!("define it, or use one of: {}", known.join(", "))),
                );
                return None;
            }
        };
        let pass_through = spec.pass_through.as_ref().is_some_and(|p| *p.get_ref());
        if pass_through {
            let with_rules = spec.rules.is_some()
                || spec.inline_rules.is_some()
                || spec.response_rules.is_some()
                || spec.shadow_rules.is_some()
                || spec.body_format.is_some()
                || spec.leak_guard.is_some();
            if with_rules {
                self.error(
                    span,
                    "a pass-through route forwards requests unchanged: it takes no rules, \
                     inline_rules, response_rules, shadow_rules, body_format or leak_guard",
                    Some("remove `pass_through = true` to apply rules"),
                );
                return None;
            }
        }
        let rules = match (&spec.rules, &spec.inline_rules) {
            _ if pass_through => PASS_THROUGH_RULES.clone(),
            (Some(file), None) => self.rules_file(file)?,
            (None, Some(text)) => match compile_str(
                text.get_ref(),
                &format!("{} (route {index} inline_rules)", self.name),
            ) {
                Ok(r) => Arc::new(r),
                Err(e) => {
                    self.messages.push(e.to_string());
                    return None;
                }
            },
            (None, None) => {
                self.error(
                    span,
                    "the route has no rules: nothing could be forwarded",
                    Some("add rules = \"rules/FILE.toml\" or inline_rules (or, for an endpoint that carries no personal data, pass_through = true)"),
                );
                return None;
            }
            (Some(_), Some(_)) => {
                self.error(
                    span,
                    "a route has `rules` or `inline_rules`, not both",
                    None,
                );
                return None;
            }
        };
        let response_rules = match &spec.response_rules {
            Some(f) => Some(self.rules_file(f)?),
            None => None,
        };
        let shadow_rules = match &spec.shadow_rules {
            Some(f) => Some(self.rules_file(f)?),
            None => None,
        };
        let body_format = match &spec.body_format {
            None => None,
            Some(f) => match f.get_ref().as_str() {
                "json" => Some(Format::Json),
                "ndjson" => Some(Format::Ndjson),
                "form" => Some(Format::Form),
                "sentry-envelope" => Some(Format::SentryEnvelope),
                "sentry-event" => Some(Format::SentryEvent),
                other => {
                    self.error(
                        f.span(),
                        &format!("`{other}` is not a body format"),
                        Some("use \"json\", \"ndjson\" or \"form\", for Sentry \"sentry-envelope\" or \"sentry-event\" (or leave body_format out: the Content-Type decides)"),
                    );
                    return None;
                }
            },
        };
        Some(RouteConfig {
            index,
            name: Arc::new(name),
            host: spec.host.as_ref().map(|h| h.to_ascii_lowercase()),
            path,
            methods,
            upstream,
            rewrite: spec.rewrite.clone(),
            leak_guard: spec.leak_guard.unwrap_or_default(),
            rules,
            response_rules,
            shadow_rules,
            body_format,
            pass_through,
        })
    }

    fn rules_file(&mut self, file: &toml::Spanned<PathBuf>) -> Option<Arc<CompiledRules>> {
        let p = self.resolve(file.get_ref());
        if !p.is_file() {
            self.error(
                file.span(),
                &format!("rule file {} does not exist", p.display()),
                None,
            );
            return None;
        }
        match compile_file(&p) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                self.messages.push(e.to_string());
                None
            }
        }
    }
}

/// `"90 days"`, `"12 hours"`, `"6 months"` (30 days), `"1 year"` (365 days).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (n, unit) = s.trim().split_once(' ')?;
    let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
    let secs = match unit.trim().trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 7 * 86_400,
        "month" => 30 * 86_400,
        "year" => 365 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// Replaces `${VAR}` with the environment's value; `Err(VAR)` if unset.
fn expand_env(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        match std::env::var(var) {
            Ok(val) => out.push_str(&val),
            Err(_) => return Err(var.to_owned()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
