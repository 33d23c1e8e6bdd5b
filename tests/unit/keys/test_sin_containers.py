"""keys.sin_containers: a SIN inside gzip, zip, PDF and UTF-16, found in real files (Python's gzip and
zipfile, fpdf2's and ReportLab's PDFs) whatever the chunking; bombs refused naming their limit before the body ends;
what cannot be scanned refused or counted; and plain bodies judged exactly as the pure engine judges."""

from __future__ import annotations

import base64
import codecs
import gzip
import io
import itertools
import random
import tracemalloc
import zipfile

import pytest
from fpdf import FPDF
from fpdf.enums import EncryptionMethod
from hypothesis import given, settings
from hypothesis import strategies as st
from reportlab.pdfgen import canvas

import keys._sin_pure as pure_mod
import keys.sin as sin_mod
from keys.sin_containers import BodyScanner, ScanLimitExceeded, ScanLimits, Unscannable

MiB = 1 << 20
CSV_WITH_SIN = b"id,name,sin,city\n1,Ada,130 692 544,Montreal\n2,Grace,,Toronto\n"
CSV_CLEAN = b"id,name,sin,city\n1,Ada,130 692 545,Montreal\n2,Grace,,Toronto\n"  # Luhn fails
# In a stored zip entry a UTF-8 SIN is plain in the body's bytes; a UTF-16 one is found only when the
# entry's first byte is found exactly (its byte-order mark decides).
UTF16_WITH_SIN, UTF16_CLEAN = CSV_WITH_SIN.decode().encode("utf-16"), CSV_CLEAN.decode().encode("utf-16")


def scan(body: bytes, chunk: int | None = None, **options) -> bool:
    scanner = BodyScanner(**options)
    step = chunk or max(1, len(body))
    for i in range(0, len(body), step):
        scanner.feed(body[i : i + step])
    return scanner.finish()


def every_split(body: bytes, **options) -> list[int]:
    """The cut points at which feeding ``body`` in two pieces does not find a SIN."""
    missed = []
    for cut in range(len(body) + 1):
        scanner = BodyScanner(**options)
        scanner.feed(body[:cut])
        scanner.feed(body[cut:])
        if not scanner.finish():
            missed.append(cut)
    return missed


def zipped(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED, *, seekable: bool = True, **kw) -> bytes:
    out = io.BytesIO()
    target = out if seekable else _Unseekable(out)
    with zipfile.ZipFile(target, "w", method, **kw) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return out.getvalue()


class _Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek back in: it writes sizes in data descriptors (bit 3)."""

    def __init__(self, out: io.BytesIO) -> None:
        self._out = out

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self._out.write(b)

    def tell(self) -> int:
        raise OSError("unseekable")

    def seekable(self) -> bool:
        return False


def pdf(text: str, **kw) -> bytes:
    doc = FPDF()
    if kw.get("encrypt"):
        doc.set_encryption(owner_password="owner", encryption_method=EncryptionMethod.AES_128)
    if kw.get("compress") is False:
        doc.set_compression(False)
    doc.add_page()
    doc.set_font("helvetica", size=11)
    for line in text.splitlines():
        doc.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    return bytes(doc.output())


def _text(n: int, seed: int = 7) -> bytes:
    """``n`` bytes of SIN-free CSV-ish text (base64 tokens and small numbers)."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        out += b"%d,%s,%d\n" % (rnd.randrange(10**5), base64.b32encode(rnd.randbytes(10)), rnd.randrange(999))
    return bytes(out[:n])


# -- gzip ------------------------------------------------------------------------------------------


def test_gzip_of_a_csv():
    assert scan(gzip.compress(CSV_WITH_SIN))
    assert not scan(gzip.compress(CSV_CLEAN))
    assert not sin_mod.contains_sin(gzip.compress(CSV_WITH_SIN))  # the bytes as they are hide it


def test_gzip_every_chunk_split():
    assert every_split(gzip.compress(CSV_WITH_SIN)) == []


def test_gzip_members_are_one_content_a_sin_across_them_is_found():
    body = gzip.compress(b"notes: 130 69") + gzip.compress(b"2 544 end")
    assert scan(body) and every_split(body) == []
    assert not scan(gzip.compress(b"notes: 130 69") + gzip.compress(b"2 545 end"))


