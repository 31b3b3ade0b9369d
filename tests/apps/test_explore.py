"""``minattn.explore`` and ``minattn explore``, checked in a real browser.

Pages are opened from disk in headless Chromium (`tests/browser.py`) at ``#query=ROW,COL``;
the row the page computed (the JSON of ``#attention-values``) must equal
``module.attention_maps(x, [(ROW, COL)])[0, 0]`` to float32 accuracy, for several pixels,
every module, both dtypes and two backends. The page must ask the network for nothing, move
its query with the arrow keys and the pointer, pass a basic accessibility check, and work the
same inside an iframe, as a notebook's output. Bad input raises a clear error and writes
nothing.

``MINATTN_SCREENSHOT=docs/assets/explore.png pytest tests/apps/test_explore.py -k screenshot``
renews the screenshot of the docs.
"""

import base64
import json
import os
import re
import shutil

import numpy as np
import pytest
from browser import Browser, require_browser
from helpers import randomize

import minattn
from minattn.apps.cli import main
from minattn.apps.demo import demo_module
from minattn.features import load_photo, photo_features

# float32 accuracy: q and k are stored as float32, so each energy is off by about
# |e| * 1e-7, and so is each weight, relatively
RTOL = 2e-5


@pytest.fixture(scope="module")
def browser():
    with Browser(require_browser()) as b:
        yield b


def features(shape, dtype, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def photo_case(dtype):
    image = load_photo("astronaut", 64)
    x = photo_features(image, 32, dtype=dtype)
    bam = demo_module(x.astype(np.float64), 4)
    module = minattn.BAM(32, 4, key_channels=8, dtype=dtype)
    module.load_state_dict(bam.state_dict())
    return module, x, image, [(0, 0), (20, 33), (63, 63), (41, 2)]


def position_case(dtype):
    module = randomize(minattn.PositionAttention(8, key_channels=4, dtype=dtype, seed=0), gain=2)
    return module, features((1, 8, 12, 16), dtype), None, [(0, 0), (5, 9), (11, 15)]


def pam_case(dtype, training):
    module = randomize(minattn.PAM(8, 8, (1, 2, 4), ds=2, dtype=dtype, seed=0))
    module.train(training)
    queries = [(0, 0), (6, 13), (15, 31), (9, 20, 2), (9, 20, 4), (3, 30, 4)]  # (row, col, scale)
    return module, features((1, 8, 16, 32), dtype), None, queries


def cdsa_case(dtype, mode):
    module = randomize(minattn.CDSA(16, 2, mode, dtype=dtype, seed=0).eval(), gain=2)
    x = (features((1, 16, 16, 16), dtype, 1), features((1, 16, 16, 16), dtype, 2))
    queries = [(0, 0), (7, 5), (7, 21), (15, 31)] + ([(8, 20, 4)] if mode == "PAM" else [])
    return module, x, None, queries


CASES = {
    "BAM demo float64": lambda: photo_case(np.float64),
    "BAM demo float32": lambda: photo_case(np.float32),
    "position float64": lambda: position_case(np.float64),
    "position float32": lambda: position_case(np.float32),
    "PAM eval float64": lambda: pam_case(np.float64, False),
    "PAM train float32": lambda: pam_case(np.float32, True),
    "CDSA BAM float64": lambda: cdsa_case(np.float64, "BAM"),
    "CDSA PAM float32": lambda: cdsa_case(np.float32, "PAM"),
}


def row_shown(tab):
    return json.loads(tab.evaluate("document.getElementById('attention-values').textContent"))


def expected_row(module, x, query):
    """What the contract says the page shows: attention_maps' row, at PAM's scale if given."""
    if len(query) == 3:
        return module.attention_maps(x, [query[:2]], query[2])[0, 0]
    return module.attention_maps(x, [query])[0, 0]


def address(path, query):
    scale = f"&scale={query[2]}" if len(query) == 3 else ""
    return f"{path.as_uri()}#query={query[0]},{query[1]}{scale}"


def check_row(tab, module, x, query):
    """The page's row against attention_maps; returns the largest difference."""
    shown = row_shown(tab)
    want = expected_row(module, x, query)
    got = np.array(shown["values"]).reshape(shown["shape"])
    assert shown["query"] == list(query[:2]) and tuple(shown["shape"]) == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-12)
    return float(np.abs(got - want).max())


