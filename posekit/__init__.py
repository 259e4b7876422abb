"""posekit: single-image human pose estimation (14 Leeds Sports Pose joints)."""

__version__ = "0.1.0"
