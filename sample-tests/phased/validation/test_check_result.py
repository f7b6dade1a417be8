# eventual: tags=demo
"""Phase 3 of a phased run: check the result the demo SUT called back with.

Runs after the harness has seen the announced callback arrive; the records are in the JSON file
named by EVENTUAL_CALLBACKS, so this test neither waits nor talks to the sink. The checks are in
`_lib/demo.py` (`check_phased_result`), shared with the other copy of this pair.
"""

import demo


def test_job_result():
    demo.check_phased_result()
