# eventual: tags=demo
"""Phase 1, with services: start a job in the demo SUT that eventual.toml started and tell the harness what to wait for.

It prints one line, `::await-callback <prefix>phased-job timeout=30s`; the harness then waits until
the sink holds that callback (however long the job takes, up to the timeout) and only then runs the
validation test, handing it the callback in `EVENTUAL_CALLBACKS`. The logic is in
`_lib/demo.py` (`start_phased_job`), shared with the other copy of this pair.
"""

import demo


def test_start_job():
    demo.start_phased_job()
