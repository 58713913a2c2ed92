//! Generalisation: keep a coarser, still useful form of a value.
//!
//! - IPs: the network prefix (defaults /24 and /48), host bits zeroed;
//! - timestamps: rounded down to the hour or day, in UTC; RFC 3339 strings
//!   stay RFC 3339 strings, epoch numbers stay epoch numbers in their unit;
//! - user agents: browser family and major version, `Chrome/120`.

use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};
use ipnet::{Ipv4Net, Ipv6Net};

use super::plan::GeneraliseSpec;
use super::spec::Granularity;
use crate::pseudo::normalize;

/// Generalises a string. `None` if the value is not of the kind: dropped.
pub fn text(spec: &GeneraliseSpec, raw: &str) -> Option<String> {
    match spec {
        GeneraliseSpec::Ip {
            v4_prefix,
            v6_prefix,
        } => ip(raw, *v4_prefix, *v6_prefix).map(crate::pseudo::ip_text),
        // Trackers send epoch times as text in forms and query strings.
        GeneraliseSpec::Timestamp(_) if is_integer(raw) => {
            let n: f64 = raw.trim().parse().ok()?;
            number(spec, n).map(|n| format!("{}", n as i64))
        }
        GeneraliseSpec::Timestamp(g) => timestamp(raw, *g),
        GeneraliseSpec::UserAgent => Some(user_agent(raw)),
    }
}

/// Generalises a number; only epoch timestamps are numbers.
pub fn number(spec: &GeneraliseSpec, n: f64) -> Option<f64> {
    match spec {
        GeneraliseSpec::Timestamp(g) if n.is_finite() && n >= 0.0 => {
            // Seconds until 5138 AD; above that the number is milliseconds.
            let unit = if n >= 1e11 { 1000.0 } else { 1.0 };
            let step = unit * granularity_secs(*g) as f64;
            Some((n / step).floor() * step)
        }
        _ => None,
    }
}

fn is_integer(raw: &str) -> bool {
    let t = raw.trim();
    !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_digit())
}

pub fn ip(raw: &str, v4_prefix: u8, v6_prefix: u8) -> Option<IpAddr> {
    Some(match normalize::ip(raw)? {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Net::new(a, v4_prefix).ok()?.network()),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Net::new(a, v6_prefix).ok()?.network()),
    })
}

fn granularity_secs(g: Granularity) -> i64 {
    match g {
        Granularity::Hour => 3600,
        Granularity::Day => 86400,
    }
}

pub fn timestamp(raw: &str, g: Granularity) -> Option<String> {
    let t = raw.trim();
    let utc: DateTime<Utc> = match DateTime::parse_from_rfc3339(t) {
        Ok(dt) => dt.with_timezone(&Utc),
        // Naive forms are taken as UTC, as most trackers send them.
        Err(_) => ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())?
            .and_utc(),
    };
    let secs = utc.timestamp();
    let floored = secs - secs.rem_euclid(granularity_secs(g));
    let dt = DateTime::from_timestamp(floored, 0)?;
    debug_assert_eq!(dt.second(), 0);
    Some(dt.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

pub fn user_agent(raw: &str) -> String {
    let parser = woothee::parser::Parser::new();
    match parser.parse(raw) {
        Some(r) if r.name != woothee::woothee::VALUE_UNKNOWN && !r.name.is_empty() => {
            let major = r.version.split('.').next().unwrap_or("");
            if major.is_empty() || major == woothee::woothee::VALUE_UNKNOWN {
                r.name.to_owned()
            } else {
                format!("{}/{}", r.name, major)
            }
        }
        _ => "Other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(ip("192.0.2.77", 24, 48).unwrap().to_string(), "192.0.2.0");
        assert_eq!(
            ip("2001:db8:abcd:1234::1", 24, 48).unwrap().to_string(),
            "2001:db8:abcd::"
        );
        assert_eq!(
            ip("::ffff:10.1.2.3", 16, 48).unwrap().to_string(),
            "10.1.0.0"
        );
        assert!(ip("x", 24, 48).is_none());
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("2026-11-29T14:37:12.345+01:00", Granularity::Hour).unwrap(),
            "2026-11-29T13:00:00Z"
        );
        assert_eq!(
            timestamp("2026-11-29 14:37:12", Granularity::Day).unwrap(),
            "2026-11-29T00:00:00Z"
        );
        assert_eq!(
            number(
                &GeneraliseSpec::Timestamp(Granularity::Hour),
                1_764_427_032_123.0
            ),
            Some(1_764_424_800_000.0)
        );
        assert!(timestamp("yesterday", Granularity::Day).is_none());
    }

    #[test]
    fn user_agents() {
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                  (KHTML, like Gecko) Chrome/120.0.6099.129 Safari/537.36";
        assert_eq!(user_agent(ua), "Chrome/120");
        assert_eq!(user_agent("curl-ish thing"), "Other");
    }
}
