"""Whether a call runs from the top level of a script outside its ``if __name__ == "__main__":``
guard: a worker's re-import of that script would reach the call again, so
:func:`~emorec.features.extract.extract_features` then extracts in its own process."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def unguarded_main_script() -> str | None:
    """The caller's ``__main__`` file when a worker's re-import of it (as ``__mp_main__``)
    would reach this call again, i.e. the call runs from its top level outside an
    ``if __name__ == "__main__":`` block; else ``None``."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    path = getattr(main, "__file__", None)
    if main is None or not path or name == "__main__" or name.endswith(".__main__"):
        return None  # multiprocessing re-imports neither sessions nor a package's __main__
    top, frame = None, sys._getframe(1)
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            top = frame
        frame = frame.f_back
    if top is None:
        return None
    try:
        tree = ast.parse(Path(top.f_code.co_filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None  # nothing a worker could re-import either
    guards = ('__name__ == "__main__"', '"__main__" == __name__')
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and ast.unparse(node.test).replace("'", '"') in guards
            and node.lineno <= top.f_lineno <= (node.end_lineno or node.lineno)
        ):
            return None
    return str(path)
