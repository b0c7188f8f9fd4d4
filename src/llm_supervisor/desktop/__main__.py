"""``python -m llm_supervisor.desktop``: see :mod:`llm_supervisor.desktop.launch`."""

import sys

from llm_supervisor.desktop.launch import main

sys.exit(main())
