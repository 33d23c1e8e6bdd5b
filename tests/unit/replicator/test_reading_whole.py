"""A small GET is answered in one write: its body is read whole first, and a copy that fails as it
is read is a clean 503, not a cut-off 200."""

import pytest

from keys.stream import DecryptionFailed
from regions import Unavailable
from replicator import errors
from replicator.paths.read import Reading


async def _body(*parts, then=None):
    for part in parts:
        yield part
    if then is not None:
        raise then


async def test_the_whole_body_in_order():
    reading = Reading("v1", "text/plain", 6, _body(b"abc", b"def"))
    assert await reading.whole() == b"abcdef"


@pytest.mark.parametrize("failure", [DecryptionFailed(), Unavailable("gone", region="ca", name="n")])
async def test_a_copy_that_fails_as_it_is_read_is_a_503(failure):
    reading = Reading("v1", "text/plain", 6, _body(b"abc", then=failure))
    with pytest.raises(errors.ServiceUnavailable, match="retry the read"):
        await reading.whole()
