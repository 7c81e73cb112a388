"""Every Python code block of README.md and docs/ runs, and the values it claims are true.

The module docstrings' ``>>>`` examples run as doctests (``test_doctests.py``); this file
runs the other examples a reader copies: the ```` ```python ```` fences of README.md and
the ``.. code-block:: python`` blocks of ``docs/*.rst`` and ``docs/ops/*.rst``.

How a page runs: its blocks in order, sharing one namespace (a page is read top to
bottom: a later block uses the ``x`` or the imports of an earlier one), in a fresh
temporary working directory (files such as ``runs/reg`` land there), after
``torch.manual_seed(0)`` and ``numpy.random.seed(0)`` before each block. Each block is
one test (id ``<page>:<block number>``); one of a later block reruns the earlier ones if
it runs alone (``-k``).

What is checked besides "it runs":

* a bare expression followed by a comment that starts with a value, as in the REPL
  (``model.embed(x).shape  # torch.Size([4, 64])``, ``history[-1]["step"]  # 8``): the
  value's ``repr`` must be that text;
* the claims :data:`CLAIMS` lists per block (shapes and facts the examples state in
  prose comments), run after the block in its namespace.

Conventions for blocks that cannot run as written (each names its reason):

* ``.. skip-test: <reason>`` (an rst comment, invisible on the page) on the line before
  a ``.. code-block:: python`` skips that block; ``<!-- skip-test: <reason> -->`` before
  a fence does the same in Markdown;
* :data:`GIVEN`: code run before a block to define the names a template block takes from
  the reader's program (``dataset``, ``device``), a process group it needs, or a smaller
  input than the page's;
* :data:`SHRINK`: textual parameter overrides that make a long run short (the same
  calls on fewer steps and records); each ``old`` text must occur in the block, so an
  edit of the page cannot silently bring back the long run.

A literal block (a paragraph ending in ``::``) is refused: with no language, nothing says
whether it is Python to run, so docs use ``.. code-block:: <language>``. The shell
blocks are not run, but their ``fastecg ...`` command lines must parse with the CLI's
parser (a renamed flag in the code shows up as a failing page).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib
import re
import shlex
from typing import Optional

import numpy as np
import pytest
import scipy.signal
import torch

from fastecg import numpy_path

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst")),
         *sorted(p for p in (ROOT / "docs").glob("*/*.rst")
                 if not p.parent.name.startswith("_"))]     # not _build, _generated
PY_LANGS = ("python", "python3", "py")


@dataclasses.dataclass
class Block:
    page: str              # relative to the repository root
    number: int            # 1-based among the page's blocks of the collected languages
    line: int              # 1-based line of the block's first code line in the page
    code: str
    skip: Optional[str]    # the reason, when the page marks the block skip-test

    @property
    def id(self) -> str:
        return f"{self.page}:{self.number}"


SKIP_MD = re.compile(r"<!--\s*skip-test:\s*(.+?)\s*-->")
SKIP_RST = re.compile(r"^\.\.\s+skip-test:\s*(.+?)\s*$")


def _skip_before(lines: list[str], i: int, pattern: re.Pattern) -> Optional[str]:
    """The skip-test reason on the last non-blank line before line ``i``, if any."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = pattern.search(lines[j].strip()) if j >= 0 else None
    return match.group(1) if match else None


