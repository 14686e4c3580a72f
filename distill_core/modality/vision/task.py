"""Image classification as a session sees it: the image splits, an image teacher (a CNN or a ViT trained here once and
cached, or a model folder), a student of either family, and the teacher run on every batch (augmented copies differ
every time, so nothing is cached)."""
from __future__ import annotations

import torch
from torch import nn

from ... import mapping
from ...attacks import image_robustness_curves
from ...ensemble import EnsembleBatches
from ...config import MAX_FLOOR_EPOCHS
from ...errors import ConfigError
from ...objectives import ATTENTION_INPUTS, HIDDEN, MAP_INPUTS, needs_of
from ...strategies import generated as gen_lib
from ...vocab import FAMILY_NAMES
from ..base import INIT_LOCK, LayerPlan, Task
from .data import ImageSplits, load_image_splits
from .modality import ImageModality, ImageTeacherOutputs, check_image_session, describe_maps
from .models import build_cnn, build_vit, load_image_model, model_family, num_maps
from .teacher import prepare_image_teacher


def comparable(teacher: nn.Module, student: nn.Module) -> bool:
    """Whether two image models' maps cover the same positions: the same family, and for ViTs the same patch size."""
    family = model_family(teacher)
    return family == model_family(student) and (family == "cnn" or
                                                teacher.config.patch_size == student.config.patch_size)


