"""WeightPublisher on one host: the trainer's weights go as a file path, every worker loads
each version, a new export waits until every load of the previous file is done (rank 0 then
replaces that file), and a replacement worker gets the last version."""

from __future__ import annotations

import time

import pytest


@pytest.fixture(scope="module")
def actors(ray_cluster):
    import ray

    @ray.remote(num_cpus=0)
    class Worker:
        def __init__(self, delay: float):
            self.delay, self.loads = delay, []

        def load_weights(self, weights, version):
            time.sleep(self.delay)
            self.loads.append((weights, version, time.time()))
            return version

        def seen(self):
            return self.loads

    @ray.remote(num_cpus=0)
    class Rank:
        def __init__(self):
            self.exports = []

        def export_weights(self, to_file):
            self.exports.append(time.time())
            return f"/dev/shm/w{len(self.exports)}" if to_file else b"bytes"

        def times(self):
            return self.exports

    return Worker, Rank


class _Trainer:
    def __init__(self, rank):
        self.rank = rank

    def export_weights_async(self, to_file=False):
        return self.rank.export_weights.remote(to_file)


@pytest.mark.parametrize("via_file", [True, False], ids=["file", "bytes"])
def test_publish_waits_for_the_previous_loads_and_replacements_get_the_last(actors, via_file):
    import ray

    from rlkit.runtime.controller.weight_publisher import WeightPublisher

    Worker, Rank = actors
    rank = Rank.remote()
    workers = [Worker.remote(0.0), Worker.remote(1.0)]  # the second loads slowly
    pub = WeightPublisher(_Trainer(rank), workers, "object_store", via_file=via_file)
    pub.publish(1)
    pub.publish(2)
    spare = Worker.remote(0.0)
    assert pub.send_last(spare) == 2
    ray.get(pub._loads)
    slow = ray.get(workers[1].seen.remote())
    want = ["/dev/shm/w1", "/dev/shm/w2"] if via_file else [b"bytes", b"bytes"]
    assert [w for w, _, _ in slow] == want
    assert [v for _, v, _ in slow] == [1, 2]
    second_export = ray.get(rank.times.remote())[1]
    if via_file:  # the file of version 1 was not replaced while the slow worker read it
        assert second_export >= slow[0][2]
    else:  # bytes: nothing to wait for
        assert second_export < slow[0][2]
    assert [(w, v) for w, v, _ in ray.get(spare.seen.remote())] == [(want[1], 2)]


def test_nothing_published_yet_sends_nothing(actors):
    from rlkit.runtime.controller.weight_publisher import WeightPublisher

    Worker, Rank = actors
    pub = WeightPublisher(_Trainer(Rank.remote()), [], "object_store", via_file=True)
    assert pub.send_last(Worker.remote(0.0)) == 0
