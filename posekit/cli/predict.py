"""``posekit predict``'s plumbing: inputs found in folders, one record per person per image or
video frame (JSON, CSV or a readable line on stdout), and the files written into ``--out``."""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from posekit.data.images import read_image
from posekit.errors import PosekitError
from posekit.inference import pose_records, reported_poses
from posekit.predict import Predictor
from posekit.skeleton import JOINT_NAMES
from posekit.utils import atomic_write_files, check_writable_folder

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".flv",
              ".wmv", ".ogv")


def collect_inputs(inputs: list[str], images_only: bool = False) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, output name) for the image and video files given directly or found in folders
    (recursively, in a stable order; hidden files and folders, such as macOS's ``._photo.jpg``
    resource forks, are skipped there), and a problem line for each input that does not exist.
    Output names keep a folder's sub-paths; a name that would repeat (``a/x.jpg`` and
    ``b/x.jpg`` given directly, or ``x.jpg`` beside ``x.png``) gets its extension, then a number."""
    exts = IMAGE_EXTS if images_only else IMAGE_EXTS + VIDEO_EXTS
    found: list[tuple[Path, str]] = []
    missing: list[str] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.suffix.lower() in exts and q.is_file()
                           and not any(part.startswith(".") for part in q.relative_to(p).parts))  # hidden: ._x.jpg
            found += [(q, q.relative_to(p).with_suffix("").as_posix()) for q in files]
        elif p.exists():
            found.append((p, p.stem))
        else:
            missing.append(f"{p}: input not found")
    if not found and not missing:
        raise PosekitError(f"no {'images' if images_only else 'images or videos'} found in {', '.join(inputs)}")
    out, used = [], set()
    for p, name in found:
        if name in used:
            name = f"{name}_{p.suffix.lstrip('.').lower()}"
            k = 2
            while name in used:
                name, k = f"{name.rsplit('~', 1)[0]}~{k}", k + 1
        used.add(name)
        out.append((p, name))
    return out, missing


BOX_COLUMNS = ("box_x", "box_y", "box_w", "box_h")


def csv_header() -> list[str]:
    """The CSV columns: a record's fields in JSON's order (``box`` as box_x, box_y, box_w, box_h),
    then ``<joint>_x, <joint>_y, <joint>_score, <joint>_in_image`` per joint."""
    cols = ["image", "frame", "time", "model", "width", "height", "person", "found", "score", *BOX_COLUMNS,
            "box_score"]
    for n in JOINT_NAMES:
        cols += [f"{n}_x", f"{n}_y", f"{n}_score", f"{n}_in_image"]
    return cols


def csv_fields(rec: dict) -> dict:
    """The CSV cells of a record, by column (a null, or ``frame`` and ``time`` of an image, is an
    empty cell; booleans are 0/1)."""
    row = {k: v for k, v in rec.items() if k not in ("box", "joints")}
    row["found"] = int(rec["found"])
    row.update(zip(BOX_COLUMNS, rec["box"] or ()))
    for j in rec["joints"]:
        n = j["name"]
        row.update({f"{n}_x": j["x"], f"{n}_y": j["y"], f"{n}_score": j["score"], f"{n}_in_image": int(j["in_image"])})
    return row


def score_against(score: float, threshold: float) -> tuple[str, str]:
    """A score and the threshold it is held to, as text: 2 decimals, or as many more (up to 4) as
    it takes for a score under the threshold to read as under it (0.3152 against 0.32: "0.315"
    and "0.32", not "0.32" and "0.32"), the threshold's trailing zeros dropped past 2 decimals."""
    for d in (2, 3, 4):
        s, t = f"{score:.{d}f}", f"{threshold:.{d}f}"
        if (float(s) < float(t)) == (score < threshold):
            break
    return s, t[:len(t) - d + 2] + t[len(t) - d + 2:].rstrip("0")


def text_line(rec: dict, threshold: float) -> str:
    """The readable line of a record: where (image, frame, person), the person score and the
    joints as name=x,y (``(outside)`` for a joint placed outside the image), or "no person found"
    with the score and the threshold (and, when the score reached the threshold, that no person
    was detected: a person must be both)."""
    where = rec["image"] + (f" frame {rec['frame']}" if "frame" in rec else "")
    if not rec["found"]:
        why = ", but no person detected" if rec["score"] >= threshold else ""
        score, limit = score_against(rec["score"], threshold)
        return f"{where}: no person found (score {score}, threshold {limit}{why})"
    where += f" person {rec['person']}"
    joints = " ".join(f"{j['name']}={j['x']:.0f},{j['y']:.0f}{'' if j['in_image'] else '(outside)'}"
                      for j in rec["joints"])
    return f"{where}: person score {rec['score']:.2f}  {joints}"


