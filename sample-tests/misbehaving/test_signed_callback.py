# eventual: tags=demo,misbehaving,signatures
"""Expected to PASS: the callback is signed correctly, and a wrong signature is caught.

The demo SUT signs a job's callbacks the Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
`webhook-signature: v1,<base64 HMAC-SHA256>`) when the job has a `sign_secret` (or for every job
when the SUT was started with `--sign-secret`). `eventual.verify(…)` makes the sink check the
signature of every callback under a prefix against the exact bytes that arrived; the record's
`signature` gives the verdict.

- The secrets agree: the record says `valid`.
- The SUT signs with another secret, and the verifier has `reject=True`: the sink answers 401 (and
  still records the callback, saying why it is invalid), so the SUT reports the job
  `failed_to_call_back`.
"""

import base64
import os
import uuid

import demo
import eventual


def secret():
    """A fresh Standard Webhooks secret: `whsec_` and the base64 of a random key."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_the_callback_is_signed_with_the_shared_secret():
    k = eventual.key("signed-" + uuid.uuid4().hex)
    shared = secret()
    eventual.verify(k, prefix=k, scheme="standard-webhooks", secret=shared)
    try:
        job_id = demo.start_job(eventual.callback_url(k), input="sealed", sign_secret=shared)

        record = eventual.wait_for(k, timeout=30)

        assert record["signature"] == {"verifier": k, "scheme": "standard-webhooks",
                                       "valid": True}, record["signature"]
        assert record["headers"]["webhook-id"] == "msg_" + job_id
        assert record["body"]["status"] == "done"
    finally:
        eventual.delete_verifier(k)


def test_a_callback_signed_with_another_secret_is_refused():
    k = eventual.key("forged-" + uuid.uuid4().hex)
    eventual.verify(k, prefix=k, scheme="standard-webhooks", secret=secret(), reject=True)
    try:
        job_id = demo.start_job(eventual.callback_url(k), input="forged", sign_secret=secret())

        job = demo.job(job_id, wait=20)  # answered once the SUT has the sink's 401

        assert job["status"] == "failed_to_call_back", job
        assert job["last_error"] == "HTTP 401", job
        [record] = eventual.all(k)  # refused, and recorded all the same
        assert record["signature"]["valid"] is False, record["signature"]
        assert record["signature"]["reason"].startswith("mismatch"), record["signature"]
    finally:
        eventual.delete_verifier(k)
