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

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test (unit, API, end-to-end and doc tests)"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
