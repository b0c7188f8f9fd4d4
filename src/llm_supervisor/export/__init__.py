"""Export the units to existing cluster engines (issue 13): Kubernetes manifests and a compose file
for Docker Swarm. Pure functions from parsed units and settings to dicts (``model``, ``kubernetes``,
``compose``); ``writer`` dumps them as YAML and says what was left out. No daemon is needed."""
