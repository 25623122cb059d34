r"""Three more verbs of the ``losskit`` command: ``doctor``, ``atlas`` and ``eval``.

``losskit.cli.build_parser`` calls :func:`add_commands` with its subparsers. Each command
function takes the parsed ``argparse.Namespace`` and returns the exit status; a
``ValueError`` is a usage error (``losskit CMD: error: ...``, exit status 2).

``losskit doctor FILE``
    Reads a loss history (CSV, TSV or JSON Lines) and runs :func:`losskit.doctor` on it.
``losskit atlas OUT.html``
    Writes the self-contained HTML page of :mod:`losskit.lab.atlas`.
``losskit eval --loss NAME PRED LABELS``
    The value of a loss over files too large for memory (:mod:`losskit.evaluate`).

History files for ``doctor``
----------------------------
One row per logged step, with a header (CSV/TSV) or one JSON object per line (JSONL).
The columns, matched case-insensitively:

* ``loss`` (also ``train_loss``, ``training_loss``): the training loss (required);
* ``val_loss`` (also ``valid_loss``, ``validation_loss``, ``eval_loss``, ``test_loss``):
  the validation loss (optional);
* ``step`` (also ``global_step``, ``iteration``, ``iter``, ``epoch``; the first present
  in that order): the step of each row (optional; default the row's index).

A row may leave either loss empty (``""``, ``null`` or absent): loggers such as
PyTorch Lightning's ``CSVLogger`` write training and validation values on separate rows.
Rows with neither are skipped. ``nan`` and ``inf`` are read as such (they are findings);
anything else that is not a number is an error naming the line. Two columns for the same
role (``loss`` and ``train_loss``) are an error: rename one.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field

from .text import INSTALL_DEMO as _INSTALL_DEMO
from .text import table as _table

__all__ = ["add_commands", "read_history", "History", "parse_option"]


#: column names per role, matched case-insensitively (the first present wins for step)
LOSS_COLUMNS = ("loss", "train_loss", "training_loss")
VAL_COLUMNS = ("val_loss", "valid_loss", "validation_loss", "eval_loss", "test_loss")
STEP_COLUMNS = ("step", "global_step", "iteration", "iter", "epoch")
HISTORY_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


# ----------------------------------------------------------------------------- helpers


def _check_input_file(path: str, what: str = "file") -> None:
    """A missing or unreadable input is a usage error (exit 2), not an OSError (exit 1)."""
    if not os.path.exists(path):
        raise ValueError(f"no such {what}: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a {what}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {path}: permission denied")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {value}")
        return value
    return parse


# ----------------------------------------------------------------------------- doctor
@dataclass
class History:
    """A loss history read from a file: the curves :func:`losskit.doctor` takes."""

    path: str
    losses: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    val_steps: list = field(default_factory=list)
    columns: dict = field(default_factory=dict)  # role -> the column name used


def _resolve_columns(names, path) -> dict:
    lower = {}
    for name in names:
        key = str(name).strip().lower()
        if key in lower:
            raise ValueError(f"{path}: the column {name!r} appears twice")
        lower[key] = name
    roles = {}
    for role, aliases in (("loss", LOSS_COLUMNS), ("val_loss", VAL_COLUMNS)):
        present = [lower[a] for a in aliases if a in lower]
        if len(present) > 1:
            raise ValueError(f"{path}: columns {', '.join(map(repr, present))} both look like "
                             f"the {role.replace('_', ' ')}; keep one (or rename the other)")
        if present:
            roles[role] = present[0]
    steps = [lower[a] for a in STEP_COLUMNS if a in lower]
    if steps:
        roles["step"] = steps[0]
    if "loss" not in roles:
        found = ", ".join(repr(str(n)) for n in names) or "none"
        raise ValueError(f"{path}: no training-loss column; expected one named "
                         f"{' or '.join(repr(a) for a in LOSS_COLUMNS)} (columns found: "
                         f"{found})")
    return roles


def _number(cell, path, line, column):
    """A cell as a float, or None when empty."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        raise ValueError(f"{path}, line {line}: {column} is {str(cell).lower()}, not a number")
    if isinstance(cell, (int, float)):
        return float(cell)
    if not isinstance(cell, str):
        raise ValueError(f"{path}, line {line}: {column} is {json.dumps(cell)}, not a number")
    text = cell.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}, line {line}: {column} {text!r} is not a number") from None


