"""Image classification: the data (data.py; a user's pictures in pictures.py), the CNN and ViT models (models.py),
the built-in image teachers (teacher.py), the splits as the training loop reads them (modality.py), the task a
session runs (task.py), spatial maps and live maps on a picture (maps.py), and pixel attributions (attribution.py).
The CNNs' activation attention and its loss are in distill_core/activation.py, below the objectives."""