def _markdown_blocks(rel: str, text: str, langs=PY_LANGS) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```\s*(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        if fence.group(2) in langs:
            blocks.append(Block(rel, len(blocks) + 1, i + 2, "\n".join(lines[i + 1:end]),
                                _skip_before(lines, i, SKIP_MD)))
        i = end + 1
    return blocks


def _rst_blocks(rel: str, text: str, langs=PY_LANGS) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        directive = re.match(r"^(\s*)\.\.\s+code-block::\s*(\w*)\s*$", lines[i])
        if not directive:
            i += 1
            continue
        indent = len(directive.group(1))
        j = i + 1
        while j < len(lines) and re.match(r"^\s+:\w[\w-]*:", lines[j]):   # options
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append((j, lines[j]))
            j += 1
        while body and not body[-1][1].strip():
            body.pop()
        while body and not body[0][1].strip():
            body.pop(0)
        if directive.group(2) in langs and body:
            dedent = min(len(s) - len(s.lstrip()) for _, s in body if s.strip())
            blocks.append(Block(rel, len(blocks) + 1, body[0][0] + 1,
                                "\n".join(s[dedent:] for _, s in body),
                                _skip_before(lines, i, SKIP_RST)))
        i = j
    return blocks


def collect(path: pathlib.Path, langs=PY_LANGS) -> list[Block]:
    """The page's code blocks in one of ``langs``, numbered among themselves."""
    rel, text = path.relative_to(ROOT).as_posix(), path.read_text()
    parse = _markdown_blocks if path.suffix == ".md" else _rst_blocks
    return parse(rel, text, langs)


BLOCKS = [b for page in PAGES for b in collect(page)]
BY_PAGE: dict[str, list[Block]] = {}
for _b in BLOCKS:
    BY_PAGE.setdefault(_b.page, []).append(_b)


# ---- per-block setup, overrides and claims ---------------------------------------------------

# Code run before a block, in its namespace, with why: names a template block takes from
# the reader's program, state it needs (a process group), or a smaller input.
GIVEN: dict[str, tuple[str, str]] = {
    "README.md:3": (
        "a CRNN's LSTM forward and Grad-CAM's backward on 8 records take 5-15 s on 2 busy "
        "cores: the same calls on 2 of block 1's records (the claims use x.shape[0])",
        "x = x[:2]\n"),
    "docs/reproducibility.rst:2": (
        "the recipe takes the reader's dataset, rank, world size, device and epochs",
        "from fastecg.data import SyntheticECGDataset\n"
        "dataset = SyntheticECGDataset(32, fs=500.0, seconds=10.0, n_leads=12, seed=0)\n"
        "world, rank, device, n_epochs = 1, 0, 'cpu', 1\n"),
    "docs/scaling.rst:2": (
        "DistributedDataParallel needs a process group (torchrun's): a one-process gloo "
        "group here; the reader's device and batch (the st_mem default input)",
        "import os, torch.distributed as dist\n"
        "dist.init_process_group('gloo', init_method='file://' + os.path.abspath('pg'), "
        "rank=0, world_size=1)\n"
        "device, batch = 'cpu', torch.randn(2, 12, 2250)\n"),
}

# Run after the block whatever happened, to leave no state behind for other tests.
CLEANUP: dict[str, str] = {
    # the example registers a made-up op in the global bench registry
    "docs/benchmarks.rst:1": (
        "from fastecg.bench import workloads\n"
        "workloads._BUILDERS.pop('demean', None)\n"),
    "docs/scaling.rst:2": (
        "import torch.distributed as dist\n"
        "if dist.is_initialized():\n"
        "    dist.destroy_process_group()\n"),
}

# (old, new) replacements that shrink a long run, with why; every old text must occur.
SHRINK: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "docs/scaling.rst:1": (
        "1000 steps of the default 6-layer MAE on batches of 32 take an hour on 2 CPU "
        "cores: a 2-layer width-64 MAE, 3 steps of batch 4 on 16 records, a checkpoint "
        "every 2 (the same Trainer calls, bf16, resume and save_pretrained included)",
        [("seq_len=5000)", "seq_len=5000, embed_dim=64, depth=2, num_heads=4, "
                           "decoder_dim=32, decoder_depth=1, decoder_heads=2)"),
         ("max_steps=1000", "max_steps=3"), ("batch_size=32", "batch_size=4"),
         ("SyntheticECGDataset(1024,", "SyntheticECGDataset(16,"),
         ("ckpt_every=200", "ckpt_every=2")]),
    "docs/scaling.rst:2": (
        "the default ST-MEM is ViT-B (86M parameters): a 2-layer width-64 one, the same "
        "method and input",
        [('SSL.build("st_mem")', 'SSL.build("st_mem", embed_dim=64, depth=2, num_heads=4, '
                                 'decoder_dim=32, decoder_depth=1, decoder_heads=2)')]),
}

# Facts the examples state in comments or prose that are not REPL-style values:
# expressions that must be true in the page's namespace after the block.
CLAIMS: dict[str, list[str]] = {
    "README.md:1": [
        "tuple(feats.shape) == (8, 512, 157)",
        "len(BACKBONES.list()) == 22",               # "22 backbones: BACKBONES.list()"
        "y.shape == x.shape and y.dtype == x.dtype",
    ],
    "README.md:2": [
        # a JSON round trip: the config survives json, and rebuilds the same pipeline
        "json.loads(json.dumps(pm.to_config())) == pm.to_config()",
        "pm2.to_config() == pm.to_config()",
        "torch.equal(pm2(x, 500.0)[0], sig) and pm2(x, 500.0)[1] == fs",
        # "also st_mem, hubert_ecg, ecg_fm, torch_ecg_default"
        "all(PreprocManager.from_recipe(r) for r in "
        "('st_mem', 'hubert_ecg', 'ecg_fm', 'torch_ecg_default'))",
        # "fastecg.numpy_path.PreprocManager: same, no torch"
        "_close(numpy_path.PreprocManager.from_config(pm.to_config())(x.numpy(), 500.0)[0], "
        "sig.numpy(), 1e-5)",
    ],
    "README.md:3": [
        "tuple(logits.shape) == (x.shape[0], 2)",      # (batch, 2)
        "tuple(saliency.shape) == (x.shape[0], 5000)",  # (batch, 5000)
    ],
    "docs/augmentation.rst:1": [
        # "x is not modified": x is the block's first draw after seeding, so redraw it
        "torch.equal(x, _redraw(lambda: torch.randn(32, 12, 5000)))",
        "sig.shape == x.shape and label.shape == y.shape",
        "v1.shape == x.shape and v2.shape == x.shape and not torch.equal(v1, v2)",
    ],
    "docs/quickstart.rst:1": [
        "tuple(z.shape) == (8, 12, 2500)",
        # "= scipy.signal.resample_poly" (float32 against float64: the op's 1e-6 bound)
        "_close(z.numpy(), scipy.signal.resample_poly(y.double().numpy(), 1, 2, axis=-1), "
        "1e-6)",
    ],
    "docs/quickstart.rst:2": [
        "fs == 250.0",        # the st_mem recipe resamples to 250 Hz
        "feats.shape[:2] == (8, 512)",
    ],
    "docs/ssl.rst:1": [
        "pathlib.Path('mae_small/model.safetensors').is_file()",
        "pathlib.Path('mae_small/config.json').is_file()",
        "loss.ndim == 0 and torch.isfinite(loss)",
        # mode="linear_probe": "frozen encoder", the head alone trains
        "not any(p.requires_grad for p in clf.encoder.parameters())",
        "all(p.requires_grad for p in clf.head.parameters())",
    ],
    "docs/reproducibility.rst:2": [
        "tuple(sig.shape) == (16, 12, 5000) and sig.device.type == 'cpu'",
    ],
    "docs/training.rst:1": [
        "len(history) == 8",  # "one dict per optimizer step: 8 steps"
        "pathlib.Path('runs/reg').is_dir()",
    ],
    "docs/scaling.rst:1": [
        "pathlib.Path('runs/mae/pretrained/model.safetensors').is_file()",
        "pathlib.Path('runs/mae/checkpoints/latest').is_file()",
        "trainer.step == 3",
    ],
    "docs/scaling.rst:2": [
        "loss.ndim == 0 and torch.isfinite(loss)",
    ],
}


def _close(out, ref, bound) -> bool:
    """``max |out - ref|`` within ``bound`` of ``ref``'s peak."""
    return out.shape == ref.shape and np.abs(out - ref).max() <= bound * np.abs(ref).max()


def _redraw(draw):
    """``draw()`` right after the seeding that precedes each block."""
    _seed()
    return draw()


def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# The claims may use these besides the page's names (the blocks import their own).
CLAIM_NAMES = {"json": json, "np": np, "pathlib": pathlib, "scipy": scipy, "torch": torch,
               "numpy_path": numpy_path, "_close": _close, "_redraw": _redraw}


# ---- running ----------------------------------------------------------------------------

# A comment that starts with a value: torch.Size([...]), a number, a bool/None, a quoted
# string, a tuple or a list (no nesting beyond what torch.Size needs).
VALUE_COMMENT = re.compile(
    r"#\s*(torch\.Size\(\[[^\]]*\]\)|-?\d+(?:\.\d+)?(?:e-?\d+)?|True|False|None"
    r"|'[^']*'|\"[^\"]*\"|\([^()]*\)|\[[^\[\]]*\])(?=$|[\s:,;.])")


def _shrunk(block: Block) -> str:
    code = block.code
    for old, new in SHRINK.get(block.id, ("", []))[1]:
        assert old in code, f"{block.id}: SHRINK's {old!r} is no longer in the block"
        code = code.replace(old, new)
    return code


def _statements(block: Block) -> list[tuple[ast.stmt, Optional[str]]]:
    """The block's top-level statements (line numbers the page's), each with the value
    its trailing comment claims when it is a bare expression followed by one."""
    code = _shrunk(block)
    source_lines = code.splitlines()
    tree = ast.parse(code, str(ROOT / block.page))
    ast.increment_lineno(tree, block.line - 1)
    out = []
    for stmt in tree.body:
        claim = None
        if isinstance(stmt, ast.Expr):
            last = source_lines[stmt.end_lineno - block.line]
            match = VALUE_COMMENT.search(last[stmt.end_col_offset:])
            claim = match.group(1) if match else None
        out.append((stmt, claim))
    return out


def _run_block(block: Block, ns: dict, check: bool) -> None:
    """Run ``block`` in ``ns`` statement by statement, with tracebacks on the page's lines;
    with ``check``, compare REPL-style value comments and run the block's claims."""
    filename = str(ROOT / block.page)
    _seed()
    for stmt, claim in _statements(block):
        if check and claim is not None:
            value = eval(compile(ast.Expression(stmt.value), filename, "eval"), ns)
            assert repr(value) == claim, (
                f"{block.page} line {stmt.end_lineno}: the comment says {claim}, the "
                f"code gives {value!r}")
            continue
        exec(compile(ast.Module([stmt], type_ignores=[]), filename, "exec"), ns)
    if check:
        for claim in CLAIMS.get(block.id, []):
            assert eval(claim, {**CLAIM_NAMES, **ns}), \
                f"{block.id}: claim does not hold: {claim}"


_PAGE_STATE: dict[str, dict] = {}


def _page_state(page: str, tmp_path_factory) -> dict:
    if page not in _PAGE_STATE:
        _PAGE_STATE[page] = {
            "dir": tmp_path_factory.mktemp(re.sub(r"\W", "_", page)),
            "ns": {"__name__": "__docs__"},
            "done": 0, "failed": None}
    return _PAGE_STATE[page]


def _run_with_setup(block: Block, ns: dict, check: bool) -> None:
    if block.id in GIVEN:
        exec(GIVEN[block.id][1], ns)
    try:
        _run_block(block, ns, check)
    finally:
        if block.id in CLEANUP:
            exec(CLEANUP[block.id], ns)


# docs/reproducibility.rst's recipe asks for 4 workers, as a reader's machine would have
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example(block, tmp_path_factory, monkeypatch):
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    state = _page_state(block.page, tmp_path_factory)
    monkeypatch.chdir(state["dir"])
    for earlier in BY_PAGE[block.page][state["done"]:block.number - 1]:
        if not earlier.skip:
            _run_with_setup(earlier, state["ns"], check=False)
        state["done"] = earlier.number
    if state["failed"] is not None:
        pytest.fail(f"an earlier block of the page failed ({state['failed']}); "
                    f"this one runs in its namespace")
    try:
        _run_with_setup(block, state["ns"], check=True)
    except BaseException:
        state["failed"] = block.id
        raise
    finally:
        state["done"] = block.number


# ---- the collector itself ---------------------------------------------------------------

def test_collects_the_known_examples():
    ids = {b.id for b in BLOCKS}
    assert {"README.md:1", "README.md:3", "docs/quickstart.rst:2", "docs/training.rst:1",
            "docs/ssl.rst:1"} <= ids
    # every key of the per-block tables names a block that exists
    for table in (GIVEN, CLEANUP, SHRINK, CLAIMS):
        assert set(table) <= ids, set(table) - ids
    # the REPL-style value comments are found (and so checked)
    claimed = {(b.id, c) for b in BLOCKS for _, c in _statements(b) if c is not None}
    assert {("docs/training.rst:1", "8"), ("docs/ssl.rst:1", "torch.Size([4, 64, 100])"),
            ("docs/benchmarks.rst:1", "[True, True]")} <= claimed, claimed


def test_every_skip_names_a_reason():
    for b in BLOCKS:
        assert b.skip is None or len(b.skip.split()) >= 2, f"{b.id}: skip without reason"


def test_no_untyped_literal_blocks():
    """A ``::`` literal block has no language, so this file cannot tell whether to run it:
    the docs write ``.. code-block:: python`` (or another language) instead."""
    found = []
    for page in PAGES:
        if page.suffix != ".rst":
            continue
        for n, line in enumerate(page.read_text().splitlines(), 1):
            s = line.rstrip()
            if s.endswith("::") and not re.match(r"^\s*\.\.\s", s):
                found.append(f"{page.relative_to(ROOT)}:{n}")
    assert not found, f"literal blocks without a language: {found}"


def test_command_lines_parse():
    """The shell blocks' ``fastecg ...`` command lines (also after ``torchrun ...
    --no-python``) name commands and flags the CLI has, with values of the right types:
    parsed by the CLI's own parser, not run (they take hours, GPUs or the reader's data)."""
    from fastecg.cli import build_parser

    parsed, failed = 0, []
    for page in PAGES:
        for block in collect(page, ("bash", "sh", "shell", "console")):
            for line in block.code.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if "fastecg" not in words:
                    continue
                args = words[words.index("fastecg") + 1:]
                try:
                    build_parser().parse_args(args)
                    parsed += 1
                except SystemExit:
                    failed.append(f"{block.page}: fastecg {' '.join(args)}")
    assert not failed, failed
    assert parsed >= 12, parsed


def test_parser_on_a_sample():
    md = ("text\n<!-- skip-test: needs a GPU -->\n```python\na = 1\n```\n"
          "```bash\nls\n```\n```python\nb = a  # 1\n```\n")
    rst = ("Title\n=====\n\n.. skip-test: needs torchrun\n\n.. code-block:: python\n"
           "   :caption: x\n\n   a = 1\n\n   b = 2\n\nprose\n\n.. code-block:: bash\n\n"
           "   ls\n\n.. code-block:: python\n\n   c = 3\n")
    mdb = _markdown_blocks("p.md", md)
    assert [(b.number, b.line, b.code, b.skip) for b in mdb] == [
        (1, 4, "a = 1", "needs a GPU"), (2, 10, "b = a  # 1", None)]
    rb = _rst_blocks("p.rst", rst)
    assert [(b.number, b.line, b.code, b.skip) for b in rb] == [
        (1, 9, "a = 1\n\nb = 2", "needs torchrun"), (2, 21, "c = 3", None)]


def test_value_comments_are_checked():
    block = Block("README.md", 99, 1, "n = 2 + 2\nn  # 5", None)
    with pytest.raises(AssertionError, match="the comment says 5, the code gives 4"):
        _run_block(block, {}, check=True)
    ok = Block("README.md", 99, 1, "import torch\ntorch.zeros(2, 3).shape  # torch.Size"
               "([2, 3]): two rows\n'a'  # 'a'\n(1, 2)  # (1, 2)", None)
    _run_block(ok, {}, check=True)
