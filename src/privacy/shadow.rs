//! Shadow mode: a candidate rule file runs beside the enforced one on live
//! traffic. Only the enforced output is forwarded; the two outputs are
//! compared and the paths where they differ are counted, values-free, so a
//! team can see what a rule change would do before it enforces it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::Value;

/// Per route: requests compared, requests that differed, and the paths.
#[derive(Debug, Default)]
pub struct ShadowReport {
    routes: Mutex<HashMap<usize, RouteReport>>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RouteReport {
    pub compared: u64,
    pub differing: u64,
    /// Path (array indices as `[*]`) -> requests where it differed.
    pub paths: BTreeMap<String, u64>,
}

/// Distinct paths kept per route, so a noisy candidate cannot grow memory.
const MAX_PATHS: usize = 256;

impl ShadowReport {
    /// Records one comparison of enforced and candidate JSON outputs (or
    /// `None` for a candidate that failed on this input).
    pub fn record(&self, route: usize, enforced: &[u8], candidate: Option<&[u8]>) {
        let mut paths = Vec::new();
        match candidate {
            None => paths.push("$ (candidate refused the input)".to_owned()),
            Some(c) => match (
                serde_json::from_slice::<Value>(enforced),
                serde_json::from_slice::<Value>(c),
            ) {
                (Ok(a), Ok(b)) => diff(&a, &b, "$", &mut paths),
                _ => {
                    if enforced != c {
                        paths.push("$".to_owned());
                    }
                }
            },
        }
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let r = routes.entry(route).or_default();
        r.compared += 1;
        if !paths.is_empty() {
            r.differing += 1;
        }
        paths.sort();
        paths.dedup();
        for p in paths {
            if r.paths.len() < MAX_PATHS || r.paths.contains_key(&p) {
                *r.paths.entry(p).or_default() += 1;
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<usize, RouteReport> {
        self.routes
            .lock()
            .map(|r| r.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Paths where `a` and `b` differ. Object keys are names, never values; a
/// key that looks personal would already have been pseudonymised.
fn diff(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{at}.{k}");
                match y.get(k) {
                    Some(vb) => diff(va, vb, &p, out),
                    None => out.push(format!("{p} (only enforced)")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{at}.{k} (only candidate)"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            let p = format!("{at}[*]");
            if x.len() != y.len() {
                out.push(format!("{p} (length)"));
            }
            for (va, vb) in x.iter().zip(y) {
                diff(va, vb, &p, out);
            }
        }
        (x, y) if x == y => {}
        _ => out.push(at.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_paths_never_values() {
        let r = ShadowReport::default();
        r.record(
            1,
            br#"{"a":"k1_x","b":[{"c":1},{"c":2}],"d":true}"#,
            Some(br#"{"a":"secret@example.com","b":[{"c":1},{"c":3}],"e":1}"#),
        );
        r.record(1, br#"{"a":1}"#, Some(br#"{"a":1}"#));
        let s = r.snapshot();
        let rep = &s[&1];
        assert_eq!((rep.compared, rep.differing), (2, 1));
        let keys: Vec<&str> = rep.paths.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "$.a",
                "$.b[*].c",
                "$.d (only enforced)",
                "$.e (only candidate)"
            ]
        );
        assert!(!format!("{s:?}").contains("secret"));
    }
}
