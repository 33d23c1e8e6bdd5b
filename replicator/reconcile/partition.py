"""Which names one run covers: ``--prefix`` and ``--partition i/n``.

Every object lives under ``v1/<customer tag>/``, and customer tags are
lower-case base32 (``[a-z2-7]``, HMAC output, so uniformly spread). Partition
``i`` of ``n`` is the ``i``-th of ``n`` contiguous, equal slices of that tag
space, written as the fewest tag prefixes that cover it exactly (as CIDR
blocks cover an address range), none shorter than one character: the ``n``
partitions are disjoint, together cover every tag, and each is listed with a
handful of prefix listings (the whole space, ``1/1``, with one per first
character: 32, which the reconciler lists a few at a time, see
:mod:`replicator.reconcile.executor`). A name under ``v1/`` whose tag does not
start with a base32 character was not written by the replicator and is in no
partition. Slices are cut at a depth where each holds at least four leaf
prefixes, so they differ in size by at most a quarter.

Because tags are uniform, a name's position in the tag space also says how
far a run has come (:func:`fraction`), which gives the progress bar an ETA
without counting the objects first.
"""

from __future__ import annotations

ROOT = "v1/"
#: The base32 alphabet in byte order ('2' < 'a').
ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
MAX_PARTITIONS = 1024


def parse_partition(text: str) -> tuple[int, int]:
    """``"i/n"`` (1-based) → ``(i, n)``; ``ValueError`` says what is wrong."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ValueError(f"partition {text!r} must look like i/n, e.g. 1/4") from None
    if not 1 <= n <= MAX_PARTITIONS or not 1 <= i <= n:
        raise ValueError(f"partition {text!r}: need 1 <= i <= n <= {MAX_PARTITIONS}")
    return i, n


def _digits(value: int, depth: int) -> str:
    out = []
    for _ in range(depth):
        value, d = divmod(value, len(ALPHABET))
        out.append(ALPHABET[d])
    return "".join(reversed(out))


def tag_prefixes(i: int, n: int) -> list[str]:
    """The customer-tag prefixes of partition ``i`` of ``n``, in byte order (each base32 character for 1/1)."""
    depth = 1
    while len(ALPHABET) ** depth < 4 * n:
        depth += 1
    total = len(ALPHABET) ** depth
    lo, hi = (i - 1) * total // n, i * total // n
    out = []
    while lo < hi:  # the largest aligned block that starts at lo and fits
        size, level = 1, depth
        while level > 1 and lo % (size * len(ALPHABET)) == 0 and lo + size * len(ALPHABET) <= hi:
            size *= len(ALPHABET)
            level -= 1
        out.append(_digits(lo // size, level))
        lo += size
    return out


def scope_prefixes(prefix: str, i: int, n: int) -> list[str]:
    """Name prefixes to list: partition ``i/n`` of the tag space, narrowed to ``prefix``."""
    if not prefix.startswith(ROOT):
        raise ValueError(f"prefix {prefix!r} must start with {ROOT!r} (the object layout's root)")
    out: list[str] = []
    for tag in tag_prefixes(i, n):
        q = ROOT + tag
        if prefix.startswith(q):
            out.append(prefix)
        elif q.startswith(prefix):
            out.append(q)
    if n == 1 and not out:
        raise ValueError(f"prefix {prefix!r} is outside the customer-tag space ({ROOT} then base32, [a-z2-7])")
    return out


def below(prefix: str, name: str) -> bool:
    """Whether every name under ``prefix`` sorts at or before ``name`` (so a resume can skip it)."""
    p, n = prefix.encode(), name.encode()
    return p < n and not n.startswith(p)


def _position(tag: str) -> tuple[float, int]:
    """The value of the leading base32 digits of ``tag`` (up to six) as a fraction, and how many there were."""
    value, digits = 0.0, 0
    for ch in tag[:6]:
        d = _INDEX.get(ch)
        if d is None:
            break
        digits += 1
        value += d * len(ALPHABET) ** -digits
    return value, digits


def fraction(name: str) -> float | None:
    """Where ``name`` sits in the customer-tag space, in [0, 1); None if it has no tag."""
    if not name.startswith(ROOT):
        return None
    value, digits = _position(name[len(ROOT) :])
    return value if digits else None


def span(prefixes: list[str]) -> tuple[float, float]:
    """The part of the tag space ``prefixes`` (sorted, contiguous) cover, as ``(start, end)``."""
    if not prefixes:
        return 0.0, 1.0
    start, _ = _position(prefixes[0][len(ROOT) :])
    value, digits = _position(prefixes[-1][len(ROOT) :])
    end = value + len(ALPHABET) ** -digits if digits else 1.0
    return start, min(end, 1.0)
