//! `scrim check`: compile every rule file and report, like `nginx -t`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::engine::compile_file;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Rule files to check; by default every `*.toml` in ./rules.
    files: Vec<PathBuf>,
    /// Check a config file and every rule file it names.
    #[arg(short, long, env = "SCRIM_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(a: CheckArgs) -> anyhow::Result<ExitCode> {
    if let Some(c) = &a.config {
        return Ok(match crate::config::load(c) {
            Ok(cfg) => {
                println!(
                    "{}: ok: {} listeners, {} upstreams, {} routes",
                    c.display(),
                    cfg.listeners.len(),
                    cfg.upstreams.len(),
                    cfg.routes.len()
                );
                for r in &cfg.routes {
                    if r.pass_through {
                        println!(
                            "  route {}: -> {} PASS-THROUGH: forwarded unchanged, no rules, no leak guard",
                            r.index, r.upstream.name
                        );
                        continue;
                    }
                    println!(
                        "  route {}: -> {} with purpose `{}` ({}, retention {})",
                        r.index,
                        r.upstream.name,
                        r.rules.purpose.id,
                        r.rules.purpose.legal_basis.as_str(),
                        r.rules.purpose.retention
                    );
                }
                if let Some(a) = &cfg.admin {
                    println!("  admin API on {}", a.listener.addr);
                }
                for w in crate::admin::startup_warnings(&cfg) {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{}: the configuration is invalid", c.display());
                ExitCode::FAILURE
            }
        });
    }
    let files = if a.files.is_empty() {
        default_files(Path::new("rules"))?
    } else {
        a.files
    };
    let mut failed = 0;
    for f in &files {
        match compile_file(f) {
            Ok(r) => println!(
                "{}: ok: purpose `{}` for `{}`, {} ({}), retention {}, {} rules",
                f.display(),
                r.purpose.id,
                r.purpose.recipient,
                r.purpose.legal_basis.as_str(),
                r.purpose.legal_basis.article(),
                r.purpose.retention,
                r.rule_count()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} files failed the check", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn default_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("no files given and cannot read {}/", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .toml files in {}/", dir.display());
    Ok(files)
}
