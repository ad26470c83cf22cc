"""The ``emorec`` command line: one small function per verb, the work lives in the package.

The verbs live by what they are for (``data_commands``, ``training_commands``, ``using_commands``),
each turning typed options into one library call; importing this package registers them all on
:data:`app`, and :func:`main` runs it with errors as one line.
"""

from emorec.cli import data_commands, training_commands, using_commands  # noqa: F401  (they register the verbs)
from emorec.cli.app import app, main

__all__ = ["app", "main"]
