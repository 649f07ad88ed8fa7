"""Validate: named rejection rules per input dataset → `reject_reason` (null when the row is valid).

A row is judged "as of" the run date D: events dated after D (a death, a move-out) have not
happened yet, and rows that arrive after D (accounts linked, applications received, wallets,
transactions) are `pending`, not rejected. Rejects are an output for caseworkers, not exceptions;
only a reject ratio above the configured maximum stops the run (DataQualityError).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from engine import kernels, reference, sorted_index
from engine.errors import DataQualityError
from engine.schemas import REJECT_REASONS
from engine.ingest import ROW

ACCOUNT_TYPES = ["1", "2", "4", "9"]


def _kernel_flag(kernel, expr: pl.Expr) -> pl.Expr:
    """An elementwise numba predicate over an Int64 expression, kept lazy (nulls → False)."""

    def apply(series: pl.Series) -> pl.Series:
        values = np.ascontiguousarray(series.fill_null(-1).to_numpy())
        return pl.Series(series.name, kernel(values), dtype=pl.Boolean)

    return expr.map_batches(apply, return_dtype=pl.Boolean, is_elementwise=True)


def is_valid_my_number(column: str) -> pl.Expr:
    return _kernel_flag(kernels.my_number_is_valid, pl.col(column))


def is_valid_municipality(column: str) -> pl.Expr:
    code = pl.col(column)
    as_int = pl.when(code.str.contains(r"^\d{6}$")).then(code.cast(pl.Int64, strict=False))
    return _kernel_flag(kernels.municipality_code_is_valid, as_int)


def first_reason(rules: dict[str, pl.Expr]) -> pl.Expr:
    """The name of the first rule (in order) that the row breaks, else null."""
    return pl.coalesce(
        [pl.when(broken.fill_null(False)).then(pl.lit(name)) for name, broken in rules.items()]
    ).alias("reject_reason")


def _bank_rules(prefix: str = "") -> dict[str, pl.Expr]:
    bank_codes = pl.Series(list(reference.bank_names()), dtype=pl.String)
    branch_keys = pl.Series([f"{b}-{c}" for b, c in reference.branch_names()], dtype=pl.String)
    bank = pl.col("bank_code")
    branch = pl.col("branch_code")
    return {
        "missing_value": pl.any_horizontal(
            pl.col(c).is_null() for c in ("bank_code", "branch_code", "account_type",
                                          "account_number", "holder_name_kana")
        ),
        "bank_unknown": ~bank.is_in(bank_codes.implode()),
        "branch_unknown": ~pl.concat_str(bank, pl.lit("-"), branch).is_in(branch_keys.implode()),
        "account_format": ~pl.col("account_type").is_in(ACCOUNT_TYPES)
        | ~pl.col("account_number").str.contains(r"^\d{7}$"),
    }


# the columns a reject's `detail` quotes, per reason (only those present in the dataset);
# My Number columns are never quoted: a reject names them without their value
DETAIL_COLUMNS = {
    "missing_value": (),
    "my_number_format": (),
    "my_number_check_digit": (),
    "municipality_check_digit": ("municipality_code",),
    "municipality_unknown": ("municipality_code",),
    "bank_unknown": ("bank_code",),
    "branch_unknown": ("bank_code", "branch_code"),
    "account_format": ("account_type", "account_number"),
    "invalid_value": ("sex", "channel"),
    "impossible_date": ("birth_date", "registered_on", "moved_out_on", "died_on"),
    "duplicate_key": ("application_id", "household_id"),
    "duplicate_row": ("household_id",),
    "unknown_household": ("household_id",),
}
MY_NUMBER_COLUMNS = ("my_number", "applicant_my_number")


def _quoted(columns: list[str]) -> pl.Expr:
    parts = [pl.format("{} {}", pl.lit(c), pl.col(c).cast(pl.String).fill_null("null")) for c in columns]
    return pl.concat_str(parts, separator=", ") if parts else pl.lit("")


def with_detail(checked: pl.LazyFrame) -> pl.LazyFrame:
    """Add `detail`: the rejected row's offending values, e.g. "bank_code 9998"; never a My Number.
    Written for the rejected rows only (`on_rejected`)."""
    return checked.with_columns(on_rejected(detail_expr(checked.collect_schema())).alias("detail"))


def on_rejected(detail: pl.Expr) -> pl.Expr:
    """`detail` (a String expression, null where `reject_reason` is null) evaluated on the
    rejected rows of each batch only, and set back in place; null on the others.

    A detail quotes values as text (dates and numbers cast to strings); over every row, though
    nearly all read null, the 10M residents' routed, checked write took 0.9 s more
    (benchmarks/RESULTS.md, "Details for the rejects only")."""
    read = sorted(set(detail.meta.root_names()) | {"reject_reason"})

    def rejected_only(batch: pl.Series) -> pl.Series:
        frame = batch.struct.unnest()
        rejected = frame.get_column("reject_reason").is_not_null()
        out = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
        if rejected.any():
            out = out.scatter(rejected.arg_true(), frame.filter(rejected).select(detail).to_series())
        return out

    return pl.struct(read).map_batches(rejected_only, return_dtype=pl.String, is_elementwise=True)


def detail_expr(schema: pl.Schema) -> pl.Expr:
    """`detail` of every row of a checked frame (`schema`), null where the row is valid."""
    my_number_column = next((c for c in MY_NUMBER_COLUMNS if c in schema), "my_number")
    nulls = pl.concat_str(
        [pl.when(pl.col(c).is_null()).then(pl.lit(c)) for c in schema
         if c not in ("reject_reason", "is_pending", "moved_out_on", "died_on", "refund_of")
         and not c.endswith("__bad_format")],
        separator=", ", ignore_nulls=True,
    )
    details = {
        reason: _quoted([c for c in columns if c in schema]) for reason, columns in DETAIL_COLUMNS.items()
    }
    details["missing_value"] = pl.format("null in {}", nulls)
    details["my_number_format"] = pl.lit(f"{my_number_column} (value withheld)")
    details["my_number_check_digit"] = pl.lit(f"{my_number_column} (value withheld)")
    if "my_number" in schema and "application_id" not in schema:
        details["duplicate_key"] = pl.lit("my_number (value withheld) seen on an earlier row")
    return pl.coalesce(
        [pl.when(pl.col("reject_reason") == reason).then(expr) for reason, expr in details.items()]
    ).alias("detail")


AT = "__at"  # the row's position in the frame a rule reads (later_copies)


def later_copies(frame: pl.LazyFrame, *key_sets: list[str], index: str = AT) -> list[pl.Expr]:
    """For each set of keys, True on every row but the first of each key (file order):
    ~pl.struct(keys).is_first_distinct() over `frame`, as an expression over
    `frame.with_row_index(index)`. Every set contains the first (rows equal in a set are equal
    in the first), so one pass over the first set's columns finds the candidates of all.

    Found while planning, by sorting: a 64-bit hash of each row's first keys, the hashes that
    repeat (a sort on every core), then each set's keys compared among the few rows whose hash
    repeats (the copies, and any collision). Polars' is_first_distinct hashes every row into a
    table: 0.7 s for 3M residents' eleven columns or 4.9M transaction ids on this machine. With
    this, the 3M residents are checked in 0.65 s instead of 1.2 s (benchmarks/RESULTS.md).
    """
    first = key_sets[0]
    assert all(set(first) <= set(keys) for keys in key_sets), "every key set contains the first"
    hashes = frame.select(pl.struct(first).hash().alias("__hash")).collect()
    repeated = sorted_index.repeated(hashes["__hash"].to_numpy().view(np.int64))
    if not len(repeated):
        return [pl.lit(False)] * len(key_sets)
    shared = hashes.with_row_index(index).filter(
        pl.col("__hash").is_in(pl.Series(repeated.view(np.uint64)).implode()))[index]
    columns = list(dict.fromkeys(c for keys in key_sets for c in keys))
    candidates = frame.with_row_index(index).filter(pl.col(index).is_in(shared.implode())).select(index, *columns)
    candidates = candidates.collect()
    return [pl.col(index).is_in(candidates.filter(~pl.struct(keys).is_first_distinct())[index].implode())
            for keys in key_sets]


def _has_null(*columns: str) -> pl.Expr:
    return pl.any_horizontal(pl.col(c).is_null() for c in columns)


def _is_bad_my_number_format(lf: pl.LazyFrame, column: str) -> pl.Expr:
    """A My Number that arrived as text and is not 1-12 digits, or a number out of range."""
    flag = f"{column}__bad_format"
    out_of_range = (pl.col(column) < 0) | (pl.col(column) > 999_999_999_999)
    if flag in lf.collect_schema():
        return pl.col(flag) | out_of_range
    return out_of_range


def checked_residents(residents: pl.LazyFrame, run_date: date) -> pl.LazyFrame:
    """Residents as of the run date, with `reject_reason`.

    Deaths and move-outs dated after the run date are not known yet and read as null.
    """
    municipality_codes = reference.municipalities()["municipality_code"]
    dated = residents.with_columns(
        pl.when(pl.col("died_on") <= run_date).then(pl.col("died_on")).alias("died_on"),
        pl.when(pl.col("moved_out_on") <= run_date).then(pl.col("moved_out_on")).alias("moved_out_on"),
    )
    copied_key, copied_row = later_copies(dated, ["my_number", "household_id"], [
        "my_number", "household_id", "is_head", "family_name_kana", "given_name_kana", "birth_date", "sex",
        "municipality_code", "registered_on", "moved_out_on", "died_on",
    ])
    rules = {
        "my_number_format": _is_bad_my_number_format(residents, "my_number"),
        "missing_value": _has_null(
            "my_number", "household_id", "is_head", "family_name_kana", "given_name_kana",
            "birth_date", "municipality_code", "registered_on",
        ),
        "my_number_check_digit": ~is_valid_my_number("my_number"),
        "municipality_check_digit": ~is_valid_municipality("municipality_code"),
        "municipality_unknown": ~pl.col("municipality_code").is_in(municipality_codes.implode()),
        "invalid_value": ~pl.col("sex").is_in(["M", "F"]),
        "impossible_date": (
            ((pl.col("birth_date") > run_date) & (pl.col("registered_on") <= run_date))
            | (pl.col("registered_on") < pl.col("birth_date"))
            | (pl.col("died_on") < pl.col("birth_date"))
            | (pl.col("moved_out_on") < pl.col("registered_on"))
        ),
        "duplicate_row": copied_row,
        "duplicate_key": copied_key,
    }
    return dated.with_row_index(AT).with_columns(first_reason(rules)).drop(AT).pipe(with_detail)


def checked_accounts(accounts: pl.LazyFrame, run_date: date) -> pl.LazyFrame:
    """Linked accounts with `reject_reason` and `is_pending` (linked after the run date).

    One account per person (research §8): when a person has several, the latest link wins and
    the older ones are rejected as duplicate_key.
    """
    rules = {
        "my_number_format": _is_bad_my_number_format(accounts, "my_number"),
        "missing_value": _has_null("my_number", "linked_on"),
        "my_number_check_digit": ~is_valid_my_number("my_number"),
        **_bank_rules(),
    }
    is_pending = (pl.col("linked_on") > run_date).fill_null(False).alias("is_pending")
    checked = accounts.with_columns(first_reason(rules), is_pending)
    return _latest_per_key(checked, key="my_number", order="linked_on").pipe(with_detail)


def _latest_per_key(checked: pl.LazyFrame, *, key: str, order: str) -> pl.LazyFrame:
    """Among usable rows (valid, arrived) of one key, keep the latest by `order` (then the last
    in file order); reject the others as duplicate_key.

    Found while planning, among the rows whose key repeats (a sort of the key column: a person
    with two links is rare), not by a window over every row: the window holds the whole frame
    in memory, so that a night could not check the nation's accounts in one streaming pass.
    `checked` has one row per ROW (an input's rows, or one shard's)."""
    usable = pl.col("reject_reason").is_null() & ~pl.col("is_pending")
    # one sortable integer: the date's day number, then the row position (rows < 2^40)
    recency = pl.col(order).cast(pl.Int64) * (1 << 40) + pl.col(ROW)
    keys = checked.select(pl.col(key)).collect().to_series()
    repeated = pl.Series(key, sorted_index.repeated(keys.drop_nulls().to_numpy()), dtype=keys.dtype)
    candidate = pl.col(key).is_in(repeated.implode())
    if keys.null_count() > 1:  # rows without a key are one group, as in a window
        candidate = candidate | pl.col(key).is_null()
    older = (
        checked.filter(candidate)
        .select(ROW, key, usable.alias("__usable"), recency.alias("__recency"))
        .filter(pl.col("__usable") & (pl.col("__recency") != pl.col("__recency").max().over(key, "__usable")))
        .select(ROW).collect().to_series()
    )
    return checked.with_columns(
        pl.when(pl.col(ROW).is_in(older.implode()))
        .then(pl.lit("duplicate_key"))
        .otherwise(pl.col("reject_reason"))
        .alias("reject_reason")
    )


def checked_applications(
    applications: pl.LazyFrame, household_ids: pl.LazyFrame, run_date: date
) -> pl.LazyFrame:
    """Applications with `reject_reason` and `is_pending` (received after the run date)."""
    known = household_ids.select(pl.col("household_id").unique(), __known=pl.lit(True))
    rules = {
        "my_number_format": _is_bad_my_number_format(applications, "applicant_my_number"),
        "missing_value": _has_null(
            "application_id", "household_id", "applicant_my_number", "channel", "received_on"
        ),
        "duplicate_key": later_copies(applications, ["application_id"])[0],
        "my_number_check_digit": ~is_valid_my_number("applicant_my_number"),
        "invalid_value": ~pl.col("channel").is_in(["mail", "online"])
        | pl.col("declined_my_numbers").list.contains(-1).fill_null(False),
        **_bank_rules(),
        "unknown_household": pl.col("__known").is_null(),
    }
    return (
        applications.with_row_index(AT).join(known, on="household_id", how="left", maintain_order="left")
        .with_columns(
            first_reason(rules),
            (pl.col("received_on") > run_date).fill_null(False).alias("is_pending"),
        )
        .drop("__known", AT)
        .pipe(with_detail)
    )


def rejects(checked: pl.LazyFrame, dataset: str, keys: list[str]) -> pl.LazyFrame:
    """Rejected rows of one dataset: dataset, row_number, reason and its non-personal keys."""
    key_exprs = [pl.col(k).cast(pl.Int64).alias(k) for k in keys]
    return checked.filter(pl.col("reject_reason").is_not_null()).select(
        pl.lit(dataset).alias("dataset"),
        pl.col(ROW),
        pl.col("reject_reason").alias("reason"),
        "detail",
        *key_exprs,
    )


def reject_summary(rejected: pl.LazyFrame) -> pl.DataFrame:
    """Rejects counted by dataset and reason, with at most 5 examples each ("row 12: bank_code 9998")."""
    return (
        rejected.sort("dataset", "reason", ROW)
        .group_by("dataset", "reason", maintain_order=True)
        .agg(
            pl.len().alias("rows"),
            pl.format("row {}: {}", ROW, "detail").head(5).str.join("; ").alias("examples"),
        )
        .collect()
    )


def enforce_reject_ratio(rows: dict[str, int], paths: dict[str, str], summary: pl.DataFrame,
                         max_ratio: float) -> None:
    """Raise DataQualityError when any dataset rejects more than `max_ratio` of its rows; the
    message names the file, each broken rule with its count and examples (Kedro-style, at most
    10 rules and 5 examples each)."""
    problems = []
    for dataset, total in rows.items():
        mine = summary.filter(pl.col("dataset") == dataset).sort("rows", descending=True)
        rejected = int(mine["rows"].sum())
        if total and rejected / total > max_ratio:
            problems.append(
                f"{dataset} ({paths[dataset]}): {rejected:,} of {total:,} rows rejected "
                f"({rejected / total:.1%}), above validate.max_reject_ratio = {max_ratio:.1%}"
            )
            problems += [
                f"  {reason} ({REJECT_REASONS[reason]}): {n:,} rows, e.g. {examples}"
                for reason, n, examples in mine.head(10).select("reason", "rows", "examples").iter_rows()
            ]
    if problems:
        msg = "\n".join(problems) + (
            "\n\nHint: the rejects by reason are listed above; fix the input, or raise "
            "validate.max_reject_ratio in the config if this is expected."
        )
        raise DataQualityError(msg)
