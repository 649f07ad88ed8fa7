"""A slow, obviously correct implementation of the Mynapoint rules, for tests.

Written from SPEC.md ("Mynapoint", "Nightly runs") and the points brief, not from
engine/points.py: plain dicts and lists, and one loop over the night's events in order of
occurrence. The engine must agree with it to the yen, event by event.

    ref = PointsReference(cfg, services, wallets, persons, transactions)
    night = ref.night(date(2020, 12, 31))   # then later nights, in any order of dates ≥
    night.changes                           # {(transaction_id): points change tonight}
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

EARNING = ("charge", "purchase")


@dataclass
class Night:
    run_date: date
    changes: dict[int, int] = field(default_factory=dict)  # event transaction_id → points change
    ignored: dict[int, str] = field(default_factory=dict)  # transaction_id → reason
    rejected: dict[int, str] = field(default_factory=dict)  # row position → reason
    holds: dict[int, set[str]] = field(default_factory=dict)  # wallet_id → reasons


class PointsReference:
    """The campaign's points as a sequence of nights; keeps its own state between nights."""

    def __init__(self, cfg, services, wallets, persons, transactions, *, min_refund_cycles=3,
                 min_refunded_percent=50):
        """services: [{service_id, kind}], wallets: [{wallet_id, my_number, service_id,
        registered_on}], persons: [{my_number, person_key, died_on}] (died_on as known at the
        end), transactions: [{transaction_id, wallet_id, occurred_at, kind, amount_yen,
        refund_of}] in file order."""
        self.cfg = cfg
        self.service_kind = {s["service_id"]: s["kind"] for s in services}
        self.wallets = wallets
        self.persons = {}
        for p in persons:
            known = self.persons.get(p["my_number"])
            if known is None:
                self.persons[p["my_number"]] = dict(p)
            else:
                known["person_key"] = min(known["person_key"], p["person_key"])
                deaths = [d for d in (known["died_on"], p["died_on"]) if d is not None]
                known["died_on"] = min(deaths) if deaths else None
        self.transactions = transactions
        self.min_refund_cycles = min_refund_cycles
        self.min_refunded_percent = min_refunded_percent
        # state
        self.processed = {}  # transaction_id → {"net", "first", "current", "person"}
        self.applied = set()  # refund transaction_ids applied
        self.granted = defaultdict(int)  # person_key → points granted, net of clawbacks

    # -- validation (the whole file, as of the run date: refunds are judged in occurrence order)
    def valid_transactions(self, run_date):
        wallet_ids = {w["wallet_id"] for w in self.wallets}
        rejected, seen, valid = {}, set(), {}
        for row, t in enumerate(self.transactions):
            reason = None
            if any(t[c] is None for c in ("transaction_id", "wallet_id", "occurred_at", "kind", "amount_yen")) or (
                t["kind"] == "refund" and t["refund_of"] is None
            ):
                reason = "missing_value"
            elif t["transaction_id"] in seen:
                reason = "duplicate_key"
            elif t["kind"] not in ("charge", "purchase", "refund") or (
                t["kind"] != "refund" and t["refund_of"] is not None
            ):
                reason = "invalid_value"
            elif t["amount_yen"] <= 0:
                reason = "amount_not_positive"
            elif t["wallet_id"] not in wallet_ids:
                reason = "unknown_wallet"
            if t["transaction_id"] is not None:
                seen.add(t["transaction_id"])
            if reason:
                rejected[row] = reason
            else:
                valid[row] = t
        originals = {t["transaction_id"]: t for t in valid.values() if t["kind"] in EARNING}
        refunds = sorted(((t["occurred_at"], t["transaction_id"], row) for row, t in valid.items()
                          if t["kind"] == "refund"))
        refunded_so_far = defaultdict(int)
        for _, _, row in refunds:
            t = valid[row]
            original = originals.get(t["refund_of"])
            if original is None or original["wallet_id"] != t["wallet_id"]:
                rejected[row] = "unknown_refunded_transaction"
            elif (t["occurred_at"], t["transaction_id"]) < (original["occurred_at"], original["transaction_id"]):
                rejected[row] = "impossible_date"
            else:
                refunded_so_far[t["refund_of"]] += t["amount_yen"]
                if refunded_so_far[t["refund_of"]] > original["amount_yen"]:
                    rejected[row] = "refund_exceeds_amount"
        end = datetime.combine(run_date + timedelta(days=1), datetime.min.time())
        usable = [t for row, t in valid.items() if row not in rejected and t["occurred_at"] < end]
        return usable, rejected

    # -- holds
    def holds(self, run_date, usable):
        registered = [w for w in self.wallets if w["registered_on"] <= run_date]
        holders, wallets_of = defaultdict(set), defaultdict(set)
        for w in registered:
            holders[w["wallet_id"]].add(w["my_number"])
            wallets_of[w["my_number"]].add(w["wallet_id"])
        holds = defaultdict(set)
        for wallet_id, numbers in holders.items():
            if len(numbers) > 1:
                holds[wallet_id].add("shared_wallet")
        for wallet_ids in wallets_of.values():
            if len(wallet_ids) > 1:
                for wallet_id in wallet_ids:
                    holds[wallet_id].add("second_wallet")
        refunded, refunded_at, latest = defaultdict(int), {}, {}
        for t in usable:
            if t["kind"] == "refund":
                refunded[t["refund_of"]] += t["amount_yen"]
                refunded_at[t["refund_of"]] = max(refunded_at.get(t["refund_of"], t["occurred_at"]), t["occurred_at"])
            else:
                latest[t["wallet_id"]] = max(latest.get(t["wallet_id"], t["occurred_at"]), t["occurred_at"])
        cycles = defaultdict(int)
        for t in usable:
            if t["kind"] != "refund" and t["transaction_id"] in refunded:
                enough = refunded[t["transaction_id"]] * 100 >= t["amount_yen"] * self.min_refunded_percent
                if enough and latest[t["wallet_id"]] > refunded_at[t["transaction_id"]]:
                    cycles[t["wallet_id"]] += 1
        for wallet_id, n in cycles.items():
            if n >= self.min_refund_cycles:
                holds[wallet_id].add("refund_cycling")
        return dict(holds)

    def owner(self, wallet_id):
        """The wallet's earliest registration (then the smallest person_key)."""
        if not hasattr(self, "_registrations"):
            self._registrations = defaultdict(list)
            for w in self.wallets:
                self._registrations[w["wallet_id"]].append(w)

        def key(w):
            person = self.persons.get(w["my_number"])
            return (w["registered_on"], person is None, person["person_key"] if person else 0)

        return min(self._registrations[wallet_id], key=key)

    # -- one night
    def night(self, run_date: date, released=()) -> Night:
        cfg = self.cfg
        usable, rejected = self.valid_transactions(run_date)
        holds = self.holds(run_date, usable)
        held = set(holds) - set(released)
        result = Night(run_date=run_date, rejected=rejected, holds=holds)
        owners = {}
        for t in sorted(usable, key=lambda t: (t["occurred_at"], t["transaction_id"])):
            wallet_id = t["wallet_id"]
            if wallet_id not in owners:
                owners[wallet_id] = self.owner(wallet_id)
            wallet = owners[wallet_id]
            person = self.persons.get(wallet["my_number"])
            if t["kind"] == "refund":
                if t["transaction_id"] in self.applied:
                    continue
                target = self.processed.get(t["refund_of"])
                if target is None:  # its transaction earned nothing (yet): nothing to claw back
                    continue
                target["net"] -= t["amount_yen"]
                kept = min(cfg.rate_percent * target["net"] // 100, target["first"])
                clawed = target["current"] - kept
                target["current"] = kept
                self.granted[target["person"]] -= clawed
                self.applied.add(t["transaction_id"])
                result.changes[t["transaction_id"]] = -clawed
                continue
            if t["transaction_id"] in self.processed:
                continue
            reason = self.ignore_reason(t, wallet, person, run_date, wallet_id in held)
            if reason:
                result.ignored[t["transaction_id"]] = reason
                continue
            key = person["person_key"]
            full = cfg.rate_percent * t["amount_yen"] // 100
            points = max(0, min(full, cfg.cap_per_person_yen - self.granted[key]))
            self.granted[key] += points
            self.processed[t["transaction_id"]] = {"net": t["amount_yen"], "first": points, "current": points,
                                                   "person": key}
            result.changes[t["transaction_id"]] = points
        return result

    def ignore_reason(self, t, wallet, person, run_date, is_held):
        cfg = self.cfg
        day = t["occurred_at"].date()
        if not cfg.window_start <= day <= cfg.window_end:
            return "outside_window"
        if day < wallet["registered_on"]:
            return "before_registration"
        earns = {"prepaid": "charge", "postpaid": "purchase"}.get(self.service_kind.get(wallet["service_id"]))
        if t["kind"] != earns:
            return "not_earning_kind"
        if person is None:
            return "unknown_person"
        died_on = person["died_on"]
        if died_on is not None and died_on <= run_date and day > died_on:
            return "after_death"
        if is_held:
            return "held_wallet"
        return None

    def points_per_person(self) -> dict[int, int]:
        """Each person's points now: the sum of their transactions' current points."""
        totals = defaultdict(int)
        for p in self.processed.values():
            totals[p["person"]] += p["current"]
        return {k: v for k, v in totals.items()}
