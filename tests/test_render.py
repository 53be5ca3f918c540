"""Images given to `nca-edge simulate --image`: any file is a grey array or one clear error."""

import numpy as np
import pytest

from nca_edge.errors import NCAEdgeError
from nca_edge.render import MAX_IMAGE_PIXELS, read_grey


def test_a_png_reads_as_grey_bytes(tmp_path):
    from PIL import Image

    Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)).save(tmp_path / "d.png")
    assert np.array_equal(read_grey(tmp_path / "d.png"), np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))


def test_a_huge_image_is_refused_from_its_header_before_decoding(tmp_path):
    """A 20000 x 20000 PNG (a few hundred KB of zeros) would decode to 400 MB."""
    import struct
    import zlib

    w = h = 20000

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = zlib.compress(b"\0" * (w + 1) * 64)  # only the first rows: the header is what matters
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(NCAEdgeError, match="more than the"):
        read_grey(tmp_path / "bomb.png")
    assert w * h > MAX_IMAGE_PIXELS


def test_any_bytes_are_an_image_or_one_clear_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    f = tmp_path / "x.png"

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM"]), st.binary(max_size=200))
    def check(head, body):
        f.write_bytes(head + body)
        try:
            out = read_grey(f)
        except NCAEdgeError:
            return
        assert out.dtype == np.uint8 and out.ndim == 2

    check()
