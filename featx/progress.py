"""Progress bars: shown on a terminal, silent in logs, pipes and with --quiet."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str = "rows", initial: int = 0, show: bool | None = None) -> tqdm:
    """A tqdm bar with rate and ETA; `show=None` means: only when stderr is a terminal."""
    enabled = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, smoothing=0.1,
                disable=not enabled)
