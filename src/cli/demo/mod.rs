//! `scrim demo`: the main job on an embedded default. Starts scrim on
//! loopback with the bundled rules and a key that lives only for this run,
//! in front of a built-in capture upstream; sends bundled webinar traffic
//! through it over real HTTP; shows what was sent and what the upstream
//! received, then counts raw personal values that reached the upstream (the
//! answer must be 0, or the command fails).

mod capture;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use data_encoding::BASE64URL_NOPAD;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config;
use crate::engine::{compile_str, Engine, Format, Limits, Stats};
use crate::keyring::DevKeySource;
use crate::proxy::encoding::{self, Coding};
use crate::server;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Print only the summary.
    #[arg(long, short)]
    quiet: bool,
    /// Log format on stderr; the level is `RUST_LOG`, else warnings only.
    #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    log_format: crate::telemetry::LogFormat,
}

/// The rule files shipped in `rules/`, compiled into the binary.
pub const BUNDLED_RULES: &[(&str, &str)] = &[
    (
        "audience-analytics.toml",
        include_str!("../../../rules/audience-analytics.toml"),
    ),
    (
        "error-tracking.toml",
        include_str!("../../../rules/error-tracking.toml"),
    ),
    (
        "support-chat.toml",
        include_str!("../../../rules/support-chat.toml"),
    ),
    (
        "snowplow-pixel.toml",
        include_str!("../../../rules/snowplow-pixel.toml"),
    ),
];

/// One bundled request: what it is, which rule file, and its body.
pub struct Sample {
    pub title: &'static str,
    pub rules: &'static str,
    pub format: Format,
    pub body: String,
}

/// Raw personal values the bundled traffic carries; none may reach a recipient.
pub const PERSONAL_VALUES: &[&str] = &[
    "søren.ødegård@example.dk",
    "Søren Ødegård",
    "zoe.celik+webinars@example.com",
    "Zoë Çelik",
    "José Núñez",
    "jose@example.es",
    "203.0.113.77",
    "2001:db8:85a3::8a2e:370:7334",
    "+45 20 30 40 50",
    "198.51.100.23",
    "8c1f2e",
    "u-48213",
    "u-99120",
];

