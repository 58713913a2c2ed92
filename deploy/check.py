"""Checks of deploy/ that no schema or linter expresses; run by deploy/check.sh
(which first runs hadolint, yamllint and the Kubernetes schemas).

- Dockerfile: multi-stage, `cargo build --release --locked`, a non-root final
  user, the ports, the rules copied in, every COPY source present and not
  excluded by .dockerignore.
- Kubernetes: the Deployment's replicas, security context, probes on the
  admin port, grace period longer than the drain, every volume backed by a
  manifest; Service, PodDisruptionBudget and Prometheus annotation agree with
  it; the kustomization lists every manifest but the Secret template; the
  Secret template holds only placeholders; rules-configmap.yaml is what
  `--update` generates from rules/.
- The config in the ConfigMap, in the pod's file layout (ConfigMaps and
  Secrets written where the Deployment mounts them, a fresh KEK and ring):
  every path it names is mounted, `scrim check -c` passes, and `scrim run`
  with the Deployment's arguments serves /healthz and /readyz, loads a ring
  rotated offline when the Secret's files are swapped as the kubelet does,
  and exits 0 on SIGTERM.
- systemd: the unit's hardening and stop timeout, `systemd-analyze verify`
  with no warning, and its ExecStart arguments accepted by `scrim run`.
"""

import base64
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
RULES_CM = K8S / "rules-configmap.yaml"
SCRIM = os.environ.get("SCRIM_BIN", str(ROOT / "target/debug/scrim"))

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", flush=True)


def expect(cond, msg):
    if not cond:
        fail(msg)
    return bool(cond)


def section(title):
    print(f"== {title}", flush=True)


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def check_dockerfile():
    section("Dockerfile: stages, build, user, ports, sources")
    ins = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if not expect(len(froms) >= 2, "Dockerfile: not a multi-stage build"):
        return
    final = ins[froms[-1]:]
    builder = ins[froms[0]:froms[-1]]
    builder_from = builder[0][1].split()
    expect(builder_from[0].startswith("rust:"), "Dockerfile: the first stage is not a rust image")
    expect(len(builder_from) == 3 and builder_from[1].upper() == "AS",
           "Dockerfile: the build stage has no name")
    runs = " ".join(a for w, a in builder if w == "RUN")
    expect(re.search(r"cargo build\b[^&;]*--release", runs) and re.search(r"cargo build\b[^&;]*--locked", runs),
           "Dockerfile: the build stage does not run `cargo build --release --locked`")
    users = [a for w, a in final if w == "USER"]
    user = users[-1].split(":")[0] if users else None
    base = final[0][1]
    expect((user is not None and user not in ("root", "0")) or (user is None and base.endswith(":nonroot")),
           f"Dockerfile: the final stage runs as root (USER {user}, base {base})")
    expect(not any(w == "RUN" for w, _ in final) or "distroless" not in base,
           "Dockerfile: RUN in a distroless stage (it has no shell)")
    ports = set(" ".join(a for w, a in final if w == "EXPOSE").replace("/tcp", "").split())
    expect({"8080", "9901"} <= ports, f"Dockerfile: EXPOSE {sorted(ports)} lacks 8080 and 9901")
    copies = [a for w, a in final if w == "COPY"]
    expect(any(a.startswith("--from=") for a in copies), "Dockerfile: the binary is not copied from the build stage")
    expect(any(a.split()[0] == "rules" for a in copies), "Dockerfile: the rules are not copied into the image")
    ignored = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    expect("target" in ignored, ".dockerignore does not exclude target/")
    for w, a in ins:
        if w != "COPY" or a.startswith("--from="):
            continue
        srcs = [s for s in a.split()[:-1] if not s.startswith("--")]
        for s in srcs:
            expect((ROOT / s).exists(), f"Dockerfile: COPY source {s} does not exist in the repository")
            expect(s.split("/")[0] not in ignored, f"Dockerfile: COPY source {s} is excluded by .dockerignore")


# ---------------------------------------------------------------- Kubernetes


def load_manifests():
    objs = {}
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                objs[(doc["kind"], doc["metadata"]["name"])] = (f.name, doc)
    return objs


