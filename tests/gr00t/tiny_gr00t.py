"""Build a TINY GR00T N1.5 of the real architecture, with random weights, as a real model folder.

    python tests/gr00t/tiny_gr00t.py SOURCE_COPY MODEL_FOLDER

Runs in the GR00T environment (.venv-gr00t) with SOURCE_COPY on PYTHONPATH: a writable copy of
Isaac-GR00T's ``gr00t`` package. ``EagleBackbone`` always builds its Eagle 2.5 VLM from the
config.json inside the installed package, so this script first shrinks that file in the copy
(few vision and language layers, small widths; patch size, tile size, vocabulary, tokenizer,
chat template and processor untouched, so token counts are the real ones), then builds
``GR00T_N1_5`` from it and saves config.json, model.safetensors and
experiment_cfg/metadata.json like a shipped checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TEXT_WIDTH = 64          # the backbone's feature width (the real model: 2048)
SELECT_LAYER = 2         # layers kept by EagleBackbone (the real model: 12 of 28)
EAGLE_CONFIG = Path("gr00t/model/backbone/eagle2_hg_model/config.json")


def shrink_eagle_config(source_copy: Path) -> None:
    path = source_copy / EAGLE_CONFIG
    config = json.loads(path.read_text())
    config["text_config"].update(hidden_size=TEXT_WIDTH, intermediate_size=128, num_hidden_layers=4,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                 max_window_layers=4)
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


def build(model_folder: Path) -> None:
    import torch

    from engine.teachers.gr00t import eagle_loading, import_gr00t

    gr00t = import_gr00t("sdpa")        # no flash-attn here: see the teacher
    from gr00t.model.gr00t_n1 import GR00T_N1_5, GR00T_N1_5_Config

    torch.manual_seed(0)
    action_width = 32
    config = GR00T_N1_5_Config(
        backbone_cfg=dict(tune_llm=False, tune_visual=False, select_layer=SELECT_LAYER,
                          reproject_vision=False, use_flash_attention=False, load_bf16=False,
                          project_to_dim=None),
        action_head_cfg=dict(
            action_dim=32, action_horizon=16, add_pos_embed=True, max_seq_len=64,
            backbone_embedding_dim=TEXT_WIDTH, hidden_size=action_width,
            input_embedding_dim=action_width, max_state_dim=64, max_num_embodiments=32,
            num_inference_timesteps=2, num_target_vision_tokens=8, use_vlln=True,
            vl_self_attention_cfg=dict(num_attention_heads=2, attention_head_dim=TEXT_WIDTH // 2,
                                       num_layers=1, dropout=0.0, positional_embeddings=None),
            diffusion_model_cfg=dict(num_attention_heads=2, attention_head_dim=action_width // 2,
                                     output_dim=action_width, num_layers=1, dropout=0.0,
                                     cross_attention_dim=TEXT_WIDTH, norm_type="ada_norm",
                                     positional_embeddings=None)),
        action_horizon=16, action_dim=32, compute_dtype="bfloat16")
    with eagle_loading(gr00t.eagle_backbone, "sdpa"):
        model = GR00T_N1_5(config, local_model_path=str(model_folder))
    model.to(torch.bfloat16).save_pretrained(model_folder)
    (model_folder / "experiment_cfg").mkdir(parents=True, exist_ok=True)
    (model_folder / "experiment_cfg" / "metadata.json").write_text(json.dumps(gr1_metadata()))


if __name__ == "__main__":
    source_copy, model_folder = Path(sys.argv[1]), Path(sys.argv[2])
    shrink_eagle_config(source_copy)
    build(model_folder)
    print(f"tiny GR00T N1.5 saved in {model_folder}")