pub fn samples() -> Vec<Sample> {
    let ue = BASE64URL_NOPAD.encode(
        br#"{"schema":"iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0","data":{"schema":"iglu:com.example/webinar_action/jsonschema/1-0-0","data":{"action":"raise_hand","webinar_id":"w-2026-11","email":"jose@example.es","name":"Jos\u00e9 N\u00fa\u00f1ez"}}}"#,
    );
    let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
    vec![
        Sample {
            title: "participant joins a webinar",
            rules: "audience-analytics.toml",
            format: Format::Json,
            body: format!(
                r#"{{"event":"participant_joined","timestamp":"2026-11-29T14:37:12.345+01:00","webinar":{{"id":"w-2026-11","title":"Quarterly all-hands"}},"participant":{{"user_id":"u-48213","name":"Søren Ødegård","email":"søren.ødegård@example.dk","role":"participant"}},"context":{{"ip":"203.0.113.77","user_agent":"{ua}","country":"DK","screen":"1920x1080","locale":"da-DK"}}}}"#
            ),
        },
        Sample {
            title: "participant leaves",
            rules: "audience-analytics.toml",
            format: Format::Json,
            body: r#"{"event":"participant_left","timestamp":"2026-11-29T15:02:40Z","webinar":{"id":"w-2026-11"},"participant":{"user_id":"u-48213","email":"Søren.Ødegård@Example.dk "},"properties":{"duration_s":1528}}"#.into(),
        },
        Sample {
            title: "chat question with an email and a phone number inside",
            rules: "audience-analytics.toml",
            format: Format::Json,
            body: r#"{"event":"chat_question","timestamp":"2026-11-29T14:41:03Z","participant":{"user_id":"u-99120","name":"Zoë Çelik"},"properties":{"message":"Can you send the slides to zoe.celik+webinars@example.com or call me on +45 20 30 40 50? Thanks!"}}"#.into(),
        },
        Sample {
            title: "poll answer",
            rules: "audience-analytics.toml",
            format: Format::Json,
            body: r#"{"event":"poll_answered","timestamp":"2026-11-29T14:50:00Z","participant":{"user_id":"u-99120","email":"zoe.celik+webinars@example.com"},"properties":{"poll_id":"p-7","answer":"B","free_text":"I am Zoë Çelik from Copenhagen"}}"#.into(),
        },
        Sample {
            title: "page view whose URL carries ?email=",
            rules: "audience-analytics.toml",
            format: Format::Json,
            body: r#"{"event":"page_view","timestamp":"2026-11-29T14:30:00Z","context":{"ip":"2001:db8:85a3::8a2e:370:7334","page":{"url":"https://webinars.example.com/join/w-2026-11?email=jose%40example.es&utm_source=newsletter&token=abc123#name=Jos%C3%A9"}}}"#.into(),
        },
        Sample {
            title: "error report with the user's IP",
            rules: "error-tracking.toml",
            format: Format::Json,
            body: r#"{"event_id":"9f2c1e0d8a4b4f0c9e1d2c3b4a5f6e7d","level":"error","platform":"javascript","timestamp":1764427032,"message":"Failed to join webinar for søren.ødegård@example.dk","user":{"id":"u-48213","email":"søren.ødegård@example.dk","ip_address":"203.0.113.77","username":"Søren Ødegård"},"request":{"url":"https://webinars.example.com/join?email=s%C3%B8ren.%C3%B8deg%C3%A5rd%40example.dk","method":"GET","headers":{"Cookie":"session=abc"}},"exception":{"values":[{"type":"TypeError","value":"cannot read 'stream' of undefined (user 203.0.113.77)","stacktrace":{"frames":[{"function":"joinRoom","lineno":42,"vars":{"email":"søren.ødegård@example.dk"}}]}}]}}"#.into(),
        },
        Sample {
            title: "NDJSON batch of events",
            rules: "audience-analytics.toml",
            format: Format::Ndjson,
            body: concat!(
                r#"{"event":"feature_used","timestamp":"2026-11-29T14:45:10Z","participant":{"user_id":"u-48213"},"properties":{"feature":"reactions"},"context":{"ip":"203.0.113.77"}}"#, "\n",
                r#"{"event":"feature_used","timestamp":"2026-11-29T14:46:55Z","participant":{"user_id":"u-99120","name":"Zoë Çelik"},"properties":{"feature":"screen_share"}}"#, "\n",
                r#"{"event":"chat_question","timestamp":"2026-11-29T14:47:30Z","participant":{"email":"jose@example.es"},"properties":{"message":"Hello from Madrid, my IP is 203.0.113.77"}}"#, "\n",
            ).into(),
        },
        Sample {
            title: "tracker pixel with a base64url event inside",
            rules: "snowplow-pixel.toml",
            format: Format::Form,
            body: format!(
                "e=ue&aid=webinars&uid=u-48213&ip=203.0.113.77&dtm=1764427032123&res=1920x1080&url=https%3A%2F%2Fwebinars.example.com%2F%3Femail%3Djose%2540example.es&ue_px={ue}&duid=8f1b"
            ),
        },
    ]
}

/// Which route of the demo config each bundled rule file serves.
fn route_of(rules: &str) -> &'static str {
    match rules {
        "error-tracking.toml" => "/errors/",
        "support-chat.toml" => "/chat/",
        "snowplow-pixel.toml" => "/pixel/",
        _ => "/analytics/",
    }
}

/// The demo's config: one loopback listener, the capture upstream, one route
/// per bundled rule file with the rules inline.
fn demo_config(upstream: SocketAddr) -> String {
    let mut cfg = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n\n[upstream.capture]\nurl = \"http://{upstream}\"\n\n"
    );
    for (name, text) in BUNDLED_RULES {
        cfg.push_str(&format!(
            "[[route]]\npath_prefix = \"{}\"\nupstream = \"capture\"\ninline_rules = \'\'\'\n{}\'\'\'\n\n",
            route_of(name),
            text
        ));
    }
    cfg
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(a.log_format, Some("warn"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(a))
}

