"""What differs between kinds of task. A session talks to its data and models only through a `Task` (base.py): how
the data is read and split, how teachers are prepared, students built and their maps paired with the teacher's, and
what the teacher says about each batch. The `Modality` a task builds encodes the splits once, batches them, feeds
them to a model, evaluates it, and shows its inputs on the axes of an attention map.

Text classification (`text.py`, `text_task.py`) and images (`vision.py`, `vision_task.py`) are the kinds built
today; `registry.py` names them.
"""
from .base import Batch, Modality, Task, TeacherBatch
from .text.modality import TextModality

__all__ = ["Batch", "Modality", "Task", "TeacherBatch", "TextModality"]