def off_disk(urls):
    return [u for u in urls if not u.startswith(("file:", "data:", "about:"))]


# ---------------------------------------------------------------- the numbers


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_page_computes_attention_maps_rows(browser, tmp_path, case):
    module, x, image, queries = CASES[case]()
    page = minattn.explore(module, x, image, out=tmp_path / "page.html")
    worst = 0.0
    for query in queries:
        tab = browser.open(address(tmp_path / "page.html", query))
        worst = max(worst, check_row(tab, module, x, query))
        assert not off_disk(tab.requests), f"network requests: {off_disk(tab.requests)}"
        tab.close()
    print(f"{case}: largest |page - attention_maps| = {worst:.2e} over {len(queries)} pixels")
    assert isinstance(page, str) and page == str(tmp_path / "page.html")


def test_the_numba_backend_gives_the_same_page(browser, tmp_path, numba_kernels):
    module = randomize(minattn.BAM(16, 2, backend="numba", dtype=np.float32, seed=0), gain=2)
    x = features((1, 16, 12, 12), np.float32)
    minattn.explore(module, x, out=tmp_path / "page.html")
    tab = browser.open(address(tmp_path / "page.html", (5, 7)))
    check_row(tab, module, x, (5, 7))


def test_the_page_holds_queries_and_keys_not_the_attention_matrix(tmp_path):
    """Its size grows with N * key_channels: 64 x 64 pooled pixels, key_channels 8, float32."""
    module = randomize(minattn.BAM(16, 1, key_channels=8, seed=0))
    minattn.explore(module, features((1, 16, 64, 64), np.float64), out=tmp_path / "page.html")
    data = page_data(tmp_path / "page.html")
    N = 64 * 64
    for name in ("q", "k"):
        assert len(base64.b64decode(data["stages"][0][name])) == N * 8 * 4
    size = (tmp_path / "page.html").stat().st_size
    assert size < 2 * N * 8 * 4 * 4 / 3 + 60_000 < N * N * 4  # base64 of q and k, plus the page


def page_data(path):
    text = path.read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="explore-data">(.*?)</script>', text, re.S
    )
    return json.loads(found.group(1))


# ---------------------------------------------------------------- no network


def test_no_request_leaves_the_disk(browser, tmp_path):
    module, x, image, _ = photo_case(np.float64)
    minattn.explore(module, x, image, out=tmp_path / "page.html")
    tab = browser.open((tmp_path / "page.html").as_uri())
    assert tab.requests and not off_disk(tab.requests), tab.requests
    source = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in source  # the browser itself refuses any fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)


def test_the_network_check_sees_a_request(browser, tmp_path):
    """The check above can fail: a page that loads a remote image is caught."""
    (tmp_path / "remote.html").write_text(
        '<body data-ready="true"><img src="http://192.0.2.1/x.png" alt="x"></body>'
    )
    tab = browser.open((tmp_path / "remote.html").as_uri())
    assert off_disk(tab.requests) == ["http://192.0.2.1/x.png"]


# ---------------------------------------------------------------- keys, pointer, address


def test_arrow_keys_move_the_query_by_one_pooled_pixel(browser, tmp_path):
    module, x, image, _ = photo_case(np.float64)
    minattn.explore(module, x, image, out=tmp_path / "page.html")
    tab = browser.open(address(tmp_path / "page.html", (20, 33)))
    tab.evaluate("document.getElementById('picture').focus()")
    for key, expected in [
        ("ArrowRight", (20, 37)),
        ("ArrowDown", (24, 37)),
        ("ArrowLeft", (24, 33)),
        ("ArrowUp", (20, 33)),
        ("ArrowUp", (16, 33)),
    ]:
        tab.press(key)
        check_row(tab, module, x, expected)
    for _ in range(10):  # stops at the border
        tab.press("ArrowUp")
    check_row(tab, module, x, (0, 33))


