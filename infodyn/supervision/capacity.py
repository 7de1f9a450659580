"""The capacity of one supervision signal: the most information, in bits, it can carry.

The capacity of a signal is log2 of the number of distinct values it can take: a signal that
can say one of N things tells the learner at most log2 N bits about anything. It is a property
of the signal's format alone, not of the data or of the annotators.

======================  ===============================  ======================================
signal                  values                           capacity (bits)
======================  ===============================  ======================================
``hard``                one of k classes                 log2 k
``soft`` (m votes)      vote counts (c_1..c_k), sum m    log2 C(m+k-1, k-1)   (stars and bars)
``soft`` (precision q)  probabilities in steps of 1/q    log2 C(q+k-1, k-1)   (same count)
``soft``/``posterior``  real-valued distribution         inf                  (unbounded)
``topk`` (ordered)      the t most likely, in order      log2 k!/(k-t)!
``topk`` (unordered)    the set of the t most likely     log2 C(k, t)
``ranking``             a full order of the k classes    log2 k!
``triplet``             "a is closer to b than to c"?    1
``pair``                "a and b are the same class"?    1
======================  ===============================  ======================================

A continuous soft label has unbounded capacity: in exact arithmetic a real number holds any
number of bits. What bounds it in practice is the precision it is written or elicited with,
which is why ``precision`` (the number of steps of the probability grid, e.g. 100 for
percentages) turns it into the finite count of distributions on that grid.
"""
from __future__ import annotations

import math
import operator
from typing import Optional

LN2 = math.log(2.0)

SIGNALS = ("hard", "soft", "posterior", "topk", "ranking", "triplet", "pair")


def _positive_int(value, name: str, signal: str, minimum: int = 1) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} for signal {signal!r} must be an integer, got {value!r}")
    try:
        value = operator.index(value)  # int or numpy integer; refuses 2.5
    except TypeError:
        raise ValueError(f"{name} for signal {signal!r} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} for signal {signal!r} must be >= {minimum}, got {value}")
    return value


def capacity_bits(
    signal: str,
    num_classes: int,
    votes: Optional[int] = None,
    *,
    top_k: Optional[int] = None,
    ordered: bool = True,
    precision: Optional[int] = None,
) -> float:
    """The most information one signal of this kind can carry, in bits.

    Args:
        signal: one of ``hard``, ``soft``, ``posterior``, ``topk``, ``ranking``, ``triplet``,
            ``pair`` (see the module table).
        num_classes: k, the number of classes the annotator chooses among (>= 2).
        votes: m, the number of annotators' votes pooled into one ``soft`` label. None means a
            continuous soft label (then ``precision`` decides; without it the capacity is inf).
        top_k: t, how many classes a ``topk`` signal names (1 <= t <= k).
        ordered: whether a ``topk`` signal gives its t classes in order.
        precision: q, the number of grid steps of a continuous soft label / posterior
            (probabilities in multiples of 1/q); ignored when ``votes`` is given.

    Returns:
        The capacity in bits (``float('inf')`` for a real-valued soft label).

    >>> capacity_bits("hard", 8)
    3.0
    >>> round(capacity_bits("soft", 3, votes=2), 6)   # 6 vote patterns: log2 6
    2.584963
    >>> capacity_bits("triplet", 100)
    1.0
    """
    if not isinstance(signal, str) or signal not in SIGNALS:
        raise ValueError(f"unknown supervision signal {signal!r}; known: {', '.join(SIGNALS)}")
    k = _positive_int(num_classes, "num_classes", signal, minimum=2)
    if signal == "hard":
        return math.log2(k)
    if signal in ("soft", "posterior"):
        if votes is not None:
            if signal == "posterior":
                raise ValueError("votes applies to 'soft' labels; an exact 'posterior' takes precision")
            m = _positive_int(votes, "votes", signal)
            return math.log2(math.comb(m + k - 1, k - 1))
        if precision is None:
            return math.inf
        q = _positive_int(precision, "precision", signal)
        return math.log2(math.comb(q + k - 1, k - 1))
    if signal == "topk":
        if top_k is None:
            raise ValueError("signal 'topk' needs top_k (how many classes it names)")
        t = _positive_int(top_k, "top_k", signal)
        if t > k:
            raise ValueError(f"top_k={t} is larger than num_classes={k}")
        count = math.perm(k, t) if ordered else math.comb(k, t)
        return math.log2(count)
    if signal == "ranking":
        return math.log2(math.factorial(k))
    return 1.0  # triplet, pair: a yes/no answer


def capacity_nats(signal: str, num_classes: int, votes: Optional[int] = None, **kwargs) -> float:
    """:func:`capacity_bits` in nats."""
    return capacity_bits(signal, num_classes, votes, **kwargs) * LN2
