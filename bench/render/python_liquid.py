"""Renders missive's exported cart-abandonment e-mail with python-liquid: the same compiled
templates (subject, HTML with autoescape, text), the same block partials and the same
per-recipient data, one recipient after another, on one thread.

Usage: python python_liquid.py EXPORT_DIR SECONDS
"""
import json
import sys
import time
from pathlib import Path
from urllib.parse import quote

from liquid import CachingFileSystemLoader, Environment
from markupsafe import Markup

directory, seconds = Path(sys.argv[1]), float(sys.argv[2] if len(sys.argv) > 2 else 5)
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def money(amount, code=None):
    if amount is None:
        return ""
    n = float(amount)
    sym = SYMBOLS.get((code or "USD").upper(), "")
    return f"{'-' if n < 0 else ''}{sym}{abs(n):,.2f}"


def url_param(url, key, value):
    if url is None:
        return ""
    s = str(url)
    base, _, frag = s.partition("#")
    sep = ("" if base.endswith(("?", "&")) else "&") if "?" in base else "?"
    return f"{base}{sep}{quote(str(key), safe='')}={quote(str(value), safe='')}{'#' + frag if frag else ''}"


def pluralize(n, singular, plural):
    return singular if float(n) == 1 else plural


def env(autoescape):
    e = Environment(
        loader=CachingFileSystemLoader(directory / "partials", ext=".liquid"),
        autoescape=autoescape,
    )
    e.filters["money"] = money
    e.filters["url_param"] = url_param
    e.filters["pluralize"] = pluralize
    return e


html_env, text_env = env(True), env(False)
t_html = html_env.from_string((directory / "html.liquid").read_text())
t_text = text_env.from_string((directory / "text.liquid").read_text())
t_subject = text_env.from_string((directory / "subject.liquid").read_text())
data = [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines() if line]
expected = [json.loads(line) for line in (directory / "expected.jsonl").read_text().splitlines() if line]


def render_one(d):
    return t_subject.render(**d), t_html.render(**d), t_text.render(**d)


mismatched = sum(1 for d, e in zip(data, expected) if render_one(d)[0].strip() != e["subject"])
warm = time.monotonic() + 1
i = 0
while time.monotonic() < warm:
    render_one(data[i % len(data)])
    i += 1
start = time.perf_counter()
until = time.monotonic() + seconds
renders = 0
chars = 0
while time.monotonic() < until:
    for _ in range(4):
        _, h, _ = render_one(data[i % len(data)])
        chars += len(h)
        renders += 1
        i += 1
secs = time.perf_counter() - start
print(json.dumps({"engine": "python-liquid", "renders": renders, "seconds": secs, "renders_per_second": renders / secs,
                  "subject_mismatches": mismatched, "avg_html_chars": chars / renders}))
