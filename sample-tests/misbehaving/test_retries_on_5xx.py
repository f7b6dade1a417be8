# eventual: tags=demo,misbehaving
"""Expected to PASS: mode `retry` is how a SUT *should* behave when the receiver fails.

In mode `retry` the demo SUT retries a callback that is answered 5xx or cannot be delivered, after
0.1, 0.2, 0.4 and 0.8 s (5 attempts in all), logging every attempt to its stderr:

    demo_sut: job …: callback attempt 1/5 to http://127.0.0.1:PORT/… failed: cannot connect: …
    demo_sut: job …: retrying in 0.1s

The first test checks that with a healthy sink the callback arrives once (and the job reports
`called_back` with its attempt count), and the second points the callback at a port where nothing
listens and checks that the SUT gives up after 5 attempts, reporting `failed_to_call_back` - the
state to look for when a callback never comes. To make the sink itself answer 5xx or drop the
connection, stub it: see `test_stubbed_receiver.py`.
"""

import socket
import uuid

import demo
import eventual


def test_callback_arrives_once_with_a_healthy_sink():
    k = eventual.key("retry-" + uuid.uuid4().hex)
    job_id = demo.start_job(eventual.callback_url(k), input="sturdy", mode="retry")

    record = eventual.wait_for(k, timeout=30)

    assert record["body"]["status"] == "done"
    job = demo.job(job_id, wait=10)  # answered once the SUT has the sink's 200
    assert job["status"] == "called_back", job
    assert job["attempts"] >= 1, job
    assert len(eventual.all(k)) == 1


def test_gives_up_after_five_attempts_when_nobody_listens():
    with socket.socket() as s:  # a free port, closed again: connections to it are refused
        s.bind(("127.0.0.1", 0))
        dead = "http://127.0.0.1:%d/callbacks/nobody" % s.getsockname()[1]
    job_id = demo.start_job(dead, input="unheard", mode="retry", delay=0)

    job = demo.job(job_id, wait=20)  # 0.1 + 0.2 + 0.4 + 0.8 s of backoff

    assert job["status"] == "failed_to_call_back", job
    assert job["attempts"] == 5, job
