"""The check cells' feedback in Chinese: a Chinese line after every English line, for every
kind of message the hidden tests give, and the English exactly as ``minattn grade`` reports it.

The glossary's terms in this Chinese are checked with the rest of the course's Chinese
(``tests/repo/test_chinese.py`` reads `chinese.KINDS` and the exercises' Chinese too).
"""

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest
from reference_solutions import all_exercises, functions

from minattn.course.grading import EXERCISES, check, chinese
from minattn.course.grading.catalog import grade_exercise

GRADING = Path(chinese.__file__).parent
HAN = re.compile(r"[\u4e00-\u9fff]")
# the files whose messages reach a check cell (the rest of the package is minattn grade's)
SOURCES = ("tools", "accuracy", "catalog", "hidden_steps", "hidden_chain", "hidden_family",
           "hidden_online", "hidden_zoo")  # fmt: skip
FAILURES = ("Fail", "OverMemory", "ChainFail")


# ---------------------------------------------------------------- every kind of message


def _sample(expression):
    """A value for one placeholder of a message in the source, by what the code puts there."""
    if expression.endswith("where"):
        return " (float64, B=2, N=8, read-only non-contiguous inputs)"
    if expression.startswith("fmt_index"):
        return "(0, 1, 2)"
    if expression in ("n", "len(result)", "len(GRADIENTS)"):
        return "2"
    return "v1"


def _message_templates():
    """(file:line, a sample message) for every message the hidden tests raise as a failure,
    rendered from its f-string with `_sample` values, and for the feedback `catalog` builds."""
    found = []
    for stem in SOURCES:
        tree = ast.parse((GRADING / f"{stem}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            is_failure = isinstance(node, ast.Call) and getattr(node.func, "id", "") in FAILURES
            is_feedback = isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") in ("feedback", "first") for t in node.targets
            )
            if not (is_failure and node.args) and not is_feedback:
                continue
            arg = node.args[0] if is_failure else node.value
            if isinstance(arg, ast.BoolOp):  # first = first or f"..."
                arg = arg.values[-1]
            if isinstance(arg, ast.BinOp):  # "ok: ..." + (f" ({detail})" if detail else "")
                arg = arg.left
            message = isinstance(arg, ast.JoinedStr) or isinstance(getattr(arg, "value", 0), str)
            if not message:
                continue  # a message made elsewhere (ChainFail(first, ...)), or first = None
            parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
            text = "".join(
                p.value if isinstance(p, ast.Constant) else _sample(ast.unparse(p.value))
                for p in parts
            )
            found.append((f"{stem}.py:{node.lineno}", text))
    return found


TEMPLATES = _message_templates()


def test_the_scan_finds_the_messages():
    """The scan sees every kind of failure the files raise, not a few of them."""
    assert len(TEMPLATES) >= 35, TEMPLATES
    assert any("is not written yet" in text for _, text in TEMPLATES)
    assert any("where rounding allows" in text for _, text in TEMPLATES)


@pytest.mark.parametrize("where, message", TEMPLATES, ids=[w for w, _ in TEMPLATES])
def test_every_message_of_the_hidden_tests_has_its_chinese(where, message):
    zh = chinese.translate(message)
    assert zh is not None, f"{where}: no pattern of chinese.KINDS fits {message!r}"
    assert HAN.search(zh), zh
    english = re.search(r"[A-Za-z]{2,} [A-Za-z]{2,} [A-Za-z]{2,}", zh)
    assert not english, f"{where}: English left in {zh!r}"


def _render(template):
    """An English template of `KINDS` with a distinct value in each placeholder."""
    values = {
        "where": " (float32, B=3)",
        "idx": "(4, 5)",
        "n": "3",
        "grad": "dq",
        "kind": "KeyError",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), f"w{m.start()}"), template)


@pytest.mark.parametrize("index", range(len(chinese.KINDS)))
def test_each_pattern_is_reached(index):
    """No pattern is hidden behind an earlier, more general one."""
    english, _ = chinese.KINDS[index]
    assert chinese.kind_of(_render(english)) == index, english


def test_names_numbers_and_the_test_case_are_kept():
    message = (
        "dscaled (the array softmax_backward returns) at index (0, 6, 3): yours -7.575506e-05, "
        "expected -4.247756e-03, off by 4.2e-03 where rounding allows 1.2e-17 "
        "(float32, B=2, N=8, energies up to 213, read-only non-contiguous inputs)"
    )
    assert chinese.translate(message) == (
        "dscaled（softmax_backward 返回的数组）在下标 (0, 6, 3) 处：你的 -7.575506e-05，"
        "应为 -4.247756e-03，相差 4.2e-03，而舍入只允许 1.2e-17"
        "（float32，B=2，N=8，注意力分数最大到 213，只读、非连续的输入）"
    )
    # the student's own exception message is theirs: kept as it is
    raised = "f raised ValueError: shapes (2,3) and (4,) not aligned (float64, B=1)"
    assert (
        chinese.translate(raised)
        == "f 抛出了 ValueError：shapes (2,3) and (4,) not aligned（float64，B=1）"
    )
    assert chinese.translate("something the grader never says") is None


def test_every_exercise_has_its_chinese_summary_and_expected_error():
    for exercise in EXERCISES.values():
        assert HAN.search(exercise.summary_zh), f"{exercise.id} has no Chinese summary"
        assert bool(exercise.expected_error) == bool(exercise.expected_error_zh), exercise.id


