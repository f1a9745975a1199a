"""ClientShards: no SDK client serves more than its share of requests at once."""

from __future__ import annotations

from contextlib import ExitStack

from stepline.providers.shards import ClientShards


def test_a_new_client_opens_only_when_every_client_is_full():
    opened: list[object] = []
    shards = ClientShards(lambda: opened.append(object()) or opened[-1], per_client=2)

    with ExitStack() as stack:
        leased = [stack.enter_context(shards.lease()) for _ in range(5)]

    assert len(opened) == 3
    assert [leased.count(client) for client in opened] == [2, 2, 1]


def test_released_clients_are_reused():
    shards = ClientShards(object, per_client=2)

    for _ in range(10):
        with shards.lease(), shards.lease():
            pass

    assert len(shards.clients) == 1


def test_the_least_busy_client_gets_the_next_request():
    shards = ClientShards(object, per_client=2)
    with ExitStack() as stack:
        first, _, third = (stack.enter_context(shards.lease()) for _ in range(3))
        assert third is not first
        with ExitStack() as inner:
            inner.enter_context(shards.lease())  # fills the second client
        fourth = stack.enter_context(shards.lease())
        assert fourth is third  # one in flight there, two on the first
