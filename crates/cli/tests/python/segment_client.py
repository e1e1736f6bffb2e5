"""Drives a missive server with Segment's official Python library (segment-analytics-python),
in its default mode: a background thread batching messages to /v1/batch.

usage: segment_client.py BASE_URL WRITE_KEY ANONYMOUS_ID USER_ID EMAIL NEW_USER_ID

An anonymous visitor views a page and a product, identifies, orders twice, and is aliased to a
new user id. Prints one JSON line (message ids sent, every HTTP exchange) and exits non-zero if
the library reports an error or the server refuses any message.
"""

import sys

import segment.analytics as analytics
from segment.analytics import request as segment_request
from segment.analytics.version import VERSION

from exchanges import Recorder, finish


def main():
    base_url, write_key, anonymous_id, user_id, email, new_user_id = sys.argv[1:]
    recorder = Recorder(segment_request._session)
    errors = []

    analytics.write_key = write_key
    analytics.host = base_url
    analytics.max_retries = 2
    analytics.on_error = lambda e, batch: errors.append("library error: {} (batch {})".format(e, batch))

    sent = []

    def keep(result):
        queued, msg = result
        if not queued:
            errors.append("not queued: {}".format(msg))
        sent.append(msg["messageId"])

    keep(analytics.page(anonymous_id=anonymous_id, name="Home", properties={"path": "/"}))
    keep(
        analytics.track(
            anonymous_id=anonymous_id,
            event="Product Viewed",
            properties={"product_id": "sku-1", "price": 30.0},
        )
    )
    keep(analytics.identify(user_id, {"email": email, "name": "Ada Lovelace"}, anonymous_id=anonymous_id))
    for n in range(2):
        keep(
            analytics.track(
                user_id,
                "Order Completed",
                {"order_id": "order-{}".format(n), "revenue": 30.0, "currency": "USD"},
            )
        )
    keep(analytics.alias(user_id, new_user_id))
    # flush() waits until the queue is empty; shutdown() also stops the consumer thread.
    analytics.flush()
    analytics.shutdown()

    finish("segment-analytics-python", VERSION, sent, recorder, errors)


if __name__ == "__main__":
    main()
