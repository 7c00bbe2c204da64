"""Small helpers shared by the node files (no algorithms here)."""

CATEGORY = "FIFO-Infinity"


def category(sub: str | None = None) -> str:
    return f"{CATEGORY}/{sub}" if sub else CATEGORY
