"""The one extension seam: pluggy hook specifications, the plugin manager, built-in plugins."""
