"""Locust FastHttpUser posting the no-op inference request. LOCUST_RATE (requests/s over all users) paces the users;
unset, they send as fast as they can. CPU time of the load window goes to LOCUST_RESULT (JSON)."""

import json
import os
import time

from locust import FastHttpUser, constant_throughput, events, task

BODY = ('{"inputs":[{"name":"prompt","shape":[1],"datatype":"BYTES","data":["a cat"]}],'
        '"outputs":[{"name":"seeds"}]}')
USERS = int(os.environ.get("LOCUST_USERS", "16"))
RATE = float(os.environ["LOCUST_RATE"]) if os.environ.get("LOCUST_RATE") else None
_cpu = {}


class NoopUser(FastHttpUser):
    if RATE:
        wait_time = constant_throughput(RATE / USERS)

    @task
    def infer(self):
        self.client.post("/v2/models/noop/infer", data=BODY, headers={"Content-Type": "application/json"})


@events.test_start.add_listener
def started(environment, **_):
    _cpu["start"], _cpu["wall"] = time.process_time(), time.perf_counter()


@events.quitting.add_listener
def quitting(environment, **_):
    total = environment.stats.total
    result = {"requests": total.num_requests, "failures": total.num_failures,
              "seconds": time.perf_counter() - _cpu["wall"], "cpu_s": time.process_time() - _cpu["start"],
              "percentiles_ms": {f"p{int(p * 100)}": total.get_response_time_percentile(p) for p in (0.5, 0.9, 0.99)}
              | {"max": total.max_response_time}}
    with open(os.environ["LOCUST_RESULT"], "w") as out:
        json.dump(result, out)
