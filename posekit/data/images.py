"""Reading images with one-line errors for missing, empty, corrupt and truncated files."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import DataError

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array (H, W, 3).

    A JPEG must end with its end-of-image marker (trailing whitespace allowed): OpenCV would
    otherwise decode a truncated file into a partly grey image without complaint."""
    if len(data) == 0:
        raise DataError(f"{source}: empty file")
    if data[:2] == _JPEG_SOI and not data.rstrip(b"\x00\r\n\t ").endswith(_JPEG_EOI):
        raise DataError(f"{source}: truncated JPEG (no end-of-image marker)")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise DataError(f"{source}: cannot decode image (corrupt or not an image)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{source}: zero-size image")
    return np.ascontiguousarray(arr[..., ::-1])


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder, not an image") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror})") from None
    return decode_image(data, str(p))
