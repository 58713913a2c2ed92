//! Access: the admin API refuses every action without the right role;
//! token comparison does the same work whatever is presented; the admin
//! listener is on loopback unless configured otherwise and warns when
//! exposed without TLS; the key ring is owner-only and scrim warns at start
//! when the ring or the KEK file is readable by others.
//!
//! Timing: a wall-clock test over HTTP is noise on shared CI. The test calls
//! `scrim::admin::auth::authenticate` in-process, with 32 configured
//! tokens so that what a leak would change (stopping at the first match,
//! or comparing digests byte by byte until they differ) is amplified well
//! above the noise, and compares median times across classes of presented
//! tokens (the real one first or last, a random one, one differing in its
//! last character, one whose digest shares 31 of 32 bytes with every stored
//! hash). A deliberately leaky comparison, measured by the same harness in
//! the same run, must be caught: that shows the measurement can fail.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use scrim::admin::auth::{self, Denied};
use scrim::config::file::Role;
use scrim::config::AdminToken;

use super::{ensure, Cases, Res};
use crate::keyring::{
    admin_call, bearer, config, free_ports, init_ring, kek_hex, route, rules, run_bounded,
    scrim_cmd, sha256_hex, spawn_scrim, start_scrim, wait_ready, ChildGuard, EMAIL_RULES,
    NOTE_RULE, OPERATOR_TOKEN, PRIVACY_TOKEN, REFUSAL_TIMEOUT, SECURITY_TOKEN,
};
use crate::proxy_support::{self as ps, Upstream};

