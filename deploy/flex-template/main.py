"""Flex Template launcher entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): the CLI, with true/false switches."""

import sys

from pipeline.cli import main
from pipeline.template import launcher_argv

if __name__ == "__main__":
    sys.exit(main(launcher_argv(sys.argv[1:])))
