"""Drives a missive server with RudderStack's Python SDK (rudder-sdk-python), whose batches
are gzipped by default.

usage: rudder_client.py BASE_URL WRITE_KEY ANONYMOUS_ID USER_ID EMAIL

An anonymous visitor views a product, identifies (the SDK moves traits into context.traits)
and orders. Prints one JSON line and exits non-zero if the library reports an error, the server
refuses any message, or the SDK did not send one gzipped batch of several messages.
"""

import sys
import uuid

import rudderstack.analytics as rudder_analytics
from rudderstack.analytics import request as rudder_request
from rudderstack.analytics.version import VERSION

from exchanges import Recorder, finish


def main():
    base_url, write_key, anonymous_id, user_id, email = sys.argv[1:]
    recorder = Recorder(rudder_request._session)
    errors = []

    rudder_analytics.write_key = write_key
    rudder_analytics.dataPlaneUrl = base_url
    rudder_analytics.max_retries = 2
    rudder_analytics.on_error = lambda e, batch: errors.append("library error: {} (batch {})".format(e, batch))

    # The SDK's module functions return nothing, so the ids are chosen here.
    sent = [str(uuid.uuid4()) for _ in range(3)]
    rudder_analytics.track(
        anonymous_id=anonymous_id,
        event="Product Viewed",
        properties={"product_id": "sku-9", "price": 12.5},
        message_id=sent[0],
    )
    rudder_analytics.identify(
        user_id,
        traits={"email": email, "plan": "pro"},
        anonymous_id=anonymous_id,
        message_id=sent[1],
    )
    rudder_analytics.track(
        user_id,
        "Order Completed",
        {"order_id": "order-r1", "revenue": 12.5, "currency": "EUR"},
        message_id=sent[2],
    )
    rudder_analytics.flush()
    rudder_analytics.shutdown()

    extra = []
    if not rudder_analytics.default_client.gzip:
        extra.append("the SDK was expected to gzip by default")
    for ex in recorder.exchanges:
        if ex["content_encoding"] != "gzip":
            extra.append("a request was not gzipped: {}".format(ex["content_encoding"]))
    if not any(len(ex["request"].get("batch", [])) > 1 for ex in recorder.exchanges if isinstance(ex["request"], dict)):
        extra.append("the SDK sent no batch of more than one message")

    finish("rudder-sdk-python", VERSION, sent, recorder, errors, extra)


if __name__ == "__main__":
    main()