def _rows_csv(path, delimiter):
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: the file is empty") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
        yield header
        try:
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) > len(header):
                    raise ValueError(f"{path}, line {reader.line_num}: {len(row)} values but "
                                     f"the header has {len(header)} columns")
                yield reader.line_num, dict(zip(header, row))
        except csv.Error as exc:
            raise ValueError(f"{path}, line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None


def _rows_jsonl(path):
    rows, names = [], {}
    with open(path, encoding="utf-8-sig") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}, line {line_no}: expected a JSON object such as "
                                 '{"step": 1, "loss": 0.5}; got ' + type(obj).__name__)
            for key in obj:
                names.setdefault(key, None)
            rows.append((line_no, obj))
    if not rows:
        raise ValueError(f"{path}: the file has no records")
    yield list(names)
    yield from rows


def read_history(path) -> History:
    """Read a loss history file (CSV, TSV, JSONL) into a :class:`History`.

    Raises ``ValueError`` naming the file (and the line) for an unknown suffix, an
    empty file, a missing loss column, a value that is not a number, a missing or
    repeated step, or steps that do not increase. A loss column without any value (a
    header only, or validation rows only) gives an empty ``losses`` list: a history too
    short to judge, not an error.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from losskit.cli.tools import read_history
    >>> p = Path(tempfile.mkdtemp()) / "h.csv"
    >>> _ = p.write_text("step,train_loss,val_loss\\n1,2.0,\\n2,1.5,1.7\\n3,1.2,\\n")
    >>> h = read_history(p)
    >>> h.steps, h.losses, h.val_steps, h.val_losses, h.columns["loss"]
    ([1, 2, 3], [2.0, 1.5, 1.2], [2], [1.7], 'train_loss')
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in HISTORY_SUFFIXES:
        raise ValueError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected a "
                         f"loss history in {', '.join(HISTORY_SUFFIXES)}")
    _check_input_file(path, "loss history")
    kind = HISTORY_SUFFIXES[suffix]
    rows = _rows_jsonl(path) if kind == "jsonl" else _rows_csv(path, "," if kind == "csv"
                                                                 else "\t")
    names = next(rows)
    roles = _resolve_columns(names, path)
    h = History(path, columns=dict(roles))
    step_col = roles.get("step")
    last = {"loss": None, "val_loss": None}
    index = -1
    for line, row in rows:
        loss = _number(row.get(roles["loss"]), path, line, roles["loss"])
        val = (_number(row.get(roles["val_loss"]), path, line, roles["val_loss"])
               if "val_loss" in roles else None)
        if loss is None and val is None:
            continue
        index += 1
        if step_col is not None:
            step = _number(row.get(step_col), path, line, step_col)
            if step is None:
                raise ValueError(f"{path}, line {line}: the {step_col!r} column is empty")
            if not math.isfinite(step):
                raise ValueError(f"{path}, line {line}: {step_col} {step} is not finite")
            step = int(step) if step == int(step) else step
        else:
            step = index
        for role, value, steps, values in (("loss", loss, h.steps, h.losses),
                                           ("val_loss", val, h.val_steps, h.val_losses)):
            if value is None:
                continue
            if last[role] is not None and step <= last[role][0]:
                raise ValueError(
                    f"{path}, line {line}: {step_col} {step} does not increase (line "
                    f"{last[role][1]} had {last[role][0]}); each {roles[role]} needs its own, "
                    "larger step")
            last[role] = (step, line)
            steps.append(step)
            values.append(value)
    return h


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import VERDICTS, doctor

    h = read_history(args.file)
    val = h.val_losses or None
    try:
        report = doctor(h.losses, num_classes=args.num_classes, val_losses=val,
                        steps=h.steps, val_steps=h.val_steps if val else None,
                        window=args.window)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    if args.json:
        out = {"file": h.path, "columns": h.columns, **report.to_dict()}
        print(json.dumps(out, indent=2))
    else:
        cols = ", ".join(f"{role} = {name!r}" for role, name in h.columns.items())
        n = len(h.losses)
        lines = [f"{h.path}: {n} training loss value{'s' if n != 1 else ''}"
                 + (f" (steps {h.steps[0]} to {h.steps[-1]})" if n > 1 else
                    f" (step {h.steps[0]})" if n else
                    f" (the {h.columns['loss']!r} column is empty on every row)")
                 + (f", {len(h.val_losses)} validation" if h.val_losses else "")
                 + f"; columns: {cols}"]
        if args.num_classes is not None:
            lines.append(f"chance level for {args.num_classes} classes: ln "
                         f"{args.num_classes} = {math.log(args.num_classes):.5g}")
        lines.append("")
        lines.append(str(report))  # "... the curve looks healthy" when nothing is found
        print("\n".join(lines))
    # 0 healthy or warnings only, 1 an error-level finding, 3 too short to judge
    return VERDICTS[report.verdict]


# ----------------------------------------------------------------------------- atlas
def _cmd_atlas(args: argparse.Namespace) -> int:
    from ..lab.atlas import build_atlas

    out = args.out
    if os.path.splitext(out)[1].lower() not in (".html", ".htm"):
        raise ValueError(f"OUT must be an .html file; got {out!r}")
    if args.family is not None:
        from ..core.loss import catalog

        catalog(args.family)  # an unknown family: ValueError listing the families
    path = build_atlas(out, family=args.family)
    size = os.path.getsize(path)
    print(f"wrote {path} ({size / 1024:.0f} KiB); open it in a browser (it needs no network)")
    return 0


# ----------------------------------------------------------------------------- eval
def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with ``value`` a Python literal (number, list, None, True) or a string.

    >>> from losskit.cli.tools import parse_option
    >>> parse_option("ignore_index=-100"), parse_option("mode=global")
    (('ignore_index', -100), ('mode', 'global'))
    >>> parse_option("class_weight=[1, 2.5]")
    ('class_weight', [1, 2.5])
    """
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise ValueError(f"--option expects KEY=VALUE (e.g. ignore_index=-100); got {text!r}")
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        if raw[:1] in "[(":
            raise ValueError(f"--option {key}: cannot read {raw!r} as a list of numbers "
                             "(write it like [1, 2.5, 1])") from None
        lowered = raw.lower()
        value = {"none": None, "true": True, "false": False, "null": None}.get(lowered, raw)
    return key, value


