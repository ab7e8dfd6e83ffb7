"""The ``ctxseg`` command line: :func:`main` parses the arguments (:mod:`.arguments`), runs the
command (:mod:`.commands`) and turns a user's mistake or a fault of the machine into one line
and an exit status. Sub-commands import torch only when they run."""

from __future__ import annotations

import sys
import traceback
import warnings

from ctxseg.cli.arguments import parser
from ctxseg.errors import CtxsegError

__all__ = ["main", "parser"]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"ctxseg: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        code = args.run(args)
    except CtxsegError as error:
        if args.debug:
            traceback.print_exception(error)
        print(f"ctxseg: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a fault of the machine met outside ctxseg's readers and writers (a file gone)
        if error.filename is None:
            raise
        if args.debug:
            traceback.print_exception(error)
        print(f"ctxseg: error: {error.filename}: {(error.strerror or str(error)).lower()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # its arguments, if any, name the file it cut short and what is intact
        print("; ".join(["ctxseg: interrupted", *map(str, interrupt.args)]), file=sys.stderr)
        return 130
    return code or 0