def rules_configmap_text(config_text):
    """rules-configmap.yaml as generated from the rule files the config names."""
    cfg = tomllib.loads(config_text)
    names = sorted({PurePosixPath(r[k]).name for r in cfg.get("route", [])
                    for k in ("rules", "response_rules", "shadow_rules") if k in r})
    out = [
        "# GENERATED by `bash deploy/check.sh --update` from the rule files of rules/",
        "# that configmap.yaml's scrim.toml names. Do not edit: CI fails when this",
        "# differs from rules/.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: scrim-rules",
        "  labels:",
        "    app.kubernetes.io/name: scrim",
        "data:",
    ]
    for n in names:
        src = ROOT / "rules" / n
        if not src.is_file():
            raise SystemExit(f"FAIL: the ConfigMap's config names rules/{n}, which does not exist")
        text = src.read_text()
        if not text.endswith("\n") or text.endswith("\n\n") or "\t" in text or re.search(r" +$", text, re.M):
            raise SystemExit(f"FAIL: rules/{n} cannot be embedded as a YAML block (tab, trailing space or newline)")
        out.append(f"  {n}: |")
        out.extend(("    " + line) if line else "" for line in text.splitlines())
    gen = "\n".join(out) + "\n"
    data = yaml.safe_load(gen)["data"]
    for n in names:
        if data[n] != (ROOT / "rules" / n).read_text():
            raise SystemExit(f"FAIL: rules/{n} does not survive the YAML block round trip")
    return gen


