"""The launcher's dealings with runners and the terminal: where steps run, what a run's end means, Ctrl-C, progress."""
