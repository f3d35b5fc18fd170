"""Pre-trained word vectors (GloVe and the like) laid out as the rows of a vocabulary.

The paper's VQA heads start their 300-d question embedding from GloVe (MMF's vqa2 text processor:
glove.6B.300d intersected with its vocabulary; mcan-vqa: spaCy's en_vectors_web_lg, i.e. GloVe 840B).
`word_vector_matrix(vocab_tokens, path)` returns the [V, D] float32 rows of a vocabulary, a found-mask and
a `Coverage` to log; the rows of words the file lacks are zeros, left for the caller to fill (the model's
own random initialisation, as MMF and mcan-vqa keep for words without a vector).

Formats, chosen by the file name:
- text (`.txt`, `.vec`, also `.gz`, or a `.zip` holding one `.txt`, as GloVe ships): one word per line,
  then D numbers, separated by spaces. An "N D" header line (word2vec's text format) is skipped. The last
  D fields are the vector and everything before them is the word: glove.840B.300d has a few words that
  contain spaces. A row with fewer than D numbers, or a number that does not parse, is a
  `DataFormatError` naming the file and the line. The file is streamed and only the rows the vocabulary
  needs are parsed (glove.840B.300d.txt is 5.6 GB), stopping early once every word has its exact row.
- `.npy`: a [N, D] matrix whose row i is the vector of word i of a word list: `words_path` or, next to
  the matrix, `<stem>.json` (a JSON list of words, or an object word → row) or `<stem>.txt` (one word a line).

Lookup of each vocabulary token: the exact word; else its lower-case form; else the first word of the file
whose lower-case form it is (so "paris" finds a cased file's "Paris"). Where a word occurs twice, the first
row wins.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from clipvil.data.validate import PathLike, error, load_json

_N_MISSING = 10  # missing words named in a Coverage


@dataclass(frozen=True)
class Coverage:
    """How much of a vocabulary a word-vector file covers (for the training log)."""

    found: int  # vocabulary entries that got a vector
    total: int  # vocabulary entries
    by_lowercase: int  # of `found`, those matched through the lower-case fallback
    missing: tuple[str, ...]  # the first few entries without a vector, in vocabulary order
    source: str  # the file read

    @property
    def fraction(self) -> float:
        """found / total (1.0 for an empty vocabulary)."""
        return self.found / self.total if self.total else 1.0

    def __str__(self) -> str:
        text = f"word vectors {self.source}: {self.found}/{self.total} words ({100 * self.fraction:.1f}%)"
        if self.by_lowercase:
            text += f", {self.by_lowercase} by lower case"
        return text + (f"; missing e.g. {', '.join(map(repr, self.missing))}" if self.missing else "")


class WordVectorMatrix(NamedTuple):
    """Rows of a vocabulary: unpack as `vectors, found, coverage = word_vector_matrix(...)`."""

    vectors: np.ndarray  # [V, D] float32, row i = vector of vocab_tokens[i]; zeros where not found
    found: np.ndarray  # [V] bool, True where row i came from the file
    coverage: Coverage


class _Lookup:
    """Exact, lower-case and case-folded candidates for a vocabulary, filled from a stream of words."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self.exact_wanted = set(self.tokens)
        self.lower_wanted = {t.lower() for t in self.tokens}
        self.exact: dict[str, int] = {}  # word -> source row
        self.lower: dict[str, int] = {}  # lower-case word (present as such) -> row
        self.folded: dict[str, int] = {}  # lower-case form of a cased word -> row

    def wants(self, word: str) -> bool:
        w = word.lower()
        return (word in self.exact_wanted and word not in self.exact) or (
            w in self.lower_wanted and (w not in self.lower if w == word else w not in self.folded)
        )

    def offer(self, word: str, row: int) -> None:
        if word in self.exact_wanted:
            self.exact.setdefault(word, row)
        w = word.lower()
        if w in self.lower_wanted:
            (self.lower if w == word else self.folded).setdefault(w, row)

    def complete(self) -> bool:
        return len(self.exact) == len(self.exact_wanted)

    def resolve(self) -> tuple[list[int | None], int]:
        """Source row of each token (None: not found) and how many came by the lower-case fallback."""
        rows: list[int | None] = []
        fallback = 0
        for t in self.tokens:
            row = self.exact.get(t)
            if row is None:
                row = self.lower.get(t.lower(), self.folded.get(t.lower()))
                fallback += row is not None
            rows.append(row)
        return rows, fallback


