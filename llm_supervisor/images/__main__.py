"""``python -m llm_supervisor.images build`` (what ``llm-supervisorctl images build`` runs)."""

import sys

from llm_supervisor.images.cli import main

sys.exit(main())
