"""``python -m llm_supervisor.gateway``: see :mod:`llm_supervisor.gateway.launch`."""

import sys

from llm_supervisor.gateway.launch import main

sys.exit(main())
