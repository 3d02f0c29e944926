"""What a teacher sees for one query: rendered demonstrations and the query input.

``build_teacher_view`` is the only way the extraction path turns a task into teacher
input, and it asks ``engine.arc.query_view`` for the pairs, so the query's output grid
never reaches a teacher (tests/engine/test_teacher_view.py proves it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.arc import MAX_GRID, ArcTask, example_id, query_view

# Official ARC app colours for 0..9 (shared/reference/arc.md).
ARC_PALETTE = np.array([
    (0x00, 0x00, 0x00), (0x00, 0x74, 0xD9), (0xFF, 0x41, 0x36), (0x2E, 0xCC, 0x40),
    (0xFF, 0xDC, 0x00), (0xAA, 0xAA, 0xAA), (0xF0, 0x12, 0xBE), (0xFF, 0x85, 0x1B),
    (0x7F, 0xDB, 0xFF), (0x87, 0x0C, 0x25),
], dtype=np.uint8)
# Outside the grid: white, a colour no ARC cell has, so a grid's size stays visible
# (the original padded with black, the same as colour 0, and lost the shape).
OUTSIDE_COLOUR = (255, 255, 255)
GRID_LINE_COLOUR = (85, 85, 85)

DEFAULT_PROMPT = ("ARC puzzle. The images are example input and output grids in pairs, "
                  "then a new input grid. Infer the rule that maps each input to its output.")

EAGLE_TILE_PX = 224
EAGLE_TOKENS_PER_TILE = 256
EAGLE_ONE_TILE_MAX_PX = 289     # up to here the Eagle processor keeps one tile
EAGLE_MAX_TILES_PER_SIDE = 3    # 3x3 + thumbnail is the largest layout used
# Text around the images, as GR00T's real Eagle processor counts it (tests/gr00t): the
# chat template and prompt, plus the tokens that open and close each image.
EAGLE_TEXT_TOKENS = 50
EAGLE_TEXT_TOKENS_PER_IMAGE = 7


@dataclass(frozen=True)
class TeacherViewConfig:
    # Demonstration pairs kept (the first ones); None keeps all. Two pairs + the query
    # input = 5 frames = about 1,300 Eagle tokens.
    max_demos: int | None = 2
    # Pixels per cell: 30 cells x 9 px = 270 px <= 289 px, one 224-px Eagle tile.
    cell_px: int = 9
    grid_lines: bool = False
    prompt: str = DEFAULT_PROMPT
    # The palette is fixed to the official one; it is recorded so a store says so.
    palette: str = "arc-official"

    def __post_init__(self) -> None:
        if self.max_demos is not None and self.max_demos < 0:
            raise ValueError(f"max_demos must be >= 0 or None, not {self.max_demos}")
        if not 1 <= self.cell_px <= 64:
            raise ValueError(f"cell_px must be between 1 and 64, not {self.cell_px}")
        if self.grid_lines and self.cell_px < 3:
            raise ValueError("grid lines need cell_px >= 3")
        if self.palette != "arc-official":
            raise ValueError(f"only the 'arc-official' palette exists, not {self.palette!r}")

    @property
    def frame_px(self) -> int:
        """Side of every frame: the 30x30 canvas, so all frames of a view stack."""
        return MAX_GRID * self.cell_px

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> "TeacherViewConfig":
        values = dict(values or {})
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown teacher view settings: {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass(frozen=True)
class TeacherView:
    example_id: str
    task_id: str
    kind: str            # "train" or "test": which pair of the task is the query
    index: int
    frames: np.ndarray   # uint8 [T, H, W, 3]: demo input, demo output, ..., query input
    prompt: str
    n_demos: int = field(default=0)


def render_grid(grid: np.ndarray, config: TeacherViewConfig) -> np.ndarray:
    """One grid on the fixed 30x30 canvas, top-left aligned: uint8 [H, W, 3]."""
    px = config.cell_px
    canvas = np.empty((config.frame_px, config.frame_px, 3), dtype=np.uint8)
    canvas[:] = OUTSIDE_COLOUR
    cells = ARC_PALETTE[grid]                                   # [h, w, 3]
    image = np.repeat(np.repeat(cells, px, axis=0), px, axis=1)  # [h*px, w*px, 3]
    if config.grid_lines:
        image[px - 1::px, :, :] = GRID_LINE_COLOUR
        image[:, px - 1::px, :] = GRID_LINE_COLOUR
    canvas[:image.shape[0], :image.shape[1]] = image
    return canvas


def build_teacher_view(task: ArcTask, kind: str, index: int,
                       config: TeacherViewConfig | None = None) -> TeacherView:
    """The teacher's input for query ``(kind, index)`` of ``task``: the demonstrations
    (rendered input, output, input, output, ...) then the query input. Only what
    ``query_view`` returns is rendered, so the query output cannot leak."""
    config = config or TeacherViewConfig()
    demos, query_input = query_view(task, kind, index, max_demos=config.max_demos)
    grids = [g for pair in demos for g in (pair.input, pair.output)] + [query_input]
    frames = np.stack([render_grid(g, config) for g in grids])
    return TeacherView(example_id(task.id, kind, index), task.id, kind, index,
                       frames, config.prompt, len(demos))


def eagle_image_tokens(height: int, width: int) -> int:
    """Image tokens the Eagle 2.5 processor spends on one image (shared/reference/gr00t.md):
    one 224-px tile (256 tokens) up to ~289 px a side; otherwise a grid of tiles, at most
    3 a side, plus a thumbnail tile. An approximation of its aspect-ratio search that
    matches the measured 256 / 1,280 / 2,560 for square images."""
    rows = min(EAGLE_MAX_TILES_PER_SIDE, math.ceil(height / EAGLE_ONE_TILE_MAX_PX))
    cols = min(EAGLE_MAX_TILES_PER_SIDE, math.ceil(width / EAGLE_ONE_TILE_MAX_PX))
    tiles = rows * cols
    if tiles > 1:
        tiles += 1  # the thumbnail
    return tiles * EAGLE_TOKENS_PER_TILE


def eagle_sequence_tokens(frame_sizes: list[tuple[int, int]]) -> int:
    """GR00T backbone sequence length L for frames of these (H, W) sizes (5 frames of
    one tile: 5 x 256 + 50 + 5 x 7 = 1,365, as the real processor gives)."""
    return (sum(eagle_image_tokens(h, w) for h, w in frame_sizes) + EAGLE_TEXT_TOKENS
            + EAGLE_TEXT_TOKENS_PER_IMAGE * len(frame_sizes))