def test_gzip_sin_across_the_inflaters_output_pieces():
    text = bytearray(_text(3 * MiB))
    for at in (256 * 1024, 2 * 256 * 1024 + 3):  # where one inflate call's output ends
        clean = bytes(text)
        text[at - 6 : at + 7] = b" 130-692-544 "
        assert scan(gzip.compress(bytes(text)), chunk=64 * 1024)
        assert not scan(gzip.compress(clean), chunk=64 * 1024)
        text = bytearray(clean)


def test_a_damaged_gzip_member_is_unscannable():
    body = bytearray(gzip.compress(CSV_CLEAN))
    body[10:14] = b"\xff\xff\xff\xff"  # the deflate data, after a valid header
    with pytest.raises(Unscannable, match="gzip member does not inflate"):
        scan(bytes(body))
    assert not scan(bytes(body), refuse_unscannable=False)


@pytest.mark.parametrize("cm", [0, 7, 9, 0xFF])
def test_bytes_that_only_begin_with_the_gzip_magic_are_scanned_as_they_are(cm):
    """Not a gzip header (RFC 1952: deflate, reserved flags clear): one random body in 65,536 begins
    with the magic, and is neither refused as unscannable nor opened, but its bytes are scanned."""
    for rest, has_sin in ((CSV_WITH_SIN, True), (CSV_CLEAN, False), (random.Random(cm).randbytes(4096), False)):
        assert scan(b"\x1f\x8b" + bytes([cm]) + rest) is has_sin
    assert not scan(b"\x1f\x8b\x08\xe0" + CSV_CLEAN)  # a reserved flag set: no gzip either


# -- zip -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("seekable", [True, False], ids=["sizes", "descriptor"])
def test_zip_entries(method, seekable):
    body = zipped({"readme.txt": b"hello " * 99, "people.csv": UTF16_WITH_SIN, "z": b"bye"}, method, seekable=seekable)
    assert not sin_mod.contains_sin(body)
    assert scan(body)
    assert every_split(body) == []
    clean = zipped({"readme.txt": b"hello " * 99, "people.csv": UTF16_CLEAN, "z": b"bye"}, method, seekable=seekable)
    assert not scan(clean) and not scan(clean, chunk=1)


def test_zip_stored_descriptor_entry_whose_data_holds_a_descriptor_signature():
    fake = b"PK\x07\x08" + b"\xff" * 12  # a descriptor signature whose sizes do not match: data
    body = zipped({"a.bin": fake + b"x" * 51, "b.csv": UTF16_WITH_SIN}, zipfile.ZIP_STORED, seekable=False)
    assert scan(body) and scan(body, chunk=3)
    assert scan(zipped({"a.bin": b"PK\x07", "b.csv": UTF16_WITH_SIN}, zipfile.ZIP_STORED, seekable=False), chunk=1)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("seekable", [True, False], ids=["sizes", "descriptor"])
def test_zip64_entries(method, seekable):
    out = io.BytesIO()
    with zipfile.ZipFile(out if seekable else _Unseekable(out), "w", method) as z:  # 8-byte sizes
        for name, data in (("a.txt", b"first" * 7), ("b.csv", UTF16_WITH_SIN), ("c.txt", b"last")):
            with z.open(name, "w", force_zip64=True) as f:
                f.write(data)
    body = out.getvalue()
    assert not sin_mod.contains_sin(body)
    assert scan(body) and scan(body, chunk=5)


def test_zip_sin_is_not_stitched_across_entries():
    body = zipped({"a.txt": b"call 130 69", "b.txt": b"2 544 now"})
    assert not scan(body)


def _encrypt_flag(body: bytes, entry: int) -> bytes:
    """Set bit 0 (encrypted) of entry ``entry``'s flags, in its local header and in the central directory."""
    out = bytearray(body)
    for sig, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = -1
        for _ in range(entry + 1):
            at = out.index(sig, at + 1)
        out[at + offset] |= 1
    return bytes(out)


@pytest.mark.parametrize("seekable", [True, False], ids=["sizes", "descriptor"])
def test_zip_encrypted_entry_is_refused_or_skipped(seekable):
    body = _encrypt_flag(zipped({"secret.csv": CSV_CLEAN, "b.csv": UTF16_WITH_SIN}, seekable=seekable), 0)
    with pytest.raises(Unscannable, match="zip entry 1 is encrypted") as info:
        scan(body)
    assert "secret" not in str(info.value)  # the entry's name is the customer's
    scanner = BodyScanner(refuse_unscannable=False)
    scanner.feed(body)
    if seekable:  # its size is known: skipped, and the next entry is read
        assert scanner.finish() and scanner.unscanned[0] == 1
    else:  # a deflated entry of unknown size cannot be skipped: the rest is not read
        assert not scanner.finish() and scanner.unscanned == (1, ["zip entry 1 is encrypted"])


