"""The command line's bad input: one line ``minattn <command>: error: ...`` on stderr naming
the option, what came and what was expected, no traceback, exit status 2."""

import subprocess
import sys

import pytest

from minattn.apps.cli import main


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gradcheck", "--ds", "0"], ["ds must be >= 1, got 0"]),
        (["gradcheck", "--channels", "4"], ["in_dim=4", "key_channels"]),
        (["gradcheck", "--backend", "gpu"], ["backend", "'gpu'"]),
        (["demo", "--ds", "3"], ["H=128", "ds=3", "126 or 129"]),
        (["demo", "--photo", "lena"], ["photo must be one of", "'lena'"]),
        (
            ["demo", "--out", "/nonexistent-dir/x.png"],
            ["out=", "/nonexistent-dir", "does not exist"],
        ),
        (["demo", "--size", "0"], ["size"]),
    ],
)
def test_command_line_errors_are_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"minattn {argv[0]}: error:")
    for w in words:
        assert w in err, f"{w!r} not in: {err}"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gradcheck", "--ds", "two"], ["invalid int value"]),  # argparse's own error
        (["gradcheck", "--height", "7"], ["not a multiple of ds=2"]),  # minattn's
    ],
)
def test_command_line_errors_in_a_real_process(argv, words):
    result = subprocess.run(
        [sys.executable, "-m", "minattn", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr


def _text_file(path):
    path.write_text("this is not a picture\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: d, "not a file"),
        (lambda d: _text_file(d / "notes.png"), "cannot read it as an image"),
        (lambda d: _text_file(d / "notes.txt"), "cannot read it as an image"),
    ],
    ids=["missing file", "a folder", "text named .png", "text file"],
)
def test_demo_image_errors_are_one_clear_line(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    out = tmp_path / "attention.png"
    assert main(["demo", "--image", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("minattn demo: error: image=") and expected in err, err
    assert str(path) in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()
