# eventual: tags=demo,misbehaving
"""Expected to FAIL: the demo SUT accepts the job (202) but never calls back (mode `never`).

What you see: the wait ends after its timeout with the helper's TimeoutError naming the key, how long
it waited and the callback URL the SUT was given, e.g.

    TimeoutError: no callback for key 'run-7.never-…' arrived at the sink within 3s (sink
    http://127.0.0.1:7700). Did the system under test get the callback URL
    http://127.0.0.1:7700/callbacks/run-7.never-…, and did it call back?

In a phased run the same SUT makes the run `timed_out`, and the log names the missing key.
"""

import uuid

import demo
import eventual


def test_job_calls_back():
    k = eventual.key("never-" + uuid.uuid4().hex)
    demo.start_job(eventual.callback_url(k), input="lost", mode="never")

    record = eventual.wait_for(k, timeout=3)

    assert record["body"]["status"] == "done"
