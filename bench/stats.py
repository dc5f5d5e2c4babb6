"""What every benchmark prints: a spread of samples and a ratio of medians against a baseline measured in
the same run, because these machines are noisy and only a ratio of interleaved rounds means anything."""

from __future__ import annotations

import statistics


def spread(values: list[float]) -> str:
    """Median, min, p90, max and the sample count, on one line."""
    if not values:
        return "no samples"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"median {statistics.median(ordered):8.2f}  min {ordered[0]:8.2f}  p90 {p90:8.2f}  "
        f"max {ordered[-1]:8.2f}  (n={len(ordered)})"
    )


def ratio(measured: list[float], baseline: list[float]) -> str:
    """The measured median over the baseline median, as `2.31x`."""
    if not measured or not baseline:
        return "n/a"
    return f"{statistics.median(measured) / statistics.median(baseline):.2f}x"
