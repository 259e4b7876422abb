"""The one door every image comes in by: files, uploaded bytes, arrays, PIL images and video
frames (CLI, :class:`posekit.Predictor`, training data, the server).

Before anything is decoded, the size the header declares is checked (:func:`check_size`):

- at most ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`, or ``$POSEKIT_MAX_PIXELS``), so a
  small file that declares a huge picture (a decompression bomb) costs nothing;
- at least :data:`MIN_SIDE` pixels on each side: anything smaller cannot hold a person.

JPEG data is decoded strictly (libjpeg-turbo through ``simplejpeg``): data that ends early or is
corrupt is refused instead of decoding into grey blocks. PNG is read by Pillow after every
chunk's checksum is verified; BMP, WebP and TIFF go through OpenCV (a TIFF with an alpha channel
through Pillow: OpenCV would premultiply it); other formats are refused. EXIF orientation is
applied as Pillow's ``exif_transpose`` does; an alpha channel is dropped, keeping the stored
colour. Every refusal is an :class:`ImageError`, one line naming the source; its ``kind`` says why
(``empty``, ``not_image``, ``too_large``, ``too_small``, ``corrupt``), which the server maps to
HTTP statuses."""
from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import DataError

DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "POSEKIT_MAX_PIXELS"
MIN_SIDE = 16  # pixels: the smallest image side (and person box side) that can hold a person
_EXIF_ORIENTATION = 0x0112
_JPEG_SOI = b"\xff\xd8"
OPENCV_FORMATS = ("BMP", "WEBP", "TIFF")  # PIL's names of the formats decoded with OpenCV


class ImageError(DataError):
    """An image posekit refuses; ``kind`` is one of empty, not_image, too_large, too_small, corrupt."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def max_pixels_setting(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$POSEKIT_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`. Raises DataError for a value that is not a positive integer."""
    if max_pixels is None:
        env = os.environ.get(MAX_PIXELS_ENV, "")
        if not env:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(float(env))
        except ValueError:
            raise DataError(f"${MAX_PIXELS_ENV}={env!r}: expected a number of pixels") from None
    if isinstance(max_pixels, bool) or int(max_pixels) < MIN_SIDE * MIN_SIDE:
        raise DataError(f"the pixel limit must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels!r}")
    return int(max_pixels)


def check_size(width: int, height: int, source: str = "image", max_pixels: int | None = None) -> None:
    """Refuse a declared ``width`` x ``height`` over the pixel limit (``too_large``) or with a side
    under :data:`MIN_SIDE` pixels (``too_small``)."""
    limit = max_pixels_setting(max_pixels)
    if width * height > limit:
        raise ImageError(f"{source}: the image declares {width}x{height} = {width * height:,} pixels; "
                         f"the limit is {limit:,}", "too_large")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{source}: a {width}x{height} image is too small to hold a person "
                         f"(the minimum is {MIN_SIDE} pixels on each side)", "too_small")