def _cmd_eval(args: argparse.Namespace) -> int:
    """Exit 0 with the value; 1 when an input holds NaN/inf (the first such row is
    named); 2 for a usage error: a bad option (named), a row the loss rejects (named),
    an unreadable file."""
    from ..evaluate import NonFiniteInputError, OptionError, evaluate, find_loss

    loss = find_loss(args.loss)
    files = [args.pred, args.labels, *args.more]
    if len(files) != len(loss.inputs):
        raise ValueError(f"{loss.name} takes {len(loss.inputs)} files, one per input "
                         f"({', '.join(loss.inputs)}); got {len(files)}")
    for path in files + ([args.sample_weight] if args.sample_weight else []):
        if os.path.splitext(path)[1].lower() not in (".npy", ".csv", ".parquet"):
            raise ValueError(f"{path}: unknown file type "
                             f"{os.path.splitext(path)[1] or '(no suffix)'!r}; expected "
                             ".npy, .csv or .parquet")
        _check_input_file(path)
    options = dict(parse_option(o) for o in (args.option or ()))
    progress = False if args.no_progress else None
    try:
        result = evaluate(loss, *files, reduction=args.reduction,
                          sample_weight=args.sample_weight, chunk_size=args.chunk_size,
                          options=options, progress=progress, dask=args.dask)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    except OptionError as exc:  # the option's fault, whatever the rows
        names = ", ".join(f"{k}={v!r}" for k, v in exc.options.items())
        extra = (f" (it conflicts with the data at row {exc.row}, 0-based)"
                 if exc.row else "")
        raise ValueError(f"--option {names}: {exc.loss} rejects it: {exc.reason}"
                         f"{extra}") from None
    except NonFiniteInputError as exc:  # the data fail the check: exit 1, not a value
        if args.json:
            print(json.dumps(exc.to_dict(), indent=2))
        print(f"losskit eval: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"ok": True, **result.to_dict()}, indent=2))
        return 0
    rows = [("loss", loss.name), ("reduction", result.reduction)]
    rows += [(text.split(":", 1)[0], text.split(":", 1)[1].strip()) for text in result.inputs]
    if options:
        rows.append(("options", ", ".join(f"{k}={v!r}" for k, v in options.items())))
    rows.append(("rows", f"{result.rows} in {result.chunks} chunk"
                         f"{'s' if result.chunks != 1 else ''} of up to {result.chunk_rows}"))
    rows.append(("computed by", "streaming in float64" if result.backend == "stream"
                 else result.backend))
    if result.total is not None:
        rows.append(("sum of losses", repr(result.total)))
    if result.weight is not None and result.reduction == "mean":
        w = result.weight
        shown = str(int(w)) if w.is_integer() and abs(w) < 2**53 else repr(w)
        rows.append(("total weight", f"{shown} (the mean's denominator)"))
    rows.append(("value", repr(result.value)))
    print("\n".join(_table(("", ""), rows)[2:]))
    return 0


# ----------------------------------------------------------------------------- parsers
def add_commands(sub) -> None:
    """Add ``doctor``, ``atlas`` and ``eval`` to the ``losskit`` subparsers ``sub``."""
    doc = sub.add_parser(
        "doctor", help="diagnose a training run from its loss history (CSV or JSONL)",
        description="Read a loss history and report what it shows: NaN/inf values, a "
                    "diverging or rising loss, a classifier stuck at the loss of a uniform "
                    "guess (ln K, with --num-classes), no progress, and overfitting (with a "
                    "validation column). Each finding names the step where it shows and "
                    "what to try. Columns: loss (or train_loss, training_loss), optionally "
                    "val_loss (or valid_loss, validation_loss, eval_loss, test_loss) and step "
                    "(or global_step, iteration, iter, epoch); either loss may be empty on "
                    "a row. Without --num-classes, a long flat plateau at ln K for a small "
                    "K (2 to 1000) is still reported as likely stuck at chance, with that "
                    "K. Exit status: 0 when no error-level finding (warnings allowed), "
                    "1 when there is one (stuck at chance included), 2 for an unreadable "
                    "file or bad arguments, 3 when the history is too short to judge "
                    "(fewer than 5 training loss values: one point shows no trend).",
        epilog="examples:\n"
               "  losskit doctor metrics.csv\n"
               "  losskit doctor history.jsonl --num-classes 10\n"
               "  losskit doctor lightning_logs/version_0/metrics.csv --json\n"
               "\n"
               "file formats (.csv, .tsv, .jsonl/.ndjson):\n"
               "  step,loss,val_loss          {\"step\": 100, \"loss\": 2.31, "
               "\"val_loss\": null}\n"
               "  100,2.31,                   {\"step\": 200, \"loss\": 1.87, "
               "\"val_loss\": 1.95}\n"
               "  200,1.87,1.95",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    doc.add_argument("file", metavar="FILE", help="the loss history: .csv, .tsv or .jsonl")
    doc.add_argument("--num-classes", type=_int_at_least(2), default=None, metavar="K",
                     help="number of classes of a classifier trained with cross-entropy: "
                          "the stuck-at-chance check compares the loss with ln K (within "
                          "5%%); without it, only a flat plateau very close to ln K for "
                          "some K in 2..1000 is caught")
    doc.add_argument("--window", type=_int_at_least(1), default=None, metavar="N",
                     help="width of the moving median that smooths the curve (default: "
                          "about 5%% of its length)")
    doc.add_argument("--json", action="store_true",
                     help="print the report as JSON (findings with code, level, step, "
                          "message, advice)")
    doc.set_defaults(func=_cmd_doctor)

    atl = sub.add_parser(
        "atlas", help="write every loss, its formulas and curves to one HTML page",
        description="Write one self-contained HTML page (inline CSS and SVG, formulas as "
                    "LaTeX source and rendered images; nothing loaded from the network) "
                    "with every loss of the catalog: family, prediction and target, "
                    "formula and gradient formula, when to use it, its options, and its "
                    "value and gradient curves (where a 1-D curve makes sense); then the "
                    "saturation and convexity experiments. Rendering the formulas needs "
                    f"matplotlib ({_INSTALL_DEMO}); without it they are shown as source.",
        epilog="examples:\n"
               "  losskit atlas atlas.html\n"
               "  losskit atlas docs/regression.html --family regression",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    atl.add_argument("out", metavar="OUT.html", help="the page to write (folders are created)")
    atl.add_argument("--family", default=None,
                     help="only the losses of this family (e.g. regression, classification)")
    atl.set_defaults(func=_cmd_atlas)

    ev = sub.add_parser(
        "eval", help="a loss over .npy/.csv/.parquet files too large for memory",
        description="Compute the value of a loss over prediction and target files read a "
                    "chunk of rows at a time (.npy memory-mapped, .csv line by line, "
                    ".parquet by record batch; parquet needs pyarrow: pip install "
                    "'losskit[data]'). The chunks' sums and weights are added in float64, "
                    "so the mean is exactly the loss's own (weighted) mean over all rows, "
                    "ignored targets and class weights included. Values are read as "
                    "float64. The first axis (rows) is the examples; a CSV has one example "
                    "per line (one column: shape (N,), C columns: (N, C)), and an optional "
                    "header line. Losses with more inputs take one file per input, in "
                    "the order `losskit explain NAME` lists them. With --dask the files "
                    "become Dask arrays and the loss runs on them on a dask.distributed "
                    "LocalCluster (Dask's threads without distributed).",
        epilog="examples:\n"
               "  losskit eval --loss softmax_cross_entropy logits.npy labels.npy\n"
               "  losskit eval --loss softmax_cross_entropy logits.npy labels.csv \\\n"
               "      --option ignore_index=-100 --option class_weight='[1, 2, 1]'\n"
               "  losskit eval --loss mse pred.parquet target.parquet --reduction sum\n"
               "  losskit eval --loss gaussian_nll mean.npy target.npy var.npy\n"
               "  losskit eval --loss mse pred.npy target.npy --chunk-size 100000 --dask\n"
               "\n"
               "output: the inputs, the number of rows and chunks, the sum of the losses, "
               "the\ntotal weight (the mean's denominator) and the value; --json for a "
               "machine.\n"
               "\n"
               "exit status: 0 with the value; 1 when an input holds NaN or inf (the "
               "first\nsuch row, input and column are named); 2 for a usage error: an "
               "option the\nloss rejects (named), a row it rejects (its row number), an "
               "unreadable file.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--loss", required=True, metavar="NAME",
                    help="a loss name or alias (see `losskit list`)")
    ev.add_argument("pred", metavar="PRED", help="the prediction: .npy, .csv or .parquet")
    ev.add_argument("labels", metavar="LABELS", help="the target, with as many rows as PRED")
    ev.add_argument("more", nargs="*", metavar="INPUT",
                    help="further inputs of losses that take more (e.g. var of gaussian_nll)")
    ev.add_argument("--reduction", choices=("mean", "sum", "batchmean"), default="mean",
                    help="mean (default; divided by the total weight that took part), sum, "
                         "or batchmean (divided by the number of rows)")
    ev.add_argument("--option", action="append", metavar="KEY=VALUE",
                    help="a loss option, repeatable: ignore_index=-100, margin=2, "
                         "class_weight='[1, 2, 1]', mode=global")
    ev.add_argument("--sample-weight", default=None, metavar="FILE",
                    help="a weight per example (.npy/.csv/.parquet, one per row)")
    ev.add_argument("--chunk-size", type=_int_at_least(1), default=None, metavar="N",
                    help="rows per chunk (default: about 64 MB of float64 per chunk)")
    ev.add_argument("--dask", action="store_true",
                    help="compute on Dask (a dask.distributed LocalCluster when installed)")
    ev.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it is shown on stderr only when it is a terminal)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(func=_cmd_eval)
