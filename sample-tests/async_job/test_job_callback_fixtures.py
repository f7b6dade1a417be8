# eventual: tags=demo
"""The job of test_job_callback.py again, with the pytest plugin's fixtures instead of module calls.

`eventual_sink` is a client for the run's sink (under a plain local `pytest`, for a private
`eventual sink` the plugin starts); `callback_key` is a fresh key for this test under the run's
private prefix. The harness loads the plugin for every pytest test it runs: nothing to install.
"""

import demo


def test_job_calls_back_through_the_fixtures(eventual_sink, callback_key):
    job_id = demo.start_job(eventual_sink.callback_url(callback_key), input="fixtures")

    record = eventual_sink.wait_for(callback_key, timeout=30)  # returns the moment it lands

    assert record["body"]["job_id"] == job_id
    assert record["body"]["status"] == "done", "the job did not succeed: %s" % record["body"]
    assert eventual_sink.all(callback_key) == [record]
