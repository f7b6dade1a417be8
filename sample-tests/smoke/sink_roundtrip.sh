#!/usr/bin/env bash
# eventual: tags=smoke
# Posts a callback to the run's own key and waits for it through the sink: no sleeping.
set -euo pipefail
key="${EVENTUAL_KEY_PREFIX}roundtrip"
# A server started with --token hands it to its tests: reads need it, posts do not.
auth=()
if [ -n "${EVENTUAL_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $EVENTUAL_TOKEN"); fi
curl -fsS -X POST "$EVENTUAL_SINK_URL/callbacks/$key" -H 'content-type: application/json' -d '{"ok":true}'
echo
curl -fsS "${auth[@]}" "$EVENTUAL_SINK_URL/callbacks/$key?wait=10s" | grep -q '"ok":true'
echo "callback received"
