"""Records every HTTP exchange a tracking library makes, for the test scripts beside this file.

Both libraries post through a module-level `requests` session; a response hook on it sees the
request as sent (headers, possibly gzipped body) and the server's answer.
"""

import gzip
import json


class Recorder:
    def __init__(self, session):
        self.exchanges = []
        session.hooks["response"].append(self._record)

    def _record(self, res, *args, **kwargs):
        req = res.request
        encoding = req.headers.get("Content-Encoding")
        body = req.body
        if isinstance(body, bytes) and encoding == "gzip":
            body = gzip.decompress(body)
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        try:
            sent = json.loads(body)
            sent.pop("writeKey", None)
        except (TypeError, ValueError):
            sent = body
        self.exchanges.append(
            {
                "url": req.url,
                "content_encoding": encoding,
                "status": res.status_code,
                "request": sent,
                "response": res.text,
            }
        )

    def problems(self):
        """Anything but a 200 whose answer takes every message."""
        found = []
        if not self.exchanges:
            found.append("the library made no request")
        for ex in self.exchanges:
            try:
                answer = json.loads(ex["response"])
            except ValueError:
                answer = None
            clean = (
                ex["status"] == 200
                and isinstance(answer, dict)
                and answer.get("success") is True
                and not answer.get("rejected")
            )
            if not clean:
                found.append(
                    "POST {} answered {} {}\nrequest body: {}".format(
                        ex["url"], ex["status"], ex["response"], json.dumps(ex["request"])
                    )
                )
        return found


def finish(library, version, message_ids, recorder, errors, extra_problems=()):
    """Prints the report as one JSON line and exits non-zero on any problem."""
    import sys

    problems = list(errors) + recorder.problems() + list(extra_problems)
    print(
        json.dumps(
            {
                "library": library,
                "version": version,
                "message_ids": message_ids,
                "exchanges": recorder.exchanges,
                "problems": problems,
            }
        )
    )
    if problems:
        for p in problems:
            print("problem: " + p, file=sys.stderr)
        sys.exit(1)
