#!/usr/bin/env bash
# Validates deploy/: the Dockerfile (hadolint, plus multi-stage / --locked /
# non-root checks), the Kubernetes manifests (yamllint, the official JSON
# schemas of two Kubernetes versions in strict mode, and cross-checks between
# the manifests and the config), the config in the ConfigMap (`scrim check`
# and a real start with the pod's file layout, probes and SIGTERM), and the
# systemd unit (`systemd-analyze verify` plus its hardening). Fails loudly on
# the first problem; never skips. Validators are pinned in
# deploy/requirements.txt and installed into target/deploy-venv.
#
#   bash deploy/check.sh            # check
#   bash deploy/check.sh --update   # regenerate deploy/kubernetes/rules-configmap.yaml from rules/
#
# A container build cannot be checked here: CI has no container engine.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/deploy-venv
export PYTHONDONTWRITEBYTECODE=1
target_dir="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 60 \
    -r deploy/requirements.txt

if [ "${1:-}" = "--update" ]; then
    exec "$venv/bin/python" deploy/check.py --update
fi

# systemd-analyze comes with Debian's systemd package; it verifies units
# without systemd running as PID 1. /bin/kill (procps) is named by ExecReload.
if ! command -v systemd-analyze >/dev/null || [ ! -x /bin/kill ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "deploy/check.sh: installing systemd and procps (Debian) for systemd-analyze"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends systemd procps >/dev/null
    else
        echo "deploy/check.sh: error: systemd-analyze is missing (apt-get install systemd)" >&2
        exit 1
    fi
fi

cargo build --locked --bin scrim
export SCRIM_BIN="${SCRIM_BIN:-$PWD/$target_dir/debug/scrim}"

echo "== Dockerfile: hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}')"
"$venv/bin/hadolint" --no-color deploy/Dockerfile

echo "== YAML: yamllint"
"$venv/bin/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 120},
    document-start: disable, comments: {min-spaces-from-content: 1}}}' deploy/kubernetes

manifests=()
for f in deploy/kubernetes/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
# The oldest version with the preStop sleep action on by default, and the newest bundled.
for k in 1.30.0 1.37.0; do
    echo "== Kubernetes $k schemas (strict): ${manifests[*]}"
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "${manifests[@]}"
done

timeout 300 "$venv/bin/python" deploy/check.py
