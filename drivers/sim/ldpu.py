"""The float16 LDPU chain of one core, as the simulated chip computes it.

Per row r, in numpy float16 with one rounding after every operation [LG p.3; KA §III-E;
drivers/ldpu.py; docs/protocol.md §3.6]:

    p = gain_pos·P + offset_pos          (P: positive ADC count, 12-bit → float16)
    n = gain_neg·N + offset_neg
    y = p − n
    y = affine_scale·y + affine_offset
    y = max(y, 0)                        if relu
    out = int8(rint(y)) saturated to [−128, 127]

Deviation from the silicon, documented: the hardware FMAs round once per multiply-add; numpy
float16 rounds the product and the sum separately (≤ 1 float16 ulp difference per FMA). Counts
above 2048 are rounded to the float16 grid (even numbers), as the 12-bit → FP16 conversion does.
Overflow to ±inf saturates to 127 / −128; NaN (inf − inf) gives 0 (UNCONFIRMED: silicon
behaviour on FP16 overflow is not published).
"""

from __future__ import annotations

import numpy as np

from drivers.ldpu import LdpuCoefficients


def apply_ldpu(
    coefficients: LdpuCoefficients, positive: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """int8 outputs of the LDPU chain for ADC counts ``positive``/``negative`` (..., 256)."""
    return coefficients.apply(positive, negative)