// === every endpoint, every role, no or wrong token ============================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_every_action_without_the_right_role() {
    let mut c = Cases::new(
        "Access",
        "admin API: every endpoint x every role, no token and wrong tokens",
    );
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let audit = dir.path().join("audit.log");
    let routes = format!(
        "{}[privacy]\nobjections = \"objections.json\"\n\n",
        route(
            "/",
            &rules(
                "support-notes",
                "crm",
                "13 months",
                &format!("{EMAIL_RULES}{NOTE_RULE}")
            )
        )
    );
    let cfg = config(
        "127.0.0.1:0",
        &up.url(),
        &ring,
        "",
        &routes,
        Some(("127.0.0.1:0", &audit)),
    );
    let running = start_scrim(dir.path(), &cfg).await;
    let (proxy, admin) = (running.addrs[0], running.admin_addr.unwrap());
    let client = ps::h1_client();
    let sent = crate::keyring::through(
        &client,
        &up,
        proxy,
        "/t",
        &json!({"email": "alice@example.com", "note": "call back"}),
    )
    .await;
    let note = crate::keyring::parse(&sent)["note"]
        .as_str()
        .unwrap()
        .to_owned();

    use Role::{Operator as O, PrivacyOfficer as P, Security as S};
    let subject = json!({"kind": "email", "value": "alice@example.com"});
    // In this order: reveal before the rotation, retire after it.
    let endpoints: Vec<(Method, &str, Option<Value>, &[Role])> = vec![
        (Method::GET, "/keys", None, &[S, O]),
        (Method::POST, "/lookup", Some(subject.clone()), &[S, P]),
        (Method::POST, "/reload", None, &[S, O]),
        (
            Method::POST,
            "/reveal",
            Some(json!({"purpose": "support-notes", "field": "secret-note", "token": note})),
            &[S],
        ),
        (Method::POST, "/objections", Some(subject.clone()), &[S, P]),
        (
            Method::DELETE,
            "/objections",
            Some(subject.clone()),
            &[S, P],
        ),
        (Method::GET, "/privacy", None, &[S, O, P]),
        (Method::GET, "/shadow", None, &[S, O, P]),
        (Method::GET, "/unknown-fields", None, &[S, O, P]),
        (Method::POST, "/keys/rotate", None, &[S]),
        (Method::POST, "/keys/1/retire", None, &[S]),
    ];
    let sec_hash = sha256_hex(SECURITY_TOKEN);
    let near = format!("{}x", &SECURITY_TOKEN[..SECURITY_TOKEN.len() - 1]);
    // (what, Authorization header, role it stands for: None = nobody)
    let presented: Vec<(&str, Option<String>, Option<Role>)> = vec![
        ("no token", None, None),
        ("empty bearer", Some("Bearer ".into()), None),
        ("unknown token", Some(bearer("not-a-token-at-all")), None),
        (
            "security token, last character changed",
            Some(bearer(&near)),
            None,
        ),
        (
            "security token under Basic",
            Some(format!("Basic {SECURITY_TOKEN}")),
            None,
        ),
        ("the stored SHA-256 itself", Some(bearer(&sec_hash)), None),
        ("operator", Some(bearer(OPERATOR_TOKEN)), Some(O)),
        ("privacy officer", Some(bearer(PRIVACY_TOKEN)), Some(P)),
        ("security", Some(bearer(SECURITY_TOKEN)), Some(S)),
    ];
    let objections = dir.path().join("objections.json");
    let files = || {
        (
            std::fs::read(&ring).unwrap(),
            std::fs::read(&objections).unwrap_or_default(),
        )
    };
    for (method, path, body, roles) in &endpoints {
        for (who, authz, role) in &presented {
            let before = files();
            let r = admin_call(
                &client,
                admin,
                method.clone(),
                path,
                authz.as_deref(),
                body.as_ref(),
            )
            .await;
            let allowed = role.is_some_and(|r| roles.contains(&r));
            let want = match role {
                None => StatusCode::UNAUTHORIZED,
                Some(_) if !allowed => StatusCode::FORBIDDEN,
                Some(_) => StatusCode::OK,
            };
            let mut res = ensure(r.status == want, || {
                format!("expected {want}, got {}: {}", r.status, r.text())
            });
            if res.is_ok() && !allowed {
                // A refusal changes nothing and says nothing specific.
                res = ensure(files() == before, || "a refused call changed a file".into())
                    .and_then(|_| {
                        let t = r.text();
                        ensure(
                            !t.contains(SECURITY_TOKEN)
                                && !t.contains("sec-1")
                                && !t.contains(&sec_hash),
                            || format!("the refusal says too much: {t}"),
                        )
                    });
            }
            c.check(&format!("{method} {path} by {who}: {want}"), res);
        }
    }
    // The probes need no token and answer the same to anyone.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = admin_call(&client, admin, Method::GET, path, None, None).await;
        let t = r.text();
        c.check(
            &format!("GET {path} without a token: 200, nothing secret"),
            ensure(
                r.status == StatusCode::OK && !t.contains("alice") && !t.contains(SECURITY_TOKEN),
                || format!("{}: {t}", r.status),
            ),
        );
    }
    ps::within("scrim to stop", ps::WAIT, running.stop()).await;
    c.finish();
}

// === token comparison timing ==================================================

const TOKENS: usize = 32;
const ROUNDS: usize = 2_000; // samples per class
const BATCH: usize = 10; // calls per sample: 20 000 calls per class

