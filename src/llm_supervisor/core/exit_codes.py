"""Exit codes shared by the supervisor and the programs it runs.

The model server exits with WEIGHTS_LOAD_FAILED (65, sysexits' EX_DATAERR: "input data was
incorrect") when the model's files cannot be loaded, so the supervisor and the model-repair plugin
can tell a damaged model from any other crash without parsing logs.
"""

WEIGHTS_LOAD_FAILED = 65
CONFIG_ERROR = 78  # sysexits' EX_CONFIG: bad settings, nothing to repair
