"""Sessions: prepare, train every variant epoch by epoch on the same batches, record, finish; run or queue them."""
from .callbacks import SessionCallback, SessionControl, SessionState, Stop, StoreProgress
from .runner import SessionQueue, cancel_session, run_session, session_queue, start_session
from .session import Prepared, Session
from ..modality.base import TeacherBatch
from .variant import RandomStream, StepContext, Variant

__all__ = ["Session", "Prepared", "Variant", "RandomStream", "StepContext", "TeacherBatch", "SessionCallback",
           "SessionControl", "SessionState", "Stop", "StoreProgress", "SessionQueue", "run_session",
           "start_session", "cancel_session", "session_queue"]