async fn run_async(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let keys = DevKeySource::ephemeral()?;
    let capture = capture::Capture::start().await?;
    let cfg = config::load_str(&demo_config(capture.addr), Path::new("demo.toml"))
        .map_err(|e| anyhow::anyhow!("the embedded demo config is invalid: {e}"))?;
    let running = server::start(&cfg, &keys, Duration::from_secs(1)).await?;
    let scrim = running.addrs[0];
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    let mut leaks = 0;
    let samples = samples();
    for s in &samples {
        let compressed = s.format == Format::Ndjson;
        let body = if compressed {
            encoding::encode_all(Coding::Gzip, s.body.as_bytes().to_vec())
        } else {
            s.body.clone().into_bytes()
        };
        let ctype = match s.format {
            Format::Json | Format::SentryEvent => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Form => "application/x-www-form-urlencoded",
            Format::SentryEnvelope => "application/x-sentry-envelope",
        };
        let mut req = Request::post(format!("http://{scrim}{}collect", route_of(s.rules)))
            .header(header::CONTENT_TYPE, ctype)
            .header(
                header::USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
            )
            .header("x-forwarded-for", "198.51.100.23")
            .header(
                header::COOKIE,
                "session=8c1f2e; _ga=GA1.2.3; consent_analytics=granted",
            )
            .header("x-participant-email", "søren.ødegård@example.dk");
        if compressed {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        let before = capture.len();
        let res = client
            .request(req.body(Full::new(Bytes::from(body)))?)
            .await
            .with_context(|| format!("sending `{}` through scrim", s.title))?;
        let status = res.status();
        let _ = res.into_body().collect().await;
        let got = capture.since(before);
        let received = got
            .iter()
            .map(|c| {
                format!(
                    "{} {}\n{}",
                    c.method,
                    c.path,
                    String::from_utf8_lossy(&c.body)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let everything = got
            .iter()
            .map(capture::Captured::all_text)
            .collect::<Vec<_>>()
            .join("\n");
        let leaked = leaked_values(&everything);
        leaks += leaked.len();
        if !a.quiet {
            println!(
                "── {} ({}, {})",
                s.title,
                s.rules,
                if compressed { "gzip" } else { "plain" }
            );
            println!(
                "   sent:     {}",
                s.body.trim_end().replace('\n', "\n             ")
            );
            println!("   status:   {status}");
            println!(
                "   upstream: {}",
                received.trim_end().replace('\n', "\n             ")
            );
            if let Some(c) = got.first() {
                println!("   headers:  {}", c.header_summary());
            }
            println!();
        }
        anyhow::ensure!(
            status.is_success(),
            "scrim refused demo sample `{}`: {status}",
            s.title
        );
    }
    running.stop().await;
    let total = capture.len();
    println!(
        "scrim demo: {} requests through scrim on {scrim}, {total} reached the capture upstream",
        samples.len()
    );
    let mut stats = Stats::default();
    for s in &samples {
        stats += offline_stats(s, &keys)?;
    }
    println!(
        "  pseudonymised {}, generalised {}, scrubbed in text {}, replaced {}, dropped {}, kept {}",
        stats.pseudonymised,
        stats.generalised,
        stats.scrubbed,
        stats.replaced,
        stats.dropped,
        stats.kept
    );
    println!("  raw personal values that reached the upstream: {leaks}");
    Ok(if leaks == 0 && total == samples.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The engine's counts for one sample (the proxy does not report them per
/// request yet), computed offline with the same rules and key.
fn offline_stats(s: &Sample, keys: &DevKeySource) -> anyhow::Result<Stats> {
    let text = BUNDLED_RULES
        .iter()
        .find(|(n, _)| *n == s.rules)
        .map(|(_, t)| *t)
        .context("a demo sample names a rule file that is not bundled")?;
    let rules = compile_str(text, s.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = Engine::new(Arc::new(rules), keys, Limits::default())?;
    let mut out = Vec::new();
    engine
        .transform(s.format, s.body.as_bytes(), &mut out)
        .map_err(|e| anyhow::anyhow!("demo sample `{}`: {e}", s.title))
}

/// Which bundled personal values appear in `received`, looking through
/// percent-encoding and base64url-encoded embedded payloads too.
pub fn leaked_values(received: &str) -> Vec<&'static str> {
    let mut views = vec![received.to_owned(), received.to_lowercase()];
    let decoded = percent_encoding::percent_decode_str(&received.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    for word in decoded.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        if word.len() >= 16 {
            if let Ok(b) = BASE64URL_NOPAD.decode(word.as_bytes()) {
                views.push(String::from_utf8_lossy(&b).into_owned());
            }
        }
    }
    views.push(decoded.to_lowercase());
    views.push(decoded);
    PERSONAL_VALUES
        .iter()
        .copied()
        .filter(|v| {
            let lower = v.to_lowercase();
            views
                .iter()
                .any(|view| view.contains(v) || view.contains(&lower))
        })
        .collect()
}
