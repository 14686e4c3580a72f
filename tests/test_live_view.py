"""The New session page's progress line in words (app/live_view.progress_lines)."""
from app.live_view import fmt_seconds, progress_lines


def test_training_says_where_in_the_epoch_and_the_time_left_in_the_session():
    headline, fraction, detail = progress_lines({"phase": "train", "done": 120, "total": 376, "epoch": 1,
                                                 "epochs": 4, "epoch_step": 26, "epoch_steps": 94,
                                                 "elapsed_s": 61, "eta_s": 80, "session_eta_s": 95})
    assert headline == "Training: epoch 2 of 4 · step 26 of 94 (28% of the epoch)"
    assert abs(fraction - 120 / 376) < 1e-9
    assert "120/376 training steps" in detail and "about 1 min 35 s left in the session" in detail


def test_the_first_epoch_is_not_reported_as_zero_epochs_done():
    headline, _, _ = progress_lines({"phase": "train", "done": 3, "total": 376, "epoch": 0, "epochs": 4,
                                     "epoch_step": 3, "epoch_steps": 94})
    assert headline.startswith("Training: epoch 1 of 4 · step 3 of 94")


def test_before_training_the_phase_time_is_given_and_the_session_time_is_said_to_be_unknown():
    headline, fraction, detail = progress_lines({"phase": "prepare teacher", "done": 50, "total": 200,
                                                 "elapsed_s": 30, "eta_s": 90, "session_eta_s": None})
    assert headline.startswith("Preparing the teacher")
    assert fraction == 0.25
    assert "about 1 min 30 s left in this phase" in detail and "known once training starts" in detail
    _, fraction, detail = progress_lines({})
    assert fraction == 0.0 and "estimating" in detail


def test_seconds_read_as_minutes():
    assert fmt_seconds(None) == "-" and fmt_seconds(59.6) == "1 min 00 s" and fmt_seconds(5) == "5 s"
