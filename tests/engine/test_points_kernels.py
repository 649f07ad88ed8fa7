"""kernels.capped_point_changes against a slow, obviously correct pure-Python twin.

The twin is written from the rule (SPEC.md "Mynapoint"): grants limited by the room left under
the person's cap; a refund keeps min(floor(rate × net / 100), first points) and frees what it
claws back. Inputs are seeded and the tests parametrized on the seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import kernels

SEEDS = range(20)


def capped_point_changes_reference(person, is_refund, amount, slot, room, net_in, first_in, current_in, rate):
    """The same contract as the kernel, with dicts and one loop."""
    slots = {s: {"net": int(net_in[s]), "first": int(first_in[s]), "current": int(current_in[s])}
             for s in range(len(net_in))}
    left = {}
    changes = []
    for i in range(len(person)):
        p = int(person[i])
        if p not in left:
            left[p] = int(room[i])
        s = slots[int(slot[i])]
        if is_refund[i]:
            s["net"] -= int(amount[i])
            kept = min(rate * s["net"] // 100, s["first"])
            clawed = s["current"] - kept
            s["current"] = kept
            left[p] += clawed
            changes.append(-clawed)
        else:
            full = rate * int(amount[i]) // 100
            granted = max(0, min(full, left[p]))
            s.update(net=int(amount[i]), first=granted, current=granted)
            left[p] -= granted
            changes.append(granted)
    order = range(len(net_in))
    return (changes, [slots[s]["net"] for s in order], [slots[s]["first"] for s in order],
            [slots[s]["current"] for s in order])


def random_night(rng: np.random.Generator, persons: int = 30, cap: int = 5_000):
    """Events of `persons` people sorted by person then time: fresh grants, and refunds (partial,
    repeated) of transactions granted tonight or on an earlier night (state slots)."""
    person, is_refund, amount, slot, room = [], [], [], [], []
    net, first, current = [], [], []
    for p in range(persons):
        granted_before = int(rng.integers(0, cap + 1))
        open_slots = []  # (slot, net left)
        for _ in range(int(rng.integers(0, 3))):  # transactions processed on earlier nights
            amount_before = int(rng.integers(500, 30_000))
            first_before = min(25 * amount_before // 100, int(rng.integers(0, 7_000)))
            net.append(amount_before)
            first.append(first_before)
            current.append(first_before)
            open_slots.append([len(net) - 1, amount_before])
        for _ in range(int(rng.integers(1, 12))):
            if open_slots and rng.random() < 0.35:
                target = open_slots[int(rng.integers(len(open_slots)))]
                if target[1] == 0:
                    continue
                refunded = target[1] if rng.random() < 0.4 else int(rng.integers(1, target[1] + 1))
                target[1] -= refunded
                person.append(p), is_refund.append(True), amount.append(refunded), slot.append(target[0])
            else:
                value = int(rng.integers(1, 40_000))
                net.append(0), first.append(0), current.append(0)
                open_slots.append([len(net) - 1, value])
                person.append(p), is_refund.append(False), amount.append(value), slot.append(len(net) - 1)
            room.append(cap - granted_before)
    as_int = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
    return (as_int(person), np.array(is_refund, dtype=bool), as_int(amount), as_int(slot), as_int(room),
            as_int(net), as_int(first), as_int(current))


@pytest.mark.parametrize("seed", SEEDS)
def test_capped_point_changes_matches_reference(seed: int) -> None:
    arrays = random_night(np.random.default_rng(seed))
    got = kernels.capped_point_changes(*arrays, 25)
    expected = capped_point_changes_reference(*arrays, 25)
    assert [g.tolist() for g in got] == [list(e) for e in expected]


@pytest.mark.parametrize("rate", [1, 25, 50, 100])
def test_capped_point_changes_other_rates(rate: int) -> None:
    arrays = random_night(np.random.default_rng(rate), persons=50)
    got = kernels.capped_point_changes(*arrays, rate)
    assert [g.tolist() for g in got] == [list(e) for e in capped_point_changes_reference(*arrays, rate)]


def test_capped_point_changes_accepts_read_only_arrays() -> None:
    arrays = random_night(np.random.default_rng(0))
    for a in arrays:
        a.setflags(write=False)
    change, *_ = kernels.capped_point_changes(*arrays, 25)
    assert change.shape == arrays[0].shape


def test_capped_point_changes_on_no_events() -> None:
    empty = np.zeros(0, dtype=np.int64)
    change, net, first, current = kernels.capped_point_changes(
        empty, np.zeros(0, dtype=bool), empty, empty, empty, empty, empty, empty, 25)
    assert change.size == net.size == first.size == current.size == 0


def test_cap_never_exceeded_and_room_reset_per_person() -> None:
    # person 1: 8,000 + 8,000 + 8,000 → 2,000, 2,000, 1,000; person 2 starts with ¥4,900 granted
    person = np.array([1, 1, 1, 2, 2], dtype=np.int64)
    amount = np.array([8_000, 8_000, 8_000, 8_000, 8_000], dtype=np.int64)
    room = np.array([5_000, 5_000, 5_000, 100, 100], dtype=np.int64)
    zeros = np.zeros(5, dtype=np.int64)
    change, _, first, _ = kernels.capped_point_changes(
        person, np.zeros(5, dtype=bool), amount, np.arange(5, dtype=np.int64), room, zeros, zeros, zeros, 25)
    assert change.tolist() == [2_000, 2_000, 1_000, 100, 0]
    assert first.tolist() == change.tolist()
