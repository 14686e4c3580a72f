"""A data file is checked when it is previewed, and a file a session cannot use is refused before any run exists.

The rules (distill_core.data.check_labelled_table) are tested on frames; the New session page is driven with
AppTest on a local file and on an upload, with starting a session replaced by a recorder that only creates the
run folder."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from app.new_session import keys, tasks, uploads
from app_helpers import open_page, texts
from conftest import make_texts, tiny_config_dict
from distill_core import RunStore, SessionConfig
from distill_core.sources import UPLOADS_DIR
from distill_core.modality.text.data import (ERROR, MIN_CLASS_TEXTS, WARNING, check_file, check_labelled_table,
                               file_label, load_splits, read_table)
from distill_core.errors import DataError

PAGE = Path(__file__).resolve().parent.parent / "app" / "views" / "new_session.py"
TIMEOUT = 60                   # first imports of torch/transformers; nothing trains inside the page
SIZES = (100, 20, 40)          # fit in the frames below, so no split-size warning unless a test wants one


def frame(labels: list[str], texts_: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"id": range(len(labels)),
                         "review": texts_ or [f"review number {i} of the film" for i in range(len(labels))],
                         "sentiment": labels})


def check(df: pd.DataFrame, sizes=SIZES, name: str = "my reviews.csv", text="review", label="sentiment"):
    return check_labelled_table(df, text, label, sizes, name)


def messages(result, severity: str) -> list[str]:
    return [p.message for p in result.problems if p.severity == severity]


# ---- the rules --------------------------------------------------------------------------------------------
def test_a_usable_file_has_no_problems_and_counts_its_classes():
    result = check(frame(["pos", "neg"] * 100))
    assert result.problems == []
    assert result.class_counts == {"neg": 100, "pos": 100} and result.rows == 200
    result.raise_errors()                                     # nothing to refuse


def test_one_class_is_an_error_that_names_the_file_and_the_fix():
    result = check(frame(["pos"] * 200))
    (msg,) = messages(result, ERROR)
    assert msg.startswith("my reviews.csv:") and "'pos'" in msg and "at least two classes" in msg
    assert "choose the column that holds the classes" in msg
    assert result.class_counts == {"pos": 200}                # shown in the preview instead of "Labels seen"
    with pytest.raises(DataError, match="my reviews.csv: every example has the label 'pos'"):
        result.raise_errors()


def test_a_class_with_too_few_texts_is_an_error_saying_how_many_it_needs():
    result = check(frame(["pos", "neg"] * 99 + ["meh", "meh"]))
    (msg,) = messages(result, ERROR)
    assert "class 'meh' has only 2 distinct texts" in msg and f"at least {MIN_CLASS_TEXTS}" in msg
    assert msg.startswith("my reviews.csv:") and "Add examples of 'meh'" in msg
    # copies of one text count once: three rows of the same text are one distinct text
    result = check(frame(["pos", "neg"] * 99 + ["meh"] * 3,
                         [f"text {i}" for i in range(198)] + ["the same words"] * 3))
    assert any("class 'meh' has only 1 distinct text;" in m for m in messages(result, ERROR))
    assert check(frame(["pos", "neg"] * 99 + ["meh"] * MIN_CLASS_TEXTS)).errors == []


def test_strong_imbalance_is_a_warning_with_the_majority_share():
    result = check(frame(["pos"] * 170 + ["neg"] * 30))
    assert result.errors == []
    (msg,) = messages(result, WARNING)
    assert "'pos' holds 85% of the examples" in msg and msg.startswith("my reviews.csv:")
    assert check(frame(["pos"] * 140 + ["neg"] * 60)).problems == []          # 70%: no warning


def test_a_label_column_of_ids_or_free_text_is_an_error():
    df = frame(["pos", "neg"] * 100)
    result = check(df, label="id")
    (msg,) = messages(result, ERROR)
    assert "200 different values in 200 rows" in msg and "like an id" in msg
    assert "choose the column that holds the classes" in msg
    df["note"] = [f"seen on day {i % 150}" for i in range(200)]           # free text, some of it repeated
    (msg,) = messages(check(df, label="note"), ERROR)
    assert "150 different values in 200 rows, too few examples per class" in msg and "ids or free text" in msg
    df["note"] = [f"day {i % 25}" for i in range(200)]                     # 25 classes of 8: classes after all
    assert check(df, label="note").errors == []


def test_missing_same_or_numeric_columns_are_errors():
    df = frame(["pos", "neg"] * 100)
    (msg,) = messages(check(df, text="text"), ERROR)
    assert "my reviews.csv has no text column 'text'; its columns are: id, review, sentiment" in msg
    assert "the text and the label column are both 'sentiment'" in messages(check(df, text="sentiment"), ERROR)[0]
    (msg,) = messages(check(df, text="id"), ERROR)
    assert "the text column 'id' holds numbers, not text" in msg


def test_empty_and_repeated_texts_and_small_files_are_warnings_that_say_what_happens():
    texts_ = [f"review {i}" for i in range(200)]
    texts_[:3] = ["", " ", ""]
    texts_[10:14] = ["Same  words"] * 2 + ["same words"] * 2      # case and spacing do not count
    result = check(frame(["pos", "neg"] * 100, texts_))
    assert result.errors == [] and result.rows == 197
    warnings = "\n".join(messages(result, WARNING))
    assert "3 rows have an empty text and will be left out" in warnings
    assert "1 texts appear more than once (3 extra rows)" in warnings
    small = check(frame(["pos", "neg"] * 20), sizes=(3000, 500, 2500))
    (msg,) = messages(small, WARNING)
    assert "holds 40 distinct texts, fewer than the 6,000 the split sizes ask for" in msg
    assert "split it 70/10/20 instead, 28 for training, 4 for validation and 8 for testing" in msg


def test_the_preview_and_the_session_agree_on_the_fallback_split(tmp_path):
    path = tmp_path / "forty.csv"
    frame(["pos", "neg"] * 20).to_csv(path, index=False)
    (msg,) = messages(check_file(path, "review", "sentiment", (3000, 500, 2500), 50), WARNING)
    cfg = SessionConfig.from_dict({"data": {"source": str(path), "text_column": "review",
                                            "label_column": "sentiment"}}).data
    s = load_splits(cfg)
    said = re.search(r"(\d+) for training, (\d+) for validation and (\d+) for testing", msg).groups()
    assert tuple(map(int, said)) == (len(s.train_texts), len(s.val_texts), len(s.test_texts))


# ---- file names in messages -------------------------------------------------------------------------------
def test_an_upload_keeps_its_name_and_messages_use_it(tmp_path):
    body = "review,sentiment\n" + "".join(f"text {i},pos\n" for i in range(30))
    path = uploads.save_upload(tmp_path, "my reviews (v2).csv", body.encode(), 50)
    assert path.name == "my reviews (v2).csv" and path.parent.parent == tmp_path / UPLOADS_DIR
    assert uploads.save_upload(tmp_path, "my reviews (v2).csv", body.encode(), 50) == path     # same file, same place
    (msg,) = [p.message for p in check_file(path, "review", "sentiment", SIZES, 50).errors]
    assert msg.startswith("my reviews (v2).csv:") and path.parent.name not in msg
    assert uploads.save_upload(tmp_path, "../../etc/passwd.csv", b"a,b\n", 1).name == "passwd.csv"


def test_an_older_upload_is_still_read_and_called_by_its_own_name(tmp_path):
    folder = tmp_path / UPLOADS_DIR
    folder.mkdir()
    old = folder / "0123456789ab_old_reviews.csv"
    old.write_text("review,sentiment\n" + "".join(f"text {i},{i % 2}\n" for i in range(30)))
    assert file_label(old) == "old_reviews.csv"
    assert len(read_table(old, "review", "sentiment", 50)) == 30
    with pytest.raises(DataError) as e:
        read_table(old, "text", "sentiment", 50)
    assert "old_reviews.csv has no text column" in str(e.value) and "0123456789ab" not in str(e.value)
    (msg,) = [p.message for p in check_file(old, "text", "sentiment", SIZES, 50).errors]
    assert msg.startswith("old_reviews.csv has no text column") and "0123456789ab" not in msg


def test_a_deleted_upload_says_to_upload_it_again(tmp_path):
    path = uploads.save_upload(tmp_path, "gone.csv", b"review,sentiment\na,1\n", 1)
    path.unlink()
    (msg,) = [p.message for p in check_file(path, "review", "sentiment", SIZES, 50).errors]
    assert msg == "the uploaded file gone.csv is no longer stored beside the runs; upload it again"


# ---- preflight ------------------------------------------------------------------------------------------
def one_class_csv(folder, name="one class.csv", n=40):
    path = folder / name
    pd.DataFrame({"review": [f"a review, number {i}" for i in range(n)], "sentiment": ["pos"] * n}).to_csv(
        path, index=False)
    return path


def test_preflight_refuses_a_file_with_blocking_problems(tmp_path, tiny_teacher, tiny_csv):
    tasks.preflight(SessionConfig.from_dict(tiny_config_dict(tiny_teacher, tiny_csv)))     # a usable file passes
    bad = SessionConfig.from_dict(tiny_config_dict(tiny_teacher, one_class_csv(tmp_path)))
    with pytest.raises(DataError, match="one class.csv: every example has the label 'pos'"):
        tasks.preflight(bad)


# ---- the New session page ---------------------------------------------------------------------------------
def page_with(tiny_teacher):
    at = open_page(PAGE, default_timeout=TIMEOUT)
    at.radio(key="new.teacher_kind").set_value("local").run()
    at.text_input(key="new.teacher_path").input(str(tiny_teacher)).run()
    return at


def runs_in(store: RunStore) -> list[str]:
    """The run folders in the store, whether or not they hold a readable run."""
    folders = sorted(p.name for p in store.root.iterdir() if not p.name.startswith(".")) if store.root.is_dir() else []
    assert [r.run_id for r in store.list()] == folders
    return folders


def all_texts(at) -> str:
    return "\n".join(texts(getattr(at, kind)) for kind in ("error", "warning", "caption", "markdown", "info"))


def test_a_one_class_local_file_is_refused_at_preview_and_start_creates_no_run(store, started, tmp_path,
                                                                             tiny_teacher):
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("local").run()
    at.text_input(key="new.data_path").input(str(one_class_csv(tmp_path))).run()
    assert not at.exception
    assert "one class.csv: every example has the label 'pos'" in texts(at.error)      # before Start
    assert "Labels seen" not in all_texts(at) and "pos 40 (100%)" in texts(at.caption)
    at.button(key="new.start").click().run()
    assert not at.exception
    assert "one class.csv: every example has the label 'pos'" in texts(at.error)
    assert started == [] and runs_in(store) == []


def test_a_usable_local_file_shows_class_counts_and_starts(store, started, tiny_teacher, tiny_csv):
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("local").run()
    at.text_input(key="new.data_path").input(str(tiny_csv)).run()
    assert not at.error, texts(at.error)
    assert "160 rows with a text in reviews.csv; examples per class: fresh 80 (50%), rotten 80 (50%)" in \
        texts(at.caption)
    assert "the session will split it 70/10/20 instead" in texts(at.warning)           # 160 < 3000 + 500 + 2500
    at.button(key="new.start").click().run()
    assert not at.error, texts(at.error)
    assert len(started) == 1 and runs_in(store) == [at.session_state[keys.ACTIVE_RUN]]


def test_an_uploaded_one_class_file_is_named_as_uploaded_and_refused_before_any_run(store, started, tiny_teacher):
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("upload").run()
    body = "review,sentiment\n" + "".join(f"review number {i},pos\n" for i in range(50))
    at.file_uploader(key="new.upload").set_value(("my reviews.csv", body.encode(), "text/csv")).run()
    assert not at.exception
    (saved,) = (store.root / UPLOADS_DIR).glob("*/*")
    assert saved.name == "my reviews.csv"
    assert "my reviews.csv: every example has the label 'pos'" in texts(at.error)
    at.button(key="new.start").click().run()
    refusal = texts(at.error)
    assert "my reviews.csv: every example has the label 'pos'" in refusal
    for shown in (all_texts(at), refusal):
        assert saved.parent.name not in shown and str(saved.parent) not in shown
    assert started == [] and runs_in(store) == []


def test_a_rare_class_in_a_jsonl_file_is_refused_at_preview_and_start(store, started, tmp_path, tiny_teacher):
    rows = make_texts(60) + [("a rare one", "meh"), ("another rare one", "meh")]
    path = tmp_path / "rare.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("local").run()
    at.text_input(key="new.data_path").input(str(path)).run()
    assert "rare.jsonl: class 'meh' has only 2 distinct texts" in texts(at.error)
    at.button(key="new.start").click().run()
    assert "class 'meh' has only 2 distinct texts" in texts(at.error)
    assert started == [] and runs_in(store) == []


# ---- which columns the preview preselects --------------------------------------------------------------------
def guessed(folder, name: str, rows: list[dict]) -> tuple[str, str]:
    """The (text, label) columns the form preselects for a CSV of `rows`."""
    path = folder / name
    pd.DataFrame(rows).to_csv(path, index=False)
    df = uploads.preview_table(path, 50)
    text, label = uploads.guess_columns(df, "text", "label")
    return df.columns[text], df.columns[label]


def test_the_text_column_is_guessed_by_its_name_or_its_words_never_an_id(tmp_path):
    tweets = [f"just watched the film number {i} and it was {'great' if i % 2 else 'awful'}" for i in range(40)]
    labels = ["pos", "neg"] * 20
    assert guessed(tmp_path, "tweets.csv", [{"id": i, "tweet": t, "label": lab}
                                            for i, (t, lab) in enumerate(zip(tweets, labels))]) == ("tweet", "label")
    assert guessed(tmp_path, "swapped.csv", [{"label": lab, "text": t}
                                             for t, lab in zip(tweets, labels)]) == ("text", "label")
    # no usual names: the wordy column, last here, is the text; the column of repeated values is the label
    assert guessed(tmp_path, "last.csv", [{"id": i, "verdict": lab, "opinion": t}
                                          for i, (t, lab) in enumerate(zip(tweets, labels))]) == ("opinion", "verdict")
    # two columns of words: the one with more characters a cell
    assert guessed(tmp_path, "two.csv", [{"user": f"user_{i % 7}", "message_text": t, "stars": i % 2}
                                         for i, t in enumerate(tweets)]) == ("message_text", "stars")
    # a column named like text that holds numbers is not preselected
    assert guessed(tmp_path, "numbers.csv", [{"review": i, "words": t, "label": lab}
                                             for i, (t, lab) in enumerate(zip(tweets, labels))]) == ("words", "label")


def test_a_binary_file_named_csv_gets_the_engines_message_at_preview_and_start(store, started, tiny_teacher):
    """A binary file renamed .csv: the preview says what Start says (not UTF-8 text), not a CSV parser's error."""
    body = b"id,text\n1,\x89PNG\r\n\x1a\n2,\x00\xff,\xfe\n3,a,b,c\n" + bytes(range(256)) * 8
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("upload").run()
    at.file_uploader(key="new.upload").set_value(("picture.csv", body, "text/csv")).run()
    assert not at.exception
    said = texts(at.error)
    assert "picture.csv is not UTF-8 text" in said and "save it as UTF-8" in said
    assert "tokenizing" not in all_texts(at) and "C error" not in all_texts(at)
    at.button(key="new.start").click().run()
    refusal = [e.value for e in at.error]
    assert any("picture.csv is not UTF-8 text" in m for m in refusal) and started == [] and runs_in(store) == []
    assert len(set(m for m in refusal if "UTF-8" in m)) == 1                    # one message, the same both times


def test_an_uploaded_tweets_file_preselects_the_tweet_column_and_shows_no_error(store, started, tiny_teacher):
    rows = make_texts(60)
    body = "id,tweet,label\n" + "".join(f"{i},{t},{lab}\n" for i, (t, lab) in enumerate(rows))
    at = page_with(tiny_teacher)
    at.radio(key="new.data_kind").set_value("upload").run()
    at.file_uploader(key="new.upload").set_value(("tweets.csv", body.encode(), "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key=keys.FILE_TEXT_COLUMN).value == "tweet"
    assert at.selectbox(key=keys.FILE_LABEL_COLUMN).value == "label"
    assert "holds numbers" not in all_texts(at) and not at.error, texts(at.error)