fn admin_token(i: usize, sha256: [u8; 32]) -> AdminToken {
    AdminToken {
        id: format!("t{i}"),
        role: Role::Operator,
        sha256,
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// What a naive implementation does: stop at the first match, compare
/// digests byte by byte until they differ.
fn leaky_authenticate(tokens: &[AdminToken], presented: &str) -> bool {
    let d = digest(presented);
    for t in tokens {
        let mut same = true;
        for (a, b) in t.sha256.iter().zip(d.iter()) {
            if std::hint::black_box(a != b) {
                same = false;
                break;
            }
        }
        if same {
            return true;
        }
    }
    false
}

type Class<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

/// Median nanoseconds per call of `f` for each class, sampled round-robin so
/// that noise hits every class alike.
fn medians(classes: &[Class<'_>]) -> Vec<f64> {
    let mut samples: Vec<Vec<u128>> = vec![Vec::with_capacity(ROUNDS); classes.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in classes.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..BATCH {
                std::hint::black_box(f());
            }
            samples[i].push(t.elapsed().as_nanos());
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_unstable();
            s[s.len() / 2] as f64 / BATCH as f64
        })
        .collect()
}

#[test]
fn admin_tokens_are_compared_in_constant_time() {
    let mut c = Cases::new(
        "Access",
        "admin token comparison: same work whatever is presented (in-process, amplified)",
    );
    // The real token, 36 bytes like every presented token below.
    let real = "0123456789abcdef0123456789abcdef-REAL";
    let random = "Zq8vN2xLp4Rt7yWc1Hs5Kd9Fg3Jm6Bn0X-RND";
    let near = "0123456789abcdef0123456789abcdef-REAX";
    assert_eq!((real.len(), near.len()), (random.len(), random.len()));
    let others: Vec<[u8; 32]> = (0..TOKENS - 1)
        .map(|i| digest(&format!("other-token-{i:04}-padding-padding-pad")))
        .collect();
    let mut first = vec![admin_token(0, digest(real))];
    first.extend(
        others
            .iter()
            .enumerate()
            .map(|(i, h)| admin_token(i + 1, *h)),
    );
    let mut last: Vec<AdminToken> = others
        .iter()
        .enumerate()
        .map(|(i, h)| admin_token(i, *h))
        .collect();
    last.push(admin_token(TOKENS, digest(real)));
    // Every stored hash shares 31 leading bytes with the digest of `random`
    // (a byte-by-byte comparison would walk 31 bytes per token).
    let close: Vec<AdminToken> = (0..TOKENS)
        .map(|i| {
            let mut h = digest(random);
            h[31] ^= 1 + (i % 255) as u8;
            admin_token(i, h)
        })
        .collect();
    // ...or only 0 bytes.
    let far: Vec<AdminToken> = (0..TOKENS)
        .map(|i| {
            let mut h = digest(random);
            h[0] ^= 1 + (i % 255) as u8;
            admin_token(i, h)
        })
        .collect();

    let auth = |tokens: &[AdminToken], t: &str| -> bool {
        auth::authenticate(tokens, Some(&format!("Bearer {t}"))).is_ok()
    };
    // Correctness first: the classes are what they claim.
    let r = ensure(
        auth(&first, real)
            && auth(&last, real)
            && !auth(&first, random)
            && !auth(&first, near)
            && !auth(&close, random)
            && !auth(&far, random)
            && auth::authenticate(&first, Some(&format!("Bearer {random}")))
                == Err(Denied::Unauthenticated),
        || "authenticate does not accept and refuse as expected".into(),
    );
    c.check(
        "the real token is accepted first or last; the others refused (401)",
        r,
    );

    let classes: Vec<Class<'_>> = vec![
        ("a random token", Box::new(|| auth(&first, random))),
        (
            "the real token, matching the first of 32 hashes",
            Box::new(|| auth(&first, real)),
        ),
        (
            "the real token, matching the last of 32 hashes",
            Box::new(|| auth(&last, real)),
        ),
        (
            "the real token with its last character changed",
            Box::new(|| auth(&first, near)),
        ),
        (
            "a token whose digest shares 31 bytes with every hash",
            Box::new(|| auth(&close, random)),
        ),
        (
            "a token whose digest shares no byte with any hash",
            Box::new(|| auth(&far, random)),
        ),
    ];
    let m = medians(&classes);
    eprintln!("token comparison medians (ns): {m:?}");
    let base = m[0];
    for (i, (name, _)) in classes.iter().enumerate().skip(1) {
        let ratio = m[i] / base;
        c.check(
            &format!(
                "{name}: median within 15% of a random token's ({:.0} ns vs {:.0} ns)",
                m[i], base
            ),
            ensure((0.85..=1.15).contains(&ratio), || {
                format!("ratio {ratio:.3}: {:.0} ns vs {:.0} ns", m[i], base)
            }),
        );
    }

    // Control: the harness catches a leaky comparison.
    let leaky: Vec<Class<'_>> = vec![
        (
            "leaky, match last",
            Box::new(|| leaky_authenticate(&last, real)),
        ),
        (
            "leaky, match first",
            Box::new(|| leaky_authenticate(&first, real)),
        ),
        (
            "leaky, digest 31 bytes close",
            Box::new(|| leaky_authenticate(&close, random)),
        ),
        (
            "leaky, digest far",
            Box::new(|| leaky_authenticate(&far, random)),
        ),
    ];
    let l = medians(&leaky);
    eprintln!("leaky comparison medians (ns): {l:?}");
    c.check(
        "control: an early-exit loop is caught (first match outside the 15% band of last)",
        ensure(l[1] < 0.85 * l[0], || {
            format!("first {:.0} ns, last {:.0} ns", l[1], l[0])
        }),
    );
    c.check(
        "control: a byte-by-byte comparison is caught (31 shared bytes outside the 15% band)",
        ensure(l[2] > 1.15 * l[3], || {
            format!("close {:.0} ns, far {:.0} ns", l[2], l[3])
        }),
    );
    c.finish();
}

