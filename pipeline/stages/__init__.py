"""The Beam graph of the job and its stages: list, decide, read, embed, commit."""
