"""keys.keyring.codec: the one encoding of the keyring state, pinned by the golden file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keys.keyring import LocalKeyring, codec
from keys.provider import Passphrase, ScryptParams

GOLDEN = Path(__file__).parent / "golden" / "keyring_before_links.json"
PASS = Passphrase("correct horse battery staple", ScryptParams.fast())
OTHER = Passphrase("a different passphrase entirely", ScryptParams.fast())


def test_golden_file_decodes_and_re_encodes_byte_for_byte():
    raw = GOLDEN.read_bytes()
    state = codec.decode(raw)
    assert state.kek_current == 2 and state.link is None and set(state.kek_versions) == {2}
    assert len(state.deks) == 3 and len(state.erased) == 1
    assert codec.encode(state) == raw


def test_every_file_the_keyring_writes_round_trips(tmp_path):
    path = tmp_path / "keyring.json"
    ring = LocalKeyring.create(path, PASS)
    ring.get_or_create_dek("alice")
    ring.destroy("bob")
    ring.rotate_kek(OTHER)  # a file with a link
    raw = path.read_bytes()
    state = codec.decode(raw)
    assert state.link is not None and (state.link.old, state.link.new) == (1, 2)
    assert codec.encode(state) == raw
    assert codec.decode(codec.encode(state)) == state


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(extra=1),  # unknown field
        lambda d: d["kek"].update(current=True),  # a bool is not a version
        lambda d: d["kek"]["versions"].update({"02": d["kek"]["versions"]["2"]}),  # non-canonical version key
        lambda d: d["kek"].update(current=3),  # current version missing
        lambda d: d["kek"]["versions"]["2"].pop("scrypt"),  # passphrase without its scrypt cost
        lambda d: d["index_key"].pop("wrapped"),
        lambda d: d["destroyed"].update(x="yesterday"),
    ],
)
def test_anything_else_is_refused(damage):
    doc = json.loads(GOLDEN.read_bytes())
    damage(doc)
    with pytest.raises(ValueError):
        codec.decode(json.dumps(doc).encode())
