"""The New session form: widgets -> a validated SessionConfig, uploads, previews and the checks before Start.

    keys.py      the widget keys (all "new."-namespaced) and the variant sets
    labels.py    the choices the form offers and their labels
    values.py    config ⇄ widget values, both ways, per task (pure functions)
    variants.py  the variant blocks: values, names, losses, strategies; add / remove callbacks
    uploads.py   saving uploads, previews, whole-file and image checks (cached)
    sections.py  the widgets every task draws: temperature, training, several teachers, variants; a task section's
                 settings and a teacher trained here (translation, language model)
    text.py      the text task's widgets (its teacher, student and objectives sections serve tagging too)
    tagging.py   the token-tagging task's widgets
    translation.py  the translation task's widgets
    language_model.py  the language-model task's widgets
    image.py     the image task's widgets
    tasks.py     the registry: each task's widgets and converters; initial_values, build_config, the page's state

Settings the form does not show (e.g. the teacher's fine-tuning learning rate or the probe size) are kept from the
form's defaults: `SessionConfig()`, or the config file named by `ADS_FORM_DEFAULTS` (JSON or YAML); an image
config there sets the image task's defaults, a tagging, translation or language-model config (task: tagging /
translation / language_model) that task's.
"""
