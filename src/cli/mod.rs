//! The command line. Each subcommand is a function returning
//! `anyhow::Result<ExitCode>`; `main` prints the error chain and exits 1
//! (usage errors exit 2, from clap).

mod check;
pub mod demo;
mod keys;
mod ropa;
mod run;
mod transform;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::Limits;
use crate::keyring::{DevKeySource, KeyError};

#[derive(Parser, Debug)]
#[command(
    name = "scrim",
    version,
    about = "A pseudonymising reverse proxy for webinar and event data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy from a config file.
    Run(run::RunArgs),
    /// Run bundled webinar traffic through the bundled rules with a
    /// throw-away key, and show what a recipient would receive.
    Demo(demo::DemoArgs),
    /// Apply a rule file to a payload (file or stdin) and print the result.
    Transform(transform::TransformArgs),
    /// Validate rule files; exit 1 with file:line diagnostics on any error.
    Check(check::CheckArgs),
    /// Manage the key ring: init, list, rotate, retire.
    Keys(keys::KeysArgs),
    /// A data subject's pseudonyms for every purpose and held key version.
    Lookup(keys::LookupArgs),
    /// Open a reversible (`encrypt`) token. Audited.
    Reveal(keys::RevealArgs),
    /// Records of processing (GDPR art. 30) from the loaded config or rule
    /// files: purpose, legal basis, retention, recipient, data, every field.
    Ropa(ropa::RopaArgs),
}

/// Where the pseudonymisation key comes from, for commands that need one.
#[derive(Args, Debug, Clone)]
pub struct KeyArgs {
    /// Key file: one line `v<VERSION>:<base64 or hex secret>`. Without it,
    /// SCRIM_KEY (and SCRIM_KEY_VERSION) are read.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Use a random key for this run only: tokens will not match any other run.
    #[arg(long, conflicts_with = "key_file")]
    ephemeral_key: bool,
}

impl KeyArgs {
    fn source(&self) -> Result<DevKeySource, KeyError> {
        if self.ephemeral_key {
            DevKeySource::ephemeral()
        } else if let Some(p) = &self.key_file {
            DevKeySource::from_file(p)
        } else {
            DevKeySource::from_env()
        }
    }
}

/// Input limits shared by the commands that read payloads.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Deepest nesting of objects and arrays accepted.
    #[arg(long, default_value_t = Limits::default().max_depth as u64, value_parser = clap::value_parser!(u64).range(1..=crate::engine::MAX_DEPTH_CEILING as u64))]
    max_depth: u64,
    /// Longest string accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_string_len)]
    max_string_len: usize,
    /// Longest NDJSON line accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_line_len)]
    max_line_len: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_depth: self.max_depth as usize,
            max_string_len: self.max_string_len,
            max_line_len: self.max_line_len,
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Transform(a) => transform::run(a),
        Command::Check(a) => check::run(a),
        Command::Keys(a) => keys::run(a),
        Command::Lookup(a) => keys::lookup(a),
        Command::Reveal(a) => keys::reveal(a),
        Command::Ropa(a) => ropa::run(a),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
