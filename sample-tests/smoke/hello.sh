#!/usr/bin/env bash
# eventual: tags=smoke
# The smallest test: passes, and shows what the harness hands every test.
echo "hello from run $EVENTUAL_RUN_ID on environment $EVENTUAL_ENV_ID (user $EVENTUAL_USERNAME)"
echo "callbacks for this run go to $EVENTUAL_SINK_URL/callbacks/${EVENTUAL_KEY_PREFIX}<id>"
