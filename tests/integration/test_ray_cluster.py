"""The local multi-node Ray cluster that the cluster coordinator's tests run on (flux_async.testing.ray_cluster),
and the Ray behaviours the coordinator relies on: STRICT_SPREAD placement puts one actor per node, async actor
methods run on the actor's own event loop outside the main thread (so no signal handlers there), a lost node
fails calls to its actors with a RayActorError within a bounded time, and a `ray://` client can drive actors."""

from __future__ import annotations

import sys
import time

import pytest

ray = pytest.importorskip("ray")
from ray.util.placement_group import placement_group, remove_placement_group  # noqa: E402
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy  # noqa: E402

from flux_async.testing.ray_cluster import node_resource, process_running  # noqa: E402

# pytest imports this file as a top-level module (`test_ray_cluster`) that Ray's workers cannot import: send the
# actor classes below by value, as cloudpickle does for __main__
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


@ray.remote(num_cpus=1)
class Probe:
    """Where an actor runs."""

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def count(self, n: int):
        """A generator method: called with .remote(), a streaming generator (an ObjectRefGenerator)."""
        # not `yield from range(n)` (ruff's UP028): Ray's generator executor calls send(), which a range
        # iterator lacks ("'range_iterator' object has no attribute 'send'")
        for i in range(n):  # noqa: UP028
            yield i


@ray.remote(num_cpus=1)
class AsyncProbe:
    """An async actor: its methods are coroutines run on the actor's event loop."""

    async def loop_facts(self) -> dict:
        import asyncio
        import signal
        import threading

        loop = asyncio.get_running_loop()
        facts = {"main_thread": threading.current_thread() is threading.main_thread(),
                 "thread": threading.current_thread().name, "loop": type(loop).__module__}
        # what flux_async.run.runner.stop_on_signals does: only the main thread may install signal handlers, so
        # code that runs inside an actor must not. The loop is uvloop's where uvloop is installed (as here), which
        # raises ValueError; asyncio's own loop raises RuntimeError
        try:
            loop.add_signal_handler(signal.SIGINT, lambda: None)
        except (RuntimeError, ValueError) as error:
            facts["signal_handler_error"] = f"{type(error).__name__}: {error}"
        else:
            loop.remove_signal_handler(signal.SIGINT)
        return facts

    async def gather(self, n: int) -> float:
        """n concurrent 0.2 s sleeps on the loop: about 0.2 s, not n x 0.2 s."""
        import asyncio

        started = time.monotonic()
        await asyncio.gather(*(asyncio.sleep(0.2) for _ in range(n)))
        return time.monotonic() - started


def test_the_cluster_has_a_head_and_two_worker_nodes(ray_cluster, ray_driver):
    print(f"cluster start: {ray_cluster.startup_s:.1f} s")
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 3
    for index in (1, 2):
        node = nodes[ray_cluster.node_id(index)]
        assert node["Resources"][node_resource(index)] == 1 and node["Resources"]["CPU"] == 1
    assert "CPU" not in nodes[ray_cluster.node_id(0)]["Resources"]  # the head runs no work
    assert ray.cluster_resources()["CPU"] == 2


def test_strict_spread_puts_each_bundle_on_another_node(ray_cluster, ray_driver):
    group = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    try:
        ray.get(group.ready(), timeout=30)
        actors = [Probe.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=i)).remote() for i in range(2)]
        where = ray.get([a.node_id.remote() for a in actors], timeout=60)
        assert len(set(where)) == 2
        assert set(where) == {ray_cluster.node_id(1), ray_cluster.node_id(2)}
    finally:
        remove_placement_group(group)


def test_async_actor_methods_run_on_the_actors_loop_off_the_main_thread(ray_driver):
    actor = AsyncProbe.remote()
    facts = ray.get(actor.loop_facts.remote(), timeout=60)
    assert facts["main_thread"] is False, facts
    assert "main thread" in facts["signal_handler_error"], facts
    print(facts)
    assert ray.get(actor.gather.remote(20), timeout=30) < 2.0
    ray.kill(actor)


def test_a_killed_node_fails_calls_to_its_actors(ray_cluster, ray_driver):
    """A third worker node, an actor pinned to it by the node's resource, one call in flight when the node is
    killed: that call fails with a RayActorError within seconds, a call after the GCS declared the node dead with
    ActorDiedError at once, and none of the node's processes is left."""
    node = ray_cluster.add_node()
    actor = Probe.options(resources={node.resource: 1}).remote()
    assert ray.get(actor.node_id.remote(), timeout=60) == ray_cluster.node_id(node.index)
    in_flight = actor.sleep.remote(120)
    time.sleep(0.5)
    pids = node.pids()
    assert len(pids) >= 4  # ray start, raylet, its two agents, the actor's worker
    killed = time.monotonic()
    gcs_s = ray_cluster.kill_node(node.index)
    # ActorUnavailableError ("Socket closed ... may or may not have been executed") when the caller notices the
    # lost connection first, ActorDiedError when the GCS's verdict comes first: both are RayActorErrors
    with pytest.raises(ray.exceptions.RayActorError) as failed:
        ray.get(in_flight, timeout=60)
    detected_s = time.monotonic() - killed
    with pytest.raises(ray.exceptions.ActorDiedError, match="its node has died"):
        ray.get(actor.node_id.remote(), timeout=60)
    print(f"node dead in the GCS after {gcs_s:.1f} s; the in-flight call failed after {detected_s:.1f} s with "
          f"{type(failed.value).__name__}")
    assert detected_s < 30
    assert ray_cluster.node_id(node.index) not in ray_cluster.alive_node_ids()
    assert not [pid for pid in pids if process_running(pid)]


def test_a_ray_client_drives_an_actor_but_not_a_streaming_generator(ray_cluster):
    with ray_cluster.client():
        actor = Probe.remote()
        assert ray.get(actor.node_id.remote(), timeout=60) in {ray_cluster.node_id(1), ray_cluster.node_id(2)}
        # Ray 2.60's client cannot return streaming generators (the default for generator methods); a driver
        # connected with ray.init(address=...) can. num_returns="dynamic" works from the client for sync generators
        with pytest.raises(RuntimeError, match="not currently supported when using Ray Client"):
            actor.count.options(num_returns="streaming").remote(3)
        ray.kill(actor)


def test_a_driver_iterates_a_streaming_generator(ray_driver):
    actor = Probe.remote()
    assert [ray.get(ref, timeout=60) for ref in actor.count.remote(3)] == [0, 1, 2]
    ray.kill(actor)