// === the admin listener: loopback by default, warned when exposed =============

fn admin_section(addr: Option<&str>, tls: Option<(&Path, &Path)>) -> String {
    let mut s = "[admin]\n".to_owned();
    if let Some(a) = addr {
        s.push_str(&format!("addr = \"{a}\"\n"));
    }
    if let Some((cert, key)) = tls {
        s.push_str(&format!(
            "tls = {{ cert = {}, key = {} }}\n",
            ps::toml_path(cert),
            ps::toml_path(key)
        ));
    }
    s.push_str(&format!(
        "\n[[admin.token]]\nid = \"sec-1\"\nrole = \"security\"\nsha256 = \"{}\"\n",
        sha256_hex(SECURITY_TOKEN)
    ));
    s
}

const EXPOSED: &str = "beyond loopback, without TLS";

fn check_output(dir: &Path, name: &str, cfg: &str) -> Result<String, String> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let out = run_bounded(
        scrim_cmd(&kek_hex()).args(["check", "-c"]).arg(&path),
        REFUSAL_TIMEOUT,
    );
    ensure(out.status.success(), || {
        format!("check failed: {}{}", out.stdout, out.stderr)
    })?;
    Ok(out.stdout)
}

/// Starts `scrim run`, waits until it is ready, returns it (killed on drop)
/// and its log so far.
async fn run_and_log(dir: &Path, name: &str, cfg: &str, admin: SocketAddr) -> (ChildGuard, String) {
    let mut p: ChildGuard = spawn_scrim(dir, name, cfg);
    let client = ps::h1_client();
    wait_ready(&client, &mut p, admin, name).await;
    p.assert_running(name);
    let log = p.stderr_text();
    (p, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_is_loopback_unless_configured_and_warns_when_exposed() {
    let mut c = Cases::new(
        "Access",
        "admin listener on loopback by default; warning when exposed without TLS",
    );
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let base = |listen: &str| config(listen, &up.url(), &ring, "", &routes, None);
    let cert = ps::test_cert();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();

    // No addr: 127.0.0.1:9901.
    let default_cfg = format!("{}\n{}", base("127.0.0.1:0"), admin_section(None, None));
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &default_cfg).unwrap();
    let r = scrim::config::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            let a = cfg.admin.expect("[admin]").listener.addr;
            ensure(a.ip().is_loopback() && a.port() == 9901, || {
                format!("default admin addr {a}")
            })
        });
    c.check("no addr: the admin API binds 127.0.0.1:9901", r);
    let r = check_output(dir.path(), "default-check", &default_cfg).and_then(|out| {
        ensure(
            out.contains("admin API on 127.0.0.1:9901") && !out.contains("warning"),
            || out,
        )
    });
    c.check(
        "`scrim check -c`: shows the loopback address, no warning",
        r,
    );

    for (name, addr, tls, warns) in [
        ("0.0.0.0 without TLS", "0.0.0.0", false, true),
        ("0.0.0.0 with TLS", "0.0.0.0", true, false),
        ("127.0.0.1 without TLS", "127.0.0.1", false, false),
    ] {
        let ports = free_ports(2);
        let admin_addr = format!("{addr}:{}", ports[1]);
        let cfg = format!(
            "{}\n{}",
            base(&format!("127.0.0.1:{}", ports[0])),
            admin_section(
                Some(&admin_addr),
                tls.then_some((cert_path.as_path(), key_path.as_path()))
            )
        );
        let r = check_output(dir.path(), &format!("check-{}", ports[1]), &cfg).and_then(|out| {
            let has = out.contains(EXPOSED) && out.contains(&admin_addr);
            ensure(has == warns, || {
                format!("warning expected: {warns}; output: {out}")
            })
        });
        c.check(
            &format!(
                "`scrim check -c`, admin on {name}: warning {}",
                if warns { "printed" } else { "absent" }
            ),
            r,
        );
        if tls {
            // A TLS admin listener cannot answer the plain readiness probe;
            // `check` covers it.
            continue;
        }
        let probe = SocketAddr::from(([127, 0, 0, 1], ports[1]));
        let (_p, log) = run_and_log(dir.path(), &format!("run-{}", ports[1]), &cfg, probe).await;
        let r = Ok(log).and_then(|log: String| {
            let line = log.lines().find(|l| l.contains(EXPOSED));
            match (line, warns) {
                (Some(l), true) => {
                    ensure(l.contains("WARN") && l.contains(&admin_addr), || l.into())
                }
                (None, false) => Ok(()),
                (l, _) => Err(format!("warning expected: {warns}; got {l:?}")),
            }
        });
        c.check(
            &format!(
                "`scrim run`, admin on {name}: it serves, warning {} in the log",
                if warns { "logged" } else { "absent" }
            ),
            r,
        );
    }
    c.finish();
}