class ImageTask(Task):
    kind = "image"
    padded_maps = False          # every probe image has the same positions
    suggests_layers = False
    saved_as = ImageModality.saved_as
    data_word, data_pronoun = "images", "them"

    # ---- data and teachers --------------------------------------------------------------------------------
    def load_data(self) -> ImageSplits:
        return load_image_splits(self.config.data, self.config.image.size)

    def check_teacher_configs(self, data: ImageSplits, configs: list) -> None:
        check_image_session(self.config, data.size)                  # before the teacher's training

    def prepare_teacher(self, config, data: ImageSplits, device, progress):
        return prepare_image_teacher(config, data, device, progress)

    def shape(self, model: nn.Module) -> tuple[int, int]:
        return num_maps(model)

    # ---- the student --------------------------------------------------------------------------------------
    def initial_student(self, data: ImageSplits, teacher: nn.Module, layer_rule) -> tuple[nn.Module, str]:
        """student.source, or built from the image section's shape for its family (seeded by train.seed)."""
        cfg, im = self.config, self.config.image
        if cfg.student.source:
            return load_image_model(cfg.student.source, data.num_labels), "random"
        with INIT_LOCK:
            torch.manual_seed(cfg.train.seed)
            if (im.student_family or model_family(teacher)) == "cnn":
                return build_cnn(data.channels, data.num_labels, im.student_widths, im.student_blocks), "random"
            return build_vit(channels=data.channels, image_size=data.size, patch=im.patch,
                             layers=im.student_layers, heads=im.student_heads, hidden=im.student_hidden,
                             num_labels=data.num_labels, dropout=cfg.student.dropout), "random"

    def map_layers(self, data: ImageSplits, teacher: nn.Module, student: nn.Module, layer_rule) -> LayerPlan:
        """The student's stages or layers paired with the teacher's, when their maps cover the same positions."""
        cfg = self.config
        t_family, s_family = model_family(teacher), model_family(student)
        check_image_session(cfg, data.size, t_family, s_family)
        t_shape, s_shape = num_maps(teacher), num_maps(student)
        same = comparable(teacher, student)
        if t_family == s_family and not same and any(needs_of(vc.losses) & (ATTENTION_INPUTS | {HIDDEN})
                                                     for vc in cfg.variants):
            raise ConfigError(f"the teacher's patches are {teacher.config.patch_size} pixels and the student's "
                              f"{student.config.patch_size}: their attention maps cover different positions, so "
                              f"attention and hidden-state losses cannot compare them; set image.patch to "
                              f"{teacher.config.patch_size} or use logit_kd / hard_kd")
        layers = mapping.layer_map(layer_rule, t_shape[0], s_shape[0]) if same else []
        return LayerPlan(t_shape, s_shape, layers, (t_family, s_family))

    def modality(self, data: ImageSplits, student: nn.Module) -> ImageModality:
        tokens = 1                                  # positions an attention row has (ViT: 1 + patches; CNN: 1)
        if model_family(student) == "vit":
            tokens = 1 + (data.size[0] // student.config.patch_size) * (data.size[1] // student.config.patch_size)
        return ImageModality(data, tokens)

    # ---- the teacher's outputs ----------------------------------------------------------------------------
    def teacher_source(self, teacher, modality: ImageModality, device, layers, head_rule, student_heads, needs,
                       progress) -> tuple[ImageTeacherOutputs, None]:
        return ImageTeacherOutputs(teacher.model, needs, layers, head_rule, student_heads, device,
                                   self.config.train.mixed_precision), None

    def further_source(self, teacher, name: str, prepared, needs: frozenset, layer_rule,
                       progress) -> ImageTeacherOutputs:
        maps = needs & MAP_INPUTS
        family, s_family = model_family(teacher.model), prepared.families[1]
        if maps and not comparable(teacher.model, prepared.student):
            raise ConfigError(f"{name} is a {FAMILY_NAMES[family]} whose maps the {FAMILY_NAMES[s_family]} student "
                              f"cannot be compared with: learn its attention from the first teacher "
                              f"(ensemble.attention: teacher) or give the variants that learn from {name} logit "
                              f"losses only")
        layers = []
        if maps:
            t_layers, t_heads = num_maps(teacher.model)
            layers = mapping.layer_map(layer_rule, t_layers, prepared.student_shape[0])
            mapping.check_same_head_rule(self.config.objectives.head_rule, name, t_heads, prepared.teacher_shape[1],
                                         prepared.student_shape[1], prepared.head_rule)
        return self.teacher_source(teacher, prepared.modality, prepared.device, layers, prepared.head_rule,
                                   prepared.student_shape[1], needs, progress)[0]

    def ensemble_source(self, sources: list, combine, attention: str) -> EnsembleBatches:
        return EnsembleBatches(sources, combine, attention)

    # ---- generated data, notices, robustness --------------------------------------------------------------
    def generate(self, session, p) -> None:
        """The images no split took and augmented copies of the training images (labels never shown); the teacher
        labels them with each batch. Examples beside their originals go to generated.json."""
        session.progress("generate data", 0, 1)
        modality = p.modality
        gen = gen_lib.build_generated_images(self.config.transfer, modality.splits)
        modality.images["generated"] = gen.images
        modality.labels["generated"] = [-1] * len(gen)      # never read: generated batches carry no labels
        p.generated, p.generated_outputs = gen, p.teacher_outputs
        shown = [i for k in (gen_lib.TRANSFER, gen_lib.AUGMENTED) for i in
                 [j for j, kind in enumerate(gen.kinds) if kind == k][:24]]
        probs = torch.zeros((len(gen), modality.splits.num_labels))
        if shown:
            with torch.no_grad():
                x = modality.batch("generated", shown, p.device).inputs["pixel_values"]
                probs[shown] = torch.softmax(p.teacher_model.eval()(pixel_values=x).logits.float().cpu(), -1)
        session.run.write_json("generated.json", {
            **gen_lib.image_examples_record(gen, modality.splits.train_images, probs, modality.splits.label_names),
            "used_by": [vc.name for vc in self.config.variants if vc.generated]})
        p.notices.extend(gen.notices)
        if gen.counts()[gen_lib.TRANSFER] and p.teacher.fit:
            p.notices.append("the unused images were among those the teacher was trained on, with their labels; the "
                             "students see only the teacher's outputs on them")
        session.progress("generate data", 1, 1)

    def teacher_notices(self, p) -> list[str]:
        fit = p.teacher.fit
        if not (fit and isinstance(fit.get("epochs"), list) and fit["epochs"]):   # an image teacher trained here
            return []
        curve = ", ".join(f"{e['val_accuracy']:.1%}" for e in fit["epochs"])
        pre = fit.get("pretrained")
        if pre:
            side = pre["input_size"]
            how = (f"the teacher, a {pre['model']} pretrained on {pre['on']} (pictures resized to {side}×{side}), "
                   f"was fine-tuned")
        else:
            how = f"the {FAMILY_NAMES[p.families[0]]} teacher was trained from scratch"
        epochs = f"{len(fit['epochs'])} epochs"
        if fit.get("epochs_asked"):
            epochs += (f" instead of {fit['epochs_asked']} (the training split is small: at least "
                       f"teacher.finetune_min_steps steps, at most {MAX_FLOOR_EPOCHS['teacher']} epochs)")
        return [f"{how} on {fit['examples']:,} images for {epochs} (validation accuracy by epoch: {curve}); epoch "
                f"{fit['kept_epoch']} was kept" + (f", {fit['train_s']:.0f} s once, cached for later sessions"
                                                   if not p.teacher.cached else "")]

    def pairing_notices(self, p) -> list[str]:
        t_family, s_family = p.families
        if t_family == s_family and not p.pairs:
            return ["the teacher's and the student's patches differ in size, so their attention maps cover "
                    "different positions: the student learns from the teacher's outputs only and no divergence is "
                    "recorded"]
        if t_family != s_family:
            return [f"the teacher is a {FAMILY_NAMES[t_family]} and the student a {FAMILY_NAMES[s_family]}: their "
                    f"attention maps are of different kinds, so the student learns from the teacher's outputs only "
                    f"and no divergence is recorded; the explorer still shows both over the picture"]
        return []

    def probe_extra(self, p) -> dict:
        """The families, and what a map's positions are (a ViT's patch grid and tokens, a CNN's stage sizes)."""
        size = p.modality.splits.size
        student = describe_maps(p.student, size)
        return {"families": {"teacher": p.families[0], "student": p.families[1]},
                "tokens": [student.get("tokens", []) for _ in p.teacher_probe],
                "maps": {"teacher": describe_maps(p.teacher_model, size), "student": student}}

    def robustness(self, models: dict, modality: ImageModality, device, progress) -> dict:
        return image_robustness_curves(models, modality.images["test"], modality.labels["test"], device,
                                       progress=progress)

    # ---- a finished run, reopened -------------------------------------------------------------------------
    @classmethod
    def reopen_splits(cls, config) -> ImageSplits:
        return load_image_splits(config.data, config.image.size)

    @classmethod
    def reopen_modality(cls, finished, splits) -> ImageModality:
        tokens = len(((finished.probe.get("maps") or {}).get("student") or {}).get("tokens") or [0]) or 1
        return ImageModality(splits, tokens)

    @staticmethod
    def load_model(folder) -> nn.Module:
        return load_image_model(str(folder)).to("cpu").eval()
