"""Command-line flags: argparse types that say what they expected, and tables of flags that set a Config.

A table row is (flag, Config field, default, argparse options, help), as in demo.CONFIG_FLAGS. A flag is
declared once, in its row; from the table come its argparse declaration (declare), its default
(fill_defaults), the words that hand its value to another run (typed), the check of a resumed
run's flags against its saved config (disagreement), and errors about config fields in the words
of the flags (flag_names).
"""

import argparse
import math


def argument(convert, accepts, expected):
    """An argparse type: convert(text) if it accepts the value, else a message saying what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


positive_int = argument(int, lambda n: n >= 1, "a positive integer")
non_negative_int = argument(int, lambda n: n >= 0, "a non-negative integer")
positive_float = argument(float, lambda x: math.isfinite(x) and x > 0, "a positive number")
unit_float = argument(float, lambda x: 0 <= x <= 1, "a number from 0 to 1")
switch = argparse.BooleanOptionalAction        # --occlusion / --no-occlusion


def dest(flag):
    """The name argparse keeps a flag's value under: --kl-balance -> args.kl_balance."""
    return flag[2:].replace("-", "_")


def typed(flag, value):
    """The words that give a flag this value: ["--kl-balance", "0.8"], ["--occlusion"], ["--no-occlusion"]."""
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [flag, str(value)]


def declare(parser, table):
    """Add every flag of the table, its help ending in its default. argparse's own default stays
    None, so a command tells a flag the user typed from one it filled in (fill_defaults)."""
    for flag, _, default, options, help in table:
        shown = ("on" if default else "off") if isinstance(default, bool) else \
            f"{default:g}" if isinstance(default, float) else default
        parser.add_argument(flag, **options, help=f"{help} (default {shown})")


def fill_defaults(args, table):
    """Give every flag the user left out its default."""
    for flag, _, default, *_ in table:
        if getattr(args, dest(flag)) is None:
            setattr(args, dest(flag), default)


def disagreement(args, table, saved):
    """(the words the user typed, the field) of the first flag typed with a value other than
    saved[field], or (None, None): a resumed run keeps the config it was saved with."""
    for flag, field, *_ in table:
        value = getattr(args, dest(flag))
        if value is not None and value != saved[field]:
            return typed(flag, value), field
    return None, None


def flag_names(message, table):
    """An error message about config fields, in the words of the flags: config.seq_len -> --seq-len."""
    for flag, field, *_ in table:
        message = message.replace(f"config.{field}", flag)
    return message
