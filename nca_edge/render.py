"""Drawing a CA run the way the article shows it: every alive cell in its class colour.

``frames(grey, labels)`` turns per-step labels [steps, H, W] (-1 = dead) into RGB images:
an alive cell is its class colour (10 colours, one per digit) with the pixel's grey level as
intensity; dead cells are white. ``write_gif`` saves them atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_write

# one colour per class 0..9 (matplotlib's tab10)
PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.float32)


def frames(grey: np.ndarray, labels: np.ndarray, scale: int = 8) -> np.ndarray:
    """grey uint8 [H, W]; labels [steps, H, W] -> uint8 RGB [steps, H*scale, W*scale, 3]."""
    g = (grey.astype(np.float32) / 255.0)[None, ..., None]
    colour = PALETTE[np.clip(labels, 0, 9)]
    white = np.full_like(colour, 255.0)
    img = np.where((labels >= 0)[..., None], white * (1 - g) + colour * g, white)
    img = img.astype(np.uint8)
    return img.repeat(scale, axis=1).repeat(scale, axis=2)


def write_gif(path: str | Path, images: np.ndarray, ms_per_frame: int = 40) -> None:
    from PIL import Image

    pics = [Image.fromarray(f) for f in images]

    def write(tmp: str) -> None:
        pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=ms_per_frame, loop=0)

    atomic_write(path, write)


# The largest image the CA is run on: a grid of up to 1024 x 1024 cells (checked from the image's
# header, before its pixels are decoded).
MAX_IMAGE_PIXELS = 1024 * 1024


def read_grey(path: str | Path) -> np.ndarray:
    """A PNG (or any image PIL reads) as uint8 grey [H, W]; white-on-black like MNIST is expected.
    Its size is checked from the header before any pixel is decoded (at most MAX_IMAGE_PIXELS)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from .errors import NCAEdgeError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise NCAEdgeError(f"{path}: image is {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS:,} a grid may hold")
                return np.asarray(im.convert("L"), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise NCAEdgeError(f"{path}: image has more than the {MAX_IMAGE_PIXELS:,} pixels a grid may hold ({e})") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise NCAEdgeError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
