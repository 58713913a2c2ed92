//! Key commands for the security team: `scrim keys init | list | rotate |
//! retire`, and the data subject commands `scrim lookup` and `scrim reveal`.
//! A running scrim picks up ring changes within its reload interval.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config;
use crate::engine::spec::Kind;
use crate::keyring::kek::Kek;
use crate::keyring::ring::KeyRing;
use crate::snapshot::{Keys, Runtime};

#[derive(Args, Debug)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    ring: RingArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RingArgs {
    /// The key ring file; default: `[keys] ring` of the config.
    #[arg(long, global = true)]
    ring: Option<PathBuf>,
    /// The KEK file; default: `[keys] kek_file` of the config, else SCRIM_KEK.
    #[arg(long, global = true)]
    kek_file: Option<PathBuf>,
    /// The config file to take `[keys]` from.
    #[arg(short, long, global = true, env = "SCRIM_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a new ring with one active version (never overwrites).
    Init,
    /// List versions: id, created, state. Never prints material.
    List,
    /// Make a new active version; the current one becomes previous.
    Rotate,
    /// Destroy a previous version's material: its pseudonyms become unlinkable.
    Retire { version: u32 },
}

impl RingArgs {
    fn resolve(&self) -> anyhow::Result<(PathBuf, Kek)> {
        let cfg = match &self.config {
            Some(c) => Some(config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?),
            None => None,
        };
        let ring = self
            .ring
            .clone()
            .or_else(|| cfg.as_ref().and_then(|c| c.keys.ring.clone()))
            .context("no key ring: pass --ring PATH or a config (-c) with [keys] ring")?;
        let kek_file = self
            .kek_file
            .clone()
            .or_else(|| cfg.as_ref().and_then(|c| c.keys.kek_file.clone()));
        Ok((ring, Kek::load(kek_file.as_deref())?))
    }
}

pub fn run(a: KeysArgs) -> anyhow::Result<ExitCode> {
    let (path, kek) = a.ring.resolve()?;
    let ring = match a.command {
        KeysCommand::Init => KeyRing::init(&path, &kek)?,
        KeysCommand::List => KeyRing::load(&path, &kek)?,
        KeysCommand::Rotate => KeyRing::rotate(&path, &kek)?,
        KeysCommand::Retire { version } => KeyRing::retire(&path, &kek, version)?,
    };
    println!("{:<8} {:<10} {:<26} retired", "version", "state", "created");
    for v in ring.versions() {
        println!(
            "{:<8} {:<10} {:<26} {}",
            v.id,
            format!("{:?}", v.state).to_lowercase(),
            v.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            v.retired
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LookupArgs {
    /// email, name, id, phone or ip.
    #[arg(long)]
    kind: String,
    /// The subject's value, as the platform knows it.
    value: String,
    /// The config whose purposes to look up.
    #[arg(short, long, env = "SCRIM_CONFIG")]
    config: PathBuf,
}

#[derive(Args, Debug)]
pub struct RevealArgs {
    /// The purpose id the token was made for.
    #[arg(long)]
    purpose: String,
    /// The id of the `encrypt` rule that made it.
    #[arg(long)]
    field: String,
    token: String,
    #[arg(short, long, env = "SCRIM_CONFIG")]
    config: PathBuf,
}

fn runtime(config_path: &std::path::Path) -> anyhow::Result<std::sync::Arc<Runtime>> {
    let cfg = config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = match (&cfg.keys.ring, &cfg.keys.file) {
        (Some(ring), _) => Keys::Ring {
            path: ring.clone(),
            kek: Kek::load(cfg.keys.kek_file.as_deref())?,
        },
        (None, Some(p)) => Keys::Dev(crate::keyring::DevKeySource::from_file(p)?),
        (None, None) => Keys::Dev(crate::keyring::DevKeySource::from_env()?),
    };
    Ok(Runtime::new(cfg, keys)?)
}

fn audit(rt: &Runtime, action: &str, target: &str, outcome: &str) -> anyhow::Result<()> {
    let cfg = rt.config();
    let path = cfg.admin.as_ref().and_then(|a| a.audit_log.as_deref());
    let log = crate::admin::audit::AuditLog::open(path).context("cannot open the audit log")?;
    log.record(None, action, Some(target), outcome);
    Ok(())
}

pub fn lookup(a: LookupArgs) -> anyhow::Result<ExitCode> {
    let kind = match Kind::from_str(&a.kind) {
        Ok(k @ (Kind::Email | Kind::Name | Kind::Id | Kind::Phone | Kind::Ip)) => k,
        _ => anyhow::bail!("--kind must be email, name, id, phone or ip"),
    };
    let rt = runtime(&a.config)?;
    let rows = rt.lookup(kind, &a.value);
    audit(
        &rt,
        "cli.lookup",
        &format!("{} {}", kind.as_str(), rt.audit_pseudonym(&a.value)),
        "ok",
    )?;
    for r in rows {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reveal(a: RevealArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime(&a.config)?;
    let target = format!("{}/{} {}", a.purpose, a.field, a.token);
    match rt.reveal(&a.purpose, &a.field, &a.token) {
        Ok(v) => {
            audit(&rt, "cli.reveal", &target, "ok")?;
            println!("{v}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            audit(&rt, "cli.reveal", &target, "failed")?;
            anyhow::bail!("{e}")
        }
    }
}
