"""STAND-IN (empty): see pytorch3d/__init__.py. Any use of a rotation function fails loudly."""
