"""Loaded at start-up by every Python process of the GR00T tests (this folder is on their
PYTHONPATH): see torchvision_ops_stand_in.py."""

import torchvision_ops_stand_in  # noqa: F401
