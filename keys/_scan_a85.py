"""ASCII85 (``/ASCII85Decode``), streaming, for PDF streams that wrap their Flate data in it.

ReportLab writes its page content as ``/Filter [/ASCII85Decode /FlateDecode]``: text in ``!``..``u``
(five characters for four bytes, ``z`` for four zero bytes, whitespace ignored) ending at ``~>``.
Complete groups are decoded as they arrive (``base64.a85decode``); a group cut by a chunk waits for
the rest. ``feed`` returns None while the data goes on, or the bytes after ``~>``.
"""

from __future__ import annotations

import base64
import binascii

from keys._scan_base import Sink

_WHITESPACE = b" \t\r\n\x0c\x00"


class Ascii85Decoder:
    def __init__(self, out: Sink) -> None:
        self._out = out
        self._pending = b""  # characters of a group not yet complete (or a "~" whose ">" may follow)

    def feed(self, data: bytes | memoryview) -> bytes | None:
        """Raises ``ValueError`` on characters ASCII85 does not have."""
        text = self._pending + bytes(data)
        end = text.find(b"~")
        if end >= 0 and end + 1 == len(text):  # "~" last: its ">" is still to come
            self._pending = text
            return None
        body = (text if end < 0 else text[:end]).translate(None, _WHITESPACE).replace(b"z", b"!!!!!")
        whole = len(body) if end >= 0 else len(body) - len(body) % 5
        try:
            decoded = base64.a85decode(body[:whole])
        except (ValueError, binascii.Error) as exc:
            raise ValueError("not ASCII85") from exc
        if decoded:
            self._out.feed(decoded)
        if end < 0:
            self._pending = body[whole:]
            return None
        self._pending = b""
        return text[end + 2 :] if text[end + 1 : end + 2] == b">" else text[end + 1 :]
