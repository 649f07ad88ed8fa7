"""Settlement: what the night's Mynapoint points mean for each provider, its files, its ledger
lines, and their reconciliation.

points grants → settlement_lines (per wallet) and point_totals (per service) →
write_settlement_files: `settlement/<YYYYMMDD>/<service_id>.csv`, one file per registered service
every night (an empty one says "nothing tonight", so a lost file is noticed); grants →
points_ledger_entries (the ledger's columns); points_reconciliation checks totals, files and
ledger agree to the yen.

File format (UTF-8, LF line ends, deterministic bytes):
    service_id,wallet_id,points_yen          header
    3,1041,2500                              one line per wallet, sorted by wallet_id;
    3,2087,-1250                             points_yen < 0 is a clawback from the provider
    total,2,1250                             last line: `total`, the line count, the net yen
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from engine.errors import ReconciliationError
from engine.schemas import Contract

HEADER = "service_id,wallet_id,points_yen\n"
EXPENSE = "points_expense"  # the State's cost of the points granted
PAYABLE = "points_payable"  # owed to the providers, who granted the points in their own currency
LEDGER_COLUMNS = ("run_date", "entry_id", "household_id", "account", "debit_yen", "credit_yen", "reference")


SETTLEMENT = Contract("point_settlements", pl.Schema({
    "service_id": pl.Int64, "wallet_id": pl.Int64, "granted_yen": pl.Int64, "clawed_back_yen": pl.Int64,
    "points_yen": pl.Int64,
}))
TOTALS = Contract("point_totals", pl.Schema({
    "service_id": pl.Int64, "granted_yen": pl.Int64, "clawed_back_yen": pl.Int64, "net_yen": pl.Int64,
    "wallets": pl.Int64,
}))


@dataclass(frozen=True)
class SettlementFile:
    path: Path
    service_id: int
    run_date: date
    records: int
    total_yen: int  # net: granted minus clawed back
    sha256: str


def settlement_path(run_date: date, service_id: int) -> str:
    """The file's path relative to the night's output folder (also the ledger's reference)."""
    return f"settlement/{run_date:%Y%m%d}/{service_id}.csv"


def settlement_file_bytes(lines: pl.DataFrame, service_id: int) -> bytes:
    """One provider's file: header, its lines sorted by wallet_id, the total line."""
    body = (
        lines.sort("wallet_id")
        .select(pl.lit(service_id, dtype=pl.Int64).alias("service_id"), "wallet_id", "points_yen")
        .write_csv(include_header=False, line_terminator="\n")
    )
    total = int(lines["points_yen"].sum())
    return (HEADER + body + f"total,{lines.height},{total}\n").encode("utf-8")


def write_settlement_files(
    settlement: pl.DataFrame, services: pl.DataFrame, out_dir: Path, run_date: date
) -> list[SettlementFile]:
    """Write one file per service of `services` under out_dir/settlement/<YYYYMMDD>/, from
    `settlement` (SETTLEMENT: service_id, wallet_id, points_yen); return them in
    service_id order with their record count, net total and SHA-256."""
    service_ids = sorted(int(s) for s in services["service_id"].unique())
    unknown = sorted(set(settlement["service_id"].unique().to_list()) - set(service_ids))
    if unknown:
        msg = (f"settlement lines for service_id(s) {unknown[:5]} that are not in services\n\n"
               "Hint: a wallet's service must be registered; this is a bug in the points stage.")
        raise ReconciliationError(msg)
    by_service = {
        int(key[0]): frame for key, frame in settlement.partition_by("service_id", as_dict=True).items()
    }
    empty = settlement.clear()
    files = []
    for service_id in service_ids:
        path = out_dir / settlement_path(run_date, service_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = by_service.get(service_id, empty)
        data = settlement_file_bytes(lines, service_id)
        path.write_bytes(data)
        files.append(SettlementFile(
            path=path, service_id=service_id, run_date=run_date, records=lines.height,
            total_yen=int(lines["points_yen"].sum()), sha256=hashlib.sha256(data).hexdigest(),
        ))
    return files


def points_ledger_entries(grants: pl.LazyFrame, run_date: date, reference_prefix: str = "") -> pl.LazyFrame:
    """The ledger lines of the night's points, per wallet (the ledger's columns, household_id
    null): entry P-<date>-<wallet_id>-G debits points_expense and credits points_payable with
    the points granted; entry …-C reverses the points clawed back. The reference is the
    provider's settlement file, `reference_prefix` + settlement_path(). Debits equal credits by
    construction."""
    delta = pl.col("points_delta_yen")
    per_wallet = grants.lazy().group_by("service_id", "wallet_id").agg(
        delta.clip(lower_bound=0).sum().alias("granted_yen"),
        (-delta.clip(upper_bound=0)).sum().alias("clawed_back_yen"),
    ).collect()  # once, and eager: the four legs below read it
    reference = pl.format("{}settlement/{}/{}.csv", pl.lit(reference_prefix), pl.lit(f"{run_date:%Y%m%d}"),
                          "service_id")
    zero = pl.lit(0, dtype=pl.Int64)
    # (amount, entry suffix, account, debit or credit): each wallet's rows in order of entry_id,
    # then account, ranked here once so that the rows are sorted by integers, not by strings
    legs = sorted([("granted_yen", "G", EXPENSE, True), ("granted_yen", "G", PAYABLE, False),
                   ("clawed_back_yen", "C", PAYABLE, True), ("clawed_back_yen", "C", EXPENSE, False)],
                  key=lambda leg: (leg[1], leg[2]))
    parts = [
        per_wallet.filter(pl.col(amount) > 0).select(
            "wallet_id", pl.lit(rank, dtype=pl.Int8).alias("__leg"),
            pl.format("P-{}-{}-{}", pl.lit(run_date.isoformat()), "wallet_id", pl.lit(suffix)).alias("entry_id"),
            pl.lit(account).alias("account"),
            (pl.col(amount) if is_debit else zero).alias("debit_yen"),
            (zero if is_debit else pl.col(amount)).alias("credit_yen"),
            reference.alias("reference"),
        )
        for rank, (amount, suffix, account, is_debit) in enumerate(legs)
    ]
    return (
        pl.concat(parts)
        .sort("wallet_id", "__leg")
        .with_columns(run_date=pl.lit(run_date, dtype=pl.Date), household_id=pl.lit(None, dtype=pl.Int64))
        .select(LEDGER_COLUMNS)
        .lazy()
    )


def points_reconciliation(totals: pl.DataFrame, files: list[SettlementFile], ledger: pl.LazyFrame) -> dict[str, int]:
    """The night's points figures; raise ReconciliationError naming every pair that disagrees:
    ledger debits and credits, granted and clawed back against points_expense, the net against
    points_payable and against the files' totals (overall and per service)."""
    by_account = (
        ledger.lazy().group_by("account").agg(pl.col("debit_yen").sum(), pl.col("credit_yen").sum()).collect()
    )
    account = {a: (int(d), int(c)) for a, d, c in by_account.iter_rows()}
    expense_debit, expense_credit = account.get(EXPENSE, (0, 0))
    payable_debit, payable_credit = account.get(PAYABLE, (0, 0))
    figures = {
        "points_granted_yen": int(totals["granted_yen"].sum()),
        "points_clawed_back_yen": int(totals["clawed_back_yen"].sum()),
        "points_net_yen": int(totals["net_yen"].sum()),
        "points_ledger_debit_yen": int(by_account["debit_yen"].sum()),
        "points_ledger_credit_yen": int(by_account["credit_yen"].sum()),
        "points_files_yen": sum(f.total_yen for f in files),
        "points_files_records": sum(f.records for f in files),
    }
    pairs = [
        ("ledger debits", figures["points_ledger_debit_yen"], "ledger credits", figures["points_ledger_credit_yen"]),
        ("granted", figures["points_granted_yen"], "points_expense debits", expense_debit),
        ("clawed back", figures["points_clawed_back_yen"], "points_expense credits", expense_credit),
        ("net", figures["points_net_yen"], "points_payable credits − debits", payable_credit - payable_debit),
        ("net", figures["points_net_yen"], "settlement files (total lines)", figures["points_files_yen"]),
    ]
    per_service = dict(totals.select("service_id", "net_yen").iter_rows())
    pairs += [
        (f"service {f.service_id} net", int(per_service.get(f.service_id, 0)), f"its file {f.path.name}", f.total_yen)
        for f in files
    ]
    wrong = [f"  {a} ¥{x:,} ≠ {b} ¥{y:,}" for a, x, b, y in pairs if x != y]
    if wrong:
        msg = "points reconciliation failed; nothing was published\n" + "\n".join(wrong)
        msg += "\n\nHint: this is a bug in the engine, not in the input; keep the run's log."
        raise ReconciliationError(msg)
    return figures


def settlement_lines(grants: pl.DataFrame) -> pl.DataFrame:
    """SETTLEMENT: per service and wallet, the points to grant (points_yen > 0) or claw back
    (< 0) tonight, with its gross parts; wallets whose changes cancel out are left out."""
    delta = pl.col("points_delta_yen")
    return (
        grants.group_by("wallet_id")  # a wallet has one service: grouping by it alone is faster
        .agg(
            pl.col("service_id").first(),
            delta.clip(lower_bound=0).sum().alias("granted_yen"),
            (-delta.clip(upper_bound=0)).sum().alias("clawed_back_yen"),
            delta.sum().alias("points_yen"),
        )
        .filter(pl.col("points_yen") != 0)
        .select(SETTLEMENT.schema.names())
        .sort("service_id", "wallet_id")
    )


def point_totals(grants: pl.DataFrame, settlement: pl.DataFrame | None = None) -> pl.DataFrame:
    """TOTALS: per service, the yen granted and clawed back tonight, their net, and the number
    of wallets in its settlement file (`settlement`: settlement_lines(grants), if at hand)."""
    if settlement is None:
        settlement = settlement_lines(grants)
    lines = settlement.group_by("service_id").agg(pl.len().cast(pl.Int64).alias("wallets"))
    delta = pl.col("points_delta_yen")
    return (
        grants.group_by("service_id")
        .agg(
            delta.clip(lower_bound=0).sum().alias("granted_yen"),
            (-delta.clip(upper_bound=0)).sum().alias("clawed_back_yen"),
            delta.sum().alias("net_yen"),
        )
        .join(lines, on="service_id", how="left")
        .with_columns(pl.col("wallets").fill_null(0))
        .select(TOTALS.schema.names())
        .sort("service_id")
    )
