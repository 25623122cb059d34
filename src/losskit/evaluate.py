r"""The value of a loss over data too large for memory: streamed in chunks, or on Dask.

:func:`evaluate` reads the prediction, the target (and any further inputs of the loss)
from ``.npy``, ``.csv`` or ``.parquet`` files a block of rows at a time and adds up

.. math::

    S = \sum_n s_n \ell_n, \qquad W = \sum_n s_n w_n

over the blocks in float64, where :math:`\ell_n` are the loss's per-example values,
:math:`s_n` the optional sample weights and :math:`w_n` the weights the loss's own mean
divides by (1 per element, 0 for an ignored target, the class weight :math:`c_{y_n}` of
the target with ``class_weight=``). Then ``"sum"`` is :math:`S`, ``"mean"`` is
:math:`S / W` and ``"batchmean"`` is :math:`S / N` for :math:`N` rows: exactly what the
loss computes on the whole arrays in memory (a mean over nothing is 0, as there). Only
one block per file is in memory at a time: ``.npy`` files are memory-mapped, CSV files
are read line by line and Parquet files by record batch.

With ``dask=True`` the same files become Dask arrays (one task per block, read on the
workers) and the loss itself runs on them lazily, computed on a ``dask.distributed``
cluster (a ``LocalCluster`` unless a client is given) when ``distributed`` is installed,
else on Dask's threaded scheduler.

File formats
------------
``.npy``
    Any numeric array whose first axis is the examples (``np.save``); read with
    ``np.load(mmap_mode="r")``.
``.csv``
    One example per line, numbers separated by commas; one column gives shape ``(N,)``,
    ``C`` columns shape ``(N, C)``. A first line that is not all numbers is a header and
    skipped; blank lines are skipped. A file whose numbers are all integers (no ``.``,
    exponent, ``nan`` or ``inf``) is read as int64 (labels), any other as float64.
``.parquet`` (needs ``pyarrow``: ``pip install 'losskit[data]'``)
    Numeric columns without nulls, one example per row; one column gives ``(N,)``,
    ``C`` columns ``(N, C)``.

The differentiable inputs (the prediction; both embeddings of a pair loss) are read as
float64, whatever their file's float dtype, and every chunk is computed in float64 (a
float32 file therefore gives the float64 value of its numbers, which can differ from a
float32 in-memory computation in float32's last digits). Integer predictions in a
``.npy`` or ``.parquet`` file are an error, as they are for the losses. The loss must
treat each row on its own (all losskit losses do; an ``axis`` option may not point at
the first axis, the rows).

Examples
--------
>>> import math
>>> import numpy as np
>>> from losskit.evaluate import evaluate
>>> z = np.log([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
>>> y = np.array([0, 1, 1])                  # losses ln 2, ln 2, ln 4
>>> r = evaluate("softmax_cross_entropy", z, y, chunk_size=2)
>>> r.chunks, round(r.value, 6), round(math.log(2) * 4 / 3, 6)
(2, 0.924196, 0.924196)
>>> r = evaluate("softmax_cross_entropy", z, y, chunk_size=2,
...              options={"class_weight": [1.0, 3.0, 1.0]})  # (ln2 + 3 ln2 + 3 ln4) / 7
>>> round(r.weight, 6), round(r.value, 6), round(10 * math.log(2) / 7, 6)
(7.0, 0.990210, 0.990210)
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

__all__ = ["evaluate", "EvalResult", "ArraySource", "open_array", "find_loss", "SUFFIXES",
           "DEFAULT_CHUNK_BYTES", "NonFiniteInputError", "OptionError"]

#: The file suffixes :func:`open_array` reads.
SUFFIXES = (".npy", ".csv", ".parquet")

#: Without ``chunk_size``, a chunk holds about this many bytes of all inputs together.
DEFAULT_CHUNK_BYTES = 64 * 2**20

_INSTALL_DATA = "pip install 'losskit[data]'"
_REDUCTIONS = ("mean", "sum", "batchmean")


# ----------------------------------------------------------------------------- loss names
def _loss_names() -> dict:
    from .core.loss import catalog

    names = {}
    for loss in catalog():
        names[loss.name] = loss
        for alias in loss.aliases:
            names.setdefault(alias, loss)
    return names


def find_loss(name):
    """The catalog loss called ``name`` (or an alias; case and ``-`` forgiven).

    A :class:`~losskit.Loss` passes through. An unknown name is a ``ValueError`` that
    suggests the closest names.

    >>> from losskit.evaluate import find_loss
    >>> find_loss("mean-squared-error").name
    'mse'
    """
    from .core.loss import Loss

    if isinstance(name, Loss):
        return name
    if not isinstance(name, str):
        raise TypeError(f"`loss` must be a loss name or a losskit Loss; got "
                        f"{type(name).__name__}")
    names = _loss_names()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    loss = names.get(name) or names.get(key)
    if loss is None:
        close = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.5)
        msg = f"unknown loss {name!r}"
        if close:
            msg += f"; did you mean: {', '.join(close)}?"
        raise ValueError(msg + " (`losskit list` shows every loss)")
    return loss


# ----------------------------------------------------------------------------- sources
class ArraySource:
    """Rows of one array, read a block at a time (a file on disk or an array in memory).

    Attributes
    ----------
    label : str
        What to call it in messages (the path).
    shape : tuple of int
        The whole array's shape; the first axis is the rows (examples).
    dtype : numpy.dtype
        The dtype the blocks come in.
    typed : bool
        Whether the dtype was stored (``.npy``, Parquet, arrays) rather than guessed
        from text (CSV).
    """

    suffix = ""
    typed = True

    def __init__(self, label: str, shape: tuple, dtype):
        self.label = label
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * 8

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a NumPy array (a copy, safe to keep)."""
        raise NotImplementedError

    def blocks(self, bounds: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
        """The blocks ``read(a, b)`` for ``(a, b)`` in ``bounds``, in order."""
        for a, b in bounds:
            yield self.read(a, b)

    def describe(self) -> str:
        return f"{self.shape} {self.dtype} in {self.label}"

    def line_of(self, row: int) -> int | None:
        """The line of a text file that holds ``row`` (1-based), or None."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class _MemorySource(ArraySource):
    """A NumPy array (or ``np.memmap``) already open."""

    def __init__(self, array, label: str):
        arr = np.asarray(array) if not isinstance(array, np.ndarray) else array
        _check_dtype(arr.dtype, label)
        if arr.ndim == 0:
            raise ValueError(f"{label}: a 0-d array has no rows; the first axis must be the "
                             "examples")
        super().__init__(label, arr.shape, arr.dtype)
        self._array = arr

    def read(self, start, stop):
        return np.array(self._array[start:stop])


class _NpySource(ArraySource):
    suffix = ".npy"

    def __init__(self, path: str):
        arr = self._open(path)
        if arr.ndim == 0:
            raise ValueError(f"{path}: holds a 0-d array (shape ()); it needs a first axis "
                             "of examples")
        _check_dtype(arr.dtype, path)
        super().__init__(path, arr.shape, arr.dtype)
        self._path = path
        self._mm = arr

    @staticmethod
    def _open(path):
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable .npy array ({exc}); write it with "
                             "numpy.save") from None
        except (EOFError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a readable .npy file ({exc})") from None

    def __getstate__(self):  # Dask workers reopen the file instead of pickling the data
        state = dict(self.__dict__)
        state["_mm"] = None
        return state

    def read(self, start, stop):
        if self._mm is None:
            self._mm = self._open(self._path)
        return np.array(self._mm[start:stop])


_FLOAT_MARKS = (b".", b"e", b"E", b"n", b"N", b"i", b"I")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _CsvSource(ArraySource):
    """A numeric CSV file; an index of byte offsets lets any block be read directly."""

    suffix = ".csv"
    typed = False

    #: a byte offset is kept for every this many rows (reading row r skips < this many)
    index_every = 1024

    def __init__(self, path: str):
        self._path = path
        self.header: list[str] | None = None
        self._offsets: list[tuple[int, int]] = []  # (byte offset, line number) per 1024 rows
        ncols, rows, is_float = None, 0, False
        with open(path, "rb") as f:
            pos, line_no = 0, 0
            for raw in f:
                line_no += 1
                here, pos = pos, pos + len(raw)
                text = raw.strip()
                if not text:
                    continue
                if ncols is None:  # the first non-blank line: a header or data
                    try:
                        cells = [c.strip().strip('"') for c in text.decode().split(",")]
                    except UnicodeDecodeError:
                        raise ValueError(f"{path}, line {line_no}: not UTF-8 text; is it "
                                         "really a CSV file?") from None
                    ncols = len(cells)
                    if not all(_is_number(c) for c in cells if c):
                        self.header = cells
                        continue
                if rows % self.index_every == 0:
                    self._offsets.append((here, line_no))
                rows += 1
                if not is_float and any(m in text for m in _FLOAT_MARKS):
                    is_float = True
        if ncols is None:
            raise ValueError(f"{path}: the file is empty")
        self.ncols = ncols
        shape = (rows,) if ncols == 1 else (rows, ncols)
        super().__init__(path, shape, np.float64 if is_float else np.int64)

    def line_of(self, row):
        if not 0 <= row < self.rows:
            return None
        offset, line_no = self._offsets[row // self.index_every]
        skip = row % self.index_every
        with open(self._path, "rb") as f:
            f.seek(offset)
            for raw in f:
                if raw.strip():
                    if not skip:
                        return line_no
                    skip -= 1
                line_no += 1
        return None  # pragma: no cover - the index covers every row

    def read(self, start, stop):
        if stop <= start:
            return np.zeros((0,) + self.shape[1:], dtype=self.dtype)
        offset, line_no = self._offsets[start // self.index_every]
        skip = start % self.index_every
        lines, numbers = [], []
        with open(self._path, "rb") as f:
            f.seek(offset)
            for raw in f:
                if len(lines) == stop - start:
                    break
                if raw.strip():
                    if skip:
                        skip -= 1
                    else:
                        lines.append(raw.decode())
                        numbers.append(line_no)
                line_no += 1
        return self._parse(lines, numbers)

    def _parse(self, lines, numbers):
        try:
            out = np.loadtxt(lines, delimiter=",", dtype=self.dtype, ndmin=2, quotechar='"',
                             comments=None)
        except ValueError:
            self._explain(lines, numbers)  # raises the precise error
            raise  # pragma: no cover - _explain always raises
        if out.shape[1] != self.ncols:
            self._explain(lines, numbers)
        return out[:, 0] if self.ncols == 1 else out

    def _explain(self, lines, numbers):
        kind = "an integer" if self.dtype.kind == "i" else "a number"
        for text, line_no in zip(lines, numbers):
            cells = [c.strip().strip('"') for c in text.strip().split(",")]
            if len(cells) != self.ncols:
                raise ValueError(f"{self._path}, line {line_no}: {len(cells)} values where "
                                 f"the file has {self.ncols} columns")
            for j, cell in enumerate(cells, start=1):
                try:
                    (int if self.dtype.kind == "i" else float)(cell)
                except ValueError:
                    raise ValueError(f"{self._path}, line {line_no}, column {j}: {cell!r} is "
                                     f"not {kind}") from None
        raise ValueError(f"{self._path}: could not parse the lines {numbers[0]}-"
                         f"{numbers[-1]} as numbers")


class _ParquetSource(ArraySource):
    suffix = ".parquet"

    def __init__(self, path: str):
        pq = _pyarrow_parquet()
        import pyarrow as pa

        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None
        schema = pf.schema_arrow
        if len(schema) == 0:
            raise ValueError(f"{path}: the Parquet file has no columns")
        is_float = False
        for fld in schema:
            t = fld.type
            if pa.types.is_floating(t):
                is_float = True
            elif not (pa.types.is_integer(t) or pa.types.is_boolean(t)):
                raise ValueError(f"{path}: column {fld.name!r} has type {t}; every column must "
                                 "be numeric (one number per row)")
        self.columns = [fld.name for fld in schema]
        rows = pf.metadata.num_rows
        ncols = len(self.columns)
        shape = (rows,) if ncols == 1 else (rows, ncols)
        super().__init__(path, shape, np.float64 if is_float else np.int64)
        sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._path = path
        self._pf = pf

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pf"] = None
        return state

    def _file(self):
        if self._pf is None:
            self._pf = _pyarrow_parquet().ParquetFile(self._path)
        return self._pf

    def _to_numpy(self, table, first_row):
        cols = []
        for name, col in zip(self.columns, table.columns):
            if col.null_count:
                import pyarrow.compute as pc

                i = pc.index(pc.is_null(col), True).as_py()
                raise ValueError(f"{self._path}: column {name!r} is null at row "
                                 f"{first_row + i} (0-based); fill or drop missing values")
            cols.append(col.to_numpy().astype(self.dtype, copy=False))
        if not cols or len(cols[0]) == 0:
            return np.zeros((0,) + self.shape[1:], dtype=self.dtype)
        out = np.column_stack(cols)
        return out[:, 0] if len(self.columns) == 1 else out

    def read(self, start, stop):
        if stop <= start:
            return np.zeros((0,) + self.shape[1:], dtype=self.dtype)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        last = int(np.searchsorted(self._starts, stop, side="left"))
        table = self._file().read_row_groups(list(range(first, last)), columns=self.columns)
        table = table.slice(start - int(self._starts[first]), stop - start)
        return self._to_numpy(table, start)

    def blocks(self, bounds):
        # a record-batch stream is cheaper than random access when reading in order
        size = bounds[0][1] - bounds[0][0] if bounds else 1
        if any(b - a != size for a, b in bounds[:-1]):
            yield from super().blocks(bounds)
            return
        import pyarrow as pa

        # record batches need not have the requested size (row groups may cut them):
        # re-cut the stream into exactly the blocks the other inputs are read in
        pending, have, done = [], 0, 0
        wanted = iter(bounds)
        a, b = next(wanted, (0, 0))
        for batch in self._file().iter_batches(batch_size=max(size, 1), columns=self.columns):
            pending.append(self._to_numpy(pa.Table.from_batches([batch]), done + have))
            have += batch.num_rows
            while have >= b - a > 0:
                block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield block[: b - a]
                rest = block[b - a:]
                pending, have, done = ([rest] if len(rest) else []), len(rest), done + b - a
                a, b = next(wanted, (0, 0))


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading .parquet files needs pyarrow: {_INSTALL_DATA}") from None
    return pq


def _check_dtype(dtype, label):
    if np.dtype(dtype).kind not in "biuf":
        raise ValueError(f"{label}: holds {np.dtype(dtype)} values; a numeric array "
                         "(integers or floats) is needed")


def open_array(source, *, label: str | None = None) -> ArraySource:
    """An :class:`ArraySource` for a path (``.npy``, ``.csv``, ``.parquet``) or an array.

    A missing file is a ``FileNotFoundError``; an unknown suffix or a
    file that is not a numeric table a ``ValueError`` that names the file.
    """
    if isinstance(source, ArraySource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in SUFFIXES:
            raise ValueError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; "
                             f"expected one of {', '.join(SUFFIXES)}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder, not a {suffix} file")
        if suffix == ".npy":
            return _NpySource(path)
        if suffix == ".csv":
            return _CsvSource(path)
        return _ParquetSource(path)
    try:
        import array_api_compat

        if array_api_compat.is_array_api_obj(source) and not isinstance(source, np.ndarray):
            from .core.arrays import to_numpy

            source = to_numpy(source)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(source, (np.ndarray, list, tuple)):
        return _MemorySource(source, label or "array")
    raise TypeError(f"expected a path or a NumPy array; got {type(source).__name__}")


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate`.

    Attributes
    ----------
    loss, reduction : str
    value : float
        The reduced loss.
    total : float or None
        :math:`S = \\sum_n s_n \\ell_n` (``None`` on Dask, where only the value is
        computed).
    weight : float or None
        :math:`W`, the mean's denominator: the number of elements that took part, or
        the sum of their weights (``None`` on Dask).
    rows : int
        Examples read (the length of the files' first axis).
    chunks : int
        Blocks of rows read (one Dask chunk per block on Dask).
    chunk_rows : int
        Rows per block.
    backend : str
        ``"stream"`` or a description of the Dask scheduler.
    inputs : tuple of str
        What each input was (shape, dtype, file).
    """

    loss: str
    reduction: str
    value: float
    total: float | None
    weight: float | None
    rows: int
    chunks: int
    chunk_rows: int
    backend: str = "stream"
    inputs: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "reduction": self.reduction, "value": self.value,
                "total": self.total, "weight": self.weight, "rows": self.rows,
                "chunks": self.chunks, "chunk_rows": self.chunk_rows,
                "backend": self.backend, "inputs": list(self.inputs)}


