"""What the pages draw differently per kind of task, in one place: a page asks a run's task (`of(probe)`) what its
inputs are and how to show them, never compares the task's name. A new kind of task adds one entry here.
No Streamlit here."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskPages:
    kind: str                   # SessionConfig.modality, as probe.json and generated.json record it
    pictures: bool              # the inputs are pictures: maps are drawn over them (explorer, attributions,
                                # generated data, report) instead of over tokens
    label: str = ""             # the kind of task in words
    attacks: bool = True        # robustness under attack and adversarial students apply
    attributions: bool = True   # the Attributions page applies (one label per input to attribute)
    compresses: bool = True     # the Compression page applies
    details_title: str = ""     # the heading of the task's other measures on the Accuracy page
    kinds: tuple = ()           # kinds of attention beside the primary one (translation: encoder, decoder)
    continues: bool = False     # the models continue a prompt (a language model): the explorer's own page


TASKS = {t.kind: t for t in (
    TaskPages("text", pictures=False, label="text classification"),
    TaskPages("image", pictures=True, label="image classification"),
    TaskPages("tagging", pictures=False, label="token tagging", attacks=False, attributions=False, compresses=False,
              details_title="Entities: precision, recall and F1 per type"),
    TaskPages("translation", pictures=False, label="translation", attacks=False, attributions=False,
              compresses=False, details_title="BLEU and chrF", kinds=("cross", "encoder", "decoder")),
    TaskPages("language_model", pictures=False, label="language model", attacks=False, attributions=False,
              compresses=False, details_title="Perplexity, KL to the teacher and agreement", continues=True),
)}
DEFAULT = TASKS["text"]         # runs written before probe.json named their task were text runs


def of(record: dict | None) -> TaskPages:
    """The task of a run's probe.json (or another record with a "modality" key, e.g. generated.json)."""
    return TASKS.get((record or {}).get("modality") or DEFAULT.kind, DEFAULT)


def example_label(label, names: list) -> str:
    """A probe example's answer in a few words: its class, a tagged sentence's entity types, a translation's
    reference (cut short)."""
    if isinstance(label, (list, tuple)):         # tags, one per word
        types = sorted({t[2:] for t in label if isinstance(t, str) and t[:2] in ("B-", "I-")})
        return ", ".join(types) or "no entity"
    if isinstance(label, str):                   # a translation: the source says enough
        return ""
    return str(names[label]) if isinstance(label, int) and 0 <= label < len(names) else "?"