def test_zip_entry_in_another_compression_is_unscannable():
    body = zipped({"a.csv": CSV_CLEAN * 20}, zipfile.ZIP_BZIP2)
    with pytest.raises(Unscannable, match="compression method 12"):
        scan(body)
    assert not scan(body, refuse_unscannable=False)


# -- nesting ---------------------------------------------------------------------------------------


def test_zip_in_gzip_and_gzip_in_zip():
    inner = zipped({"people.csv": CSV_WITH_SIN})
    assert scan(gzip.compress(inner)) and every_split(gzip.compress(inner)) == []
    assert scan(zipped({"people.csv.gz": gzip.compress(CSV_WITH_SIN)}, zipfile.ZIP_STORED))
    assert scan(zipped({"a.gz": gzip.compress(CSV_CLEAN), "b.gz": gzip.compress(CSV_WITH_SIN)}, zipfile.ZIP_STORED))
    assert not scan(gzip.compress(zipped({"people.csv": CSV_CLEAN})))


def _nest(body: bytes, levels: int) -> bytes:
    for i in range(levels):
        body = gzip.compress(body) if i % 2 == 0 else zipped({f"level{i}": body})
    return body


def test_depth_up_to_the_limit_is_scanned_past_it_refused():
    assert scan(_nest(CSV_WITH_SIN, 3))
    assert not scan(_nest(CSV_CLEAN, 3))
    with pytest.raises(ScanLimitExceeded, match=r"max_depth \(3\)") as info:
        scan(_nest(CSV_CLEAN, 4))
    assert info.value.limit == "max_depth"
    with pytest.raises(ScanLimitExceeded, match=r"max_depth \(1\)"):
        scan(_nest(CSV_CLEAN, 2), limits=ScanLimits(max_depth=1))


# -- UTF-16 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("bom", [True, False], ids=["bom", "no-bom"])
def test_utf16_text(encoding, bom):
    mark = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}[encoding] if bom else b""
    body = mark + "Nom,NAS\nÉlodie,130 692 544\n".encode(encoding)
    assert not sin_mod.contains_sin(body)
    assert scan(body) and every_split(body) == []
    assert not scan(mark + "Nom,NAS\nÉlodie,130 692 545\n".encode(encoding))


def test_utf16_in_a_zip_and_a_gzip():
    body = "col\n193-456-787\n".encode("utf-16")
    assert scan(zipped({"a.csv": body})) and scan(gzip.compress(body))


def test_binary_with_nuls_is_not_taken_for_text():
    from keys._scan_text import utf16_encoding

    rnd = random.Random(3)
    assert utf16_encoding(rnd.randbytes(512)) is None
    assert utf16_encoding(bytes(512)) is None  # all NULs: neither pattern
    assert utf16_encoding("plain".encode("utf-16-le")) == "utf-16-le"


# -- PDF -------------------------------------------------------------------------------------------


def test_pdf_flate_text():
    body = pdf("Client record\nSIN: 130 692 544\nThank you")
    assert b"/FlateDecode" in body and not sin_mod.contains_sin(body)
    assert scan(body)
    assert every_split(body) == []
    assert not scan(pdf("Client record\nSIN: 130 692 545\nThank you"))


def reportlab_pdf(text: str) -> bytes:
    out = io.BytesIO()
    doc = canvas.Canvas(out)
    for i, line in enumerate(text.splitlines()):
        doc.drawString(72, 720 - 14 * i, line)
    doc.showPage()
    doc.save()
    return out.getvalue()


def test_pdf_ascii85_flate_text_as_reportlab_writes_it():
    body = reportlab_pdf("Client record\nSIN: 130 692 544\nThank you")
    assert b"/ASCII85Decode /FlateDecode" in body and not sin_mod.contains_sin(body)
    assert scan(body)
    assert every_split(body) == []
    assert not scan(reportlab_pdf("Client record\nSIN: 130 692 545\nThank you"))


def test_pdf_image_is_not_inflated():
    from PIL import Image

    doc = FPDF()
    doc.add_page()
    doc.image(Image.new("RGB", (3000, 3000), "white"), w=100)  # 27 MB of pixels, a few KiB deflated
    body = bytes(doc.output())
    assert b"/Subtype /Image" in body and len(body) < 200_000
    scanner = BodyScanner()
    scanner.feed(body)
    assert not scanner.finish() and scanner.expanded < 10_000  # the page's text only, not past the ratio