# ----------------------------------------------------------------------------- errors
class NonFiniteInputError(ValueError):
    """An input of :func:`evaluate` holds NaN or inf: the first such value, by row.

    Attributes
    ----------
    input : str
        The input's role (``"prediction"``, ``"target"``, ..., ``"sample_weight"``).
    label : str
        Its file (or ``"array"``).
    row : int
        The global row (0-based) of the first non-finite value.
    column : int, tuple of int or None
        Where in the row (0-based): the column of a 2-D input, the index of a higher
        one, None for a 1-D input.
    value : {"nan", "+inf", "-inf"}
    line : int or None
        For a CSV file, the line (1-based) that holds the row.
    """

    def __init__(self, input: str, label: str, row: int, column, value: str,
                 line: int | None = None):
        self.input, self.label, self.row = input, label, int(row)
        self.column, self.value, self.line = column, value, line
        if line is not None:
            where = f"row {self.row} (0-based; line {line}" + (
                f", column {column + 1}" if isinstance(column, int) else "") + f" of {label})"
        else:
            where = f"row {self.row}" + (
                f", column {column}" if isinstance(column, int) else
                f", index {column}" if column is not None else "") + " (0-based)"
        super().__init__(f"{input} ({label}) is {value} at {where}: the first non-finite "
                         "value in the inputs, so the loss would be non-finite; fix or drop "
                         "that row")

    def to_dict(self) -> dict[str, Any]:
        column = list(self.column) if isinstance(self.column, tuple) else self.column
        return {"ok": False, "error": "non_finite", "message": str(self),
                "input": self.input, "file": self.label, "row": self.row,
                "column": column, "value": self.value, "line": self.line}


