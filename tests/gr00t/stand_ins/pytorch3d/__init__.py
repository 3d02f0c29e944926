"""STAND-IN for pytorch3d, on the GR00T tests' path only: pytorch3d has no installable build
here. Isaac-GR00T imports ``pytorch3d.transforms`` at the top of its state/action rotation code,
which the backbone path never calls; this empty package only lets that import succeed."""