def container_port(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def flag(args, name):
    """The value of --name=V or --name V in an argument list."""
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return None


def check_kubernetes():
    section("Kubernetes: cross-checks between manifests and config")
    objs = load_manifests()
    files = {f.name for f in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust.get("resources", []))
    expect(listed == files - {"secret.example.yaml"},
           f"kustomization.yaml lists {sorted(listed)}, the manifests are {sorted(files - {'secret.example.yaml'})}")
    for fname, doc in objs.values():
        expect("namespace" not in doc["metadata"], f"{fname}: sets a namespace (the manifests are namespace-agnostic)")

    deps = [d for (k, _), (_, d) in objs.items() if k == "Deployment"]
    if not expect(len(deps) == 1, "expected exactly one Deployment"):
        return None
    dep = deps[0]
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    expect(spec.get("replicas", 1) >= 2, "Deployment: fewer than 2 replicas")
    expect(pod.get("securityContext", {}).get("runAsNonRoot") is True, "Deployment: pod runAsNonRoot is not true")
    expect(pod.get("securityContext", {}).get("runAsUser", 0) != 0, "Deployment: runAsUser 0")
    expect(pod.get("automountServiceAccountToken") is False, "Deployment: the service account token is mounted")
    [c] = pod["containers"]
    sc = c.get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True, "Deployment: readOnlyRootFilesystem is not true")
    expect(sc.get("allowPrivilegeEscalation") is False, "Deployment: allowPrivilegeEscalation is not false")
    expect("ALL" in sc.get("capabilities", {}).get("drop", []), "Deployment: capabilities do not drop ALL")
    expect(not sc.get("capabilities", {}).get("add"), "Deployment: capabilities are added")
    res = c.get("resources", {})
    expect(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
           and res.get("limits", {}).get("memory"), "Deployment: no cpu/memory requests and memory limit")

    args = c.get("args", [])
    expect(args[:1] == ["run"], f"Deployment: args do not start with `run`: {args}")
    drain = int(flag(args, "drain-secs") or 30)
    pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    expect(grace > drain + pre, f"Deployment: terminationGracePeriodSeconds {grace} <= drain {drain} + preStop {pre}")

    # Volumes: every mount backed by a volume, every ConfigMap / Secret by a manifest.
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"])
        if not expect(v, f"Deployment: mount {m['name']} has no volume"):
            continue
        expect(m.get("readOnly") is True, f"Deployment: mount {m['name']} is not readOnly")
        if "configMap" in v:
            key = ("ConfigMap", v["configMap"]["name"])
        elif "secret" in v:
            key = ("Secret", v["secret"]["secretName"])
        else:
            fail(f"Deployment: volume {m['name']} is neither a ConfigMap nor a Secret")
            continue
        if expect(key in objs, f"Deployment: volume {m['name']} uses {key[0]} {key[1]}, which no manifest defines"):
            d = objs[key][1]
            content = {**d.get("data", {}), **d.get("stringData", {})}
            mounts[m["mountPath"]] = (key[0], key[1], content)

    # The Secret template: placeholders only.
    for (kind, name), (fname, d) in objs.items():
        if kind == "Secret":
            expect(fname == "secret.example.yaml", f"{fname}: a Secret outside the template")
            expect(not d.get("data"), f"{fname}: Secret {name} has `data` (key material?); use placeholder stringData")
            for k, v in d.get("stringData", {}).items():
                expect(str(v).startswith("REPLACE"), f"{fname}: Secret {name} key {k} is not a REPLACE placeholder")

    # The config the Deployment reads.
    cfg_path = flag(args, "config")
    if not expect(cfg_path, "Deployment: no --config argument"):
        return None
    cfg_dir, cfg_name = str(PurePosixPath(cfg_path).parent), PurePosixPath(cfg_path).name
    if not expect(cfg_dir in mounts and cfg_name in mounts[cfg_dir][2],
                  f"Deployment: --config {cfg_path} is not a key of a mounted ConfigMap"):
        return None
    config_text = mounts[cfg_dir][2][cfg_name]
    cfg = tomllib.loads(config_text)

    def mounted(p, what):
        p = PurePosixPath(os.path.normpath(PurePosixPath(cfg_dir) / p))
        ok = str(p.parent) in mounts and p.name in mounts[str(p.parent)][2]
        expect(ok, f"config: {what} {p} is not a key of a ConfigMap or Secret mounted at {p.parent}")
        return p

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    admin_addr = cfg.get("admin", {}).get("addr", "127.0.0.1:9901")
    admin_port = int(admin_addr.rsplit(":", 1)[1])
    expect(admin_addr.startswith("0.0.0.0:") or admin_addr.startswith("[::]:"),
           f"config: [admin] addr {admin_addr} is not reachable by the kubelet's probes")
    expect(ports.get("admin") == admin_port, f"Deployment: port `admin` is not the config's admin port {admin_port}")
    listen = {int(lst["addr"].rsplit(":", 1)[1]) for lst in cfg.get("listener", [])}
    expect(ports.get("http") in listen, f"Deployment: port `http` is not one of the config's listeners {listen}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        expect(g.get("path") == path and container_port(c, g.get("port")) == admin_port,
               f"Deployment: {probe} is not GET {path} on the admin port {admin_port}")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    expect(ann.get("prometheus.io/port") == str(admin_port) and ann.get("prometheus.io/path") == "/metrics",
           "Deployment: the Prometheus annotations do not name /metrics on the admin port")

    keys = cfg.get("keys", {})
    expect("ring" in keys and "kek_file" in keys, "config: no [keys] ring and kek_file")
    ring = mounted(keys["ring"], "the key ring")
    kek = mounted(keys["kek_file"], "the KEK file")
    expect(mounts.get(str(ring.parent), ("",))[0] == "Secret", "config: the key ring is not in a Secret")
    expect(mounts.get(str(kek.parent), ("",))[0] == "Secret", "config: the KEK is not in a Secret")
    expect(ring.parent != kek.parent, "config: the KEK and the ring share a Secret")
    expect("rotate_every" not in keys and not keys.get("auto_retire"),
           "config: rotate_every / auto_retire need a writable ring; the Secret-mounted ring is read-only")
    for r in cfg.get("route", []):
        for k in ("rules", "response_rules", "shadow_rules"):
            if k in r:
                p = mounted(r[k], f"route {r.get('path_prefix') or r.get('path')} {k}")
                expect(mounts.get(str(p.parent), ("",))[0] == "ConfigMap", f"config: {p} is not in a ConfigMap")

    # Service and PodDisruptionBudget select these pods.
    for (kind, name), (fname, d) in objs.items():
        if kind == "Service":
            sel = d["spec"]["selector"]
            expect(sel.items() <= labels.items(), f"{fname}: selector {sel} does not match the pods")
            for p in d["spec"]["ports"]:
                tp = container_port(c, p.get("targetPort", p["port"]))
                expect(tp is not None, f"{fname}: targetPort {p.get('targetPort')} is not a container port")
                expect(tp != admin_port, f"{fname}: exposes the admin port")
        if kind == "PodDisruptionBudget":
            sel = d["spec"]["selector"]["matchLabels"]
            expect(sel.items() <= labels.items(), f"{fname}: selector {sel} does not match the pods")
            m = d["spec"].get("minAvailable")
            expect(isinstance(m, int) and 1 <= m < spec["replicas"],
                   f"{fname}: minAvailable {m} must be at least 1 and below the replicas ({spec['replicas']})")
    expect(any(k == "PodDisruptionBudget" for k, _ in objs), "no PodDisruptionBudget")
    expect(any(k == "Service" for k, _ in objs), "no Service")

    # rules-configmap.yaml is generated from rules/.
    gen = rules_configmap_text(config_text)
    expect(RULES_CM.read_text() == gen,
           "deploy/kubernetes/rules-configmap.yaml differs from rules/: run `bash deploy/check.sh --update`")
    return {"mounts": mounts, "config_path": cfg_path, "args": args, "drain": drain}