class OptionError(ValueError):
    """A loss option of :func:`evaluate` that the loss rejects (whatever the rows).

    Attributes
    ----------
    loss : str
    options : dict
        The option(s) to blame, as given: with them at their defaults the rows pass.
    reason : str
        The loss's own message.
    """

    def __init__(self, loss: str, options: dict, reason: str, row: int | None = None):
        self.loss, self.options, self.reason, self.row = loss, dict(options), reason, row
        names = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        s = "s" if len(self.options) > 1 else ""
        extra = (f" (it conflicts with the data at row {row}, 0-based; the rows before it "
                 "pass)" if row else "")
        super().__init__(f"{loss} rejected the option{s} {names}: {reason}{extra}")


def _non_finite_in_block(names, arrays, sw):
    """``(role, index in block, where in row, kind)`` of the first non-finite value."""
    best = None
    for role, arr in [*zip(names, arrays), ("sample_weight", sw)]:
        if arr is None or arr.dtype.kind not in "fc" or arr.size == 0:
            continue
        bad = ~np.isfinite(arr)
        if not bad.any():
            continue
        flat = bad.reshape(bad.shape[0], -1)
        i = int(np.argmax(flat.any(axis=1)))
        if best is not None and i >= best[1]:
            continue
        j = int(np.argmax(flat[i]))
        rest = arr.shape[1:]
        where = None if not rest else (j if len(rest) == 1 else
                                       tuple(int(v) for v in np.unravel_index(j, rest)))
        v = float(arr.reshape(arr.shape[0], -1)[i, j])
        kind = "nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf")
        best = (role, i, where, kind)
    return best


