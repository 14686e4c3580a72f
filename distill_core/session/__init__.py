"""Sessions: prepare, train every variant epoch by epoch on the same batches, record, finish; run them here, in a
child process, or queued."""
from .callbacks import SessionCallback, SessionControl, SessionState, Stop, StoreProgress
from .child import run_in_child
from .queue import SessionQueue, cancel_session, session_queue, start_session
from .runner import run_session
from .session import Prepared, Session
from ..modality.base import TeacherBatch
from .variant import RandomStream, StepContext, Variant

__all__ = ["Session", "Prepared", "Variant", "RandomStream", "StepContext", "TeacherBatch", "SessionCallback",
           "SessionControl", "SessionState", "Stop", "StoreProgress", "SessionQueue", "run_session", "run_in_child",
           "start_session", "cancel_session", "session_queue"]
