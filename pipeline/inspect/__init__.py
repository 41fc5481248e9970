"""Reading a finished output back and drawing it, for search and the report."""
