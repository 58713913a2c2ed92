//! The `scrim` binary: `transform` exit codes and messages, NDJSON streaming
//! through a pipe, and `demo`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_no_leak, engine_for_rule_file, fixture, fixtures_dir, is_email_token, rules_dir, run,
    run_process, scrim, scrim_with_key, temp_file, wait_bounded, PROCESS_TIMEOUT,
};

const EVENT: &str = r#"{"event":"participant_joined","participant":{"email":"søren.ødegård@example.dk","name":"Søren Ødegård"},"context":{"ip":"203.0.113.77"}}"#;
const RAW: &[&str] = &["søren.ødegård@example.dk", "Søren Ødegård", "203.0.113.77"];

fn analytics_rules() -> std::path::PathBuf {
    rules_dir().join("audience-analytics.toml")
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "scrim panicked:\n{stderr}"
    );
}

// === transform: keys ===

#[test]
fn transform_without_a_key_fails_and_names_scrim_key() {
    let out = run_process(
        scrim()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("SCRIM_KEY"), "{}", out.stderr);
    assert!(out.stderr.contains("--key-file"), "{}", out.stderr);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    assert_no_panic(&out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
}

#[test]
fn transform_refuses_unusable_keys_without_echoing_them() {
    // Too short.
    let out = run_process(
        scrim()
            .env("SCRIM_KEY", "c2hvcnQta2V5LXNlY3JldA==")
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("SCRIM_KEY"), "{}", out.stderr);
    assert!(out.stderr.contains("at least 32"), "{}", out.stderr);
    assert!(!out.stderr.contains("c2hvcnQta2V5"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    // Not base64 or hex.
    let out = run_process(
        scrim()
            .env("SCRIM_KEY", "this is not a key at all!!")
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("not valid base64 or hex"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("this is not a key"), "{}", out.stderr);
    // A bad version.
    let out = run_process(
        scrim_with_key()
            .env("SCRIM_KEY_VERSION", "0")
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("SCRIM_KEY_VERSION"), "{}", out.stderr);
    // A key file that does not exist.
    let out = run_process(
        scrim()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--key-file")
            .arg("/nonexistent/scrim.key"),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("cannot read key file"),
        "{}",
        out.stderr
    );
    assert_no_panic(&out.stderr);
}

#[test]
fn transform_with_a_key_file_uses_its_version() {
    let secret = "ab".repeat(32);
    let (_dir, key) = temp_file("scrim.key", format!("v4:{secret}\n").as_bytes());
    let out = run_process(
        scrim()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--key-file")
            .arg(&key),
        Some(EVENT.as_bytes()),
    );
    assert!(out.status.success(), "{}", out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let email = v["participant"]["email"].as_str().unwrap();
    assert!(email.starts_with("k4_"), "{email}");
    assert_no_leak(&out.stdout, RAW);
    assert!(!out.stderr.contains(&secret));
}

// === transform: payloads ===

#[test]
fn transform_json_matches_the_engine() {
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(EVENT.as_bytes()),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let mut want = run(
        &engine_for_rule_file("audience-analytics.toml"),
        scrim::engine::Format::Json,
        EVENT.as_bytes(),
    );
    want.push(b'\n');
    assert_eq!(out.stdout_str(), String::from_utf8(want).unwrap());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(is_email_token(
        v["participant"]["email"].as_str().unwrap(),
        "pseudonym.invalid"
    ));
    assert_eq!(v["context"]["ip"], "203.0.113.0");
}

#[test]
fn transform_form_pixel_from_a_file() {
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(rules_dir().join("snowplow-pixel.toml"))
            .arg(fixtures_dir().join("snowplow-pixel.form")),
        None,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let want = run(
        &engine_for_rule_file("snowplow-pixel.toml"),
        scrim::engine::Format::Form,
        &fixture("snowplow-pixel.form"),
    );
    assert_eq!(out.stdout.strip_suffix(b"\n"), Some(&want[..]));
    assert_no_leak(&out.stdout, &["u-48213", "203.0.113.77", "jose"]);
}

#[test]
fn transform_malformed_json_fails_with_the_byte_offset_and_no_data() {
    let bad = r#"{"participant":{"email":"søren.ødegård@example.dk"},}"#;
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(bad.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let at = bad.rfind('}').unwrap();
    assert!(
        out.stderr
            .contains(&format!("<stdin>: byte {at}: malformed JSON")),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout_str());
    assert_no_leak(out.stderr.as_bytes(), RAW);
    assert_no_panic(&out.stderr);
    // The file name is named when the input is a file.
    let (_dir, path) = temp_file("bad.json", bad.as_bytes());
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg(&path),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .contains(&format!("{}: byte {at}:", path.display())),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn transform_refuses_invalid_utf8_and_too_deep_input() {
    let mut bad = br#"{"participant":{"email":"s"#.to_vec();
    let at = bad.len();
    bad.push(0xF8);
    bad.extend_from_slice(b"ren@example.dk\"}}");
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules()),
        Some(&bad),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.contains("invalid UTF-8"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("byte {at}"))
            || out.stderr.contains(&format!("byte {}", at + 1)),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    let deep = format!("{}{}", "[".repeat(10), "]".repeat(10));
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--max-depth")
            .arg("5"),
        Some(deep.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("nesting deeper than 5 levels"),
        "{}",
        out.stderr
    );
    // An out-of-range limit is a usage error (exit 2).
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--max-depth")
            .arg("0"),
        Some(b"{}"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
}

#[test]
fn transform_refuses_input_over_max_input() {
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--max-input")
            .arg("16"),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("larger than --max-input (16 bytes)"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert_no_leak(out.stderr.as_bytes(), RAW);
}

#[test]
fn transform_with_a_broken_rule_file_prints_its_diagnostics() {
    let (_dir, rules) = temp_file(
        "broken.toml",
        b"[purpose]\nid = \"p\"\nlegal_basis = \"contract\"\nretention = \"6 months\"\nrecipient = \"r\"\n\n[[rule]]\nfield = \"a\"\naction = \"hash\"\n",
    );
    let out = run_process(
        scrim_with_key().arg("transform").arg("--rules").arg(&rules),
        Some(EVENT.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .contains(&format!("{}:9:10: error:", rules.display())),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn transform_ndjson_stops_at_a_bad_line_after_the_good_ones() {
    let good = EVENT;
    let input = format!(
        "{good}\n{good}\n{{\"participant\":{{\"email\":\"søren.ødegård@example.dk\"}}\n{good}\n"
    );
    let out = run_process(
        scrim_with_key()
            .arg("transform")
            .arg("--rules")
            .arg(analytics_rules())
            .arg("--format")
            .arg("ndjson"),
        Some(input.as_bytes()),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("<stdin>: line 3, byte "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("EOF while parsing"), "{}", out.stderr);
    // What was written before the error is transformed, never raw.
    assert_no_leak(&out.stdout, RAW);
    assert_no_leak(out.stderr.as_bytes(), RAW);
    for line in out.stdout_str().lines() {
        serde_json::from_str::<Value>(line).expect("each written line is JSON");
    }
    assert!(out.stdout_str().lines().count() <= 2);
}

/// Reads lines from the child's stdout on a thread, so a test can wait for
/// one with a deadline instead of blocking forever.
fn line_reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn transform_ndjson_streams_each_line_before_stdin_closes() {
    let mut child = scrim_with_key()
        .arg("transform")
        .arg("--rules")
        .arg(analytics_rules())
        .arg("--format")
        .arg("ndjson")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scrim starts");
    let mut stdin = child.stdin.take().unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let engine = engine_for_rule_file("audience-analytics.toml");
    let expect = |input: &str| {
        let mut out = Vec::new();
        engine.json(input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let timeout = Duration::from_secs(10);
    let second = r#"{"event":"participant_left","participant":{"email":"zoe.celik@example.com"}}"#;
    for input in [EVENT, second] {
        stdin.write_all(input.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let got = match lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no output line within {timeout:?} while stdin is still open");
            }
        };
        assert_eq!(got, expect(input));
        assert_no_leak(got.as_bytes(), RAW);
    }
    // A line split over two writes comes out once it is complete.
    stdin.write_all(br#"{"event":"par"#).unwrap();
    stdin.flush().unwrap();
    assert!(
        lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "a partial line was written"
    );
    stdin.write_all(b"tial\"}\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(
        lines.recv_timeout(timeout).expect("the completed line"),
        r#"{"event":"partial"}"#
    );
    drop(stdin);
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT);
    assert!(status.success());
    assert!(lines.recv_timeout(timeout).is_err(), "nothing after EOF");
}

// === demo ===

#[test]
fn demo_exits_zero_and_reports_no_raw_values() {
    let out = run_process(scrim().arg("demo"), None);
    assert!(out.status.success(), "{}", out.stderr);
    assert_no_panic(&out.stderr);
    let stdout = out.stdout_str();
    let summary = stdout
        .lines()
        .find(|l| l.contains("raw personal values that reached"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(summary.trim_end().ends_with(": 0"), "{summary}");
    // Quiet mode prints the summary only, with the same answer.
    let quiet = run_process(scrim().arg("demo").arg("--quiet"), None);
    assert!(quiet.status.success(), "{}", quiet.stderr);
    let q = quiet.stdout_str();
    assert!(q.lines().count() < stdout.lines().count());
    assert!(
        q.lines().any(
            |l| l.contains("raw personal values that reached") && l.trim_end().ends_with(": 0")
        ),
        "{q}"
    );
}

#[test]
fn unknown_subcommands_and_missing_arguments_are_usage_errors() {
    let out = run_process(scrim().arg("frobnicate"), None);
    assert_eq!(out.status.code(), Some(2));
    let out = run_process(scrim().arg("transform"), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--rules"), "{}", out.stderr);
}
