"""Helpers shared by the data-parallel CLI tests (dist_cli.py, dist_netns.py)."""


def with_flag(args, flag, value):
    """args with `flag` set to `value` (replaced where present, appended otherwise)."""
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args
