"""The grader's feedback in Chinese, for the check cells of the bilingual notebooks.

A check cell prints each English line of its verdict followed by the same line in Chinese
(`minattn.course.grading.check`). The English is unchanged: it is what ``minattn grade``
reports, what nbgrader and the CSV and JSON outputs carry, and what the tests compare. The
Chinese line is made from it here.

The feedback is built from a few sentence patterns: the failures the hidden tests raise
(`tools`, `accuracy`, ``hidden_*``) and the way `catalog` joins them ("values right, but the
float32 part fails: ..."; "...; on its own: ..."). `KINDS` gives each pattern its Chinese,
as a pair of templates; a placeholder whose text is itself a message, a label or a case
description is translated in turn, everything else (names, numbers, indices, dtypes, the
student's own exception message) is kept as it is. The Chinese uses the glossary's terms
(docs/glossary.md: 注意力分数 for the energy, 缩放, 上采样, 反向传播, 梯度检验, ...); the
tests check it, and check that every message the grader can raise has its pattern here.
"""

import re

# (English template, Chinese template), tried in order: the patterns that wrap another message
# come first, the more specific before the more general. Placeholders: {where} is the test case
# in brackets, {idx} an index, {n} a count, {grad} a gradient's name, {kind} an exception's;
# {msg}, {context}, {detail} and {label} hold a message of their own, {what}, {part}, {more} and
# {case} a phrase of `PHRASES`, translated in turn; every other placeholder is copied.
KINDS = (
    # catalog: the verdict and how failures are joined
    ("ok: every hidden test passes ({detail})", "通过：全部隐藏测试都通过（{detail}）"),
    ("ok: every hidden test passes", "通过：全部隐藏测试都通过"),
    ("exact in every case", "每种情形都完全精确"),
    ("largest error {pct}% of what rounding allows", "最大误差是舍入所允许误差的 {pct}%"),
    ("all {n} gradients match in every case", "每种情形下 {n} 个梯度全部一致"),
    (
        "values right, but the {part} part fails: {msg} (and the {more} part)",
        "数值正确，但“{part}”部分未通过：{msg}（“{more}”部分也未通过）",
    ),
    ("values right, but the {part} part fails: {msg}", "数值正确，但“{part}”部分未通过：{msg}"),
    (
        "flagged: your code calls the package's own {qualified} instead of computing it; "
        "write it yourself with NumPy",
        "已标记：你的代码调用了本包自己的 {qualified}，而不是自己计算；请用 NumPy 自己写出来",
    ),
    (
        "{name} is not defined as a function after running the notebook",
        "运行笔记本之后，{name} 没有定义为函数",
    ),
    ("{context}; on its own: {msg}", "{context}；单独测试时：{msg}"),
    (
        "first wrong intermediate in BAM ({mode}): {step} at index {idx}: yours {got}, "
        "expected {want}",
        "在 BAM（{mode}）中第一个出错的中间结果是 {step}，在下标 {idx} 处：你的 {got}，应为 {want}",
    ),
    (
        "first wrong intermediate in BAM ({mode}): {step}",
        "在 BAM（{mode}）中第一个出错的中间结果是 {step}",
    ),
    ("first wrong intermediate: {msg}", "第一个出错的中间结果：{msg}"),
    (
        "{msg} (the return lines after your code use {names}: define them)",
        "{msg}（你的代码之后的 return 行用到 {names}：请定义它们）",
    ),
    # tools: calling the student's function
    (
        "{name} is not written yet (it raises NotImplementedError)",
        "{name} 还没有写（它抛出 NotImplementedError）",
    ),
    (
        "{name} is not written yet (the first gradient missing){where}",
        "{name} 还没有写（这是第一个缺少的梯度）{where}",
    ),
    ("{name} recursed without end{where}", "{name} 无休止地递归{where}"),
    ("{name} needs more than {mib} MiB{where}", "{name} 需要超过 {mib} MiB 的内存{where}"),
    (
        "{msg}: an N x N float64 array is {dense} MiB, a block of scores {block} MiB; "
        "stream the keys block by block",
        "{msg}：一个 N x N 的 float64 数组有 {dense} MiB，一块注意力分数只有 {block} MiB；"
        "请把键一块一块地流式处理",
    ),
    (
        "{name} must return a tuple of {n} {what}, got {type}",
        "{name} 必须返回由 {n} 个{what}组成的元组，实际得到 {type}",
    ),
    (
        "{name} must return a dict of gradients, got {type}",
        "{name} 必须返回由梯度组成的字典，实际得到 {type}",
    ),
    (
        "{name}() must return a set of row names, got {type}",
        "{name}() 必须返回由行名组成的集合，实际得到 {type}",
    ),
    (
        "{label} must return a number, got {type} ({case})",
        "{label} 必须返回一个数，实际得到 {type}（{case}）",
    ),
    ("{name} must return {n} {what}, got {m}", "{name} 必须返回 {n} 个{what}，实际得到 {m} 个"),
    ("{name} raised {kind}: {message}{where}", "{name} 抛出了 {kind}：{message}{where}"),
    # accuracy: judging a returned array
    ("{label}: yours is None{where}", "{label}：你的结果是 None{where}"),
    (
        "{label}: yours is a {type}, expected a NumPy array{where}",
        "{label}：你的结果是 {type}，应为 NumPy 数组{where}",
    ),
    (
        "{label}: yours has shape {shape}, expected {expected}{where}",
        "{label}：你的形状是 {shape}，应为 {expected}{where}",
    ),
    (
        "{label}: yours has dtype {dtype}, expected numbers{where}",
        "{label}：你的 dtype 是 {dtype}，应为数值类型{where}",
    ),
    (
        "{label}: yours has dtype {dtype}, expected {expected}{where}",
        "{label}：你的 dtype 是 {dtype}，应为 {expected}{where}",
    ),
    (
        "{label} at index {idx}: yours {got}, expected {want}, off by {off} where rounding "
        "allows {allows}{where}",
        "{label} 在下标 {idx} 处：你的 {got}，应为 {want}，"
        "相差 {off}，而舍入只允许 {allows}{where}",
    ),
    (
        "{label} is off by {off} in norm where rounding allows {allows}; the largest "
        "difference at index {idx}: yours {got}, expected {want}{where}",
        "{label} 的误差范数是 {off}，而舍入只允许 {allows}；最大的差在下标 {idx} 处："
        "你的 {got}，应为 {want}{where}",
    ),
    ("{label} at index {idx}: yours {got}{where}", "{label} 在下标 {idx} 处：你的 {got}{where}"),
    (
        "{label}: yours {got}, expected {want} ({case})",
        "{label}：你的 {got}，应为 {want}（{case}）",
    ),
    # hidden tests: inputs, caches, names
    ("{name} changed its input in place{where}", "{name} 原地修改了它的输入{where}"),
    ("{name} changed dout or the cache in place{where}", "{name} 原地修改了 dout 或缓存{where}"),
    (
        "{name} changed dz or an array of fwd in place{where}",
        "{name} 原地修改了 dz 或 fwd 中的数组{where}",
    ),
    (
        "the cache your {name} returns does not work with the backward step "
        "({kind}: {message}){where}",
        "你的 {name} 返回的缓存不能用于反向传播的那一步（{kind}: {message}）{where}",
    ),
    (
        "{label} must be None here (no gamma){where}",
        "{label} 在这里必须是 None（没有 gamma）{where}",
    ),
    ("{label} must be None here{where}", "{label} 在这里必须是 None{where}"),
    # notebook 4: predictions and tables
    (
        "{name}() returned {row}, which is not a row of the table",
        "{name}() 返回了 {row}，它不是表中的行",
    ),
    (
        "{name}(): your set of rows is not the set that fails; follow the gradient back from "
        "the broken step through the graph (and remember rows whose gradient is zero by "
        "mathematics)",
        "{name}()：你给出的行集合不是失败的那些行；从出错的步骤出发，沿计算图把梯度往回追踪"
        "（别忘了梯度在数学上为零的行）",
    ),
    (
        "vacuous_rows(report) is wrong for the {case} report: not the rows whose analytic and "
        "numeric values at the worst element are both below report.resolution",
        "vacuous_rows(report) 对 {case} 的报告给出的结果不对：应当是最差元素处解析值和数值都"
        "小于 report.resolution 的那些行",
    ),
    # labels: what a message is about
    ("the array {name} returns", "{name} 返回的数组"),
    ("array {i} of what {name} returns", "{name} 返回的第 {i} 个数组"),
    ("the backward step's output {i} from your cache", "由你的缓存算出的反向传播输出 {i}"),
    ("{grad} ({msg})", "{grad}（{msg}）"),
    ("the matrix", "矩阵"),
)

