"""Runs the Strata snippets of docs/coming-from.md against a node, for broker/tests/django_example.rs.

Usage: coming_from.py BOOTSTRAP PATH/TO/coming-from.md. A snippet is a ```python block right after a line
`<!-- strata: NAME -->`. They run in the page's order, in one namespace (as a reader pasting them into one
session would), with `BOOTSTRAP = "localhost:9092"` pointed at BOOTSTRAP and the page's stand-ins for the
reader's code (`send_email`, `make_thumbnail`, `TemporaryError`) defined here to record what they were given.
After each snippet, the check of the same name below says whether it did what the page says. Exits non-zero
with a message on the first failure.
"""

import re
import signal
import sys
import time
from collections import Counter

# How long one snippet may run.
SNIPPET_TIMEOUT_S = 60

SNIPPET = re.compile(r"<!-- strata: ([a-z-]+) -->\n```python\n(.*?)\n```", re.S)


class TemporaryError(Exception):
    pass


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


emails = []
thumbnails = Counter()


def send_email(job):
    emails.append(job)


def make_thumbnail(job):
    thumbnails[job["id"]] += 1
    if job["id"] == 2 and thumbnails[2] == 1:
        raise TemporaryError("the image store timed out")
    if job["id"] == 4:
        raise ValueError("not an image")


def total_records(ns, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": ns["BOOTSTRAP"], "group.id": "coming-from-check"})
    try:
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        c.close()


def check_setup(ns):
    assert "jobs" in ns["admin"].list_topics(timeout=10).topics


def check_publish(ns):
    assert total_records(ns, "jobs") == 6, total_records(ns, "jobs")


def check_consume(ns):
    from confluent_kafka import Consumer, TopicPartition

    assert sorted(j["id"] for j in emails) == list(range(6)), emails
    c = Consumer({"bootstrap.servers": ns["BOOTSTRAP"], "group.id": "mailer"})
    try:
        committed = c.committed([TopicPartition("jobs", p) for p in range(3)], timeout=10)
    finally:
        c.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 6, committed


def check_replay(ns):
    assert len(ns["replayed"]) == 6, ns["replayed"]
    assert len(ns["since_an_hour_ago"]) == 6, ns["since_an_hour_ago"]


def check_scale_out(ns):
    partitions = ns["admin"].list_topics("jobs", timeout=10).topics["jobs"].partitions
    assert len(partitions) == 6, partitions


def check_share_group(ns):
    # Job 2 failed once, was released and came back; job 4 was rejected; the rest ran once.
    assert thumbnails == Counter({0: 1, 1: 1, 2: 2, 3: 1, 4: 1, 5: 1}), thumbnails
    assert ns["reasons"] == [b"rejected"], ns["reasons"]
    assert b'"id": 4' in ns["dead_letters"][0].value(), ns["dead_letters"][0].value()


CHECKS = {
    "setup": check_setup,
    "publish": check_publish,
    "consume": check_consume,
    "replay": check_replay,
    "scale-out": check_scale_out,
    "share-group": check_share_group,
}


def main():
    bootstrap, page = sys.argv[1:3]
    signal.signal(signal.SIGALRM, on_alarm)
    snippets = SNIPPET.findall(open(page).read())
    names = [name for name, _ in snippets]
    assert names == list(CHECKS), f"the page's snippets {names} are not the checked ones {list(CHECKS)}"
    ns = {
        "__name__": "coming_from",
        "send_email": send_email,
        "make_thumbnail": make_thumbnail,
        "TemporaryError": TemporaryError,
    }
    for name, code in snippets:
        assert 'BOOTSTRAP = "localhost:9092"' in code or name != "setup", "setup no longer sets BOOTSTRAP"
        code = code.replace('BOOTSTRAP = "localhost:9092"', f"BOOTSTRAP = {bootstrap!r}")
        started = time.monotonic()
        # A snippet that waits for something that never comes (a worker loop, say) fails here, saying
        # which one, rather than hanging until the Rust test kills the script.
        signal.alarm(SNIPPET_TIMEOUT_S)
        try:
            exec(compile(code, f"{page}:{name}", "exec"), ns)
        except Timeout:
            sys.exit(f"snippet {name} still running after {SNIPPET_TIMEOUT_S} s; emails {emails}, thumbnails {thumbnails}")
        signal.alarm(0)
        CHECKS[name](ns)
        print(f"{name}: ran and checked in {time.monotonic() - started:.1f} s", flush=True)
    print(f"all {len(snippets)} snippets ran and did what the page says")


if __name__ == "__main__":
    main()