class Emitter:
    """Writes the stdout format: ``json`` (one object per line), ``csv`` (a header, then a row
    per record) or ``text`` (one readable line)."""

    def __init__(self, fmt: str, write=print, threshold: float = 0.0):
        self.fmt, self.write, self.header_done, self.threshold = fmt, write, False, threshold

    def __call__(self, rec: dict) -> None:
        if self.fmt == "json":
            self.write(json.dumps(rec))
        elif self.fmt == "csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, csv_header(), lineterminator="\n")
            if not self.header_done:
                w.writeheader()
                self.header_done = True
            w.writerow(csv_fields(rec))
            self.write(buf.getvalue().rstrip("\n"))
        else:
            self.write(text_line(rec, self.threshold))


@dataclass
class Job:
    """What ``posekit predict`` does with each input: the predictor, the caller's box, ``people``
    ("one" or "all"), video smoothing and following (None: the model's own), the output folder, drawing, the
    record writer and the frame limit of videos."""

    pred: Predictor
    box: tuple | None = None
    people: str = "one"
    smooth: bool | None = None
    follow: bool | None = None
    out: Path | None = None
    draw: bool = False
    emit: object = print
    max_frames: int | None = None


def image_records(job: Job, path: Path, img) -> tuple[list, list[dict]]:
    """(poses, records) of one image: the best person (or the box) in "one" mode, every person
    found in "all" mode; an image with nobody: the one-person answer, found false
    (:func:`posekit.inference.reported_poses`)."""
    poses = reported_poses(job.pred, img, job.people, job.box)
    return poses, pose_records(poses, image=str(path), model=job.pred.name)


def predict_image(job: Job, path: Path, name: str) -> None:
    """One image: its records to ``job.emit``, and ``<name>.json`` (+ ``<name>_pose.png``) in ``job.out``."""
    from posekit.viz import draw_poses, encode_rgb

    img = read_image(path)
    poses, recs = image_records(job, path, img)
    for rec in recs:
        job.emit(rec)
    if job.out is not None:  # the image's files appear together or not at all
        base = job.out / name
        doc = recs[0] if job.people == "one" else {"image": str(path), "people": [r for r in recs if r["found"]]}
        files = {}
        if job.draw:
            drawn = base.with_name(base.name + "_pose.png")
            files[drawn] = encode_rgb(drawn, draw_poses(img, poses))
        files[base.with_name(base.name + ".json")] = json.dumps(doc, indent=1).encode()  # the record last
        atomic_write_files(files)


def run_predict(inputs: list[str], predictor_args: dict, job_args: dict, fmt: str = "text",
                webcam: int | None = None) -> tuple[int, int]:
    """The CLI's work. Records go to stdout in ``fmt``; ``job_args["out"]`` gets ``<name>.json``
    per image and ``<name>.jsonl`` (a record per person per frame) per video or webcam, and with
    ``draw`` the annotated ``<name>_pose.png`` / ``<name>_pose.mp4`` (``job_args``: the fields of
    :class:`Job` but the predictor and writer). A bad input is reported (one line naming it) and
    skipped, the rest still processed. Returns (inputs that failed, inputs in all)."""
    from tqdm import tqdm

    from posekit.inference import parse_box

    job_args = dict(job_args, box=parse_box(job_args.get("box")))
    out = Path(job_args["out"]) if job_args.get("out") else None
    if out is not None:  # refused before the model runs
        check_writable_folder(out, "--out")
    items, missing = collect_inputs(inputs) if inputs else ([], [])
    pred = Predictor(**predictor_args)
    job = Job(pred, **{**job_args, "out": out}, emit=Emitter(fmt, print, pred.threshold))
    total = len(items) + len(missing) + (webcam is not None)
    bar = tqdm(total=len(items), unit="file", file=sys.stderr, disable=None if len(items) > 1 else True, leave=False)

    def report(msg: str) -> None:
        tqdm.write(f"posekit: {'error' if total == 1 else 'skipped'}: {msg}", file=sys.stderr)

    for msg in missing:
        report(msg)
    failures = len(missing)
    for src in ([webcam] if webcam is not None else []) + items:
        failures += _one_source(job, src, report)
        if not isinstance(src, int):
            bar.update(1)
    bar.close()
    return failures, total


def _one_source(job: Job, src, report) -> int:
    """Run one image, video or webcam; 1 if it failed (reported), else 0."""
    from posekit.video import FramePoser, predict_stream

    path, name = (None, f"webcam{src}") if isinstance(src, int) else src
    label = f"webcam {src}" if path is None else str(path)
    try:
        if path is None or path.suffix.lower() in VIDEO_EXTS:
            poser = FramePoser(job.pred, job.people, job.box, smooth=job.smooth, follow=job.follow)
            predict_stream(poser, src if path is None else path, name, job.out, job.draw, job.emit, job.max_frames)
        else:
            predict_image(job, path, name)
    except PosekitError as e:
        msg = str(e)
        report(msg if msg.startswith(label) else f"{label}: {msg}")
        return 1
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        report(f"{label}: cannot write {e.filename}: {e.strerror or e}" if e.filename and str(e.filename) != label
               else f"{label}: {e.strerror or e}")
        return 1
    return 0
