"""argparse types shared by the pack's scripts (tools/ and benchmarks/): bounded numbers whose error names the
value and the range (argparse adds the flag: `argument --frames: expected an integer >= 1, got 0`)."""

from __future__ import annotations

import argparse


def number(kind, minimum, maximum=None, above: bool = False, what: str | None = None):
    """argparse type: a `kind` (int or float) >= minimum (> minimum when `above`), <= maximum if given.

    `what` names the value in the error (default "an integer" / "a number"). Raises argparse.ArgumentTypeError.
    """
    wanted = (f"{what or ('an integer' if kind is int else 'a number')} {'>' if above else '>='} {minimum}"
              + (f" and <= {maximum}" if maximum is not None else ""))

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < minimum or (above and value == minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value
    return parse
