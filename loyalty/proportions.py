"""The share of a credit that a return takes back: pure arithmetic, shared by the reversal
service (which takes the points back) and the reads that explain a reversal afterwards.

Partial returns are cumulative: after returns totalling `before` of the original amount
`total`, a return bringing the total to `cumulative` takes back the difference of the two
rounded-down shares, so all returns of one transaction never take back more than it earned.
"""


def share(points: int, before, cumulative, total) -> int:
    """Points of a credit of `points` that the return from `before` to `cumulative` (of the
    original `total` amount) takes back; a full return (no amounts) takes them all."""
    if total is None or cumulative is None or not total:
        return points
    return int(points * cumulative // total) - int(points * before // total)
