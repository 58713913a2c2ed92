//! `scrim transform`: the engine over a file or stdin, to stdout.
//! NDJSON streams: each line is written as soon as it is complete.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::{KeyArgs, LimitArgs};
use crate::engine::{compile_file, Engine, Format};

#[derive(Args, Debug)]
pub struct TransformArgs {
    /// The rule file to apply.
    #[arg(long, short)]
    rules: PathBuf,
    /// Payload format; by default from the input's extension
    /// (.ndjson/.jsonl: ndjson, .form/.txt: form, .envelope:
    /// sentry-envelope), else json.
    #[arg(long, short, value_enum)]
    format: Option<Format>,
    /// Input file; stdin when absent or `-`.
    input: Option<PathBuf>,
    /// Largest whole-document input (json, form) read, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_input: u64,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

pub fn run(a: TransformArgs) -> anyhow::Result<ExitCode> {
    let rules = compile_file(&a.rules).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = a.key.source()?;
    if a.key.ephemeral_key {
        eprintln!("note: using a random key; tokens will differ on every run");
    }
    let engine = Engine::new(Arc::new(rules), &keys, a.limits.limits())?;
    let input_name = match &a.input {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "<stdin>".into(),
    };
    let format = a.format.unwrap_or_else(|| guess_format(a.input.as_ref()));
    let mut reader: Box<dyn Read> = match &a.input {
        Some(p) if p.as_os_str() != "-" => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        _ => Box::new(io::stdin().lock()),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match format {
        Format::Ndjson => {
            let mut stream = crate::engine::NdjsonStream::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut produced = Vec::with_capacity(64 * 1024);
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).with_context(|| format!("cannot read {input_name}")),
                };
                stream
                    .push(&engine, &buf[..n], &mut produced)
                    .map_err(|e| anyhow::anyhow!("{input_name}: {e}"))?;
                out.write_all(&produced)?;
                out.flush()?;
                produced.clear();
            }
            stream
                .finish(&engine, &mut produced)
                .map_err(|e| anyhow::anyhow!("{input_name}: {e}"))?;
            out.write_all(&produced)?;
        }
        Format::Json | Format::Form | Format::SentryEnvelope | Format::SentryEvent => {
            let mut input = Vec::new();
            reader
                .by_ref()
                .take(a.max_input + 1)
                .read_to_end(&mut input)
                .with_context(|| format!("cannot read {input_name}"))?;
            if input.len() as u64 > a.max_input {
                bail!(
                    "{input_name} is larger than --max-input ({} bytes)",
                    a.max_input
                );
            }
            let mut produced = Vec::with_capacity(input.len());
            engine
                .transform(format, &input, &mut produced)
                .map_err(|e| anyhow::anyhow!("{input_name}: {e}"))?;
            out.write_all(&produced)?;
            // An envelope already ends with its newline.
            if !produced.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn guess_format(input: Option<&PathBuf>) -> Format {
    match input.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
        Some("ndjson" | "jsonl") => Format::Ndjson,
        Some("form" | "txt") => Format::Form,
        Some("envelope") => Format::SentryEnvelope,
        _ => Format::Json,
    }
}
