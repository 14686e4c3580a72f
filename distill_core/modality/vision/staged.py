"""What the CNNs here share: stages whose outputs give activation attention (distill_core/activation.py), a layer
for Grad-CAM, a classifier head that can be replaced, and saving as config.json beside model.safetensors (never
pickle). ResidualCNN (models.py) and MobileNetV2 (mobilenet.py) are StagedCNNs; model_family calls them "cnn"."""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import ModelError
from ...models import check_weight_files

WEIGHTS = "model.safetensors"


class StagedCNN(nn.Module):
    """Called like a transformers image classifier: model(pixel_values=x, labels=y, output_hidden_states=True),
    hidden_states one (B, C_k, h_k, w_k) output per stage. A subclass names its config class (to_dict, from_dict)
    and what its messages call it, and has `config`."""

    main_input_name = "pixel_values"
    config_class: type
    display_name = "CNN"

    @property
    def num_stages(self) -> int:
        raise NotImplementedError

    @property
    def last_stage(self) -> nn.Module:
        """The module whose output is the last stage (Grad-CAM's layer)."""
        raise NotImplementedError

    def stage_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(h, w) of each stage's output for pictures of `image_size` (H, W)."""
        raise NotImplementedError

    def replace_head(self, num_labels: int) -> None:
        """A new (random) classifier for `num_labels` classes."""
        raise NotImplementedError

    def save_pretrained(self, folder, safe_serialization: bool = True, **kwargs) -> None:
        """config.json and model.safetensors (always safetensors, whatever safe_serialization says)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=1))

    @classmethod
    def from_pretrained(cls, folder) -> "StagedCNN":
        """The model saved in `folder` by save_pretrained (safetensors only)."""
        folder = Path(folder)
        name = cls.display_name
        try:
            conf = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the {name}'s config.json in {folder}: {e}") from None
        if not isinstance(conf, dict):
            raise ModelError(f"the config.json in {folder} is not a JSON object")
        model = cls(cls.config_class.from_dict(conf))
        check_weight_files(folder, str(folder))
        if not (folder / WEIGHTS).is_file():
            raise ModelError(f"{folder} has no {WEIGHTS}; save the {name} with save_pretrained(folder)")
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
        except Exception as e:  # noqa: BLE001 - safetensors' own errors, or shapes that do not match the config
            raise ModelError(f"could not load the {name} in {folder}: {type(e).__name__}: {e}") from None
        return model
