# eventual: tags=demo,misbehaving
"""Expected to FAIL: the demo SUT calls back, but later than the test allows (mode `late`).

The job is asked for a 5 s late delay; the test waits 2 s. What you see is the helper's
TimeoutError naming the key and how long it waited, e.g.

    TimeoutError: no callback for key 'run-7.late-…' arrived at the sink within 2s (sink …). Did the
    system under test get the callback URL …, and did it call back?

From the test alone "late" and "never" look the same; the difference shows after the fact: the
record does arrive at the sink a few seconds later (`curl $EVENTUAL_SINK_URL/callbacks/<key>`), and
the demo SUT's `GET /jobs/{id}` says `called_back`. Give the wait a timeout your SUT can meet.
"""

import uuid

import demo
import eventual


def test_job_calls_back_in_time():
    k = eventual.key("late-" + uuid.uuid4().hex)
    demo.start_job(eventual.callback_url(k), input="slow", mode="late", late_delay=5)

    record = eventual.wait_for(k, timeout=2)

    assert record["body"]["status"] == "done"
