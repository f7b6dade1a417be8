#!/usr/bin/env bash
# eventual: tags=smoke
# Posts a callback to the run's own key and waits for it through the sink: no sleeping.
set -euo pipefail
key="${EVENTUAL_KEY_PREFIX}roundtrip"
curl -fsS -X POST "$EVENTUAL_SINK_URL/callbacks/$key" -H 'content-type: application/json' -d '{"ok":true}'
echo
curl -fsS "$EVENTUAL_SINK_URL/callbacks/$key?wait=10s" | grep -q '"ok":true'
echo "callback received"
