"""posekit: single-image human pose estimation (14 Leeds Sports Pose joints).

``posekit.Predictor`` is the Python API (see :mod:`posekit.predict`); bad input raises
``posekit.PosekitError`` (see :mod:`posekit.errors`)."""

import os as _os

# posekit reports unreadable videos and cameras itself, in one line; keep OpenCV's and FFmpeg's
# own console chatter about them out of the way (set before anything imports cv2)
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
_os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

from posekit.errors import PosekitError  # noqa: E402  (light: no torch)

__version__ = "0.1.0"
__all__ = ["Predictor", "Pose", "PosekitError", "__version__"]


def __getattr__(name: str):  # lazy: `import posekit` stays light; torch loads on first use
    if name in ("Predictor", "Pose"):
        from posekit import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'posekit' has no attribute {name!r}")
