#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine. CI (.ci/run) runs exactly this.
# Needs only the Rust toolchain (cargo, rustfmt, clippy); it installs anything else it needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test (unit, API, end-to-end and doc tests)"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
