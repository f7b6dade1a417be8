# eventual: tags=demo
"""Post a job to the demo SUT and wait for its callback through the sink: no sleep, no polling.

The job id is only known once the SUT answers, so the test chooses the callback key itself and
hands the SUT the sink URL for that key. `eventual.key()` puts the run's private prefix in front,
so runs in parallel never see each other's callbacks.
"""

import uuid

import demo
import eventual


def test_job_calls_back_with_its_result():
    k = eventual.key("job-" + uuid.uuid4().hex)
    job_id = demo.start_job(eventual.callback_url(k), input={"order": 42, "items": ["a", "b"]})

    record = eventual.wait_for(k, timeout=30)  # returns the moment the callback lands

    assert record["method"] == "POST"
    assert record["headers"].get("x-request-id") == job_id
    body = record["body"]
    assert body["job_id"] == job_id
    assert body["status"] == "done", "the job did not succeed: %s" % body
    assert body["result"] == {"input": {"order": 42, "items": ["a", "b"]},
                              "length": len(str({"order": 42, "items": ["a", "b"]}))}


def test_job_in_mode_twice_calls_back_twice():
    k = eventual.key("job-" + uuid.uuid4().hex)
    job_id = demo.start_job(eventual.callback_url(k), input="hello", mode="twice")

    first, second = eventual.wait_for_count(k, 2, timeout=30)

    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["body"]["result"] == {"input": "hello", "length": 5}
    assert second["body"] == dict(first["body"], attempt=2)
    assert demo.job(job_id, wait=10)["status"] == "called_back"
