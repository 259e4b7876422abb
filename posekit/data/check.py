"""``posekit data check``: verify a dataset copy against the lists posekit ships."""
from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

from posekit.data.lsp import KNOWN_SETS, load_set
from posekit.errors import DataError

# What an intact copy holds (counts from the published files).
EXPECTED = {
    "lsp": {"images": 2000, "visible": 25956, "annotated": 28000,
            "joints_md5": "6f6b4d6ab03c9e0883a5a2fb641f0507"},
    "lspet": {"images": 10000, "visible": 123213, "annotated": 123213,
              "joints_md5": "19f4db95af06c8d38bea3658c6c34728"},
}


def manifest(name: str) -> dict[str, str]:
    """{'images/im0001.jpg': sha256} shipped with posekit for a set."""
    data = resources.files("posekit.data").joinpath("manifests").joinpath(f"{name}.sha256.gz").read_bytes()
    out = {}
    for line in gzip.decompress(data).decode().splitlines():
        digest, path = line.split(maxsplit=1)
        out[path.strip().lstrip("*")] = digest
    return out


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_set(folder: Path, name: str, hashes: bool = True) -> tuple[list[str], list[str]]:
    """(ok lines, problem lines) for one set folder."""
    exp = EXPECTED[name]
    ok, bad = [], []
    mat = folder / "joints.mat"
    if not mat.is_file():
        return ok, [f"{mat}: annotation file not found"]
    md5 = _digest(mat, "md5")
    (ok if md5 == exp["joints_md5"] else bad).append(
        f"{mat}: md5 {md5}" + ("" if md5 == exp["joints_md5"] else f" (expected {exp['joints_md5']})"))
    try:
        s = load_set(folder, name, check_images=False)
    except DataError as e:
        bad.append(str(e))
        return ok, bad
    n, vis, ann = len(s), int(s.visible.sum()), int(s.annotated.sum())
    for label, got, want in (("images in joints.mat", n, exp["images"]), ("visible joints", vis, exp["visible"]),
                             ("annotated joints", ann, exp["annotated"])):
        (ok if got == want else bad).append(f"{folder.name}: {got} {label}" + ("" if got == want else f" (expected {want})"))
    listed = manifest(name)
    img_dir = folder / "images"
    present = {f"images/{p.name}" for p in img_dir.glob("*.jpg")} if img_dir.is_dir() else set()
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    if missing:
        bad.append(f"{img_dir}: {len(missing)} image(s) missing, e.g. {missing[0]}")
    if extra:
        bad.append(f"{img_dir}: {len(extra)} unexpected image(s), e.g. {extra[0]}")
    if hashes:
        mismatched = [rel for rel in sorted(present & set(listed)) if _digest(folder / rel, "sha256") != listed[rel]]
        if mismatched:
            bad.append(f"{folder / mismatched[0]}: checksum mismatch (damaged or modified)"
                       + (f", and {len(mismatched) - 1} more image(s)" if len(mismatched) > 1 else ""))
        else:
            ok.append(f"{img_dir}: {len(present & set(listed))} image checksums match")
    return ok, bad


def check_root(root: Path, sets: list[str] | None = None, hashes: bool = True) -> tuple[list[str], list[str]]:
    sets = sets or [s for s in KNOWN_SETS if (root / s).is_dir()]
    if not sets:
        return [], [f"{root}: no lsp/ or lspet/ folder found"]
    ok, bad = [], []
    for s in sets:
        folder = root / s
        if not folder.is_dir():
            bad.append(f"{folder}: folder not found")
            continue
        o, b = check_set(folder, s, hashes)
        ok += o
        bad += b
    return ok, bad
