#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine. CI (.ci/run) runs exactly this.
# Needs only the Rust toolchain (cargo, rustfmt, clippy); it installs anything else it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Programs the end-to-end tests drive besides our binary (sample tests use curl; one recovery test
# edits the history database with sqlite3). Installed from Debian's packages when missing.
need=()
for tool in bash curl sqlite3 python3; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ((${#need[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]}; some end-to-end tests will be skipped (install them to run all)" >&2
  fi
fi

# pytest runs the bundled Python samples in the end-to-end tests (tests/e2e/phased.rs), which fail
# without it. pip first; Debian's package when pip is missing or the system Python refuses it.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import pytest" >/dev/null 2>&1; then
  echo "==> installing pytest"
  if ! python3 -m pip install --quiet pytest; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pytest >/dev/null
    else
      echo "warning: could not install pytest; run \`python3 -m pip install pytest\`" >&2
    fi
  fi
fi

# Cluster mode's tests start private PostgreSQL servers from the system's binaries (initdb,
# postgres): Debian's `postgresql` package when missing. Required here, so a missing server fails
# the cluster tests instead of skipping them.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "error: cluster mode's tests need PostgreSQL's server binaries: install postgresql" >&2
    exit 1
  fi
fi
export EVENTUAL_REQUIRE_POSTGRES=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test (unit, API, end-to-end and doc tests)"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
# The sink's API suite again, every test against the PostgreSQL backend (a fresh database each).
echo "==> cargo test: the sink's API suite on PostgreSQL (cluster mode)"
EVENTUAL_TEST_BACKEND=postgres cargo test -p sink --test api --locked
# The harness's API suite again, every app a single node of cluster mode on a fresh database.
echo "==> cargo test: the harness's API suite in cluster mode (PostgreSQL)"
EVENTUAL_TEST_BACKEND=postgres cargo test -p harness --test api --locked

# The Python package (python/): installed with pip into a fresh virtualenv, as a user would, its
# suite run against a real sink (its own `eventual_sink` fixture starts the debug binary) and its
# types checked. Debian's python3 needs python3-venv for `python3 -m venv`.
echo "==> Python package (python/: pip install into a fresh venv, pytest, mypy --strict)"
cargo build --locked --bin eventual
pyenv_dir="$(mktemp -d)"
trap 'rm -rf "$pyenv_dir"' EXIT
if ! python3 -m venv "$pyenv_dir/venv" >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing python3-venv"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$pyenv_dir/venv"
  python3 -m venv "$pyenv_dir/venv"
fi
"$pyenv_dir/venv/bin/python" -m pip install --quiet ./python pytest mypy
rm -rf python/build python/src/*.egg-info # what pip's in-tree build leaves behind
env -u EVENTUAL_SINK_URL -u EVENTUAL_KEY_PREFIX EVENTUAL_BIN="$PWD/target/debug/eventual" \
  "$pyenv_dir/venv/bin/python" -m pytest -p no:cacheprovider python/tests
"$pyenv_dir/venv/bin/python" -m mypy --strict --cache-dir "$pyenv_dir/mypy" python/src python/tests

# JUnit XML (tests/junit): the reports of real runs — `eventual run --junit FILE` and
# GET /api/runs/{id}/junit.xml from a real `eventual serve` of the debug binary — validated against
# the Jenkins xunit plugin's JUnit schema (fixtures/junit/junit-10.xsd) with xmlschema and parsed
# back with junitparser, as CI test reporters read them. Both from PyPI, into the same virtualenv.
echo "==> JUnit XML (tests/junit: xmlschema against junit-10.xsd, junitparser)"
"$pyenv_dir/venv/bin/python" -m pip install --quiet junitparser xmlschema
env -u EVENTUAL_URL -u EVENTUAL_TOKEN EVENTUAL_BIN="$PWD/target/debug/eventual" \
  "$pyenv_dir/venv/bin/python" -m pytest -p no:cacheprovider tests/junit

# Prometheus metrics (tests/metrics): GET /metrics of a real `eventual sink` and `eventual serve`
# (the debug binary), parsed by the official Python client's OpenMetrics parser (prometheus-client
# from PyPI, into the same virtualenv) and checked for the series, names and values of its traffic.
echo "==> Prometheus metrics (tests/metrics: prometheus_client's OpenMetrics parser)"
"$pyenv_dir/venv/bin/python" -m pip install --quiet prometheus-client
env -u EVENTUAL_URL -u EVENTUAL_TOKEN EVENTUAL_BIN="$PWD/target/debug/eventual" \
  "$pyenv_dir/venv/bin/python" -m pytest -p no:cacheprovider tests/metrics

# Signature verification (tests/signatures): a real `eventual sink` checks callbacks signed by each
# scheme's own library — standardwebhooks, slack_sdk, stripe (which verifies the fixture it is
# given) from PyPI, into the same virtualenv — valid, one byte flipped, stale, reject → 401.
echo "==> signature verification (tests/signatures: standardwebhooks, stripe, slack_sdk)"
"$pyenv_dir/venv/bin/python" -m pip install --quiet standardwebhooks stripe slack_sdk
env -u EVENTUAL_URL -u EVENTUAL_TOKEN EVENTUAL_BIN="$PWD/target/debug/eventual" \
  "$pyenv_dir/venv/bin/python" -m pytest -p no:cacheprovider tests/signatures

# OpenAPI: schemathesis (PyPI, into the same virtualenv) fuzzes a real `eventual serve` (the debug
# binary, fresh state) from its own GET /openapi.json: no server error, every answer conforming to
# the document (status codes, content types, headers, schemas), negative data rejected, 405s for
# undocumented methods; then the server must still be up and answering. Not run: the SSE routes
# (`…/events` and `/watch`, endless), and two checks the document cannot satisfy by its nature:
# positive_data_acceptance (a schema-valid request the server refuses on meaning — an unknown test
# path, a `.png` upload, `wait=` that is no duration, a callback without any key) and
# allow_header_conformance (`/api/tests/{path}/history` shares the `{*path}` route, whose 405 allows
# DELETE too). `--test-timeout 3s`: a run a fuzzed request starts ends before `?follow=true` times out.
echo "==> schemathesis against eventual serve's /openapi.json"
"$pyenv_dir/venv/bin/python" -m pip install --quiet schemathesis
st_dir="$pyenv_dir/schemathesis"
mkdir -p "$st_dir/data"
# shellcheck disable=SC2046 # one `-u NAME` per EVENTUAL_* variable of the caller's environment
env $(env | sed -n 's/^\(EVENTUAL_[A-Z_]*\)=.*/-u \1/p') target/debug/eventual serve \
  --bind 127.0.0.1:0 --data-dir "$st_dir/data" --sample-tests fixtures/tests --envs 2 \
  --test-timeout 3s --kill-grace 1s >"$st_dir/stdout" 2>"$st_dir/stderr" &
st_pid=$!
for _ in $(seq 300); do grep -q '^listening on ' "$st_dir/stdout" && break; sleep 0.1; done
st_url="$(sed -n 's/^listening on //p' "$st_dir/stdout" | head -n 1)"
if [ -z "$st_url" ]; then
  echo "error: eventual serve did not start for schemathesis:" >&2
  cat "$st_dir/stderr" >&2
  kill "$st_pid" 2>/dev/null || true
  exit 1
fi
st_status=0
# The stub routes are fuzzed on their own, after the rest: a fuzzed stub scripts the answers to
# callbacks (any status, a dropped connection, a delay), which the callback routes' documented
# answers cannot describe; they are all deleted before the health check.
(cd "$st_dir" && "$pyenv_dir/venv/bin/schemathesis" run "$st_url/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance,allow_header_conformance \
  --exclude-path-regex '/events$|^/watch$|^/stubs' --max-examples 20 --request-timeout 10 --no-shrink \
  --warnings off) || st_status=$?
(cd "$st_dir" && "$pyenv_dir/venv/bin/schemathesis" run "$st_url/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance,allow_header_conformance \
  --include-path-regex '^/stubs' --max-examples 20 --request-timeout 10 --no-shrink \
  --warnings off) || st_status=$?
curl -sf -X DELETE "$st_url/stubs?prefix=" >/dev/null || st_status=1
# Healthy afterwards: still running, /healthz answers, a callback still round-trips (once the
# verifiers the fuzzing set are gone: one with `reject` would refuse it).
if ! kill -0 "$st_pid" 2>/dev/null \
  || ! curl -sf "$st_url/healthz" >/dev/null \
  || ! curl -sf -X DELETE "$st_url/verifiers?prefix=" >/dev/null \
  || ! curl -sf -X POST "$st_url/callbacks/st-after" -d done >/dev/null \
  || [ "$(curl -sf "$st_url/callbacks/st-after/raw")" != done ]; then
  echo "error: eventual serve is not healthy after schemathesis; its stderr:" >&2
  cat "$st_dir/stderr" >&2
  st_status=1
fi
if grep -q panicked "$st_dir/stderr"; then
  echo "error: eventual serve panicked under schemathesis:" >&2
  grep -A5 panicked "$st_dir/stderr" >&2
  st_status=1
fi
kill "$st_pid" 2>/dev/null || true
wait "$st_pid" || true
[ "$st_status" = 0 ] || exit "$st_status"

# Browser tests of the web UI (tests/browser): Debian's headless Chromium driven by playwright-core
# under node's own test runner, against the debug binary the cargo tests built. They are part of the
# suite, so a machine that cannot get Chromium or Node fails here instead of skipping them.
echo "==> browser tests (tests/browser: headless Chromium, node --test)"
if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "error: the browser tests need Chromium at /usr/bin/chromium: install Debian's chromium package as root (apt-get install chromium), or set CHROMIUM to a Chromium binary" >&2
    exit 1
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 \
  || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "error: the browser tests need Node.js 20 or newer with npm (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi
cargo build --locked --bin eventual
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi
(cd tests/browser && EVENTUAL_BIN=target/debug/eventual node --test)