// === the key ring's permissions ================================================

const READABLE: &str = "accessible to others";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_is_owner_only_and_scrim_warns_when_it_is_not() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cases::new(
        "Access",
        "key ring and KEK file owner-only; warning at start when readable by others",
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let up = Upstream::start(ps::ok_responder()).await;
    let dir = ps::tempdir();
    let ring = init_ring(dir.path());
    let kek_file = dir.path().join("kek");
    std::fs::write(&kek_file, format!("{}\n", kek_hex())).unwrap();
    chmod(&kek_file, 0o600);
    let routes = route(
        "/",
        &rules(
            "audience-measurement",
            "analytics",
            "13 months",
            EMAIL_RULES,
        ),
    );
    let client = ps::h1_client();

    // A ring made readable is private again after a rotation through the
    // admin API, and so is the objection register it creates.
    chmod(&ring, 0o644);
    let r = async {
        let sub = ps::tempdir();
        let cfg = config(
            "127.0.0.1:0",
            &up.url(),
            &ring,
            "",
            &format!(
                "{routes}[privacy]\nobjections = {}\n\n",
                ps::toml_path(&dir.path().join("obj.json"))
            ),
            Some(("127.0.0.1:0", &dir.path().join("audit.log"))),
        );
        let running = start_scrim(sub.path(), &cfg).await;
        let admin = running.admin_addr.unwrap();
        let rot = admin_call(
            &client,
            admin,
            Method::POST,
            "/keys/rotate",
            Some(&bearer(SECURITY_TOKEN)),
            None,
        )
        .await;
        let obj = admin_call(
            &client,
            admin,
            Method::POST,
            "/objections",
            Some(&bearer(SECURITY_TOKEN)),
            Some(&json!({"kind": "email", "value": "x@example.com"})),
        )
        .await;
        ps::within("scrim to stop", ps::WAIT, running.stop()).await;
        ensure(
            rot.status == StatusCode::OK && obj.status == StatusCode::OK,
            || format!("{} {}", rot.text(), obj.text()),
        )?;
        let (rm, om) = (mode(&ring), mode(&dir.path().join("obj.json")));
        ensure(rm == 0o600 && om == 0o600, || {
            format!("ring {rm:o}, objections {om:o}")
        })
    }
    .await;
    c.check(
        "a 0644 ring is 0600 after a rotation; the objection register is created 0600",
        r,
    );

    let ring_text = std::fs::read_to_string(&ring).unwrap();
    let ring_json: Value = serde_json::from_str(&ring_text).unwrap();
    let mut secrets: Vec<String> = vec![ring_json["mac"].as_str().unwrap().to_owned(), kek_hex()];
    for v in ring_json["versions"].as_array().unwrap() {
        if let Some(s) = v["sealed"].as_str() {
            secrets.push(s[..24].to_owned());
        }
    }
    for (name, ring_mode, kek_mode, want) in [
        ("ring 0644", 0o644, 0o600, vec!["the key ring"]),
        ("ring 0606", 0o606, 0o600, vec!["the key ring"]),
        ("KEK file 0644", 0o600, 0o644, vec!["the KEK file"]),
        // Group access is a deliberate grant (a Kubernetes Secret mounted
        // 0440 for the pod's fsGroup): no warning.
        ("ring 0640, KEK 0440", 0o640, 0o440, vec![]),
        ("both 0600", 0o600, 0o600, vec![]),
    ] {
        chmod(&ring, ring_mode);
        chmod(&kek_file, kek_mode);
        let ports = free_ports(2);
        let admin = SocketAddr::from(([127, 0, 0, 1], ports[1]));
        let cfg = config(
            &format!("127.0.0.1:{}", ports[0]),
            &up.url(),
            &ring,
            &format!("kek_file = {}", ps::toml_path(&kek_file)),
            &routes,
            Some((&admin.to_string(), &dir.path().join("audit.log"))),
        );
        let check = |out: &str, prefix: &str| -> Res {
            let lines: Vec<&str> = out.lines().filter(|l| l.contains(READABLE)).collect();
            ensure(lines.len() == want.len(), || {
                format!("{prefix}: warnings {lines:?}, expected {want:?}")
            })?;
            for (w, l) in want.iter().zip(&lines) {
                let file = if *w == "the key ring" {
                    &ring
                } else {
                    &kek_file
                };
                ensure(
                    l.contains(w) && l.contains(&file.display().to_string()),
                    || {
                        format!(
                            "{prefix}: the warning does not name {}: {l}",
                            file.display()
                        )
                    },
                )?;
            }
            for s in &secrets {
                ensure(!out.contains(s.as_str()), || {
                    format!("{prefix}: the output shows file contents")
                })?;
            }
            Ok(())
        };
        let r = check_output(dir.path(), &format!("perm-check-{}", ports[0]), &cfg)
            .and_then(|out| check(&out, "check"));
        c.check(
            &format!("{name}: `scrim check -c` warns about exactly what is exposed"),
            r,
        );
        let r = async {
            let (_p, log) =
                run_and_log(dir.path(), &format!("perm-run-{}", ports[0]), &cfg, admin).await;
            check(&log, "run")?;
            // It still starts and serves.
            let out = crate::keyring::through(
                &client,
                &up,
                SocketAddr::from(([127, 0, 0, 1], ports[0])),
                "/e",
                &json!({"n": 1, "email": "a@example.com"}),
            )
            .await;
            ensure(
                String::from_utf8_lossy(&out).contains("@pseudonym.invalid"),
                || "not served".into(),
            )
        }
        .await;
        c.check(&format!("{name}: `scrim run` starts, serves, and logs the warning naming the file, never its contents"), r);
    }
    chmod(&ring, 0o600);
    c.finish();
}
