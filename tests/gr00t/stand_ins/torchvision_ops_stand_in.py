"""STAND-IN for torchvision's compiled operators, on the GR00T tests' path only.

The package index's torchvision is built for CUDA torch; beside this project's CPU torch its
compiled operators (nms, roi_align...) cannot load, and its import then fails registering a
fake kernel for ``torchvision::nms``. The Eagle image processor uses only torchvision's Python
transforms, so declaring the two operator schemas it registers at import (never running them)
is enough. Does nothing where torch is a CUDA build (there torchvision's own operators load).
"""

import torch
import torch.library

if torch.version.cuda is None:
    _schemas = torch.library.Library("torchvision", "DEF")
    for _name in ("nms", "qnms"):
        _schemas.define(f"{_name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