def test_pdf_uncompressed_and_inside_a_zip():
    assert scan(pdf("SIN 130-692-544", compress=False))
    assert scan(zipped({"statement.pdf": pdf("SIN 130-692-544")}))


def test_pdf_encrypted_is_unscannable():
    body = pdf("SIN 130 692 545", encrypt=True)
    with pytest.raises(Unscannable, match="does not inflate"):
        scan(body)
    scanner = BodyScanner(refuse_unscannable=False)
    scanner.feed(body)
    assert not scanner.finish() and scanner.unscanned[0] >= 1


def test_pdf_other_filter_is_unscannable_an_image_codec_is_not():
    body = pdf("nothing here")
    with pytest.raises(Unscannable, match="/LZWDecode"):
        scan(body.replace(b"/FlateDecode", b"/LZWDecode"))
    with pytest.raises(Unscannable, match="/ASCIIHexDecode /FlateDecode"):
        scan(body.replace(b"/FlateDecode", b"[/ASCIIHexDecode /FlateDecode]"))
    with pytest.raises(Unscannable, match="does not decode"):  # says ASCII85, is not
        scan(body.replace(b"/FlateDecode", b"[/ASCII85Decode /FlateDecode]"))
    assert not scan(body.replace(b"/FlateDecode", b"/DCTDecode"))  # pixels: scanned as the bytes they are


# -- bombs -----------------------------------------------------------------------------------------


def _refused_before_the_end(body: bytes, limit: str, chunk: int = 64 * 1024, **options) -> ScanLimitExceeded:
    scanner = BodyScanner(**options)
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    with pytest.raises(ScanLimitExceeded) as info:
        for i, piece in enumerate(chunks):
            at = i
            scanner.feed(piece)
        scanner.finish()
    assert at < len(chunks) - 1, "refused only at the end"
    assert info.value.limit == limit and limit in info.value.message
    return info.value


def test_bomb_ratio():
    bomb = gzip.compress(bytes(200 * MiB), 9)  # about 1000:1
    _refused_before_the_end(bomb, "max_expansion_ratio", chunk=16 * 1024)
    # A short, very repetitive text is no bomb: the first MiB expands freely.
    assert not scan(gzip.compress(b"a" * (MiB // 2)))


def test_bomb_total():
    text = _text(6 * MiB)
    limits = ScanLimits(max_expanded_bytes=4 * MiB)
    error = _refused_before_the_end(gzip.compress(text), "max_expanded_bytes", chunk=256 * 1024, limits=limits)
    assert str(4 * MiB) in error.message
    assert not scan(gzip.compress(text[: 3 * MiB]), limits=limits)


def test_bomb_nested_zip_of_gzips_counts_every_layer():
    layer = gzip.compress(bytes(8 * MiB), 9)
    body = zipped({f"part{i}.gz": layer for i in range(4)}, zipfile.ZIP_STORED)
    _refused_before_the_end(body, "max_expansion_ratio", chunk=4 * 1024)


def test_bomb_is_decoded_in_bounded_memory():
    bomb = gzip.compress(bytes(64 * MiB), 9)
    limits = ScanLimits(max_expansion_ratio=10**6, max_expanded_bytes=1 << 40)
    tracemalloc.start()
    try:
        assert not scan(bomb, chunk=64 * 1024, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak


# -- the plain path is the plain scanner -----------------------------------------------------------

ALPHABET = st.sampled_from([b"1", b"3", b"0", b"6", b"9", b"2", b"5", b"4", b"4", b" ", b"-", b"a", b"\n", b","])


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=600).map(b"".join), st.lists(st.integers(0, 600), max_size=6))
def test_plain_bodies_find_exactly_what_the_pure_engine_finds(body, cuts):
    saved = sin_mod._engine
    sin_mod._engine = pure_mod.scan
    try:
        reference = sin_mod.contains_sin(body)
    finally:
        sin_mod._engine = saved
    scanner = BodyScanner()
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    for a, b in itertools.pairwise(points):
        scanner.feed(body[a:b])
    assert scanner.finish() == reference


def test_plain_bodies_are_never_decoded():
    scanner = BodyScanner()
    scanner.feed(_text(MiB))
    assert not scanner.finish() and scanner.expanded == 0
