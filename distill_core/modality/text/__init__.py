"""Text classification: the data (data.py), the splits encoded for the training loop (modality.py), the task a
session runs (task.py), and token attributions (attribution.py). The teacher's fine-tune and its cached outputs are
in distill_core/teacher.py, the transformer students in distill_core/models.py."""
