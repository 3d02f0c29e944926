"""Save a GR00T N1.5 of the real architecture with random weights as a real model folder:
config.json, model.safetensors and experiment_cfg/metadata.json, like a shipped checkpoint.

    python tests/gr00t/random_gr00t.py MODEL_FOLDER --tiny SOURCE_COPY   # the tests' tiny one
    python tests/gr00t/random_gr00t.py MODEL_FOLDER                      # full size (on a GPU)

Runs where ``gr00t`` imports (.venv-gr00t with its source on PYTHONPATH, or a real install).
``EagleBackbone`` always builds its Eagle 2.5 VLM from the config.json inside the installed
``gr00t`` package, so ``--tiny`` first shrinks that file in SOURCE_COPY, a writable copy of
the package (few vision and language layers, small widths; patch size, tile size,
vocabulary, tokenizer, chat template and processor untouched, so token counts are the real
ones). Full size keeps GR00T's own Eagle config (Qwen3 1.7B cut at layer 12, SigLIP 400M)
and an action head of N1.5's size (its exact settings ship with the real weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EAGLE_CONFIG = Path("gr00t/model/backbone/eagle2_hg_model/config.json")
TINY_TEXT_WIDTH = 64


def shrink_eagle_config(source_copy: Path) -> None:
    path = source_copy / EAGLE_CONFIG
    config = json.loads(path.read_text())
    config["text_config"].update(hidden_size=TINY_TEXT_WIDTH, intermediate_size=128,
                                 num_hidden_layers=4, num_attention_heads=2,
                                 num_key_value_heads=1, head_dim=32, max_window_layers=4)
    config["vision_config"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2)
    path.write_text(json.dumps(config, indent=2))


def gr1_metadata() -> dict:
    """metadata.json as the policy reads it: per embodiment, statistics and modalities. The
    backbone never reads them; one state and one action key keep the schema honest."""
    stats = {k: [0.0] for k in ("max", "min", "mean", "std", "q01", "q99")}
    modality = {"absolute": True, "rotation_type": None, "shape": [1], "continuous": True}
    return {"gr1": {
        "statistics": {"state": {"joint": stats}, "action": {"joint": stats}},
        "modalities": {"video": {"ego_view": {"resolution": [270, 270], "channels": 3, "fps": 1.0}},
                       "state": {"joint": modality}, "action": {"joint": modality}},
        "embodiment_tag": "gr1"}}


# Sizes: the Qwen3 width and the layer the backbone is cut at; the action head's widths,
# attention heads and layers (its two transformers must be heads x head_dim wide).
TINY = dict(text_width=TINY_TEXT_WIDTH, select_layer=2, action_width=32, action_hidden=32,
            heads=2, dit_layers=1, vl_layers=1)
FULL = dict(text_width=2048, select_layer=12, action_width=1536, action_hidden=1024,
            heads=32, dit_layers=16, vl_layers=4)


def model_config(tiny: bool) -> dict:
    """GR00T_N1_5_Config's settings: backbone cut, action head and its two transformers."""
    size = TINY if tiny else FULL
    text_width, action_width, heads = size["text_width"], size["action_width"], size["heads"]
    return dict(
        backbone_cfg=dict(tune_llm=False, tune_visual=False, select_layer=size["select_layer"],
                          reproject_vision=False, use_flash_attention=False, load_bf16=False,
                          project_to_dim=None),
        action_head_cfg=dict(
            action_dim=32, action_horizon=16, add_pos_embed=True, max_seq_len=1024,
            backbone_embedding_dim=text_width, hidden_size=size["action_hidden"],
            input_embedding_dim=action_width, max_state_dim=64, max_num_embodiments=32,
            num_inference_timesteps=4, num_target_vision_tokens=32, use_vlln=True,
            vl_self_attention_cfg=dict(num_attention_heads=heads, attention_head_dim=text_width // heads,
                                       num_layers=size["vl_layers"], dropout=0.0,
                                       positional_embeddings=None),
            diffusion_model_cfg=dict(num_attention_heads=heads, attention_head_dim=action_width // heads,
                                     output_dim=size["action_hidden"], num_layers=size["dit_layers"],
                                     dropout=0.0, cross_attention_dim=text_width, norm_type="ada_norm",
                                     positional_embeddings=None, interleave_self_attention=True)),
        action_horizon=16, action_dim=32, compute_dtype="bfloat16")


def save_random_gr00t(model_folder: Path, tiny: bool, device: str = "cpu") -> None:
    import torch

    from engine.teachers.gr00t import eagle_loading, import_gr00t

    gr00t = import_gr00t("sdpa")        # flash-attn is not needed to build: see the teacher
    from gr00t.model.gr00t_n1 import GR00T_N1_5, GR00T_N1_5_Config

    torch.manual_seed(0)
    with eagle_loading(gr00t.eagle_backbone, "sdpa"), torch.device(device):
        model = GR00T_N1_5(GR00T_N1_5_Config(**model_config(tiny)),
                           local_model_path=str(model_folder))
    model.to(torch.bfloat16).save_pretrained(model_folder)
    (model_folder / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    (model_folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(gr1_metadata()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("--tiny", type=Path, metavar="SOURCE_COPY",
                        help="shrink the Eagle config in this writable copy of gr00t's source")
    args = parser.parse_args()
    if args.tiny:
        shrink_eagle_config(args.tiny)
    save_random_gr00t(args.model_folder, tiny=bool(args.tiny))
    print(f"random GR00T N1.5 ({'tiny' if args.tiny else 'full size'}) saved in {args.model_folder}")
