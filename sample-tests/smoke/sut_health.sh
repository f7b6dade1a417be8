#!/usr/bin/env bash
# eventual: tags=demo,smoke
# Is the demo SUT up? (Start it with: python3 fixtures/demo_sut.py --port 7701)
set -uo pipefail
url="${DEMO_SUT_URL:-http://127.0.0.1:7701}"
if ! answer=$(curl -fsS --max-time 5 "$url/health" 2>&1); then
  echo "the demo SUT does not answer at $url/health: $answer" >&2
  echo "start it with: python3 fixtures/demo_sut.py --port 7701" >&2
  echo "and start Eventual with: DEMO_SUT_URL=$url eventual serve" >&2
  exit 1
fi
echo "$answer"
grep -q '"status": *"ok"' <<<"$answer"