# phrases inside {what}, {part}, {more}, {case} and the test case's brackets
PHRASES = {
    "arrays": "数组",
    "things (out, cache)": "元素（out, cache）",
    "arrays (out, lse)": "数组（out, lse）",
    "values": "数值",
    "robust inputs": "只读与非连续输入",
    "memory": "内存",
    "read-only non-contiguous inputs": "只读、非连续的输入",
    "read-only non-contiguous dout and cache": "只读、非连续的 dout 和缓存",
    "missing scale": "反向传播中忘了缩放",
    "missing scale ck3": "反向传播中忘了缩放，key_channels=3",
    "transposed": "乘积转置",
    "no row sum": "漏掉行和那一项",
    "residual forgotten": "忘了残差路径",
    "float32": "float32",
    "gamma zero": "gamma 保持为 0",
    "healthy": "没有错误的模块",
}

# a check cell of a line-by-line exercise prints its table of gradients first
TABLE_LEGEND = (
    "上表各列：梯度、对应的包内步骤（compare_steps 给出的名字）、形状、结论"
    "（ok：正确；WRONG：错误；not written yet：还没有写）"
)
UNKNOWN = "（这条反馈还没有中文，请看上一行英文）"

_WHERE = r"(?: \((?:float32|float64|n_in=)[^()]*\)| at N=\d+, block=\d+)?"
_SPECIAL = {
    "where": _WHERE,
    "idx": r"\([-\d, ]*\)",
    "n": r"\d+",
    "grad": r"\w+",
    "kind": r"[\w.]+",
}
_NESTED = ("msg", "context", "detail", "label")  # placeholders holding a message of their own
_PHRASE = ("what", "part", "more", "case")  # placeholders holding a phrase of PHRASES