def test_pointing_and_clicking_select_the_pixel_under_the_pointer(browser, tmp_path):
    module, x, _, _ = cdsa_case(np.float64, "BAM")
    minattn.explore(module, x, out=tmp_path / "page.html")
    tab = browser.open((tmp_path / "page.html").as_uri())
    for r, c in [(3, 4), (12, 27)]:  # image 1, then image 2 of the pair
        px, py = pixel_position(tab, "document", r, c)
        tab.click(px, py)
        check_row(tab, module, x, (r, c))
        assert "pinned" in tab.evaluate("document.getElementById('status').textContent")
    tab.click(px, py)  # the pinned pixel again: it follows the pointer from now on
    assert "pinned" not in tab.evaluate("document.getElementById('status').textContent")
    px, py = pixel_position(tab, "document", 9, 20)
    tab.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": px, "y": py})
    tab.wait_for("document.getElementById('attention-values').textContent.includes('[9,20]')")
    check_row(tab, module, x, (9, 20))


def pixel_position(tab, document, r, c, frame=(0, 0)):
    """Viewport coordinates of the centre of input pixel (r, c) of the page's picture."""
    left, top, width, height = tab.box(f"{document}.getElementById('picture')")
    H, W = tab.evaluate(f"JSON.parse({document}.getElementById('explore-data').textContent).input")
    return frame[0] + left + (c + 0.5) * width / W, frame[1] + top + (r + 0.5) * height / H


def test_an_address_outside_the_picture_is_refused_on_the_page(browser, tmp_path):
    module, x, image, _ = photo_case(np.float64)
    minattn.explore(module, x, image, out=tmp_path / "page.html")
    tab = browser.open(f"{(tmp_path / 'page.html').as_uri()}#query=64,3")
    status = tab.evaluate("document.getElementById('status').textContent")
    assert "query=64,3" in status and "inside the 64 × 64 picture" in status
    assert tab.evaluate("document.getElementById('status').className") == "error"
    check_row(tab, module, x, (32, 32))  # the default pixel, the middle, stays


# ---------------------------------------------------------------- accessibility

# Every control labelled, every picture named, the picture reachable by keyboard, and the
# text's contrast at least 4.5:1 (WCAG AA) against the background it is drawn on.
A11Y = r"""(() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (!document.title.trim()) problems.push("no <title>");
  for (const el of document.querySelectorAll("input, select, textarea, button")) {
    const label = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest("label")
      || el.getAttribute("aria-label");
    if (!label) problems.push(`unlabelled <${el.tagName.toLowerCase()}>`);
  }
  for (const el of document.querySelectorAll("canvas, img")) {
    if (!el.getAttribute("aria-label") && !el.getAttribute("alt")) {
      problems.push(`<${el.tagName.toLowerCase()} id=${el.id}> has no text alternative`);
    }
  }
  const picture = document.getElementById("picture");
  if (picture && picture.tabIndex < 0) problems.push("the picture cannot take the focus");
  const rgb = (c) => c.match(/[\d.]+/g).map(Number);
  const lum = (c) => {
    const linear = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    const [r, g, b] = c.slice(0, 3).map(linear);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const behind = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode, el = node.parentElement;
    if (!node.textContent.trim() || el.getClientRects().length === 0) continue;  // not shown
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(behind(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const text = node.textContent.trim().slice(0, 30);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: "${text}"`);
  }
  return problems;
})()"""


def test_the_page_passes_a_basic_accessibility_check(browser, tmp_path):
    module, x, _, _ = pam_case(np.float64, False)  # PAM: every control is shown
    minattn.explore(module, x, out=tmp_path / "page.html")
    tab = browser.open((tmp_path / "page.html").as_uri())
    assert tab.evaluate(A11Y) == []


