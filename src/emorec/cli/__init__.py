"""The ``emorec`` command line: one small function per verb, the work lives in the package.

The verbs live by what they are for (``data_commands``, ``training_commands``,
``evaluation_commands``, ``workflow_commands``, ``runs_commands``, ``using_commands``), each turning
typed options into one library call; importing this package registers them all on :data:`app`, in
the order ``emorec --help`` lists them, and :func:`main` runs it with errors as one line.
"""

# importing each module registers its verbs, in this order (hence the noqa)
from emorec.cli import (  # noqa: F401
    data_commands,
    training_commands,
    evaluation_commands,
    workflow_commands,
    runs_commands,
    using_commands,
)
from emorec.cli.app import app, main

__all__ = ["app", "main"]
