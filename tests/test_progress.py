"""Progress on stderr: a bar on a terminal, plain periodic lines when stderr is a file, a pipe or a CI log."""
from __future__ import annotations

import io

from edge_pose.progress import PlainProgress, bar, progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_prints_plain_lines_with_count_and_percent():
    out = io.StringIO()
    assert list(progress(range(4), "crops", file=out, every=0)) == [0, 1, 2, 3]
    lines = out.getvalue().splitlines()
    assert lines == ["crops: 1/4 (25%)", "crops: 2/4 (50%)", "crops: 3/4 (75%)", "crops: 4/4 (100%)"]
    assert "\r" not in out.getvalue()


def test_plain_lines_are_periodic_and_always_end_with_the_final_count():
    out = io.StringIO()
    list(progress(iter(range(1000)), "frames", file=out, every=3600))  # no length known, nothing due before the end
    assert out.getvalue().splitlines() == ["frames: 1000"]


def test_bytes_are_human_sized():
    out = io.StringIO()
    shown = PlainProgress("download x.pth", total=2_500_000, unit="B", every=3600, file=out)
    shown.update(2_500_000)
    shown.close()
    assert out.getvalue().strip() == "download x.pth: 2.5 MB/2.5 MB (100%)"


def test_a_terminal_gets_a_tqdm_bar():
    out = _Tty()
    shown = bar("crops", 3, file=out)
    assert type(shown).__module__.startswith("tqdm")
    shown.update(3)
    shown.close()
    assert "\r" in out.getvalue()
