"""Fuzz the image door: mutated example images through ``Predictor.predict(bytes)``, each call timed out.

    python benchmarks/fuzz_inputs.py --n 2000 --seed 0 --timeout 10 --json reports/fuzz_inputs.json

**Inputs.** The bases are the four example JPEGs (``examples/*.jpg``) as shipped, plus OpenCV
re-encodings of each: progressive JPEG, JPEG with restart markers, PNG, BMP, lossless WebP
(VP8L) and lossy WebP (VP8) -- 28 files. Case ``i`` of seed ``s`` is drawn from
``numpy.random.default_rng([s, i])`` alone (:func:`make_case`), so any case can be regenerated
from (seed, index) without the cases before it. Its mutation kind is one of:

- ``bitflip``: 1-50 random bit flips, in the header region or the body;
- ``overwrite`` / ``insert`` / ``delete``: 1-16 bytes overwritten, 1-64 inserted or deleted
  (random bytes, zeros, 0xFF runs or fake markers), in the header region or the body;
- ``truncate``: the file cut at a random point (a quarter of the cuts fall in the header region,
  two fifths anywhere in the image data, the rest in the last 64 bytes before the end marker,
  where the decoders' end-of-data handling lives), then, for JPEG and PNG, half the time the end
  marker re-appended (JPEG ``FF D9``, PNG the 12-byte IEND chunk);
- ``header_field``: a header field set to an edge value: JPEG SOFn width/height/precision, PNG
  IHDR width/height/bit depth/colour type/interlace (CRC recomputed, so the header stays valid),
  BMP width/height/bit count, WebP VP8/VP8L width/height;
- ``segments``: JPEG segments / PNG chunks duplicated, swapped, dropped, moved; a second SOF or
  IHDR; a scan duplicated; restart markers injected; IDAT split and shuffled; unknown chunks (with
  valid CRCs) inserted; an end marker (EOI / IEND) inserted early;
- ``oddity``: generated files: 0 bytes, 1 byte, garbage with or without a format's magic, a
  header alone, huge declared sizes (over, just over and just under the 50 Mpx limit, with a few
  KB of data), a valid 12 Mpx JPEG, grey / RGBA / 16-bit / palette PNG, grey and CMYK JPEG, JPEG
  with an EXIF orientation, TIFF, and tiny images (1x1 to 17x17 and thin strips) in every format;
- ``stack``: 2-4 bit-flip / overwrite / insert / delete mutations in a row.

**Outcomes.** Every case is one ``Predictor("posekit-lsp").predict(data)`` call in a worker
process (``spawn`` context; the worker loads the Predictor once, ``refine`` at the model's
default). A call not answered within ``--timeout`` seconds is a **hang** (the worker is killed and
restarted); a worker that dies (segfault, abort) is a **crash**; an exception that is not a
``PosekitError`` is a **non-posekit crash** (type and message recorded); a ``PosekitError`` is a
**refusal**, counted by ``ImageError.kind`` (``other`` for the other PosekitErrors); a returned
``Pose`` is a **success**.

**Truncation check.** A ``truncate`` case counts as *truncated* (``Case.truncated``) when its cut
point lies strictly before the base file's end offset, so at least one byte that precedes the end
of the image data is gone (whether or not the end marker was re-appended after the cut):

- JPEG: the offset of the file's final ``FF D9`` (EOI) marker: every byte before it is header or
  entropy-coded data;
- PNG: the offset of the IEND chunk (its length field): a cut there loses the last IDAT's CRC at
  least, 5 to 8 bytes before it the zlib Adler-32 as well, further back compressed pixel data;
- BMP (no end marker): the end of the last pixel of the last stored row (the row padding after it
  excluded, since it carries nothing);
- WebP (no end marker): the end of the VP8 / VP8L chunk payload (its pad byte excluded).

Cuts at or after that offset (the end marker cut in half, or only padding lost) are not counted;
neither are ``segments`` cases with an early end marker (reported by operation instead). What a
truncation lost is recorded as ``lost``: ``header`` (cut before the first byte of pixel data),
``image data``, or for PNG ``zlib checksum`` / ``chunk CRC``. A truncated case must never succeed:
``successes_on_truncated`` lists those that did, with the number of pixels that differ from the
intact file's.

The bar: 0 non-posekit crashes, 0 worker crashes, 0 hangs, 0 successes on truncated data."""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
KINDS = ("bitflip", "overwrite", "insert", "delete", "truncate", "header_field", "segments", "oddity", "stack")
WEIGHTS = (0.14, 0.09, 0.08, 0.08, 0.22, 0.12, 0.12, 0.10, 0.05)
FORMATS = ("jpeg", "jpeg_progressive", "jpeg_rst", "png", "bmp", "webp", "webp_lossy")
FORMAT_WEIGHTS = (0.26, 0.12, 0.10, 0.20, 0.12, 0.10, 0.10)
PNG_SIG = b"\x89PNG\r\n\x1a\n"
EOI = b"\xff\xd9"
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
ENCODINGS = {  # format: (extension, OpenCV imwrite flags); "jpeg" is the example file itself
    "jpeg_progressive": (".jpg", ("IMWRITE_JPEG_QUALITY", 90, "IMWRITE_JPEG_PROGRESSIVE", 1)),
    "jpeg_rst": (".jpg", ("IMWRITE_JPEG_QUALITY", 90, "IMWRITE_JPEG_RST_INTERVAL", 4)),
    "png": (".png", ()),
    "bmp": (".bmp", ()),
    "webp": (".webp", ()),  # OpenCV's default quality (100) writes lossless VP8L
    "webp_lossy": (".webp", ("IMWRITE_WEBP_QUALITY", 80)),
}


