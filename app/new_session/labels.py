"""What the form offers and how it names it: the choices of its radios and select boxes, their labels, and its
limits. The engine's choices themselves come from distill_core.config and strategies/schedules.py."""
from __future__ import annotations

from distill_core.strategies.schedules import SCHEDULES as LOSS_SCHEDULES
from distill_core.vocab import FAMILY_NAMES  # noqa: F401 - the form names families as the engine does

FILE_TYPES = ["csv", "tsv", "jsonl", "json", "ndjson"]
PREVIEW_ROWS = 200
MAX_FORM_VARIANTS = 6           # the engine takes more; a form with more blocks stops being readable
TEACHER_KINDS = {"default": "Bundled all-MiniLM-L6-v2 (offline)", "local": "Model folder on this machine",
                 "hub": "Hugging Face hub id (online)"}
DATA_KINDS = {"default": "Rotten Tomatoes snippets (bundled)", "upload": "Upload a CSV or JSONL file",
              "local": "CSV or JSONL file on this machine", "hub": "Hugging Face hub dataset (online)"}
# ---- strategies: the form's names for the engine's choices ------------------------------------------------
SCHEDULE_KINDS = [s.partition("@")[0] for s in LOSS_SCHEDULES]        # step@E / until@E take an epoch input
SCHEDULE_LABELS = {"constant": "constant", "linear_up": "rising linearly, 0 → 1",
                   "linear_down": "falling linearly, 1 → 0",
                   "cosine_up": "rising along a half cosine", "cosine_down": "falling along a half cosine",
                   "step": "off, then on from epoch E", "until": "on until epoch E, then off"}
AUTO_WEIGHT_LABELS = {"none": "none (the weights above)", "magnitude": "magnitude (each loss over its running size)",
                      "uncertainty": "uncertainty (learned weights)"}
TEMPERATURE_LABELS = {"constant": "constant (T below, under Objectives)", "linear_up": "rising, low → high",
                      "linear_down": "falling, high → low", "cosine_up": "rising along a half cosine",
                      "cosine_down": "falling along a half cosine",
                      "curriculum": "curriculum (learned, within the range)"}
ADV_OFF = "off"
ADV_LABELS = {ADV_OFF: "off", "pgd": "PGD (several steps)", "fgsm": "FGSM (one step)", "freelb": "FreeLB"}
ATTACK_START_LABELS = {"random": "random point, climbs the ARD loss", "clean_gradient": "clean step's gradient (cheaper)"}
TRANSFER_KINDS = {"none": "None", "unused": "Unused rows of the dataset (labels hidden)",
                  "file": "A file of texts (.csv, .jsonl or .txt)"}
OP_LABELS = {"neighbours": "swap for a similar word", "mask": "mask a word", "delete": "delete a word",
             "swap": "swap two neighbouring words"}
# ---- several teachers (distill_core.config.EnsembleConfig): the further teachers teacher_2 ... teacher_5 -----------
MAX_FURTHER_TEACHERS = 4
FURTHER = tuple(range(2, 2 + MAX_FURTHER_TEACHERS))   # the further teachers' numbers; keys new[.img].ens<k>.*
COMBINE_LABELS = {"mean": "mean of the logits", "confidence": "confidence-weighted mean",
                  "most_confident": "most confident teacher per example"}
ENSEMBLE_ATTENTION_LABELS = {"teacher": "the first teacher", "mean": "mean of every teacher's maps"}
ENSEMBLE_AVERAGE_LABELS = {"logits": "logits (their mean)", "probabilities": "probabilities at the KD temperature"}
PART_HELP = ("1/2 and 2/2 split the teacher's examples in two halves that never overlap. Empty: all of them; k/n: "
             "the k-th of n equal parts.")
FURTHER_IMAGE_KINDS = {"cnn": "CNN, built and trained here", "vit": "ViT, built and trained here",
                       "mobilenet": "MobileNetV2 pretrained on ImageNet, fine-tuned here",
                       "local": "Model folder on this machine"}
# ---- the tasks --------------------------------------------------------------------------------------------
TEXT_LAYER_MAPS = ["uniform", "last", "suggested", "explicit"]
# ---- the image task ---------------------------------------------------------------------------------------
IMAGE_TEACHER_KINDS = {"cnn": "CNN (residual, trained here once and cached)",
                       "vit": "ViT (trained here once and cached)",
                       "mobilenet": "MobileNetV2 pretrained on ImageNet (fine-tuned here once and cached): for "
                                    "photos, and few of them",
                       "local": "Hugging Face image-classification model folder on this machine"}
