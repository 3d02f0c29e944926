import numpy as np
import torch

from engine.arc import ArcTask, Pair
from engine.encoding import (CANVAS, IGNORE_INDEX, OUTSIDE, PAD_TOKEN, QUERY_SEGMENT,
                             build_example, collate, decode_prediction, encode_target)


def grid(rows):
    return np.asarray(rows, dtype=np.uint8)


def make_task(test_output=None):
    train = (Pair(grid([[1, 2], [3, 4]]), grid([[4, 3], [2, 1]])),
             Pair(grid([[5, 6, 7]]), grid([[7], [6], [5]])),
             Pair(grid([[8]]), grid([[9, 9]])))
    test = (Pair(grid([[1, 0, 1], [0, 1, 0]]), test_output),)
    return ArcTask("toy", train, test)


def test_encode_then_decode_round_trips_and_marks_outside():
    original = grid([[1, 2, 3], [0, 5, 6]])
    canvas = encode_target(original)
    assert canvas.shape == (CANVAS, CANVAS) and canvas.dtype == np.int64
    assert (canvas[2:, :] == OUTSIDE).all() and (canvas[:, 3:] == OUTSIDE).all()
    np.testing.assert_array_equal(decode_prediction(canvas), original)


def test_decode_reads_shape_from_first_row_and_column_only():
    cells = np.full((CANVAS, CANVAS), OUTSIDE)
    cells[:3, :4] = 7          # a 3x4 grid...
    cells[1, 2] = OUTSIDE      # ...with a hole inside, read as colour 0
    cells[5, 5] = 2            # a stray colour away from the rectangle is ignored
    decoded = decode_prediction(cells)
    assert decoded.shape == (3, 4)
    assert decoded[1, 2] == 0 and decoded[0, 0] == 7


def test_decode_of_an_all_outside_canvas_is_empty():
    assert decode_prediction(np.full((CANVAS, CANVAS), OUTSIDE)).shape == (0, 0)


def test_build_example_puts_query_first_and_tags_every_cell():
    task = make_task(grid([[2, 2]]))
    example = build_example(task, "test", 0)
    # query 2x3, then demos 2x2 + 2x2, 1x3 + 3x1, 1x1 + 1x2
    assert len(example["tokens"]) == 6 + 8 + 6 + 3
    assert list(example["segments"][:6]) == [QUERY_SEGMENT] * 6
    assert list(example["tokens"][:6]) == [1, 0, 1, 0, 1, 0]
    assert list(example["rows"][:6]) == [0, 0, 0, 1, 1, 1]
    assert list(example["cols"][:6]) == [0, 1, 2, 0, 1, 2]
    assert sorted(set(example["segments"][6:])) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(example["target"], encode_target(grid([[2, 2]])))
    assert example["example_id"] == "toy/test/0"


def test_a_train_query_leaves_its_own_pair_out_and_max_demos_limits():
    example = build_example(make_task(), "train", 1, max_demos=1)
    # query = train[1].input (1x3); the only demo is train[0] (2x2 -> 2x2)
    assert len(example["tokens"]) == 3 + 4 + 4
    assert list(example["tokens"][:3]) == [5, 6, 7]


def test_changed_query_output_leaves_the_inputs_unchanged():
    first = build_example(make_task(grid([[2, 2]])), "test", 0)
    second = build_example(make_task(grid([[9], [9], [9]])), "test", 0)
    for name in ("tokens", "rows", "cols", "segments"):
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["target"], second["target"])
    assert build_example(make_task(None), "test", 0)["target"] is None


def test_collate_pads_and_marks_unknown_targets():
    long = build_example(make_task(grid([[2, 2]])), "test", 0)
    short = build_example(make_task(None), "train", 2, max_demos=1)
    teacher = {"teacher_features": np.ones((2, 5, 8), dtype=np.float32),
               "teacher_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)}
    batch = collate([long, short], teacher=teacher)
    length = len(long["tokens"])
    n_short = len(short["tokens"])
    assert batch["tokens"].shape == (2, length)
    assert batch["pad_mask"][0].sum() == 0
    assert batch["pad_mask"][1].sum() == length - n_short
    assert (batch["tokens"][1, n_short:] == PAD_TOKEN).all()
    assert torch.equal(batch["target"][0], torch.from_numpy(long["target"]))
    assert batch["target"].shape == (2, CANVAS, CANVAS)
    assert short["target"] is not None  # a train query knows its output
    assert batch["example_ids"] == ["toy/test/0", "toy/train/2"]
    assert batch["teacher_features"].shape == (2, 5, 8)
    assert batch["teacher_mask"].dtype == torch.bool


def test_an_augmented_querys_task_id_names_the_original_task():
    """The task embedding looks a query's task up by this id, augmented or not."""
    from engine.augment import augment_task, translate_task

    swap_1_and_2 = np.array([0, 2, 1, 3, 4, 5, 6, 7, 8, 9])
    augmented = translate_task(augment_task(make_task(None), 3, swap_1_and_2), 1, 2)
    assert augmented.id != "toy"
    batch = collate([build_example(augmented, "test", 0), build_example(make_task(None), "train", 0)])
    assert batch["task_ids"] == ["toy", "toy"]


def test_collate_fills_an_unknown_target_with_ignore_index():
    batch = collate([build_example(make_task(None), "test", 0)])
    assert (batch["target"] == IGNORE_INDEX).all()
