"""The command line: the demo end to end, gradcheck, subcommands' own options (its errors:
test_cli_errors.py)."""

import pytest

from minattn.apps.cli import main


def test_demo_runs_end_to_end_and_writes_its_figure(tmp_path, capsys):
    out = tmp_path / "attention.png"
    assert main(["demo", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for step in ("pool", "step 1", "step 2", "step 3", "step 4", "step 5", "step 6", "step 7"):
        assert step in text
    assert "overall: PASS" in text
    assert str(out) in text
    assert out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradcheck_command_prints_the_table(capsys):
    assert main(["gradcheck", "--channels", "8", "--key-channels", "2", "--use-gamma"]) == 0
    text = capsys.readouterr().out
    assert "value_conv.weight" in text and "overall: PASS" in text


def test_subcommands_with_their_own_options_get_them(capsys):
    """bench and exercises parse their own arguments, leading --options included."""
    for command in ("bench", "exercises"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out
