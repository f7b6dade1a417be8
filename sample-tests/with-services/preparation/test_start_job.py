# eventual: tags=demo
"""Phase 1 of a phased run: start a job in the demo SUT and tell the harness what to wait for.

It prints one line, `::await-callback <prefix>phased-job timeout=30s`; the harness then waits until
the sink holds that callback (however long the job takes, up to the timeout) and only then runs the
validation tests, handing them the callback in `EVENTUAL_CALLBACKS`.
The key is derived from EVENTUAL_KEY_PREFIX, so validation/test_check_result.py finds it without any
shared state, and another run's job can never satisfy this run's wait.
"""

import demo
import eventual

# The validation test uses the same key name and input.
KEY_NAME = "phased-job"
INPUT = {"report": "monthly", "month": "2026-11"}


def test_start_job():
    k = eventual.key(KEY_NAME)
    demo.start_job(eventual.callback_url(k), input=INPUT, mode="normal")
    eventual.await_callback(k, timeout="30s")