def word_vector_matrix(
    vocab_tokens: Sequence[str], path: PathLike, dim: int | None = None, *, words_path: PathLike | None = None
) -> WordVectorMatrix:
    """The vectors of `vocab_tokens` (in that order) from a GloVe-style text file or a `.npy` matrix.

    `dim`, when given, must equal the file's vector width (ValueError otherwise). `words_path` names the
    word list of a `.npy` matrix (default: `<stem>.json` or `<stem>.txt` next to it). Raises
    FileNotFoundError for a missing file and DataFormatError (a ValueError) naming file and line for a
    malformed one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such word-vector file")
    lookup = _Lookup(vocab_tokens)
    table: Mapping[int, np.ndarray] | np.ndarray
    if p.suffix == ".npy":
        table, width = _match_npy(p, words_path, lookup)
        _check_dim(p, width, dim)
    else:
        table, width = _match_text(p, lookup, dim)
    rows, fallback = lookup.resolve()
    vectors = np.zeros((len(rows), width), dtype=np.float32)  # [V, D]
    found = np.array([r is not None for r in rows], dtype=bool)  # [V]
    for i, r in enumerate(rows):
        if r is not None:
            vectors[i] = table[r]
    missing = tuple(t for t, ok in zip(lookup.tokens, found) if not ok)[:_N_MISSING]
    coverage = Coverage(int(found.sum()), len(rows), fallback, missing, str(p))
    return WordVectorMatrix(vectors, found, coverage)


def _check_dim(p: Path, width: int, dim: int | None) -> None:
    if dim is not None and width != dim:
        raise ValueError(f"{p}: vectors have {width} dimensions, expected dim={dim}")


@contextmanager
def _open_binary(p: Path) -> Iterator[IO[bytes]]:
    """The text file as a binary stream: plain, gzip, or the single .txt member of a zip."""
    if p.suffix == ".gz":
        with gzip.open(p, "rb") as f:
            yield f
    elif p.suffix == ".zip":
        with zipfile.ZipFile(p) as z:
            members = [n for n in z.namelist() if n.endswith((".txt", ".vec"))]
            if len(members) != 1:
                raise error(p, None, f"expected one .txt member in the zip, found {members or z.namelist()}")
            with z.open(members[0]) as f:
                yield f
    else:
        with p.open("rb") as f:
            yield f


def _header(line: bytes) -> int | None:
    """The width D of a word2vec "N D" header line, None if `line` is a vector row."""
    fields = line.split()
    return int(fields[1]) if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() else None


def _match_text(p: Path, lookup: _Lookup, dim: int | None) -> tuple[dict[int, np.ndarray], int]:
    """Streams a GloVe/word2vec text file; returns {line number: vector} of the wanted words and D."""
    table: dict[int, np.ndarray] = {}
    width: int | None = None
    with _open_binary(p) as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip()
            if not line:
                continue
            if width is None:
                width = _header(line)
                if width is not None:
                    _check_dim(p, width, dim)
                    continue
                width = line.count(b" ")  # the first row decides (its word must not contain a space)
                if width < 1:
                    raise error(p, f"line {lineno}", "a word with no vector")
                _check_dim(p, width, dim)
            spaces = line.count(b" ")
            if spaces < width:
                raise error(p, f"line {lineno}", f"{spaces} values, expected {width} (ragged row)")
            cut = line.index(b" ") if spaces == width else len(line.rsplit(b" ", width)[0])
            word = line[:cut].decode("utf-8", errors="replace")
            if not lookup.wants(word):
                continue
            table[lineno] = _parse_vector(p, lineno, line[cut + 1 :], width)
            lookup.offer(word, lineno)
            if lookup.complete():
                break
    if width is None:
        raise error(p, None, "no vectors in the file")
    return table, width


def _parse_vector(p: Path, lineno: int, numbers: bytes, width: int) -> np.ndarray:
    fields = numbers.split(b" ")
    try:
        vector = np.array([float(x) for x in fields], dtype=np.float32)  # [D]
    except ValueError:
        bad = next(x for x in fields if not _is_float(x))
        raise error(p, f"line {lineno}", f"value {bad.decode(errors='replace')!r} is not a number") from None
    if vector.shape != (width,):
        raise error(p, f"line {lineno}", f"{vector.shape[0]} values, expected {width} (ragged row)")
    return vector


def _is_float(x: bytes) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _npy_words(matrix_path: Path, words_path: PathLike | None) -> tuple[Path, list[str] | dict[str, int]]:
    """The word list of a .npy matrix: a JSON list / object word → row, or one word a line."""
    if words_path is None:
        candidates = [matrix_path.with_suffix(".json"), matrix_path.with_suffix(".txt")]
        wp = next((c for c in candidates if c.is_file()), None)
        if wp is None:
            raise FileNotFoundError(
                f"{matrix_path}: no word list next to it (tried {', '.join(map(str, candidates))})"
            )
    else:
        wp = Path(words_path)
    if wp.suffix == ".json":
        words = load_json(wp)
        if isinstance(words, list) and all(isinstance(w, str) for w in words):
            return wp, words
        if isinstance(words, dict) and all(isinstance(r, int) for r in words.values()):
            return wp, words
        raise error(wp, None, "expected a JSON list of words or an object word -> row (int)")
    if not wp.is_file():
        raise FileNotFoundError(f"{wp}: no such word list")
    lines = wp.read_text(encoding="utf-8").splitlines()
    for lineno, w in enumerate(lines, start=1):
        if not w:
            raise error(wp, f"line {lineno}", "empty word")
    return wp, lines


def _match_npy(p: Path, words_path: PathLike | None, lookup: _Lookup) -> tuple[np.ndarray, int]:
    """Offers every word of the list to `lookup`; returns the (memory-mapped) matrix and D."""
    try:
        matrix = np.load(p, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise error(p, None, f"not a .npy array: {e}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating):
        raise error(p, None, f"expected a 2-D float matrix [words, dim], got {matrix.dtype} {matrix.shape}")
    wp, words = _npy_words(p, words_path)
    pairs = words.items() if isinstance(words, dict) else ((w, i) for i, w in enumerate(words))
    n = matrix.shape[0]
    if isinstance(words, list) and len(words) != n:
        raise error(p, None, f"{n} rows but {wp} lists {len(words)} words")
    for word, row in pairs:
        if not 0 <= row < n:
            raise error(wp, f"word {word!r}", f"row {row} is outside the matrix's {n} rows ({p})")
        lookup.offer(word, row)
    return matrix, int(matrix.shape[1])
