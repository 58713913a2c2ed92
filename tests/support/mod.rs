//! Helpers shared by the integration tests: engines built with a fixed test
//! key, the `scrim` binary with a controlled environment, bounded waits, and
//! leak checks that look through case, percent-encoding and JSON escapes.

#![allow(dead_code)] // each test module uses its own subset

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scrim::engine::{compile_file, compile_str, Engine, Format, Limits};
use scrim::keyring::DevKeySource;

/// Key version every test engine uses, so tokens read `k7_...`.
pub const KEY_VERSION: u32 = 7;

/// The fixed test secret (32 bytes).
pub const KEY_BYTES: [u8; 32] = *b"scrim-integration-test-key-32byt";

/// How long a spawned `scrim` may run before the test fails instead of hanging.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

pub fn keys() -> DevKeySource {
    keys_v(KEY_VERSION)
}

pub fn keys_v(version: u32) -> DevKeySource {
    DevKeySource::from_bytes(version, &KEY_BYTES).expect("the test key is long enough")
}

/// The test key as `SCRIM_KEY` takes it (hex).
pub fn key_hex() -> String {
    KEY_BYTES.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn rules_dir() -> PathBuf {
    manifest_dir().join("rules")
}

pub fn fixtures_dir() -> PathBuf {
    manifest_dir().join("tests").join("fixtures")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = fixtures_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
}

/// A `[purpose]` table with the given id and recipient, then `rules`.
pub fn rule_file(purpose: &str, recipient: &str, rules: &str) -> String {
    format!(
        "[purpose]\nid = \"{purpose}\"\nlegal_basis = \"legitimate-interest\"\n\
         retention = \"13 months\"\nrecipient = \"{recipient}\"\n\n{rules}"
    )
}

/// Engine from whole rule-file text, test key, default limits.
pub fn engine_from_toml(text: &str) -> Engine {
    engine_from_toml_with(text, KEY_VERSION, Limits::default())
}

pub fn engine_from_toml_with(text: &str, version: u32, limits: Limits) -> Engine {
    let rules = compile_str(text, "inline.toml").unwrap_or_else(|e| panic!("{e}"));
    Engine::new(Arc::new(rules), &keys_v(version), limits).expect("the test key is active")
}

/// Engine from `[[rule]]` tables under a standard test purpose.
pub fn engine(rules: &str) -> Engine {
    engine_from_toml(&rule_file("test-purpose", "test-recipient", rules))
}

/// Engine from a file in `rules/`.
pub fn engine_for_rule_file(name: &str) -> Engine {
    let rules = compile_file(&rules_dir().join(name)).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(Arc::new(rules), &keys(), Limits::default()).expect("the test key is active")
}

/// Transforms and returns the output bytes; panics with the error otherwise.
pub fn run(engine: &Engine, format: Format, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    engine
        .transform(format, input, &mut out)
        .unwrap_or_else(|e| panic!("transform failed: {e}"));
    out
}

/// Transforms one JSON document and parses the output.
pub fn run_json(engine: &Engine, input: &str) -> serde_json::Value {
    let out = run(engine, Format::Json, input.as_bytes());
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// NDJSON the slow way: each line through `Engine::json` on its own.
pub fn line_by_line(engine: &Engine, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        engine
            .json(line, &mut out)
            .unwrap_or_else(|e| panic!("line failed: {e}"));
        out.push(b'\n');
    }
    out
}

/// Every way a raw value could show up in `output`: as is, lower-cased,
/// percent-decoded, or with JSON escapes decoded. Returns the first view
/// that contains it.
pub fn leak_of(output: &[u8], raw: &str) -> Option<&'static str> {
    let text = String::from_utf8_lossy(output);
    let raw_lower = raw.to_lowercase();
    let contains = |hay: &str| hay.contains(raw) || hay.to_lowercase().contains(&raw_lower);
    if contains(&text) {
        return Some("raw");
    }
    let decoded = percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    if contains(&decoded) {
        return Some("percent-decoded");
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(output) {
        let mut strings = Vec::new();
        collect_strings(&v, &mut strings);
        if strings.iter().any(|s| contains(s)) {
            return Some("JSON string");
        }
    }
    None
}

/// Panics if any of `raws` shows up in `output`.
pub fn assert_no_leak(output: &[u8], raws: &[&str]) {
    for raw in raws {
        if let Some(view) = leak_of(output, raw) {
            panic!(
                "raw value {raw:?} reached the output ({view}): {}",
                String::from_utf8_lossy(output)
            );
        }
    }
}

/// All strings in a JSON value, object keys included.
pub fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

/// Is `s` a bare token of the test key: `k7_` and 26 base32hex characters?
pub fn is_token(s: &str) -> bool {
    scrim::pseudo::token::version_of(s) == Some(KEY_VERSION)
}

/// Is `s` an email token `k7_...@domain`?
pub fn is_email_token(s: &str, domain: &str) -> bool {
    match s.split_once('@') {
        Some((local, d)) => is_token(local) && d == domain,
        None => false,
    }
}

// === the scrim binary ===

/// `scrim` with no key in its environment and the crate root as its cwd.
pub fn scrim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scrim"));
    c.current_dir(manifest_dir())
        .env_remove("SCRIM_KEY")
        .env_remove("SCRIM_KEY_VERSION")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    c
}

/// `scrim` with the test key in `SCRIM_KEY`.
pub fn scrim_with_key() -> Command {
    let mut c = scrim();
    c.env("SCRIM_KEY", key_hex())
        .env("SCRIM_KEY_VERSION", KEY_VERSION.to_string());
    c
}

/// What a finished process left.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` with `stdin` as its input, killing it (and failing the test)
/// if it runs longer than [`PROCESS_TIMEOUT`].
pub fn run_process(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("the scrim binary starts");
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            // The child may exit early on bad input; a broken pipe is fine.
            let _ = pipe.write_all(&data);
        })
    });
    let out_reader = drain(child.stdout.take().expect("stdout is piped"));
    let err_reader = drain(child.stderr.take().expect("stderr is piped"));
    let status = wait_bounded(&mut child, PROCESS_TIMEOUT);
    if let Some(w) = writer {
        w.join().expect("the stdin writer does not panic");
    }
    Output {
        status,
        stdout: out_reader.join().expect("the stdout reader does not panic"),
        stderr: String::from_utf8_lossy(&err_reader.join().expect("stderr reader")).into_owned(),
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` at most `limit`; kills it and panics after that.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scrim did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Writes `text` to a fresh temporary file named `name`; keep the dir alive.
pub fn temp_file(name: &str, text: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("the temporary file is written");
    (dir, p)
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