# ---------------------------------------------------------------- what a check cell prints


def _pairs(text):
    """The lines of a check cell's output, as (English, Chinese) pairs; the table of a
    line-by-line exercise and its one-line Chinese legend form one pair."""
    lines = text.rstrip("\n").split("\n")
    if lines and lines[0].startswith("gradient "):
        legend = lines.index(chinese.TABLE_LEGEND)
        lines = ["\n".join(lines[:legend]), *lines[legend:]]
    assert len(lines) % 2 == 0, text
    return list(zip(lines[::2], lines[1::2], strict=True))


def _assert_bilingual(text):
    for english, zh in _pairs(text):
        assert not HAN.search(english), english
        assert HAN.search(zh) and chinese.UNKNOWN not in zh, f"{english!r} -> {zh!r}"


def _checked(exercise_id, *fns):
    """(points or None, what the cell shows: printed lines, then the AssertionError's)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            points = check(exercise_id, *fns)
        except AssertionError as e:
            return None, out.getvalue() + str(e) + "\n"
    return points, out.getvalue()


def _not_written(*args):
    raise NotImplementedError("exercise: write your solution here")


def _flatten_wrong_shape(x):
    return x.reshape(x.shape[0], -1, x.shape[1]), x.shape


def _flatten_no_cache(x):
    return x.reshape(x.shape[0], x.shape[1], -1)


def _flatten_none(x):
    return None, x.shape


def _softmax_no_row_sum(dout, cache):
    return cache * dout


def _energy_backward_float64(dout, cache):
    q, k = (a.astype(np.float64) for a in cache)
    d = dout.astype(np.float64)
    return k @ d.transpose(0, 2, 1), q @ d


def _scale_backward_in_place(dout, cache):
    dout *= cache
    return dout


def _softmax_calls_the_package(x):
    from minattn.ops import steps

    return steps.softmax_forward(x)


def _upsample_without_its_names(x, ds, mode):
    return out, (ds, mode, (Mh, Mw))  # noqa: F821 -- the stub's names, undefined


def _raises(*args):
    raise ValueError("operands could not be broadcast together")


def _bam_backward_one_line(dz, fwd):
    return {"dup": fwd["gamma"] * dz}


# (exercise, function(s), a piece of the Chinese line that says what went wrong)
CASES = {
    "not written": ("conv1x1_forward", (_not_written,), "还没有写（它抛出 NotImplementedError）"),
    "raises": ("flatten_backward", (_raises,), "抛出了 ValueError：operands could not"),
    "wrong shape": ("flatten_forward", (_flatten_wrong_shape,), "你的形状是"),
    "not a tuple": ("flatten_forward", (_flatten_no_cache,), "必须返回由 2 个元素（out, cache）"),
    "None": ("flatten_forward", (_flatten_none,), "你的结果是 None"),
    "wrong values": ("softmax_backward", (_softmax_no_row_sum,), "单独测试时：dscaled（softmax"),
    "float32 part": ("energy_backward", (_energy_backward_float64,), "但“float32”部分未通过"),
    "robust part": ("scale_backward", (_scale_backward_in_place,), "只读、非连续的 dout 和缓存"),
    "flagged": ("softmax_forward", (_softmax_calls_the_package,), "已标记：你的代码调用了本包"),
    "stub names": ("upsample_forward", (_upsample_without_its_names,), "请定义它们"),
    "chain": ("bam_backward", (_bam_backward_one_line,), "dgamma 还没有写（这是第一个缺少的梯度）"),
    "not a row": ("predict_missing_scale", (lambda: {"query"},), "'query'，它不是表中的行"),
    "wrong rows": ("predict_transposed", (lambda: {"x"},), "你给出的行集合不是失败的那些行"),
    "not a number": (
        "scale_bug_factor",
        (lambda report: "two", lambda bam: 2.0),
        "必须返回一个数，实际得到 str（反向传播中忘了缩放）",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failing_check_says_it_in_chinese_too(case):
    exercise_id, fns, said = CASES[case]
    result = grade_exercise(
        EXERCISES[exercise_id], dict(zip(EXERCISES[exercise_id].functions, fns, strict=True))
    )
    points, shown = _checked(exercise_id, *fns)
    _assert_bilingual(shown)
    english, zh = _pairs(shown)[-1]
    # the English line is the feedback minattn grade reports, unchanged
    score = f"{result.points:g}/{result.max_points:g} points"
    assert english == f"{exercise_id}: {score}: {result.feedback}"
    assert zh.startswith(f"{exercise_id}（{EXERCISES[exercise_id].summary_zh}）：")
    assert said in zh, zh
    assert (points is None) == (result.points == 0)
    if points is not None:
        assert points == round(result.points, 4)


@pytest.mark.parametrize("exercise_id", all_exercises())
def test_a_correct_solution_is_told_so_in_both_languages(exercise_id):
    points, shown = _checked(exercise_id, *functions(exercise_id).values())
    assert points == EXERCISES[exercise_id].points
    _assert_bilingual(shown)
    assert "通过：全部隐藏测试都通过" in shown
    if EXERCISES[exercise_id].expected_error:
        assert _pairs(shown)[-1][1] == chinese.expected_error(EXERCISES[exercise_id])