# ------------------------------------------------------------------------------------ file layout

def jpeg_segments(d: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment of a well-formed JPEG; an SOS segment includes its
    entropy-coded data (with any restart markers), the last entry is EOI."""
    segs, i = [(0xD8, 0, 2)], 2
    while i + 1 < len(d):
        if d[i] != 0xFF:
            raise ValueError(f"no marker at offset {i}")
        m = d[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == 0xD9:
            segs.append((m, i, i + 2))
            break
        j = i + 2 + int.from_bytes(d[i + 2:i + 4], "big")
        if m == 0xDA:
            k = j
            while True:
                k = d.find(b"\xff", k)
                if k < 0 or k + 1 >= len(d):
                    k = len(d)
                    break
                n = d[k + 1]
                if n == 0xFF:
                    k += 1
                elif n == 0x00 or 0xD0 <= n <= 0xD7:
                    k += 2
                else:
                    break
            j = k
        segs.append((m, i, j))
        i = j
    return segs


def png_chunks(d: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of each chunk of a PNG (start at the length field, end after the CRC)."""
    out, i = [], 8
    while i + 8 <= len(d):
        n = int.from_bytes(d[i:i + 4], "big")
        out.append((d[i + 4:i + 8], i, i + 12 + n))
        i += 12 + n
    return out


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def set_ihdr(d: bytes, **fields) -> bytes:
    """A PNG with IHDR fields (width, height, bit_depth, color_type, interlace) replaced and the CRC recomputed."""
    w, h, bd, ct, cm, fm, il = struct.unpack(">IIBBBBB", d[16:29])
    w, h = fields.get("width", w), fields.get("height", h)
    bd, ct, il = fields.get("bit_depth", bd), fields.get("color_type", ct), fields.get("interlace", il)
    body = struct.pack(">IIBBBBB", w & 0xFFFFFFFF, h & 0xFFFFFFFF, bd, ct, cm, fm, il)
    return d[:8] + png_chunk(b"IHDR", body) + d[33:]


def sof_offset(d: bytes) -> int:
    return next(s for m, s, _ in jpeg_segments(d) if m in SOF_MARKERS)


def set_sof(d: bytes, width=None, height=None, precision=None) -> bytes:
    b, s = bytearray(d), sof_offset(d)
    if precision is not None:
        b[s + 4] = precision
    if height is not None:
        b[s + 5:s + 7] = int(height).to_bytes(2, "big")
    if width is not None:
        b[s + 7:s + 9] = int(width).to_bytes(2, "big")
    return bytes(b)


@dataclass
class Base:
    """One intact file: ``end`` is the truncation check's end offset (see the module docstring),
    ``header_end`` the offset of the first byte of pixel data, ``marker`` the end marker."""

    name: str
    fmt: str
    data: bytes
    end: int
    header_end: int
    marker: bytes
    source: str  # the example image it was made from

    def expr(self) -> str:
        """A Python expression that makes these bytes (for reproducers; needs cv2 for re-encodings)."""
        if self.fmt == "jpeg":
            return f'open("examples/{self.source}", "rb").read()'
        ext, flags = ENCODINGS[self.fmt]
        fl = ", [" + ", ".join(f"cv2.{f}" if isinstance(f, str) else str(f) for f in flags) + "]" if flags else ""
        return f'cv2.imencode("{ext}", cv2.imread("examples/{self.source}"){fl})[1].tobytes()'


def _layout(fmt: str, d: bytes) -> tuple[int, int, bytes]:
    """(end, header_end, marker) of an intact file."""
    if fmt.startswith("jpeg"):
        sos = next((s, e) for m, s, e in jpeg_segments(d) if m == 0xDA)
        return d.rfind(EOI), sos[0] + 2 + int.from_bytes(d[sos[0] + 2:sos[0] + 4], "big"), EOI
    if fmt == "png":
        chunks = png_chunks(d)
        iend = next(s for t, s, _ in chunks if t == b"IEND")
        idat = next(s for t, s, _ in chunks if t == b"IDAT")
        return iend, idat + 8, d[iend:]
    if fmt == "bmp":
        off, = struct.unpack("<I", d[10:14])
        w, h = struct.unpack("<ii", d[18:26])
        bpp, = struct.unpack("<H", d[28:30])
        stride = (w * bpp + 31) // 32 * 4
        return off + (abs(h) - 1) * stride + (w * bpp + 7) // 8, off, b""
    if fmt.startswith("webp"):
        n, = struct.unpack("<I", d[16:20])
        return 20 + n, 20 + (5 if d[12:16] == b"VP8L" else 10), b""
    raise ValueError(fmt)


@lru_cache(maxsize=4)
def _load_bases(examples: str) -> tuple[Base, ...]:
    import cv2

    out = []
    for path in sorted(Path(examples).glob("*.jpg")):
        raw = path.read_bytes()
        bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        for fmt in FORMATS:
            if fmt == "jpeg":
                d = raw
            else:
                ext, flags = ENCODINGS[fmt]
                ok, enc = cv2.imencode(ext, bgr, [getattr(cv2, f) if isinstance(f, str) else f for f in flags])
                assert ok, (path, fmt)
                d = enc.tobytes()
            end, header_end, marker = _layout(fmt, d)
            out.append(Base(f"{path.stem}.{fmt}", fmt, d, end, header_end, marker, path.name))
    if not out:
        raise SystemExit(f"no example images (*.jpg) in {examples}")
    return tuple(out)


def load_bases(examples: str | os.PathLike = EXAMPLES) -> tuple[Base, ...]:
    """The 28 base files (4 examples x 7 formats), in a fixed order."""
    return _load_bases(str(examples))


# -------------------------------------------------------------------------------------- mutations

@dataclass
class Case:
    index: int
    kind: str
    params: dict
    data: bytes
    base: str | None = None  # Base.name, None for generated oddities
    truncated: bool = False  # a truncation that lost bytes before the end offset (module docstring)
    lost: str | None = None  # what that truncation lost
    extra: dict = field(default_factory=dict)


def _int(x) -> int:
    return int(x)


def _pick_base(rng, bases, fmts=None) -> Base:
    fmts = fmts or FORMATS
    w = np.array([FORMAT_WEIGHTS[FORMATS.index(f)] for f in fmts])
    fmt = fmts[_int(rng.choice(len(fmts), p=w / w.sum()))]
    cands = [b for b in bases if b.fmt == fmt]
    return cands[_int(rng.integers(len(cands)))]


def _region(rng, base: Base, length: int | None = None) -> tuple[str, int, int]:
    """("header" | "body", lo, hi): where a mutation lands."""
    n = len(base.data) if length is None else length
    if rng.random() < 0.5:
        return "header", 0, max(1, min(base.header_end, n))
    return "body", min(base.header_end, n - 1), n


def _fill(rng, n: int) -> tuple[str, bytes]:
    how = ("random", "zeros", "ff", "marker")[_int(rng.integers(4))]
    if how == "random":
        return how, rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    if how == "zeros":
        return how, bytes(n)
    if how == "ff":
        return how, b"\xff" * n
    b = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    b[0::2] = b"\xff" * len(b[0::2])
    return how, bytes(b)


def _byte_mutation(rng, base: Base, d: bytes, op: str) -> tuple[bytes, dict]:
    region, lo, hi = _region(rng, base, len(d))
    if op == "bitflip":
        n = _int(rng.integers(1, 51))
        pos = [_int(p) for p in rng.integers(lo, hi, n)]
        bits = [_int(b) for b in rng.integers(0, 8, n)]
        b = bytearray(d)
        for p, k in zip(pos, bits):
            b[p] ^= 1 << k
        return bytes(b), {"op": op, "region": region, "flips": n, "positions": pos, "bits": bits}
    off = _int(rng.integers(lo, hi))
    if op == "overwrite":
        n = _int(rng.integers(1, 17))
        how, fill = _fill(rng, n)
        return d[:off] + fill + d[off + n:], {"op": op, "region": region, "offset": off, "length": n, "fill": how}
    if op == "insert":
        n = _int(rng.integers(1, 65))
        how, fill = _fill(rng, n)
        return d[:off] + fill + d[off:], {"op": op, "region": region, "offset": off, "length": n, "fill": how}
    if op == "delete":
        n = _int(rng.integers(1, 65))
        return d[:off] + d[off + n:], {"op": op, "region": region, "offset": off, "length": n}
    raise ValueError(op)


def _truncate(rng, base: Base) -> tuple[bytes, dict, bool, str | None]:
    d, end, he = base.data, base.end, base.header_end
    u = rng.random()
    if u < 0.25:
        where, cut = "header", _int(rng.integers(1, he))
    elif u < 0.65:
        where, cut = "data", _int(rng.integers(he, end))
    else:
        where, cut = "tail", end - _int(rng.integers(-1, 65))  # -1: the end marker cut in half
    cut = min(max(cut, 1), len(d) - 1)
    append = bool(base.marker) and bool(rng.random() < 0.5)
    out = d[:cut] + (base.marker if append else b"")
    truncated = cut < end
    lost = None
    if truncated:
        lost = "header" if cut < he else "image data"
        if base.fmt == "png" and cut >= end - 4:
            lost = "chunk CRC"
        elif base.fmt == "png" and cut >= end - 8:
            lost = "zlib checksum"
    params = {"op": "truncate", "where": where, "cut": cut, "end": end, "lost_bytes": max(0, end - cut),
              "append_marker": append}
    return out, params, truncated, lost


EDGE_SIDES = ("zero", "one", "fifteen", "sixteen", "minus_one", "plus_one", "half", "double", "max", "random")


def _side(rng, orig: int, maxv: int) -> tuple[str, int]:
    how = EDGE_SIDES[_int(rng.integers(len(EDGE_SIDES)))]
    v = {"zero": 0, "one": 1, "fifteen": 15, "sixteen": 16, "minus_one": orig - 1, "plus_one": orig + 1,
         "half": orig // 2, "double": orig * 2, "max": maxv, "random": _int(rng.integers(1, maxv + 1))}[how]
    return how, int(min(max(v, 0), maxv))


def _header_field(rng, base: Base) -> tuple[bytes, dict]:
    d = base.data
    if base.fmt.startswith("jpeg"):
        s = sof_offset(d)
        h0, w0 = int.from_bytes(d[s + 5:s + 7], "big"), int.from_bytes(d[s + 7:s + 9], "big")
        f = ("width", "height", "both", "precision")[_int(rng.integers(4))]
        if f == "precision":
            v = (0, 1, 12, 16, 255)[_int(rng.integers(5))]
            return set_sof(d, precision=v), {"op": "jpeg_sof", "field": f, "value": v}
        hw, w = _side(rng, w0, 65535)
        hh, h = _side(rng, h0, 65535)
        w, h = (w, h0) if f == "width" else (w0, h) if f == "height" else (w, h)
        return set_sof(d, width=w, height=h), {"op": "jpeg_sof", "field": f, "width": w, "height": h,
                                               "orig": [w0, h0], "how": [hw, hh]}
    if base.fmt == "png":
        w0, h0 = struct.unpack(">II", d[16:24])
        f = ("width", "height", "both", "bit_depth", "color_type", "interlace")[_int(rng.integers(6))]
        if f in ("bit_depth", "color_type", "interlace"):
            choices = {"bit_depth": (1, 2, 4, 16, 0, 3), "color_type": (0, 3, 4, 6, 1), "interlace": (1, 2)}[f]
            v = choices[_int(rng.integers(len(choices)))]
            return set_ihdr(d, **{f: v}), {"op": "png_ihdr", "field": f, "value": v}
        maxv = (2**31 - 1) if rng.random() < 0.8 else 2**32 - 1  # PNG's limit is 2^31-1; beyond it is invalid
        hw, w = _side(rng, w0, maxv)
        hh, h = _side(rng, h0, maxv)
        w, h = (w, h0) if f == "width" else (w0, h) if f == "height" else (w, h)
        return set_ihdr(d, width=w, height=h), {"op": "png_ihdr", "field": f, "width": w, "height": h,
                                                "orig": [w0, h0], "how": [hw, hh]}
    if base.fmt == "bmp":
        w0, h0 = struct.unpack("<ii", d[18:26])
        f = ("width", "height", "both", "negative_height", "bit_count", "compression")[_int(rng.integers(6))]
        b = bytearray(d)
        if f == "bit_count":
            v = (0, 1, 4, 8, 16, 32, 64)[_int(rng.integers(7))]
            b[28:30] = struct.pack("<H", v)
            return bytes(b), {"op": "bmp_header", "field": f, "value": v}
        if f == "compression":
            v = (1, 2, 3, 4, 5, 99)[_int(rng.integers(6))]
            b[30:34] = struct.pack("<I", v)
            return bytes(b), {"op": "bmp_header", "field": f, "value": v}
        if f == "negative_height":
            b[22:26] = struct.pack("<i", -h0)
            return bytes(b), {"op": "bmp_header", "field": f, "height": -h0}
        hw, w = _side(rng, w0, 2**31 - 1)
        hh, h = _side(rng, h0, 2**31 - 1)
        w, h = (w, h0) if f == "width" else (w0, h) if f == "height" else (w, h)
        b[18:26] = struct.pack("<ii", w, h)
        return bytes(b), {"op": "bmp_header", "field": f, "width": w, "height": h, "orig": [w0, h0], "how": [hw, hh]}
    # WebP
    b = bytearray(d)
    f = ("width", "height", "both", "riff_size")[_int(rng.integers(4))]
    if f == "riff_size":
        v = (0, 4, len(d) - 9, len(d), 2**32 - 1)[_int(rng.integers(5))]
        b[4:8] = struct.pack("<I", v)
        return bytes(b), {"op": "webp_header", "field": f, "value": v}
    if d[12:16] == b"VP8L":
        bits, = struct.unpack("<I", d[21:25])
        w0, h0 = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        hw, w = _side(rng, w0, 16384)
        hh, h = _side(rng, h0, 16384)
        w, h = (w, h0) if f == "width" else (w0, h) if f == "height" else (w, h)
        bits = (bits & ~0xFFFFFFF) | ((max(w, 1) - 1) & 0x3FFF) | (((max(h, 1) - 1) & 0x3FFF) << 14)
        b[21:25] = struct.pack("<I", bits)
    else:  # VP8: 3-byte frame tag, 9d 01 2a, then 14-bit width and height (2 scale bits each)
        w0, h0 = (x & 0x3FFF for x in struct.unpack("<HH", d[26:30]))
        hw, w = _side(rng, w0, 16383)
        hh, h = _side(rng, h0, 16383)
        w, h = (w, h0) if f == "width" else (w0, h) if f == "height" else (w, h)
        b[26:30] = struct.pack("<HH", w & 0x3FFF, h & 0x3FFF)
    return bytes(b), {"op": "webp_header", "field": f, "width": w, "height": h, "orig": [w0, h0], "how": [hw, hh]}


def _segments(rng, base: Base) -> tuple[bytes, dict]:
    d = base.data
    if base.fmt.startswith("jpeg"):
        segs = jpeg_segments(d)
        parts = [d[s:e] for _, s, e in segs]
        names = [f"{m:02X}" for m, _, _ in segs]
        mid = list(range(1, len(parts) - 1))  # not SOI, not EOI
        scans = [i for i, (m, _, _) in enumerate(segs) if m == 0xDA]
        op = ("dup", "swap", "drop", "move", "dup_scan", "second_sof", "rst_inject", "early_eoi")[_int(rng.integers(8))]
        p = {"op": f"jpeg_{op}"}
        if op == "dup":
            i = mid[_int(rng.integers(len(mid)))]
            parts.insert(i + 1, parts[i])
            p.update(segment=i, marker=names[i])
        elif op == "swap":
            i, j = (mid[_int(k)] for k in rng.choice(len(mid), 2, replace=False))
            parts[i], parts[j] = parts[j], parts[i]
            p.update(segments=[i, j], markers=[names[i], names[j]])
        elif op == "drop":
            i = mid[_int(rng.integers(len(mid)))]
            del parts[i]
            p.update(segment=i, marker=names[i])
        elif op == "move":
            i = mid[_int(rng.integers(len(mid)))]
            seg = parts.pop(i)
            j = _int(rng.integers(1, len(parts)))
            parts.insert(j, seg)
            p.update(segment=i, marker=names[i], to=j)
        elif op == "dup_scan":
            i = scans[_int(rng.integers(len(scans)))]
            parts.insert(len(parts) - 1, parts[i])
            p.update(segment=i)
        elif op == "second_sof":
            i = next(k for k, (m, _, _) in enumerate(segs) if m in SOF_MARKERS)
            s = parts[i]
            hw, w = _side(rng, int.from_bytes(s[7:9], "big"), 65535)
            hh, h = _side(rng, int.from_bytes(s[5:7], "big"), 65535)
            extra = s[:5] + h.to_bytes(2, "big") + w.to_bytes(2, "big") + s[9:]
            parts.insert(scans[0], extra)
            p.update(width=w, height=h)
        else:  # rst_inject / early_eoi: markers inside the entropy-coded data of a scan
            i = scans[_int(rng.integers(len(scans)))]
            s = parts[i]
            hdr = 2 + int.from_bytes(s[2:4], "big")
            k = _int(rng.integers(1, 4)) if op == "rst_inject" else 1
            offs = sorted(_int(o) for o in rng.integers(hdr, len(s), k))
            b = bytearray(s)
            for n, o in enumerate(reversed(offs)):
                b[o:o] = bytes([0xFF, 0xD0 + (n % 8)]) if op == "rst_inject" else EOI
            parts[i] = bytes(b)
            p.update(segment=i, offsets=offs)
        return b"".join(parts), p
    # PNG
    chunks = png_chunks(d)
    parts = [d[s:e] for _, s, e in chunks]
    types = [t.decode("latin-1") for t, _, _ in chunks]
    op = ("dup", "swap", "drop", "move", "second_ihdr", "split_idat", "unknown_chunk", "early_iend")[_int(rng.integers(8))]
    p = {"op": f"png_{op}"}
    if op == "dup":
        i = _int(rng.integers(len(parts)))
        parts.insert(i + 1, parts[i])
        p.update(chunk=i, type=types[i])
    elif op == "swap":
        i, j = (_int(k) for k in rng.choice(len(parts), 2, replace=False))
        parts[i], parts[j] = parts[j], parts[i]
        p.update(chunks=[i, j], types=[types[i], types[j]])
    elif op == "drop":
        i = _int(rng.integers(len(parts)))
        del parts[i]
        p.update(chunk=i, type=types[i])
    elif op == "move":
        i = _int(rng.integers(len(parts)))
        c = parts.pop(i)
        j = _int(rng.integers(0, len(parts) + 1))
        parts.insert(j, c)
        p.update(chunk=i, type=types[i], to=j)
    elif op == "second_ihdr":
        w0, h0 = struct.unpack(">II", d[16:24])
        hw, w = _side(rng, w0, 2**31 - 1)
        hh, h = _side(rng, h0, 2**31 - 1)
        parts.insert(1, png_chunk(b"IHDR", struct.pack(">II", w, h) + d[24:29]))
        p.update(width=w, height=h)
    elif op in ("split_idat", "early_iend"):
        i = types.index("IDAT")
        body = parts[i][8:-4]
        k = _int(rng.integers(2, 6)) if op == "split_idat" else 2
        cuts = sorted({_int(c) for c in rng.integers(1, len(body), k - 1)})
        pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
        order = list(range(len(pieces)))
        if op == "split_idat" and rng.random() < 0.5:
            order = [_int(o) for o in rng.permutation(len(pieces))]
        new = [png_chunk(b"IDAT", pieces[o]) for o in order]
        if op == "early_iend":
            new.insert(1, png_chunk(b"IEND", b""))
        parts[i:i + 1] = new
        p.update(pieces=len(pieces), cuts=cuts, order=order)
    else:  # unknown_chunk: ancillary (may be ignored) or critical (must be refused), valid CRC
        ctype = (b"zzAb", b"teXt", b"ABCD")[_int(rng.integers(3))]
        body = rng.integers(0, 256, _int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        j = _int(rng.integers(1, len(parts)))
        parts.insert(j, png_chunk(ctype, body))
        p.update(type=ctype.decode(), at=j, length=len(body))
    return PNG_SIG + b"".join(parts), p


ODDITIES = ("empty", "one_byte", "random_bytes", "magic_random", "jpeg_header_only", "png_header_only",
            "huge_jpeg", "huge_png", "huge_bmp", "huge_webp", "large_valid_jpeg", "grey_png", "rgba_png",
            "png16_rgb", "png16_grey", "palette_png", "grey_jpeg", "cmyk_jpeg", "exif_jpeg", "tiff", "tiny")
TINY_SIZES = ((1, 1), (2, 3), (8, 8), (15, 15), (15, 64), (64, 15), (16, 16), (17, 17), (16, 1000), (1000, 16))
HUGE_SIDES = {"over": (65535, 65535), "just_over": (7072, 7072), "just_under": (7071, 7071), "long": (1, 60000)}


@lru_cache(maxsize=1)
def _person_bgr() -> np.ndarray:
    import cv2

    return cv2.imread(str(sorted(EXAMPLES.glob("*.jpg"))[0]))


def _pil_bytes(im, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _oddity(rng, bases) -> tuple[bytes, dict]:
    import cv2

    op = ODDITIES[_int(rng.integers(len(ODDITIES)))]
    p: dict = {"op": op}
    bgr = _person_bgr()
    if op == "empty":
        return b"", p
    if op == "one_byte":
        v = _int(rng.integers(256))
        return bytes([v]), {**p, "value": v}
    if op == "random_bytes":
        n = _int(rng.integers(2, 4097))
        return rng.integers(0, 256, n, dtype=np.uint8).tobytes(), {**p, "length": n}
    if op == "magic_random":
        magics = {"jpeg": b"\xff\xd8\xff", "png": PNG_SIG, "bmp": b"BM", "webp": b"RIFF\x00\x10\x00\x00WEBPVP8 ",
                  "tiff": b"II*\x00", "gif": b"GIF89a"}
        name = sorted(magics)[_int(rng.integers(len(magics)))]
        n = _int(rng.integers(0, 2049))
        return magics[name] + rng.integers(0, 256, n, dtype=np.uint8).tobytes(), {**p, "magic": name, "length": n}
    if op == "jpeg_header_only":
        b = _pick_base(rng, bases, ("jpeg",))
        return b.data[:b.header_end] + EOI, {**p, "base": b.name}
    if op == "png_header_only":
        b = _pick_base(rng, bases, ("png",))
        return b.data[:33] + png_chunk(b"IEND", b""), {**p, "base": b.name}
    if op.startswith("huge_"):
        which = sorted(HUGE_SIDES)[_int(rng.integers(len(HUGE_SIDES)))]
        w, h = HUGE_SIDES[which]
        p.update(size=which, width=w, height=h)
        if op == "huge_jpeg":
            b = _pick_base(rng, bases, ("jpeg", "jpeg_progressive"))
            return set_sof(b.data, width=w, height=h), {**p, "base": b.name}
        if op == "huge_png":
            if which == "over":
                w = h = 2**31 - 1
                p.update(width=w, height=h)
            b = _pick_base(rng, bases, ("png",))
            return set_ihdr(b.data, width=w, height=h), {**p, "base": b.name}
        if op == "huge_bmp":
            b = _pick_base(rng, bases, ("bmp",))
            d = bytearray(b.data)
            d[18:26] = struct.pack("<ii", w, h)
            return bytes(d), {**p, "base": b.name}
        b = _pick_base(rng, bases, ("webp",))  # VP8L: at most 16384 a side
        w, h = min(w, 16384), min(h, 16384)
        d = bytearray(b.data)
        bits, = struct.unpack("<I", d[21:25])
        d[21:25] = struct.pack("<I", (bits & ~0xFFFFFFF) | (w - 1) | ((h - 1) << 14))
        return bytes(d), {**p, "base": b.name, "width": w, "height": h}
    if op == "large_valid_jpeg":  # 12 Mpx, under the limit: must decode
        big = cv2.resize(bgr, (4000, 3000), interpolation=cv2.INTER_LINEAR)
        return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes(), {**p, "width": 4000, "height": 3000}
    if op == "grey_png":
        return cv2.imencode(".png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))[1].tobytes(), p
    if op == "rgba_png":
        a = rng.integers(0, 256, bgr.shape[:2], dtype=np.uint8)
        return cv2.imencode(".png", np.dstack([bgr, a]))[1].tobytes(), p
    if op == "png16_rgb":
        return cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes(), p
    if op == "png16_grey":
        return cv2.imencode(".png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)[1].tobytes(), p
    from PIL import Image

    rgb = Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))
    if op == "palette_png":
        return _pil_bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), p
    if op == "grey_jpeg":
        return cv2.imencode(".jpg", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))[1].tobytes(), p
    if op == "cmyk_jpeg":
        return _pil_bytes(rgb.convert("CMYK"), "JPEG", quality=90), p
    if op == "exif_jpeg":
        o = _int(rng.integers(0, 10))  # 0 and 9 are out of range
        exif = Image.Exif()
        exif[0x0112] = o
        return _pil_bytes(rgb, "JPEG", quality=90, exif=exif.tobytes()), {**p, "orientation": o}
    if op == "tiff":
        return cv2.imencode(".tiff", bgr)[1].tobytes(), p
    # tiny
    w, h = TINY_SIZES[_int(rng.integers(len(TINY_SIZES)))]
    ext = (".jpg", ".png", ".bmp", ".webp")[_int(rng.integers(4))]
    small = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.imencode(ext, small)[1].tobytes(), {**p, "width": w, "height": h, "ext": ext}


def make_case(bases, seed: int, index: int) -> Case:
    """Case ``index`` of ``seed``: drawn from ``numpy.random.default_rng([seed, index])`` alone."""
    rng = np.random.default_rng([int(seed), int(index)])
    kind = KINDS[_int(rng.choice(len(KINDS), p=WEIGHTS))]
    if kind == "oddity":
        data, params = _oddity(rng, bases)
        return Case(index, kind, params, data, base=params.get("base"))
    fmts = ("jpeg", "jpeg_progressive", "jpeg_rst", "png") if kind == "segments" else None
    base = _pick_base(rng, bases, fmts)
    if kind == "truncate":
        data, params, truncated, lost = _truncate(rng, base)
        return Case(index, kind, params, data, base.name, truncated, lost)
    if kind == "header_field":
        data, params = _header_field(rng, base)
    elif kind == "segments":
        data, params = _segments(rng, base)
    elif kind == "stack":
        data, steps = base.data, []
        for _ in range(_int(rng.integers(2, 5))):
            op = ("bitflip", "overwrite", "insert", "delete")[_int(rng.integers(4))]
            data, sp = _byte_mutation(rng, base, data, op)
            steps.append(sp)
        params = {"op": "stack", "steps": steps}
    else:
        data, params = _byte_mutation(rng, base, base.data, kind)
    return Case(index, kind, params, data, base.name)


def reproducer(case: Case, seed: int, bases) -> str:
    """Three lines of Python that rebuild the case's bytes and make the call."""
    head = "import cv2, posekit" if case.base and not case.base.endswith(".jpeg") else "import posekit"
    by = {b.name: b for b in bases}
    if case.kind == "truncate" and case.base in by:
        b, q = by[case.base], case.params
        tail = f" + d[{b.end}:]" if q["append_marker"] and b.fmt == "png" else ' + b"\\xff\\xd9"' if q["append_marker"] else ""
        return (f"{head}\nd = {b.expr()}  # {len(b.data)} bytes, end offset {b.end}\n"
                f'posekit.Predictor("posekit-lsp").predict(d[:{q["cut"]}]{tail})')
    return ('import runpy, posekit\nfz = runpy.run_path("benchmarks/fuzz_inputs.py"); '
            f'case = fz["make_case"](fz["load_bases"](), seed={seed}, index={case.index})\n'
            'posekit.Predictor("posekit-lsp").predict(case.data)')


# ----------------------------------------------------------------------------------------- worker

def _worker(conn, model: str, threads: int, log_path: str) -> None:
    """Load the Predictor once, then answer (index, bytes) messages until None."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 2)  # libpng / OpenCV chatter goes to the log, kept for crash reports
    t0 = time.perf_counter()
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    from posekit import Predictor
    from posekit.data.images import ImageError
    from posekit.errors import PosekitError
    from posekit.predict import Pose

    pred = Predictor(model)
    conn.send(("ready", {"load_seconds": time.perf_counter() - t0, "refine": pred.refine, "device": str(pred.device)}))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        index, data = msg
        t = time.perf_counter()
        try:
            pose = pred.predict(data)
            if isinstance(pose, Pose):
                out = ("success", {"width": int(pose.width), "height": int(pose.height), "score": float(pose.score)})
            else:
                out = ("error", {"type": "bad return", "error": f"predict returned {type(pose).__name__}"})
        except PosekitError as e:
            kind = e.kind if isinstance(e, ImageError) else "other"
            out = ("refusal", {"kind": kind, "type": type(e).__name__, "error": str(e)[:300]})
        except BaseException as e:  # noqa: BLE001 -- everything else is the finding
            out = ("error", {"type": f"{type(e).__module__}.{type(e).__qualname__}", "error": str(e)[:500],
                             "traceback": traceback.format_exc()[-1500:]})
        conn.send((index, out, time.perf_counter() - t))


class Runner:
    """A worker process that runs one call at a time, killed and restarted on a hang or a death."""

    def __init__(self, model: str, threads: int, log_path: str):
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.model, self.threads, self.log_path = model, threads, log_path
        self.proc = self.conn = None
        self.starts, self.load_seconds, self.info = 0, [], {}

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.model, self.threads, self.log_path), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(600):
            raise SystemExit("the worker did not load the model within 600 s")
        tag, self.info = parent.recv()
        self.starts += 1
        self.load_seconds.append(self.info["load_seconds"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()

    def _kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.proc = None

    def _log_tail(self, mark: int) -> str:
        """The worker's stderr since offset ``mark`` (the last 1500 bytes of it)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""

    def call(self, index: int, data: bytes, timeout: float) -> tuple[str, dict, float]:
        if self.proc is None:
            self.start()
        mark = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        t = time.perf_counter()
        try:
            self.conn.send((index, data))
            ready = self.conn.poll(timeout)
            msg = self.conn.recv() if ready else None
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            msg, ready = None, True
        dt = time.perf_counter() - t
        if msg is not None:
            _, (outcome, info), seconds = msg
            return outcome, info, seconds
        if not ready and self.proc.is_alive():
            self._kill()
            return "hang", {"error": f"no answer within {timeout:g} s"}, dt
        self.proc.join(5)
        code = self.proc.exitcode
        self._kill()
        tail = self._log_tail(mark)
        sig = ""
        if code is not None and code < 0:
            import signal

            try:
                sig = f" ({signal.Signals(-code).name})"
            except ValueError:
                pass
        return "crash", {"type": "worker died", "error": f"worker exit code {code}{sig}", "stderr_tail": tail}, dt


# ------------------------------------------------------------------------------------------- main

def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for mod in ("numpy", "cv2", "PIL", "simplejpeg", "torch", "posekit"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception:  # pragma: no cover
            out[mod] = None
    return out


def run(args) -> dict:
    from posekit.data.images import decode_image, max_pixels_setting

    bases = load_bases(args.examples)
    by_base = {b.name: b for b in bases}
    counts = {"success": 0, "refusal": 0, "crash_non_posekit": 0, "crash_worker_died": 0, "hang": 0}
    refusals: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    by_op: dict[str, dict[str, int]] = {}
    by_format: dict[str, dict[str, int]] = {}
    crashes, hangs, trunc_successes = [], [], []
    trunc = {"checked": 0, "by_lost": {}, "refused": 0}
    seconds = []
    log = tempfile.NamedTemporaryFile(prefix="fuzz_worker_", suffix=".log", delete=False)
    log.close()
    runner = Runner(args.model, args.threads, log.name)
    t_start = time.perf_counter()
    runner.start()
    try:
        for i in range(args.n):
            case = make_case(bases, args.seed, i)
            outcome, info, dt = runner.call(i, case.data, args.timeout)
            label = outcome
            if outcome == "error":
                label = "crash_non_posekit"
            elif outcome == "crash":
                label = "crash_worker_died"
            counts[label] += 1
            fmt = by_base[case.base].fmt if case.kind != "oddity" else "generated"
            op = case.params.get("op", case.kind)
            for table, key in ((by_kind, case.kind), (by_op, f"{case.kind}.{op}"), (by_format, fmt)):
                table.setdefault(key, {}).setdefault(label, 0)
                table[key][label] += 1
            if outcome != "hang":
                seconds.append((dt, i))
            record = {"index": i, "kind": case.kind, "base": case.base, "params": case.params, "bytes": len(case.data)}
            if outcome == "refusal":
                refusals[info["kind"]] = refusals.get(info["kind"], 0) + 1
            elif outcome in ("error", "crash"):
                crashes.append({**record, "crash": "non_posekit_exception" if outcome == "error" else "worker_died",
                                **info, "repro": reproducer(case, args.seed, bases)})
            elif outcome == "hang":
                hangs.append({**record, **info, "repro": reproducer(case, args.seed, bases)})
            if case.truncated:
                trunc["checked"] += 1
                trunc["by_lost"].setdefault(case.lost, {}).setdefault(label, 0)
                trunc["by_lost"][case.lost][label] += 1
                trunc["refused"] += outcome == "refusal"
                if outcome == "success":
                    try:
                        diff = int((decode_image(case.data) != decode_image(by_base[case.base].data)).any(-1).sum())
                    except Exception as e:  # noqa: BLE001 -- a different answer here is worth recording too
                        diff = f"{type(e).__name__}: {e}"
                    trunc_successes.append({**record, "lost": case.lost, "pixels_differing": diff, "pose": info,
                                            "repro": reproducer(case, args.seed, bases)})
            if args.progress and (i + 1) % args.progress == 0:
                print(f"[{i + 1}/{args.n}] {time.perf_counter() - t_start:.0f} s  {counts}", file=sys.stderr, flush=True)
    finally:
        runner.stop()
    total = time.perf_counter() - t_start
    try:
        os.unlink(log.name)
    except OSError:
        pass
    secs = sorted(s for s, _ in seconds)
    slowest = max(seconds) if seconds else (0.0, None)
    return {
        "benchmark": "fuzz_inputs",
        "command": "python benchmarks/fuzz_inputs.py " + " ".join(sys.argv[1:]),
        "seed": args.seed, "n": args.n, "timeout": args.timeout, "model": args.model, "threads": args.threads,
        "refine": runner.info.get("refine"), "device": runner.info.get("device"),
        "max_pixels": max_pixels_setting(), "versions": _versions(),
        "bases": [{"name": b.name, "bytes": len(b.data), "end": b.end, "header_end": b.header_end} for b in bases],
        "counts": counts,
        "refusals_by_kind": dict(sorted(refusals.items())),
        "by_mutation": by_kind,
        "by_operation": dict(sorted(by_op.items())),
        "by_format": by_format,
        "truncation_check": trunc,
        "crashes": crashes,
        "hangs": hangs,
        "successes_on_truncated": {"count": len(trunc_successes), "of": trunc["checked"], "cases": trunc_successes},
        "seconds_per_call": {"median": statistics.median(secs) if secs else None,
                             "p95": secs[int(0.95 * (len(secs) - 1))] if secs else None,
                             "max": slowest[0], "max_index": slowest[1]},
        "worker_starts": runner.starts,
        "worker_load_seconds": [round(s, 2) for s in runner.load_seconds],
        "total_seconds": total,
        "passed": counts["crash_non_posekit"] == 0 and counts["crash_worker_died"] == 0 and counts["hang"] == 0
        and not trunc_successes,
    }


def summary(r: dict) -> str:
    c = r["counts"]
    refs = ", ".join(f"{k} {v}" for k, v in r["refusals_by_kind"].items())
    s = r["successes_on_truncated"]
    sp = r["seconds_per_call"]
    med = f"{sp['median']:.3f}" if sp["median"] is not None else "-"
    mx = f"{sp['max']:.2f}" if sp["max"] is not None else "-"
    return (f"fuzz_inputs: {r['n']} cases (seed {r['seed']}, timeout {r['timeout']:g} s) through "
            f"Predictor({r['model']!r}).predict(bytes): {c['success']} successes, {c['refusal']} refusals ({refs}), "
            f"{c['crash_non_posekit']} non-posekit crashes, {c['crash_worker_died']} worker crashes, {c['hang']} hangs; "
            f"{s['count']} successes on {s['of']} truncated cases. Per call: median {med} s, max {mx} s; "
            f"total {r['total_seconds']:.0f} s, {r['worker_starts']} worker start(s). "
            f"{'PASS' if r['passed'] else 'FAIL'}: the bar is 0 non-posekit crashes, 0 hangs, 0 successes on truncated data.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per call before it counts as a hang")
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads in the worker")
    ap.add_argument("--examples", default=str(EXAMPLES), help="folder of the base JPEGs")
    ap.add_argument("--progress", type=int, default=200, help="a progress line every this many cases (0: none)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    r = run(args)
    print(summary(r))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