def _row_lines(sources, row) -> str:
    """``; line L of FILE, ...`` for the CSV files among ``sources``; else empty."""
    where = []
    for src in sources:
        line = src.line_of(row) if src is not None else None
        if line is not None:
            where.append(f"line {line} of {src.label}")
    return f"; {', '.join(where)}" if where else ""


def _rejected(loss, arrays, sw, opts, user_options, ndims, start, exc, sources,
              hint) -> ValueError:
    """Why the loss rejected a block: the option to blame, else the first bad row.

    The first bad row is the shortest prefix of the block that the loss rejects (a
    binary search over prefixes: about log2 of the block's rows more evaluations, all
    on shorter blocks). An option is to blame when that prefix passes with it at its
    default (each given option alone, then all of them).
    """
    def fails(stop, o):
        try:
            _chunk_totals(loss, [x[:stop] for x in arrays],
                          None if sw is None else sw[:stop], o)
        except (TypeError, ValueError) as e:
            return e
        return None

    lo, hi, err = 0, len(arrays[0]), exc  # rows [0, lo) pass (lo = 0: nothing), [0, hi) fail
    while hi - lo > 1:
        mid = (lo + hi) // 2
        e = fails(mid, opts)
        if e is None:
            lo = mid
        else:
            hi, err = mid, e
    row = start + hi - 1
    candidates = [[k] for k in user_options]
    if len(user_options) > 1:
        candidates.append(list(user_options))
    for keys in candidates:
        try:
            o = _check_options(loss, {k: v for k, v in user_options.items() if k not in keys},
                               ndims)
        except ValueError:
            continue
        if fails(hi, o) is None:
            return OptionError(loss.name, {k: user_options[k] for k in keys}, str(err), row)
    return ValueError(f"{loss.name} rejected row {row} (0-based{_row_lines(sources, row)}): "
                      f"{err}{hint}")


