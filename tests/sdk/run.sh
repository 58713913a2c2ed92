#!/usr/bin/env bash
# Real third-party client SDKs (pinned in requirements.txt) against scrim in
# front of a capture upstream: see test_sdks.py. Fails, never skips, when the
# packages cannot be installed or the binary cannot be built.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/sdk-venv
target_dir="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 60 \
    -r tests/sdk/requirements.txt

cargo build --locked --bin scrim
export SCRIM_BIN="${SCRIM_BIN:-$PWD/$target_dir/debug/scrim}"

export PYTHONDONTWRITEBYTECODE=1
# Each test has its own timeout (pytest-timeout); this bounds the whole run.
timeout 600 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/sdk "$@"
