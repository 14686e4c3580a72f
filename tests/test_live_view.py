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


# ---- times computed when the line is drawn --------------------------------------------------------------------
T = 1_000_000.0          # when the record below was written


def teacher_outputs(**over) -> dict:
    """A record written at T, 12 s into the session and 2 s into computing the teacher's outputs."""
    return {"phase": "teacher outputs", "done": 3, "total": 10, "epoch": 0, "epochs": 4, "elapsed_s": 12.0,
            "eta_s": 20.0, "session_eta_s": None, "started": T - 12, "phase_started": T - 2, "updated": T, **over}


def test_elapsed_time_is_counted_from_the_start_times_when_drawn_not_when_written():
    _, _, detail = progress_lines(teacher_outputs(), now=T)
    assert "3/10 batches · 2 s in this phase, 12 s in all · about 20 s left in this phase" in detail
    _, _, later = progress_lines(teacher_outputs(), now=T + 8)        # the same record, drawn 8 s later
    assert "3/10 batches · 10 s in this phase, 20 s in all · about 12 s left in this phase" in later
    assert "the session's time is known once training starts" in later


def test_an_estimate_that_has_run_out_says_so_and_the_time_keeps_moving():
    drawn = [progress_lines(teacher_outputs(), now=T + dt)[2] for dt in (25, 30)]
    for detail in drawn:
        assert "taking longer than estimated" in detail and "0 s left" not in detail
    assert "27 s in this phase, 37 s in all" in drawn[0] and "32 s in this phase, 42 s in all" in drawn[1]
    # testing: the session's estimate counts down between writes, then says it is late
    testing = {"phase": "evaluate", "done": 0, "total": 4, "epoch": 4, "epochs": 4, "eta_s": 13.0,
               "session_eta_s": 13.0, "started": T - 600, "phase_started": T, "updated": T}
    assert "about 8 s left in the session" in progress_lines(testing, now=T + 5)[2]
    late = progress_lines(testing, now=T + 20)[2]
    assert "0/4 models tested · 20 s in this phase, 10 min 20 s in all · taking longer than estimated" in late


def test_a_phase_whose_counted_work_is_done_is_finishing_not_zero_seconds_from_the_end():
    record = teacher_outputs(done=40, total=40, eta_s=0.0)
    for dt in (0, 15):
        detail = progress_lines(record, now=T + dt)[2]
        assert "40/40 batches" in detail and "finishing this phase" in detail and "0 s left" not in detail
    assert "17 s in this phase" in progress_lines(record, now=T + 15)[2]


def test_the_session_estimate_counts_down_between_writes():
    record = {"phase": "train", "done": 1200, "total": 3760, "epoch": 1, "epochs": 4, "epoch_step": 260,
              "epoch_steps": 940, "elapsed_s": 61.0, "eta_s": 80.0, "session_eta_s": 95.0, "started": T - 61,
              "updated": T}
    headline, _, detail = progress_lines(record, now=T + 5)
    assert headline == "Training: epoch 2 of 4 · step 260 of 940 (28% of the epoch)"
    assert detail == "1,200/3,760 training steps · 1 min 06 s elapsed · about 1 min 30 s left in the session"


def test_an_epoch_whose_steps_are_done_is_being_measured_then_done():
    record = {"phase": "train", "done": 94, "total": 376, "epoch": 0, "epochs": 4, "epoch_step": 94,
              "epoch_steps": 94, "session_eta_s": 60.0}
    assert progress_lines(record)[0] == ("Training: epoch 1 of 4 · its steps done; measuring its validation accuracy "
                                         "and attention")
    assert progress_lines(dict(record, epoch=1))[0] == "Training: epoch 1 of 4 done"


def test_the_teacher_fine_tune_estimate_says_it_may_stop_early():
    record = {"phase": "prepare teacher", "done": 50, "total": 2000, "eta_s": 1400.0, "started": T - 30,
              "phase_started": T - 25, "updated": T}
    detail = progress_lines(record, now=T)[2]
    assert "50/2,000 fine-tuning steps" in detail and "about 23 min 20 s left in this phase if every epoch runs" in detail
