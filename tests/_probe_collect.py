import asyncio, sys, tempfile, json
from pathlib import Path
from collections import Counter
from hypothesis import given, settings, HealthCheck, Phase
sys.path.insert(0, "tests")
import test_fuzz_api as t

failures = Counter()
examples = {}

def test_probe():
    with tempfile.TemporaryDirectory() as tmp, asyncio.Runner() as runner:
        st_ = runner.run(t.start_station(Path(tmp)))
        routes = [r for r in st_.routes if not (r[0] == "HEAD" and r[1].endswith(("/events", "/stream.mjpg")))]
        st_.routes = routes
        n = [0]
        @given(t.requests(st_))
        @settings(max_examples=int(sys.argv[1]) if False else 4000, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        def one(req):
            n[0] += 1
            try:
                status, ct, body = runner.run(t.send(st_, req))
                t.check_response(req, status, ct, body)
            except BaseException as exc:
                key = (req.method, req.template, type(exc).__name__, str(exc)[:120])
                failures[key] += 1
                examples.setdefault(key, req)
        one()
        print("\nrequests", n[0])
        for k, c in failures.most_common():
            print(c, k)
            print("   ", examples[k])
        runner.run(t.stop_station(st_))