# ---------------------------------------------------------------- the pod's files


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def materialise(pod, root):
    """The pod's ConfigMaps and Secrets under root, with a fresh KEK and ring;
    returns the config path and the config text with paths moved under root."""
    kek_path = ring_path = None
    for mount, (kind, _, content) in pod["mounts"].items():
        d = root / mount.lstrip("/")
        d.mkdir(parents=True)
        if kind == "ConfigMap":
            for k, v in content.items():
                (d / k).write_text(v)
    cfg_host = root / pod["config_path"].lstrip("/")
    text = cfg_host.read_text()
    cfg = tomllib.loads(text)
    kek_path = root / cfg["keys"]["kek_file"].lstrip("/")
    ring_path = root / cfg["keys"]["ring"].lstrip("/")
    kek_path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    # As the kubelet lays out a Secret volume: ring.json -> ..data/ring.json,
    # ..data -> a timestamped directory, swapped atomically on update.
    (ring_path.parent / "..v1").mkdir()
    run([SCRIM, "keys", "init", "--ring", str(ring_path.parent / "..v1" / ring_path.name), "--kek-file", str(kek_path)])
    os.symlink("..v1", ring_path.parent / "..data")
    os.symlink(f"..data/{ring_path.name}", ring_path)
    pod["ring"], pod["kek"] = ring_path, kek_path
    for mount in sorted(pod["mounts"], key=len, reverse=True):
        text = text.replace(f'"{mount}/', f'"{root / mount.lstrip("/")}/')
    cfg_host.write_text(text)
    return cfg_host, text


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)
    out = (p.stdout + p.stderr).strip()
    if out:
        print("  " + out.replace("\n", "\n  "), flush=True)
    expect(p.returncode == 0, f"`{' '.join(map(str, cmd))}` exited {p.returncode}")
    return p


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def smoke(cfg_host, text, args, drain, what, rotate=None):
    """`scrim run ARGS` on loopback ports: probes answer 200, SIGTERM exits 0."""
    http_port, admin_port = free_port(), free_port()
    text = re.sub(r'^(addr\s*=\s*)"0\.0\.0\.0:8080"', rf'\1"127.0.0.1:{http_port}"', text, count=1, flags=re.M)
    text, n = re.subn(r'^(addr\s*=\s*)"0\.0\.0\.0:9901"', rf'\1"127.0.0.1:{admin_port}"', text, flags=re.M)
    if not expect(n == 1, f"{what}: cannot move the admin listener to loopback for the test"):
        return
    local = cfg_host.with_name("smoke.toml")
    local.write_text(text)
    cmd, skip = [SCRIM, "run"], False
    for a in args:
        if skip or a.startswith("--config="):
            skip = False
            continue
        if a in ("--config", "-c"):
            skip = True
            continue
        cmd.append(a)
    cmd += ["--config", str(local)]
    before = len(failures)
    log = cfg_host.with_name("smoke.log")
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    try:
        results = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            results = {p: get(f"http://127.0.0.1:{admin_port}{p}") for p in ("/healthz", "/readyz")}
            if all(s == 200 for s, _ in results.values()):
                break
            time.sleep(0.2)
        for p, (s, body) in results.items():
            print(f"  {what}: GET {p} -> {s} {body.strip()[:80]}", flush=True)
        ok = expect(results and all(s == 200 for s, _ in results.values()),
                    f"{what}: `{shlex.join(cmd[1:])}` did not answer /healthz and /readyz with 200")
        if ok and rotate:
            rotate_secret(rotate, admin_port, what)
        if ok:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=drain + 5)
            except subprocess.TimeoutExpired:
                rc = "none (still running)"
            print(f"  {what}: SIGTERM -> exit {rc}", flush=True)
            expect(rc == 0, f"{what}: SIGTERM gave exit {rc}, not 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if len(failures) > before:
        print("  scrim's log:\n  " + log.read_text().strip().replace("\n", "\n  "), flush=True)


def rotate_secret(pod, admin_port, what):
    """An offline `scrim keys rotate` re-applied as the Secret: the kubelet
    swaps ..data; the running replica must serve the new version."""
    ring, d = pod["ring"], pod["ring"].parent
    (d / "..v2").mkdir()
    (d / "..v2" / ring.name).write_bytes((d / "..v1" / ring.name).read_bytes())
    run([SCRIM, "keys", "rotate", "--ring", str(d / "..v2" / ring.name), "--kek-file", str(pod["kek"])])
    os.symlink("..v2", d / "..data_tmp")
    os.replace(d / "..data_tmp", d / "..data")
    deadline, body = time.monotonic() + 10, ""
    while time.monotonic() < deadline:
        _, body = get(f"http://127.0.0.1:{admin_port}/readyz")
        if '"key_version":2' in body.replace(" ", ""):
            break
        time.sleep(0.2)
    print(f"  {what}: Secret updated with a rotated ring -> GET /readyz {body.strip()[:80]}", flush=True)
    expect('"key_version":2' in body.replace(" ", ""),
           f"{what}: the replica did not load the rotated ring from the updated Secret within 10 s")


# ---------------------------------------------------------------- systemd


def unit_entries(text):
    out = []
    section_name = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section_name = s.strip("[]")
            continue
        k, _, v = s.partition("=")
        out.append((section_name, k.strip(), v.strip()))
    return out


def seconds(v):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", v)
    if not m:
        return None
    return int(m[1]) * (60 if m[2] in ("min", "m") else 1)


def check_systemd():
    section("systemd: hardening, stop timeout, systemd-analyze verify")
    unit = DEPLOY / "systemd" / "scrim.service"
    entries = unit_entries(unit.read_text())
    svc = {}
    for sec, k, v in entries:
        if sec == "Service":
            svc.setdefault(k, []).append(v)

    def one(k):
        return svc.get(k, [None])[-1]

    expect(one("DynamicUser") == "yes" or one("User") not in (None, "root", "0"), "unit: runs as root")
    expect(one("ProtectSystem") == "strict", "unit: ProtectSystem is not strict")
    expect(one("NoNewPrivileges") == "yes", "unit: NoNewPrivileges is not yes")
    expect(one("KillSignal") == "SIGTERM", "unit: KillSignal is not SIGTERM")
    expect(one("CapabilityBoundingSet") == "", "unit: capabilities are not all dropped")
    expect(any("-HUP" in v and "$MAINPID" in v for v in svc.get("ExecReload", [])), "unit: ExecReload does not send SIGHUP")
    creds = [v.split(":", 1)[0] for v in svc.get("LoadCredential", [])]
    expect(creds, "unit: no LoadCredential (for the KEK)")
    exec_start = shlex.split(one("ExecStart") or "")
    expect(exec_start[1:2] == ["run"] and exec_start[0].startswith("/"), f"unit: ExecStart is not `/…/scrim run`: {exec_start}")
    drain = int(flag(exec_start, "drain-secs") or 30)
    stop = seconds(one("TimeoutStopSec") or "")
    expect(stop is not None and stop > drain, f"unit: TimeoutStopSec {one('TimeoutStopSec')} is not more than --drain-secs {drain}")

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "scrim.service"
        copy.write_text(unit.read_text().replace(f"ExecStart={exec_start[0]} ", f"ExecStart={SCRIM} "))
        p = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
        out = (p.stdout + p.stderr).strip()
        if out:
            print("  " + out.replace("\n", "\n  "), flush=True)
        expect(p.returncode == 0 and not out, f"systemd-analyze verify: exit {p.returncode}, output above")
    return exec_start, drain


# ----------------------------------------------------------------


def main():
    if sys.argv[1:] == ["--update"]:
        cm = yaml.safe_load((K8S / "configmap.yaml").read_text())
        RULES_CM.write_text(rules_configmap_text(cm["data"]["scrim.toml"]))
        print(f"wrote {RULES_CM.relative_to(ROOT)}")
        return 0
    check_dockerfile()
    pod = check_kubernetes()
    exec_start, unit_drain = check_systemd()
    if pod and not failures:
        section("the ConfigMap's config in the pod's file layout: scrim check, scrim run, probes, Secret update, SIGTERM")
        with tempfile.TemporaryDirectory() as tmp:
            cfg_host, text = materialise(pod, Path(tmp))
            run([SCRIM, "check", "-c", str(cfg_host)])
            if not failures:
                smoke(cfg_host, text, pod["args"][1:], pod["drain"], "Deployment args", rotate=pod)
                smoke(cfg_host, text, exec_start[2:], unit_drain, "systemd ExecStart args")
    if failures:
        print(f"deploy check: {len(failures)} failed", file=sys.stderr)
        return 1
    print("deploy check: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