# ----------------------------------------------------------------------------- one chunk
def _chunk_totals(loss, arrays, sample_weight, options) -> tuple[float, float]:
    r"""``(S, W)`` of one block: :math:`\sum s_n \ell_n` and the mean's denominator.

    The same steps as ``Loss._pipeline`` up to the reduction (kernel, sample weights
    with zero-weight removal), stopping before the division so that blocks add up.
    """
    from .core.loss import Context
    from .core.primitives import _weighted
    from .core.validation import check_floating
    from .core.arrays import as_array, compute_dtype, device_of, namespace, quiet

    xp = namespace(*arrays, sample_weight)
    name0 = loss.inputs[0]
    pred = as_array(arrays[0], xp, name=name0)
    check_floating(xp, name0, pred, loss=loss.name)
    dtype = pred.dtype
    ctx = Context(xp=xp, dtype=dtype, work=compute_dtype(xp, dtype), device=device_of(pred),
                  loss=loss.name)
    with quiet():
        terms = loss._compute(ctx, pred, *arrays[1:], need_grad=False, **options)
        value, weight = terms.value, terms.weight
        if sample_weight is not None:
            sw = loss._sample_weight(ctx, sample_weight, value.shape)
            value = _weighted(xp, sw, value)
            weight = sw if weight is None else sw * weight
        total = float(np.sum(np.asarray(value), dtype=np.float64))
        if weight is None:
            denom = float(np.asarray(value).size)
        else:
            denom = float(np.sum(np.broadcast_to(np.asarray(weight), np.shape(value)),
                                 dtype=np.float64))
    return total, denom