def _header(data: bytes, source: str):
    """(format, width, height, EXIF orientation, PIL mode) from the header, without decoding the
    pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL warns above its own limit (posekit's check follows) and
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # on a damaged EXIF
            warnings.simplefilter("ignore", UserWarning)  # block (shown as stored): nothing to print
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                try:
                    orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
                except Exception:  # a damaged EXIF block: show the pixels as stored
                    orientation = 1
                return im.format, w, h, orientation, im.mode
    except UnidentifiedImageError:
        if data[:2] == _JPEG_SOI:
            raise ImageError(f"{source}: truncated or corrupt JPEG (its header is cut short or damaged)",
                             "corrupt") from None
        raise ImageError(f"{source}: not an image posekit can read (JPEG, PNG, BMP, WebP, TIFF)", "not_image") from None
    except Image.DecompressionBombError as e:
        import re

        n = re.search(r"\((\d+) pixels\)", str(e))
        declared = f"{int(n.group(1)):,} pixels" if n else "far more pixels than that"
        raise ImageError(f"{source}: the image declares {declared}; the limit is {max_pixels_setting():,}",
                         "too_large") from None
    except Exception as e:  # a header so broken that the reader gives up
        if data[:2] == _JPEG_SOI:
            raise ImageError(f"{source}: truncated or corrupt JPEG (its header is cut short or damaged)",
                             "corrupt") from None
        raise ImageError(f"{source}: corrupt image header ({type(e).__name__})", "corrupt") from None


UNSUPPORTED_MODES = {"F": "32-bit float", "I": "32-bit integer"}  # PIL modes of pixels posekit does not read


def check_mode(mode: str, source: str = "image") -> None:
    """Refuse pixels of a kind posekit does not read (PIL ``mode`` 'F', 'I': 32-bit float or
    integer samples), a file's or a PIL image's alike, as ``not_image``."""
    if mode in UNSUPPORTED_MODES:
        raise ImageError(f"{source}: {UNSUPPORTED_MODES[mode]} pixels (PIL mode {mode!r}) are not supported; "
                         "convert the image to 8-bit RGB", "not_image")


def from_16bit(samples) -> np.ndarray:
    """16-bit samples as uint8: their top 8 bits, as a 16-bit PNG file is read (grey or colour),
    whether they come in a file, an array or a PIL image."""
    return (np.asarray(samples).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, 3) array, as viewers display the photo."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
           8: lambda a: np.rot90(a, 1)}  # as PIL's ImageOps.exif_transpose (5: transpose, 7: transverse)
    op = ops.get(int(orientation or 1))
    return np.ascontiguousarray(op(img)) if op else img


def _decode_jpeg(data: bytes, source: str, orientation: int) -> np.ndarray:
    import simplejpeg

    try:
        img = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as e:
        msg = str(e)
        if "subsampling" not in msg:  # libjpeg's warnings are errors here: data cut short, corrupt segments
            raise ImageError(f"{source}: truncated or corrupt JPEG ({msg.strip().rstrip('.')})", "corrupt") from None
        # a layout TurboJPEG cannot classify (unusual sampling factors): PIL's libjpeg decodes it
        return _decode_pil(data, source, "truncated or corrupt JPEG")
    return _orient(img, orientation)


def _decode_png(data: bytes, source: str) -> np.ndarray:
    """PNG with every chunk's checksum verified first (PIL's ``verify``): data cut short, even by
    a few bytes of its last compressed chunk, is refused. 16-bit samples keep their top 8 bits."""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grey
                return np.repeat(from_16bit(im)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise ImageError(f"{source}: truncated or corrupt PNG data ({type(e).__name__}: {e})", "corrupt") from None


def _decode_pil(data: bytes, source: str, what: str = "corrupt image data", detail: bool = True) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise ImageError(f"{source}: {what}" + (f" ({type(e).__name__}: {e})" if detail else ""), "corrupt") from None


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence what C libraries print on file descriptor 2 (libtiff's "Read error on strip 0"
    through Pillow): posekit's own one-line error follows. Process-wide for that moment, so held
    under a lock and kept to one decode."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to silence
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def decode_image(data: bytes, source: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Decode encoded image bytes to RGB uint8 (H, W, 3), after the header checks of
    :func:`check_size`. Raises :class:`ImageError` (one line naming ``source``)."""
    if len(data) == 0:
        raise ImageError(f"{source}: empty file", "empty")
    fmt, w, h, orientation, mode = _header(data, source)
    check_size(w, h, source, max_pixels)
    if fmt in OPENCV_FORMATS:  # a 32-bit float or integer TIFF: valid, but not a kind posekit reads
        check_mode(mode, source)
    alpha = "A" in mode or "a" in mode
    if fmt in ("JPEG", "MPO"):  # MPO: a JPEG with more pictures after it (phones, stereo cameras): the first
        img = _decode_jpeg(data, source, orientation)
    elif fmt == "PNG":
        img = _decode_png(data, source)
    elif fmt == "TIFF" and alpha:  # OpenCV's TIFF reader premultiplies by the alpha: PIL drops it
        with _quiet_stderr():
            img = _decode_pil(data, source, "truncated or corrupt TIFF data", detail=False)
    elif fmt in OPENCV_FORMATS:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation
        if bgr is None:  # libpng & co. refuse data cut short or failing its checksums
            raise ImageError(f"{source}: truncated or corrupt {fmt} data", "corrupt")
        img = np.ascontiguousarray(bgr[..., ::-1])
    else:
        raise ImageError(f"{source}: {fmt} images are not supported (JPEG, PNG, BMP, WebP, TIFF)", "not_image")
    if sorted(img.shape[:2]) != sorted((h, w)):
        raise ImageError(f"{source}: decoded {img.shape[1]}x{img.shape[0]} pixels, but the header declares "
                         f"{w}x{h} (corrupt file)", "corrupt")
    return img


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3) through :func:`decode_image`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder, not an image") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror})") from None
    return decode_image(data, str(p), max_pixels)


def as_rgb(image, color: str = "RGB", source: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path, encoded bytes, a PIL image, or a numpy array that
    is RGB (``color="RGB"``) or BGR (``color="BGR"``, as OpenCV reads). Grey (H, W), (H, W, 1) and
    RGBA/BGRA (H, W, 4) arrays are converted; 16-bit ones (uint16 arrays, PIL 'I;16' images) keep
    their top 8 bits, as a 16-bit PNG file does (:func:`from_16bit`). Every kind goes through
    :func:`check_size`, and a PIL image through :func:`check_mode` as a file does.

    Raises DataError / :class:`ImageError` (one line) for anything else."""
    if color not in ("RGB", "BGR"):
        raise DataError(f"color must be 'RGB' or 'BGR', got {color!r}")
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), source, max_pixels)
    if type(image).__module__.startswith("PIL."):
        from PIL import ImageOps

        check_size(*image.size, source, max_pixels)
        check_mode(image.mode, source)
        image = ImageOps.exif_transpose(image)
        sixteen = image.mode in ("I;16", "I;16B", "I;16L", "I;16N")  # 16-bit grey: converted below
        image, color = np.asarray(image if sixteen else image.convert("RGB")), "RGB"
    img = np.asarray(image)
    if img.dtype.kind == "u" and img.dtype.itemsize == 2:  # 16-bit samples, as a 16-bit PNG file's
        img = from_16bit(img)
    if img.dtype != np.uint8:
        raise DataError(f"{source}: image must be a uint8 or uint16 array, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"{source}: image must be (H, W, 3), got shape {img.shape}")
    check_size(img.shape[1], img.shape[0], source, max_pixels)
    return np.ascontiguousarray(img[..., ::-1]) if color == "BGR" else img
