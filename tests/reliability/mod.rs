//! The reliability and security suite (`docs/reliability.md`): hostile
//! input, faults, load and access. Each test runs its cases, records what it
//! tried and how many passed with [`record`], then asserts that all passed;
//! `tests/reliability/report.py` renders the records into the report (and
//! `--check` fails CI when the report and the suite disagree).

#![allow(dead_code)] // each test module uses its own subset

use std::path::PathBuf;

/// One case's outcome: `Err` says what went wrong.
pub type Res = Result<(), String>;

/// `Ok` when `ok`, else the reason `why` gives.
pub fn ensure(ok: bool, why: impl FnOnce() -> String) -> Res {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

/// Where records go: one JSON file per item, overwritten by each run.
fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("reliability")
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn write(class: &str, item: &str, v: serde_json::Value) {
    let d = dir();
    std::fs::create_dir_all(&d).expect("create target/reliability");
    let path = d.join(format!("{}--{}.json", slug(class), slug(item)));
    std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("JSON")).expect("write a record");
}

/// Records one item of the report: `class` ("Hostile input", "Faults",
/// "Load", "Access"), what was tried, how many cases ran and passed.
pub fn record(class: &str, item: &str, cases: usize, passed: usize) {
    write(
        class,
        item,
        serde_json::json!({"class": class, "item": item, "cases": cases, "passed": passed}),
    );
}

/// Records measured figures (requests, failed, leaked, peak memory, ...)
/// beside the cases, for the load runs.
pub fn record_figures(
    class: &str,
    item: &str,
    cases: usize,
    passed: usize,
    figures: serde_json::Value,
) {
    write(
        class,
        item,
        serde_json::json!({"class": class, "item": item, "cases": cases, "passed": passed, "figures": figures}),
    );
}

/// Runs named cases, collecting failures instead of stopping at the first,
/// records the tally, then fails with every failed case listed.
pub struct Cases {
    class: &'static str,
    item: &'static str,
    ran: usize,
    failed: Vec<String>,
}

impl Cases {
    pub fn new(class: &'static str, item: &'static str) -> Self {
        Self {
            class,
            item,
            ran: 0,
            failed: Vec::new(),
        }
    }

    /// One case: `Ok(())` passed, `Err(why)` failed.
    pub fn check(&mut self, name: &str, outcome: Result<(), String>) {
        self.ran += 1;
        if let Err(why) = outcome {
            self.failed.push(format!("{name}: {why}"));
        }
    }

    /// Records the tally and panics if any case failed or none ran.
    pub fn finish(self) {
        record(
            self.class,
            self.item,
            self.ran,
            self.ran - self.failed.len(),
        );
        self.verdict();
    }

    /// [`finish`](Self::finish), with measured figures in the record.
    pub fn finish_with(self, figures: serde_json::Value) {
        record_figures(
            self.class,
            self.item,
            self.ran,
            self.ran - self.failed.len(),
            figures,
        );
        self.verdict();
    }

    fn verdict(self) {
        assert!(self.ran > 0, "{}: no case ran", self.item);
        assert!(
            self.failed.is_empty(),
            "{}: {} of {} cases failed:\n{}",
            self.item,
            self.failed.len(),
            self.ran,
            self.failed.join("\n")
        );
    }
}

mod access; // admin roles, token comparison, listener exposure, key ring permissions
mod faults; // upstream and client failures, the ring's disk, SIGKILL during a rotation
mod hostile; // malformed, oversized, smuggled and tricky requests and responses
mod load; // sustained load with a reload and a rotation, thousands of idle connections
