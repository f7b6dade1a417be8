# eventual: tags=demo,misbehaving
"""Expected to PASS: the sink plays a failing receiver (a stub), and the demo SUT copes.

`eventual.stub(key, …)` scripts the sink's answers to that key's callbacks by their seq; every
callback is still recorded, its record's `response` saying how it was answered. In mode `retry` the
demo SUT retries a callback answered 5xx or not answered at all (0.1, 0.2, 0.4, 0.8 s; 5 attempts).

- 503, 503, then 200: the SUT makes exactly three attempts and the job ends `called_back`.
- Every connection dropped without an answer: the SUT gives up after 5 attempts, the job ends
  `failed_to_call_back` with the error it saw, and the SUT itself is still fine.
"""

import uuid

import demo
import eventual


def test_retries_through_two_503s_and_succeeds_on_the_third_attempt():
    k = eventual.key("stubbed-" + uuid.uuid4().hex)
    eventual.stub(k, responses=[{"status": 503, "times": 2}, {"status": 200}])
    try:
        job_id = demo.start_job(eventual.callback_url(k), input="sturdy", mode="retry", delay=0)

        job = demo.job(job_id, wait=20)  # answered once the SUT has the sink's 200

        assert job["status"] == "called_back", job
        assert job["attempts"] == 3, job
        records = eventual.all(k)  # the job is over: no attempt is still on its way
        assert [r["response"]["status"] for r in records] == [503, 503, 200], records
        assert [r["body"]["status"] for r in records] == ["done"] * 3
    finally:
        eventual.delete_stub(k)


def test_gives_up_cleanly_when_every_connection_is_dropped():
    k = eventual.key("dropped-" + uuid.uuid4().hex)
    eventual.stub(k, drop=True)
    try:
        job_id = demo.start_job(eventual.callback_url(k), input="unheard", mode="retry", delay=0)

        job = demo.job(job_id, wait=20)  # 0.1 + 0.2 + 0.4 + 0.8 s of backoff

        assert job["status"] == "failed_to_call_back", job
        assert job["attempts"] == 5, job
        assert job["last_error"], job  # what it saw: the connection closed without a response
        records = eventual.all(k)
        assert len(records) == 5, records
        assert all(r["response"]["dropped"] for r in records), records
        assert demo.health()["status"] == "ok"
    finally:
        eventual.delete_stub(k)
