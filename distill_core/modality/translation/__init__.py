"""Translation with an encoder-decoder: data.py (the bible pairs, a file of pairs, a hub dataset), tokenizer.py (a
shared subword vocabulary), models.py (Marian teacher and students), teacher.py (trained here once and cached),
modality.py (batches, chrF and BLEU), capture.py (three kinds of attention), task.py, analysis.py."""
