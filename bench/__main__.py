"""``python -m bench <command>``: one entry point, one module per command.

Each command module exposes ``add_arguments(parser)`` and ``main(args) -> int``; its docstring's
first line is its help. Modules are imported only when their command runs, so a slow import
(matplotlib, peft) never delays another command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "verify": "bench.verify.command",
    "run": "bench.perf.command",
    "realdata": "bench.realdata",
    "newtokens": "bench.newtokens.command",
    "mutate": "bench.mutate.command",
    "report": "bench.report.command",
    "compare": "bench.compare.command",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    # Every command is listed; the chosen one's module is imported, and an error there is an
    # error (never a command silently missing from the list).
    for name, module_name in COMMANDS.items():
        if name == chosen:
            module = importlib.import_module(module_name)
            help_line = (module.__doc__ or "").strip().splitlines()[0]
            command_parser = sub.add_parser(name, help=help_line, description=module.__doc__)
            module.add_arguments(command_parser)
            command_parser.set_defaults(run=module.main)
        else:
            sub.add_parser(name, help=f"see: python -m bench {name} --help")
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