def _compile(template):
    """The English template as a regex: literal text escaped, placeholders as named groups."""
    pattern, at = "", 0
    for m in re.finditer(r"\{(\w+)\}", template):
        pattern += re.escape(template[at : m.start()])
        pattern += f"(?P<{m.group(1)}>{_SPECIAL.get(m.group(1), '.+?')})"
        at = m.end()
    return re.compile(pattern + re.escape(template[at:]), re.S)


_COMPILED = tuple((_compile(english), chinese) for english, chinese in KINDS)


def kind_of(text):
    """The index in `KINDS` of the pattern ``text`` follows, or None."""
    for index, (pattern, _) in enumerate(_COMPILED):
        if pattern.fullmatch(text):
            return index
    return None


def translate(text):
    """The Chinese of one feedback message, or None if it follows no pattern of `KINDS`."""
    index = kind_of(text)
    if index is None:
        return None
    pattern, chinese = _COMPILED[index]
    fields = pattern.fullmatch(text).groupdict()
    for key, value in fields.items():
        if key == "where":
            fields[key] = _where(value)
        elif key in _NESTED:
            fields[key] = translate(value) or value
        elif key in _PHRASE:  # a phrase, or a list of them ("float32, memory")
            words = [value] if value in PHRASES else value.split(", ")
            fields[key] = "、".join(PHRASES.get(v, v) for v in words)
    # a label that ends in a bracket needs no space before the Chinese that follows it
    return re.sub(r"）\s+(?=[\u4e00-\u9fff])", "）", chinese.format(**fields))


def _where(text):
    """The test case in Chinese brackets: " (float64, B=2, N=8, read-only ...)" ->
    "（float64，B=2，N=8，只读、非连续的输入）"; names and numbers as they are."""
    if not text:
        return ""
    if text.startswith(" at "):
        return f"（{text[4:].replace(', ', '，')} 时）"
    parts = []
    for part in text[2:-1].split(", "):
        energies = re.fullmatch(r"energies up to (\d+)", part)
        parts.append(
            f"注意力分数最大到 {energies.group(1)}" if energies else PHRASES.get(part, part)
        )
    return "（" + "，".join(parts) + "）"


def verdict(exercise, points, max_points, feedback):
    """The Chinese line of a check cell's verdict: the exercise, its score, the feedback."""
    head = f"{exercise.id}（{exercise.summary_zh}）：{points:g}/{max_points:g} 分"
    return f"{head}：{translate(feedback) or UNKNOWN}"


def expected_error(exercise):
    """The Chinese line after a full score: what a correct solution's error is."""
    return f"  正确解法的误差{exercise.expected_error_zh}"