def test_the_accessibility_check_finds_problems(browser, tmp_path):
    (tmp_path / "bad.html").write_text(
        '<html><body data-ready="true"><p style="color: #bbb">faint</p><input id="i">'
        "<canvas></canvas></body></html>"
    )
    problems = browser.open((tmp_path / "bad.html").as_uri()).evaluate(A11Y)
    assert len(problems) == 5, problems  # lang, title, the input, the canvas, the contrast


# ---------------------------------------------------------------- in a notebook


def test_in_a_notebook_the_path_shows_the_page_in_a_frame(browser, tmp_path):
    """The returned path's HTML (what Jupyter shows) is the same page, live, in an iframe."""
    module, x, _, _ = cdsa_case(np.float64, "PAM")
    page = minattn.explore(module, x, out=tmp_path / "page.html")
    (tmp_path / "notebook.html").write_text(
        f"<!DOCTYPE html><html><body><h1>a notebook</h1>{page._repr_html_()}</body></html>",
        encoding="utf-8",
    )
    inner = "document.querySelector('iframe').contentDocument"
    tab = browser.open((tmp_path / "notebook.html").as_uri(), ready=f"{inner}.body.dataset.ready")
    shown = json.loads(tab.evaluate(f"{inner}.getElementById('attention-values').textContent"))
    assert shown["query"] == [8, 8]  # the middle of image 1
    want = module.attention_maps(x, [(8, 8)])[0, 0]
    np.testing.assert_allclose(np.reshape(shown["values"], want.shape), want, rtol=RTOL, atol=1e-12)
    frame = tab.box("document.querySelector('iframe')")
    assert frame[3] >= tab.evaluate(f"{inner}.documentElement.scrollHeight")  # grown to fit
    tab.click(*pixel_position(tab, inner, 5, 26, frame[:2]))
    shown = json.loads(tab.evaluate(f"{inner}.getElementById('attention-values').textContent"))
    assert shown["query"] == [5, 26]
    assert not off_disk(tab.requests)


# ---------------------------------------------------------------- the screenshot


def test_screenshot_shows_the_attention_over_the_photograph(browser, tmp_path):
    import matplotlib.image

    picture = load_photo("astronaut", 128)
    x = photo_features(picture, 32)
    minattn.explore(demo_module(x, 4), x, picture, out=tmp_path / "page.html")
    tab = browser.open(address(tmp_path / "page.html", (28, 58)))  # the astronaut's face
    shot = tab.screenshot(tmp_path / "explore.png")
    pixels = matplotlib.image.imread(shot)[..., :3]
    left, top, width, height = (round(v) for v in tab.box("document.getElementById('picture')"))
    drawn = pixels[top : top + height, left : left + width]
    red = (drawn[..., 0] > 0.6) & (drawn[..., 2] < 0.4)
    blue = (drawn[..., 2] > 0.6) & (drawn[..., 0] < 0.4)
    assert red.mean() > 0.001 and blue.mean() > 0.2, (red.mean(), blue.mean())
    if os.environ.get("MINATTN_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MINATTN_SCREENSHOT"])


# ---------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    module, x, image, _ = photo_case(np.float64)
    out = tmp_path / "page.html"
    cases = [
        (dict(module=minattn.ChannelAttention(32)), TypeError, "module must be one of"),
        (dict(x=np.concatenate([x, x])), ValueError, "batch size 2"),
        (dict(x=x[:, :16]), ValueError, "16 channels"),
        (dict(image=image[:32]), ValueError, "image has shape (32, 64, 3), but x is 64 x 64"),
        (dict(image=(image * 255).astype(np.uint8)), TypeError, "dtype uint8"),
        (dict(image=image * 2), ValueError, "values in [0, 1]"),
        (dict(out=tmp_path / "missing" / "page.html"), ValueError, "does not exist"),
        (dict(title=3), TypeError, "title must be a str"),
    ]
    for change, error, words in cases:
        a = dict(module=module, x=x, image=image, out=out, title=None) | change
        with pytest.raises(error) as info:
            minattn.explore(a["module"], a["x"], a["image"], out=a["out"], title=a["title"])
        assert words in str(info.value), (words, str(info.value))
    assert list(tmp_path.iterdir()) == []


