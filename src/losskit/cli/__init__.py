"""The ``losskit`` command line (``losskit.cli:main``).

``app``    the parser and the verbs demo, experiment, list, explain
``tools``  the verbs doctor, atlas, eval
``text``   plain-text tables shared by both
"""

from .app import build_parser, main

__all__ = ["main", "build_parser"]
