"""Token tagging (named entities): the sentences and their BIO tags (data.py), the sub-tokens and scores the training
loop reads (modality.py, scores.py), token classifiers (models.py), the teacher's fine-tune (teacher.py) and its cached
per-token outputs (outputs.py), and the task a session runs (task.py)."""
