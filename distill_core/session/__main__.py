"""`python -m distill_core.session RUN_FOLDER`: the child process of child.run_in_child."""
import sys

from .child import main

sys.exit(main())