def test_cdsa_takes_a_pair_of_inputs_and_of_images(tmp_path):
    module, (x1, x2), _, _ = cdsa_case(np.float64, "BAM")
    image = np.zeros((16, 16, 3))
    with pytest.raises(TypeError, match="pair"):
        minattn.explore(module, x1, out=tmp_path / "p.html")
    with pytest.raises(TypeError, match="pair"):
        minattn.explore(module, (x1, x2), image, out=tmp_path / "p.html")
    with pytest.raises(ValueError, match="expected shape"):
        minattn.explore(module, (x1, x2), (image, image[:8]), out=tmp_path / "p.html")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize("name", ["bam", "position", "pam", "cdsa"])
def test_the_command_writes_a_page_for_each_module(tmp_path, capsys, name):
    out = tmp_path / f"{name}.html"
    assert main(["explore", "--module", name, "--size", "32", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    data = page_data(out)
    assert data["input"][0] == 32 and data["image"].startswith("data:image/png;base64,")
    assert len(data["stages"]) == (4 if name == "pam" else 1)


def test_the_command_loads_weights_saved_with_savez(tmp_path, capsys):
    """The page's queries are those of a BAM holding the saved weights (16 channels, Ck 4)."""
    from minattn.modules.bam import project_forward

    saved = randomize(minattn.BAM(16, 4, key_channels=4, seed=0))
    np.savez(tmp_path / "w.npz", **saved.state_dict())
    out = tmp_path / "page.html"
    assert (
        main(["explore", "--weights", str(tmp_path / "w.npz"), "--size", "32", "--out", str(out)])
        == 0
    )
    x = photo_features(load_photo("astronaut", 32), 16)
    (q, _, _), _ = project_forward(saved.ops, saved.params, saved.ops.avg_pool_forward(x, 4)[0])
    shown = np.frombuffer(base64.b64decode(page_data(out)["stages"][0]["q"]), "<f4")
    np.testing.assert_allclose(shown.reshape(64, 4), q[0].T, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--module", "sagan"], "invalid choice: 'sagan'"),
        (["--photo", "nosuch"], "photo must be one of"),
        (["--module", "position", "--ds", "2"], "--ds 2 does not apply to --module position"),
        (["--size", "30"], "--size 30 must be a multiple of 4"),
        (["--module", "pam", "--size", "48"], "--size 48 must be a multiple of 32"),
        (["--weights", "missing.npz"], "no such file"),
        (["--weights", "{bam}", "--module", "pam"], "state_dict keys do not match"),
        (["--weights", "{misshapen}"], "has shape (2, 16, 1, 1), expected (4, 16, 1, 1)"),
        (["--weights", "{text}"], "cannot read it as an .npz"),
    ],
    ids=["module", "photo", "ds", "size", "pam size", "no file", "keys", "shapes", "not npz"],
)
def test_command_errors_name_what_was_given_and_write_nothing(tmp_path, capsys, args, words):
    sd = minattn.BAM(16, 4, key_channels=4, seed=0).state_dict()
    files = {name: tmp_path / f"{name}.npz" for name in ("bam", "misshapen", "text")}
    np.savez(files["bam"], **sd)
    np.savez(files["misshapen"], **(sd | {"key_conv.weight": np.zeros((2, 16, 1, 1))}))
    files["text"].write_text("not an archive")
    out = tmp_path / "page.html"
    given = [a.format(**files) for a in args]  # the options given last win
    assert exit_code(["explore", "--size", "32", "--out", str(out), *given]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert not out.exists()


def exit_code(argv):
    """main's status, or argparse's when it exits (an unknown choice)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code
