"""tink-java's tamper list, run against our whole format: full reads and range reads.

tink-java's ``StreamingTestUtil.testModifiedCiphertext`` (and its
``…WithSeekableByteChannel`` twin, used by ``AesGcmHkdfStreamingTest``)
encrypts 512 bytes and then truncates the ciphertext, appends 1 byte, up to
the next segment boundary and a whole segment of zeros, flips each byte's
low bit, deletes each segment, duplicates each segment and changes each byte
of the associated data. Here the same list (truncation at every length, not
every 8th; segment swaps added) is applied to a ciphertext of ours: our
header, then the Tink stream, with segments small enough for five of them.

* A full read (``decrypt_bytes``, ``decrypt_stream``) raises
  ``DecryptionFailed`` for every tampered ciphertext.
* A range read (``keys.ranges``, planned from the tampered length as the
  service plans it from the stored size) never returns a byte that is not
  the original's. A read of the whole object raises ``DecryptionFailed``
  for every tampered ciphertext but one: cut to the exact length of an
  empty object, its plan says the range is not satisfiable (HTTP 416, no
  plaintext), since a size comes from the stored length before any segment
  is read (tink-java's seekable channel likewise calls its ``size()``
  unauthenticated). A range read of part of the object raises
  ``DecryptionFailed`` whenever the flipped bit lies in the bytes it
  fetches (the header or its segments) or the associated data changed, and
  else returns the original bytes, as Tink's seekable channel test allows.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from keys import _header
from keys.ranges import RangeNotSatisfiable, decrypt_range, decrypt_range_stream, plan_range
from keys.stream import DecryptionFailed, decrypt_bytes, decrypt_stream, encrypt_bytes, object_ad

KEY = bytes(range(100, 132))
DEK = "dek_tamper"
AD = object_ad("cust-9", "billing", "statements/2026-11.pdf", "1790000000000-0-n1")
SEG = 128  # plaintext: 72 bytes in segment 0, then 112 each
PT = bytes((i * 7 + 3) % 256 for i in range(512))  # tink-java's plaintext size
CT = encrypt_bytes(PT, KEY, DEK, AD, segment_size=SEG)
HEAD = _header.size(DEK)  # our header and Tink's, before segment 0
RANGES = [(0, 0), (0, 71), (71, 72), (72, 183), (100, 300), (184, 295), (400, 511), (511, 511), (0, 511)]


def _cut() -> list[bytes]:
    """CT as [everything before segment 0, segment 0, 1, …]."""
    cuts = [0, HEAD, HEAD + SEG - _header.TINK_HEADER_LEN]
    while cuts[-1] < len(CT):
        cuts.append(min(cuts[-1] + SEG, len(CT)))
    return [CT[a:b] for a, b in itertools.pairwise(cuts)]


HEADER, *SEGMENTS = _cut()
# Where segment i starts in the stored object (Tink's ``segment * segmentSize``, moved by our header).
STARTS = [HEAD, *(HEAD + SEG - _header.TINK_HEADER_LEN + i * SEG for i in range(len(SEGMENTS) - 1))]


def _structural() -> list[tuple[str, bytes]]:
    out = [(f"truncate to {n}", CT[:n]) for n in range(len(CT))]
    out += [(f"append {n} zero bytes", CT + bytes(n)) for n in (1, SEG - (len(CT) - STARTS[1]) % SEG, SEG)]
    for i in range(len(SEGMENTS)):
        out.append((f"delete segment {i}", HEADER + b"".join(SEGMENTS[:i] + SEGMENTS[i + 1 :])))
        out.append((f"duplicate segment {i}", HEADER + b"".join(SEGMENTS[: i + 1] + SEGMENTS[i:])))
    for i in range(len(SEGMENTS) - 1):
        swapped = SEGMENTS[:i] + [SEGMENTS[i + 1], SEGMENTS[i]] + SEGMENTS[i + 2 :]
        out.append((f"swap segments {i} and {i + 1}", HEADER + b"".join(swapped)))
    return [(name, ct) for name, ct in out if ct != CT]


def _flipped(at: int) -> bytes:
    return CT[:at] + bytes([CT[at] ^ 1]) + CT[at + 1 :]


def _ads() -> list[bytes]:
    return [AD[:i] + bytes([AD[i] ^ 1]) + AD[i + 1 :] for i in range(len(AD))]


def test_fixture_has_five_segments_of_tinks_shape():
    assert len(SEGMENTS) == 5 and [len(s) for s in SEGMENTS[:-1]] == [SEG - 40, SEG, SEG, SEG]
    assert len(SEGMENTS[-1]) == 512 - 72 - 3 * 112 + 16
    assert decrypt_bytes(CT, KEY, AD) == PT


# ----- full reads ---------------------------------------------------------------------------


async def _aiter(chunks):
    for chunk in chunks:
        yield chunk


def _full_read_fails(name: str, ct: bytes, ad: bytes = AD) -> None:
    async def streamed() -> bytes:
        pieces = [ct[i : i + 37] for i in range(0, len(ct), 37)]
        return b"".join([p async for p in decrypt_stream(_aiter(pieces), KEY, ad)])

    for decrypt in (lambda: decrypt_bytes(ct, KEY, ad), lambda: asyncio.run(streamed())):
        try:
            decrypt()
        except DecryptionFailed:
            continue
        pytest.fail(f"{name}: decrypted")


def test_full_read_refuses_every_structural_change():
    """Truncate, append, delete, duplicate, reorder."""
    for name, ct in _structural():
        _full_read_fails(name, ct)


def test_full_read_refuses_every_flipped_byte():
    """Header (ours and Tink's), every segment, every tag."""
    for at in range(len(CT)):
        _full_read_fails(f"flip byte {at}", _flipped(at))


def test_full_read_refuses_changed_associated_data():
    for ad in _ads():
        _full_read_fails("changed AD", CT, ad)


# ----- range reads --------------------------------------------------------------------------


def _range_read(ct: bytes, start: int, end: int, ad: bytes = AD) -> list[bytes | Exception]:
    """Both range decryptors' outcomes (plaintext, or the exception) for
    plaintext bytes start..end of ``ct``, fetching only the planned bytes."""
    try:
        plan = plan_range(len(ct), DEK, start, end, segment_size=SEG)
    except (DecryptionFailed, RangeNotSatisfiable) as exc:
        return [exc]
    header, body = ct[slice(*plan.header_range)], ct[slice(*plan.segments_range)]

    async def streamed() -> bytes:
        pieces = [body[i : i + 29] for i in range(0, len(body), 29)]
        return b"".join([p async for p in decrypt_range_stream(plan, header, _aiter(pieces), KEY, ad)])

    outcomes: list[bytes | Exception] = []
    for decrypt in (lambda: decrypt_range(plan, header, body, KEY, ad), lambda: asyncio.run(streamed())):
        try:
            outcomes.append(decrypt())
        except DecryptionFailed as exc:
            outcomes.append(exc)
    return outcomes


def _failed(outcomes: list[bytes | Exception]) -> bool:
    return all(isinstance(o, DecryptionFailed) for o in outcomes)


def test_range_reads_of_the_untouched_object():
    for start, end in RANGES:
        assert _range_read(CT, start, end) == [PT[start : end + 1]] * 2


def test_range_read_of_the_whole_object_refuses_every_structural_change():
    empty_length = HEAD + 16
    for name, ct in _structural():
        outcomes = _range_read(ct, 0, None)
        if len(ct) == empty_length:  # the one length that plans as an empty object: 416, no bytes
            assert len(outcomes) == 1 and isinstance(outcomes[0], RangeNotSatisfiable), name
            assert outcomes[0].plaintext_size == 0
        else:
            assert _failed(outcomes), name


def test_range_reads_never_return_other_bytes_after_a_structural_change():
    for name, ct in _structural():
        for start, end in RANGES:
            for outcome in _range_read(ct, start, end):
                if isinstance(outcome, bytes):
                    assert outcome == PT[start : end + 1], (name, start, end)
                else:
                    assert isinstance(outcome, (DecryptionFailed, RangeNotSatisfiable)), (name, start, end)


def test_range_read_fails_exactly_when_it_fetches_a_flipped_byte():
    for start, end in RANGES:
        plan = plan_range(len(CT), DEK, start, end, segment_size=SEG)
        fetched = set(range(*plan.header_range)) | set(range(*plan.segments_range))
        for at in range(len(CT)):
            outcomes = _range_read(_flipped(at), start, end)
            if at in fetched:
                assert _failed(outcomes), (at, start, end)
            else:
                assert outcomes == [PT[start : end + 1]] * 2, (at, start, end)


def test_range_read_refuses_changed_associated_data():
    for ad in _ads():
        for start, end in RANGES:
            assert _failed(_range_read(CT, start, end, ad)), (start, end)
