"""Numba kernels: plain loops over NumPy arrays, no Polars, no nulls.

Each kernel has a pure-Python twin in tests/engine/test_kernels.py that it must agree with.
Signatures are explicit, so everything compiles at import and the nightly run has no first-call
surprises. Inputs are declared read-only: Polars hands out zero-copy read-only views.
"""

from __future__ import annotations

import numpy as np
from numba import boolean, int64, njit, types

Int64In = types.Array(types.int64, 1, "C", readonly=True)

MY_NUMBER_WEIGHTS = np.array([6, 5, 4, 3, 2, 7, 6, 5, 4, 3, 2], dtype=np.int64)  # research §3.1


@njit(boolean[:](Int64In), cache=True, nogil=True)
def my_number_is_valid(numbers):
    """True where the value is a 12-digit My Number (0 ≤ n < 10^12) whose check digit is right.

    Check digit (省令 第5条; stdnum.jp.in_): s = Σ w_i·d_i over the first 11 digits with weights
    6,5,4,3,2,7,6,5,4,3,2; check = (-s) mod 11 mod 10.
    """
    out = np.empty(numbers.shape[0], dtype=np.bool_)
    for i in range(numbers.shape[0]):
        n = numbers[i]
        if n < 0 or n >= 1_000_000_000_000:
            out[i] = False
            continue
        check = n % 10
        base = n // 10
        s = 0
        # walk the 11 base digits from the least significant: weights 2,3,4,5,6,7,2,3,4,5,6
        for k in range(11):
            d = base % 10
            base //= 10
            w = k + 2 if k < 6 else k - 4
            s += w * d
        out[i] = check == ((-s) % 11) % 10
    return out


@njit(int64[:](Int64In), cache=True, nogil=True)
def my_number_check_digits(bases):
    """The check digit for each 11-digit base (0 ≤ base < 10^11); -1 where out of range."""
    out = np.empty(bases.shape[0], dtype=np.int64)
    for i in range(bases.shape[0]):
        base = bases[i]
        if base < 0 or base >= 100_000_000_000:
            out[i] = -1
            continue
        s = 0
        for k in range(11):
            d = base % 10
            base //= 10
            w = k + 2 if k < 6 else k - 4
            s += w * d
        out[i] = ((-s) % 11) % 10
    return out


@njit(boolean[:](Int64In), cache=True, nogil=True)
def municipality_code_is_valid(codes):
    """True where a 6-digit JIS X 0402 code's last digit is its check digit (research §7.7).

    cd = (11 − (Σ w_i·d_i mod 11)) mod 10 with weights 6,5,4,3,2 over the first five digits.
    """
    out = np.empty(codes.shape[0], dtype=np.bool_)
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0 or c >= 1_000_000:
            out[i] = False
            continue
        check = c % 10
        base = c // 10
        s = 0
        for k in range(5):
            d = base % 10
            base //= 10
            s += (k + 2) * d
        out[i] = check == (11 - s % 11) % 10
    return out
