"""Self-healing for the model service: detect a damaged model directory, find exactly which
files are bad, re-fetch only those, and hand the unit back to the supervisor to restart.

Modules, each small and usable on its own:

- :mod:`.context`   which unit runs the model server, where its model lives, where to fetch from;
- :mod:`.detect`    recognise a weight-load failure from the exit code and the log tail;
- :mod:`.verify`    compare the directory with the manifest (or the hub's file metadata);
- :mod:`.perms`     readability by mode bits (root's ``os.access`` lies) and the fix;
- :mod:`.fetch`     re-fetch single files from the hub, the local HF cache or the offline GGUF;
- :mod:`.nofollow`  changes below the model directory that never follow a symbolic link;
- :mod:`.budget`    at most N attempts, then give up with a reason;
- :mod:`.engine`    the repair procedure that ties them together.

The built-in plugin :mod:`llm_supervisor.plugins.builtin.model_repair` is a thin layer of
hook implementations over :mod:`.engine`. Nothing here imports torch or transformers: the offline
conversion runs in a child process.
"""