# ----------------------------------------------------------------------------- evaluate
def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
    return int(value)


def _check_options(loss, options: dict, ndims: int) -> dict:
    known = loss.option_defaults()
    for key in ("reduction", "sample_weight"):
        if key in options:
            raise ValueError(f"`{key}` is not a loss option here; use the {key} argument "
                             f"(--{key.replace('_', '-')} on the command line)")
    unknown = sorted(set(options) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        raise ValueError(f"{loss.name} has no option {', '.join(map(repr, unknown))}; its "
                         f"options: {valid}")
    out = {}
    for key, value in options.items():
        if key == "axis" and isinstance(value, (list, tuple)):
            value = tuple(value)  # several axes (the divergences' distribution axes)
        elif isinstance(value, (list, tuple)):
            value = np.asarray(value, dtype=np.float64)
        out[key] = value
    defaults = {k: v for k, v in getattr(loss, "_defaults", {}).items() if k in known}
    out = {**defaults, **out}
    axis = out.get("axis", known.get("axis"))
    for ax in (axis if isinstance(axis, tuple) else (axis,)):
        if (isinstance(ax, (int, np.integer)) and not isinstance(ax, bool)
                and -ndims <= ax < ndims and ax % ndims == 0):
            verb = "includes" if isinstance(axis, tuple) else "is"
            raise ValueError(f"axis={axis} {verb} the first axis of a {ndims}-d prediction, "
                             "the rows that are read in chunks; each row must be a whole "
                             "example (its classes along another axis)")
    return out


def _bounds(rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk_rows, rows)) for a in range(0, rows, chunk_rows)]


def _as_input(array, role: str, loss):
    """A block as the loss wants it: float64 floats, float64 predictions."""
    if role in loss.differentiable or array.dtype.kind == "f":
        if array.dtype != np.float64:
            array = array.astype(np.float64)
    return array


