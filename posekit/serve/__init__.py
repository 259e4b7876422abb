"""``posekit serve``: an HTTP API (FastAPI) and a web page for the pose model."""
from posekit.serve.app import create_app

__all__ = ["create_app"]
