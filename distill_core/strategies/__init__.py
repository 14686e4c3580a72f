"""Strategies that change how a variant learns, each a switch on the variant (config.VariantConfig):

    schedules.py    loss-weight and temperature schedules, the TinyBERT stages preset
    adaptive.py     weights that adapt from the losses themselves, learned temperature, attention focus
    adversarial.py  perturbations of the input embeddings against the student (FGSM, PGD, FreeLB), the ARD loss
    generated.py    generated transfer data: unlabelled texts and augmented copies, labelled by the teacher
"""