def evaluate(loss, *inputs, reduction: str = "mean", sample_weight=None,
             chunk_size: int | None = None, options: dict | None = None,
             progress: bool | None = False, dask: bool = False, client=None,
             check_finite: bool = True) -> EvalResult:
    r"""The value of ``loss`` over files (or arrays) read a block of rows at a time.

    Parameters
    ----------
    loss : str or Loss
        A loss of :func:`losskit.catalog`, by name or alias, or the object.
    *inputs : path or array
        One per entry of ``loss.inputs``, in that order (prediction, target, ...):
        ``.npy``, ``.csv`` or ``.parquet`` paths, or NumPy arrays. Every one must have
        the same number of rows (first axis).
    reduction : {"mean", "sum", "batchmean"}, default "mean"
        As for the loss: ``"mean"`` divides by the total weight that took part
        (ignored targets excluded), ``"batchmean"`` by the number of rows.
    sample_weight : path or array, optional
        A weight per example, like the loss's ``sample_weight=`` (same rows).
    chunk_size : int, optional
        Rows per block; default: as many as fit in about 64 MB of float64 for all
        inputs together.
    options : dict, optional
        The loss's keyword options (``{"ignore_index": -100, "class_weight": [...]}``);
        lists become float64 arrays.
    progress : bool or None, default False
        A progress bar on stderr; ``None``: only when stderr is a terminal.
    dask : bool, default False
        Build Dask arrays (one chunk per block) and compute the loss on them with
        ``dask.distributed`` (``client``, or a temporary ``LocalCluster``), or Dask's
        threaded scheduler when ``distributed`` is not installed. Data-dependent
        checks (labels in range, probabilities in [0, 1]) are skipped on lazy arrays:
        run without ``dask`` first on data you have not checked.
    client : distributed.Client, optional
        The cluster to compute on (with ``dask=True``).
    check_finite : bool, default True
        Stop at the first NaN or inf in a floating input (sample weights included) with
        a :class:`NonFiniteInputError` naming the input, its global row, the place in
        the row (and the line of a CSV file); rows are read in order, so it is the first
        row with one, and a row the loss rejects before it is reported first. False: no
        check, the value is non-finite as the loss's own would be.

    Returns
    -------
    EvalResult
        ``value`` (a Python float), the sum and total weight behind it, rows and chunks.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError
        An unknown loss (with suggestions), reduction or option; the wrong number of
        inputs; an unknown file type; a non-numeric or ragged file (with its line);
        inputs with different numbers of rows; data the loss rejects (its message, with
        the first row it rejects: the global row, counting from 0, and the line of a
        CSV file).
    OptionError
        A ``ValueError``: an option value the loss rejects (``label_smoothing="abc"``,
        a ``class_weight`` of the wrong length), named, with the loss's message; it is
        told from bad rows by the rows passing with that option at its default.
    NonFiniteInputError
        A ``ValueError``: NaN or inf in an input (with ``check_finite``).
    """
    loss = find_loss(loss)
    if reduction not in _REDUCTIONS:
        extra = (" (eval returns one number; 'none' would be one per example)"
                 if reduction == "none" else "")
        raise ValueError(f"`reduction` must be one of {', '.join(map(repr, _REDUCTIONS))}; "
                         f"got {reduction!r}{extra}")
    names = loss.inputs
    refusal = loss.streaming_refusal({**loss.option_defaults(), **getattr(loss, "_defaults", {}),
                                      **(options or {})})
    if refusal:
        raise ValueError(f"{loss.name} cannot be evaluated a block of rows at a time: "
                         f"{refusal}; call losskit.{loss.name} on the whole arrays instead")
    if len(inputs) < len(names) and all(n in loss.optional_inputs
                                        for n in names[len(inputs):]):
        names = names[:len(inputs)]  # trailing optional inputs left out: the loss's None
    if len(inputs) != len(names):
        raise ValueError(f"{loss.name} takes {len(names)} inputs ({', '.join(names)}); got "
                         f"{len(inputs)}")
    if chunk_size is not None:
        chunk_size = _positive_int("chunk_size", chunk_size)
    sources = [open_array(x, label=n) for x, n in zip(inputs, names)]
    sw_source = None
    if sample_weight is not None:
        sw_source = open_array(sample_weight, label="sample_weight")
    everything = list(zip(names, sources))
    if sw_source is not None:
        everything.append(("sample_weight", sw_source))
    rows = sources[0].rows
    for name, src in everything[1:]:
        if src.rows != rows:
            raise ValueError(f"the inputs have different numbers of rows: {names[0]} has "
                             f"{rows} ({sources[0].label}), {name} has {src.rows} "
                             f"({src.label})")
    for name, src in everything:
        if name in loss.differentiable and src.typed and src.dtype.kind not in "f":
            raise ValueError(f"{name} ({src.label}) holds {src.dtype} values, but "
                             f"{loss.name}'s {name} must be floating"
                             + (" (did you swap the prediction and the target?)"
                                if name == names[0] else ""))
    swapped = (len(sources) > 1 and sources[0].dtype.kind in "biu"
               and sources[1].dtype.kind == "f")
    hint = " (did you swap the prediction and the target?)" if swapped else ""
    user_options = dict(options or {})
    ndims = len(sources[0].shape)
    try:
        opts = _check_options(loss, user_options, ndims)
    except ValueError as exc:
        raise ValueError(f"{exc}{hint if 'axis=' in str(exc) else ''}") from None
    if chunk_size is None:
        per_row = sum(src.row_bytes for _, src in everything)
        chunk_size = max(1, DEFAULT_CHUNK_BYTES // max(per_row, 1))
    bounds = _bounds(rows, chunk_size)
    described = tuple(f"{n}: {s.describe()}" for n, s in everything)
    if dask:
        return _evaluate_dask(loss, names, sources, sw_source, reduction, opts, bounds,
                              chunk_size, described, client, user_options, ndims,
                              check_finite)

    from .core.progress import ProgressBar

    bar = ProgressBar(len(bounds), f"{loss.name}", enabled=progress)
    totals, weights = [], []
    streams = [src.blocks(bounds) for src in sources]
    sw_stream = sw_source.blocks(bounds) if sw_source is not None else None
    try:
        for i, (a, b) in enumerate(bounds):
            arrays = [_as_input(next(s), n, loss) for s, n in zip(streams, names)]
            sw = next(sw_stream) if sw_stream is not None else None
            if sw is not None and sw.dtype.kind != "f":
                sw = sw.astype(np.float64)
            bad = _non_finite_in_block(names, arrays, sw) if check_finite else None
            # a NaN at row j: the rows before it are checked first (an earlier bad row wins)
            stop = bad[1] if bad is not None else b - a
            try:
                if stop == b - a:
                    total, weight = _chunk_totals(loss, arrays, sw, opts)
                elif stop:
                    _chunk_totals(loss, [x[:stop] for x in arrays],
                                  None if sw is None else sw[:stop], opts)
            except (TypeError, ValueError) as exc:
                raise _rejected(loss, [x[:stop] for x in arrays],
                                None if sw is None else sw[:stop], opts, user_options,
                                ndims, a, exc, [s for _, s in everything], hint) from exc
            if bad is not None:
                role, j, where, kind = bad
                src = dict(everything)[role]
                raise NonFiniteInputError(role, src.label, a + j, where, kind,
                                          src.line_of(a + j))
            totals.append(total)
            weights.append(weight)
            bar.update(i + 1, f"rows {b}/{rows}")
    finally:
        bar.close()
    if all(math.isfinite(t) for t in totals):
        total = math.fsum(totals)
    else:  # fsum refuses inf - inf; NaN and inf propagate as in the loss itself
        total = float(np.sum(totals))
    weight = math.fsum(weights)
    if reduction == "sum":
        value = total
    elif reduction == "batchmean":
        value = total / rows if rows else 0.0
    else:
        value = total / weight if weight > 0 else 0.0
    return EvalResult(loss.name, reduction, float(value), float(total), float(weight), rows,
                      len(bounds), chunk_size, "stream", described)


# ----------------------------------------------------------------------------- dask
def _dask_array(src: ArraySource, bounds, role, loss):
    import dask
    import dask.array as da

    if isinstance(src, _MemorySource):
        arr = da.from_array(src._array, chunks=(bounds[0][1] - bounds[0][0] if bounds else 1,)
                            + src.shape[1:])
    elif not bounds:
        arr = da.zeros(src.shape, dtype=src.dtype)
    else:
        parts = [da.from_delayed(dask.delayed(src.read, pure=True)(a, b),
                                 shape=(b - a,) + src.shape[1:], dtype=src.dtype)
                 for a, b in bounds]
        arr = da.concatenate(parts, axis=0)
    if role in loss.differentiable or src.dtype.kind == "f" or role == "sample_weight":
        if arr.dtype != np.float64:
            arr = arr.astype(np.float64)
    return arr


def _first_non_finite(names, sources, sw_source, bounds, loss) -> NonFiniteInputError:
    """Read the inputs block by block up to the first NaN/inf (after a failed check)."""
    streams = [src.blocks(bounds) for src in sources]
    sw_stream = sw_source.blocks(bounds) if sw_source is not None else None
    everything = dict(zip(names, sources), sample_weight=sw_source)
    for a, _ in bounds:
        arrays = [_as_input(next(st), n, loss) for st, n in zip(streams, names)]
        sw = next(sw_stream) if sw_stream is not None else None
        bad = _non_finite_in_block(names, arrays, sw)
        if bad is not None:
            role, j, where, kind = bad
            src = everything[role]
            return NonFiniteInputError(role, src.label, a + j, where, kind,
                                       src.line_of(a + j))
    raise AssertionError("no non-finite value found")  # pragma: no cover


def _evaluate_dask(loss, names, sources, sw_source, reduction, opts, bounds, chunk_rows,
                   described, client, user_options=None, ndims=1, check_finite=True):
    try:
        import dask.array  # noqa: F401
    except ImportError:
        raise ValueError("--dask needs dask: pip install 'dask[array]' (and "
                         "'distributed' for a cluster)") from None
    arrays = [_dask_array(s, bounds, n, loss) for s, n in zip(sources, names)]
    sw = _dask_array(sw_source, bounds, "sample_weight", loss) if sw_source else None
    try:
        lazy = loss(*arrays, reduction=reduction, sample_weight=sw, **opts)
    except (TypeError, ValueError) as exc:
        # lazy arrays are not checked against their values: an option is the usual cause
        user_options = dict(user_options or {})
        for key in user_options:
            rest = {k: v for k, v in user_options.items() if k != key}
            try:
                loss(*arrays, reduction=reduction, sample_weight=sw,
                     **_check_options(loss, rest, ndims))
            except (TypeError, ValueError):
                continue
            raise OptionError(loss.name, {key: user_options[key]}, str(exc)) from exc
        raise ValueError(f"{loss.name} rejected the inputs: {exc}") from exc
    import dask.array as da

    checks = []
    if check_finite:
        checks = [da.isfinite(arr).all() for arr in [*arrays, sw]
                  if arr is not None and arr.dtype.kind in "fc"]
    own = None
    if client is None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            Client = None
        if Client is not None:
            cluster = LocalCluster(n_workers=1, threads_per_worker=os.cpu_count() or 1,
                                   processes=False, dashboard_address=None)
            own = (Client(cluster), cluster)
            client = own[0]
    try:
        if client is not None:
            value, *finite = client.gather(client.compute([lazy, *checks]))
            info = client.scheduler_info()
            workers = info.get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            backend = (f"dask.distributed ({len(workers)} worker"
                       f"{'s' if len(workers) != 1 else ''}, {threads} thread"
                       f"{'s' if threads != 1 else ''})")
        else:
            import dask

            value, *finite = dask.compute(lazy, *checks, scheduler="threads")
            backend = "dask threaded scheduler (distributed is not installed)"
    finally:
        if own is not None:
            own[0].close()
            own[1].close()
    if not all(bool(f) for f in finite):
        raise _first_non_finite(names, sources, sw_source, bounds, loss)
    return EvalResult(loss.name, reduction, float(np.asarray(value)), None, None,
                      sources[0].rows, len(bounds), chunk_rows, backend, described)