IMAGE_DATA_KINDS = {"builtin": "Built-in dataset", "upload": "Upload a .zip of class folders",
                    "local": "Folder or .zip on this machine"}
IMAGE_DATASET_LABELS = {"mnist": "mnist: handwritten digits, 28×28 (a 5,000-image sample of MNIST)",
                        "fashion_mnist": "fashion_mnist: clothing in 10 classes, 28×28 (Fashion-MNIST)",
                        "sklearn_digits": "sklearn_digits: scikit-learn's handwritten digits, 8×8 (quickest)"}
IMAGE_SPLITS = {"mnist": (3500, 500, 1000), "fashion_mnist": (3500, 500, 1000), "sklearn_digits": (1097, 300, 400)}
IMAGE_LAYER_MAPS = ["uniform", "last", "explicit"]      # "suggested" is computed for text runs only
# what the image task starts from when the form's defaults are a text session: the attention transfer paper's
# temperature (4), and a CPU-sized run on the built-in digits
IMAGE_FORM_DEFAULTS = {"data": {"source": "mnist", "train_size": 3500, "val_size": 500, "test_size": 1000},
                       "teacher": {"source": "cnn"}, "objectives": {"temperature": 4.0},
                       "train": {"epochs": 6, "batch_size": 64, "lr": 2e-3}}
# ---- token tagging ----------------------------------------------------------------------------------------
TAGGING_DATASET = "ner_tweets"      # the bundled tweets with named entities (distill_core/modality/tagging/data.py)
TAGGING_FILE_TYPES = ["txt", "conll", "tsv", "bio", "iob", "jsonl", "ndjson", "json"]
TAGGING_DATA_KINDS = {"default": "Tweets with named entities (bundled)",
                      "upload": "Upload a CoNLL-style or JSONL file", "local": "A file on this machine",
                      "hub": "Hugging Face hub dataset (online)"}
TAGGING_LAYER_MAPS = ["uniform", "last", "explicit"]    # "suggested" reads text classification runs
TAGGING_FORM_DEFAULTS = {"task": "tagging"}   # data.source left as it is: the engine reads its own default data
# ---- translation ------------------------------------------------------------------------------------------
BIBLE = "bible"                     # the bundled bible verses (distill_core/modality/translation/data.py)
BIBLE_PAIR = ("4", "l")             # World English Bible -> Louis Segond 1910, the engine's default pair
BIBLE_VERSIONS = {"4": "World English Bible (English)", "l": "Louis Segond 1910 (French)"}   # when the engine is absent
TRANSLATION_FILE_TYPES = ["csv", "tsv", "jsonl", "json", "ndjson"]
TRANSLATION_DATA_KINDS = {"default": "Bible verses (bundled)", "upload": "Upload a CSV, TSV or JSONL file of pairs",
                          "local": "A file on this machine", "hub": "Hugging Face hub dataset (online)"}
TRANSLATION_TEACHER_KINDS = {"default": "Built here and trained on the training pairs (cached)",
                             "local": "Marian model folder on this machine", "hub": "Hugging Face hub id (online)"}
TRANSLATION_LAYER_MAPS = ["uniform", "last", "explicit"]
TRANSLATION_FORM_DEFAULTS = {"task": "translation"}
# ---- a language model -------------------------------------------------------------------------------------
LANGUAGE_MODEL_BIBLE = "4"          # the World English Bible, the version a language model reads by default
LANGUAGE_MODEL_FILE_TYPES = ["txt", "csv", "tsv", "jsonl", "json", "ndjson"]
LANGUAGE_MODEL_DATA_KINDS = {"default": "World English Bible (bundled)",
                             "upload": "Upload a .txt, CSV, TSV or JSONL file", "local": "A file on this machine",
                             "hub": "Hugging Face hub dataset (online)"}
LANGUAGE_MODEL_TEACHER_KINDS = {"default": "Built here and trained on the training passages (cached)",
                                "local": "Causal model folder on this machine", "hub": "Hugging Face hub id (online)"}
LANGUAGE_MODEL_LAYER_MAPS = ["uniform", "last", "explicit"]
LANGUAGE_MODEL_FORM_DEFAULTS = {"task": "language_model"}
