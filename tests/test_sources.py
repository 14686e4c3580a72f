"""One rule for file, folder or hub id, shared by the engine, the command line and the app."""
import pytest

from distill_core.sources import source_kind


@pytest.mark.parametrize("source,role,kind", [
    ("default", "model", "builtin"),
    ("rotten_tomatoes", "data", "builtin"),
    ("stanfordnlp/sst2", "data", "hub"),
    ("sst2", "data", "hub"),
    ("user/model", "model", "hub"),
    ("bert-base-uncased", "model", "hub"),
    ("data.csv", "data", "local"),
    ("reviews.JSONL", "data", "local"),
    ("./folder", "model", "local"),
    ("../models/teacher", "model", "local"),
    ("~/models/teacher", "model", "local"),
    ("/abs/path", "model", "local"),
    ("a/b/c", "model", "local"),
    ("C:\\models\\teacher", "model", "local"),
])
def test_source_kind(source, role, kind):
    assert source_kind(source, role) == kind


def test_an_existing_folder_wins_over_the_hub_spelling(tmp_path, monkeypatch):
    (tmp_path / "user" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert source_kind("user/model", "model") == "local"
    assert source_kind("user/other", "model") == "hub"


def test_engine_reads_a_missing_csv_as_a_missing_file_and_a_hub_name_as_the_hub(tmp_path, monkeypatch):
    from distill_core.config import DataConfig
    from distill_core.modality.text.data import load_splits
    from distill_core.errors import DataError, OfflineError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="data file data.csv does not exist"):
        load_splits(DataConfig(source="data.csv"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="stanfordnlp/sst2"):
        load_splits(DataConfig(source="stanfordnlp/sst2"))
