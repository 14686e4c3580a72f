"""attention distillation studio's engine: distil a teacher transformer into a smaller student and record
how the student's attention compares with the teacher's. No Streamlit here; the app only drives and draws."""
import os as _os

# Nothing is fetched from a model hub unless a user names a hub model or dataset (see hub.py).
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .config import (DataConfig, ObjectiveConfig, SessionConfig, StudentConfig, TeacherConfig,  # noqa: E402
                     TrainConfig, VariantConfig)
from .errors import (ConfigError, DataError, DistillError, ModelError, NonFiniteLossError,  # noqa: E402
                     OfflineError, RunStoreError)
from .store import Run, RunInfo, RunStore  # noqa: E402
from .session import (SessionCallback, SessionControl, SessionState, cancel_session, run_session,  # noqa: E402
                      session_queue, start_session)

__all__ = [
    "SessionConfig", "TeacherConfig", "StudentConfig", "DataConfig", "ObjectiveConfig", "TrainConfig", "VariantConfig",
    "DistillError", "ConfigError", "DataError", "ModelError", "RunStoreError", "NonFiniteLossError",
    "OfflineError", "Run", "RunInfo", "RunStore", "SessionCallback", "SessionControl", "SessionState",
    "run_session", "start_session", "cancel_session", "session_queue",
]
