"""Word vectors from small GloVe / word2vec / .npy files written here, and the several-split question vocab."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clipvil.data.question_vocab import PAD, UNK, QuestionVocab
from clipvil.data.validate import DataFormatError
from clipvil.data.word_vectors import Coverage, word_vector_matrix

GLOVE = """the 0.1 0.2 -0.3
what 1 2 3
Paris 0.5 0.5 0.5
is -1.5e-1 2.0 0.0
. . . 9 9 9
cat 4 5 6
the 7 7 7
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_glove_rows_in_vocabulary_order_with_found_mask_and_coverage(tmp_path: Path) -> None:
    path = _write(tmp_path, "glove.txt", GLOVE)
    vocab = [PAD, UNK, "what", "is", "the", "cat", "dog"]
    vectors, found, coverage = word_vector_matrix(vocab, path, dim=3)
    assert vectors.dtype == np.float32 and vectors.shape == (7, 3)
    np.testing.assert_array_equal(found, [False, False, True, True, True, True, False])
    np.testing.assert_allclose(
        vectors[2:6], [[1, 2, 3], [-0.15, 2, 0], [0.1, 0.2, -0.3], [4, 5, 6]], rtol=1e-6
    )
    assert not vectors[[0, 1, 6]].any()  # unknown rows are zeros, for the caller to fill
    assert coverage == Coverage(found=4, total=7, by_lowercase=0, missing=(PAD, UNK, "dog"), source=str(path))
    assert coverage.fraction == pytest.approx(4 / 7)
    assert "4/7 words (57.1%)" in str(coverage) and "'dog'" in str(coverage)


def test_lowercase_fallback_both_ways(tmp_path: Path) -> None:
    path = _write(tmp_path, "glove.txt", GLOVE)
    vectors, found, coverage = word_vector_matrix(["paris", "What", "PARIS"], path)
    assert found.all()
    np.testing.assert_allclose(vectors, [[0.5] * 3, [1, 2, 3], [0.5] * 3])
    assert coverage.by_lowercase == 3


def test_exact_match_beats_the_lowercase_fallback(tmp_path: Path) -> None:
    path = _write(tmp_path, "v.txt", "apple 1 1\nApple 2 2\nAPPLE 3 3\n")
    vectors, _, coverage = word_vector_matrix(["Apple", "APPLE", "apple", "aPPle"], path)
    np.testing.assert_array_equal(vectors, [[2, 2], [3, 3], [1, 1], [1, 1]])
    assert coverage.by_lowercase == 1


def test_word2vec_header_words_with_spaces_and_first_duplicate_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "w2v.txt", "7 3\n" + GLOVE)
    vectors, found, _ = word_vector_matrix([". . .", "the"], path)
    assert found.all()
    np.testing.assert_allclose(vectors, [[9, 9, 9], [0.1, 0.2, -0.3]], rtol=1e-6)


def test_gzip_and_zip_are_read(tmp_path: Path) -> None:
    gz = tmp_path / "glove.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(GLOVE)
    zp = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(zp, "w") as z:
        z.writestr("glove.6B.3d.txt", GLOVE)
    for p in (gz, zp):
        vectors, found, _ = word_vector_matrix(["cat"], p)
        assert found.all() and vectors.tolist() == [[4, 5, 6]]


def test_ragged_and_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.txt", "the 1 2 3\nwhat 1 2\ncat 4 5 6\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: line 2: 2 values, expected 3 \(ragged row\)"):
        word_vector_matrix(["cat"], path)
    # streaming stops once every word has its exact row: a bad row after that is never read
    assert word_vector_matrix(["the"], path).found.all()
    path = _write(tmp_path, "nan.txt", "the 1 2 3\ncat 4 x 6\n")
    with pytest.raises(DataFormatError, match=r"nan\.txt: line 2: value 'x' is not a number"):
        word_vector_matrix(["cat"], path)
    with pytest.raises(ValueError, match="vectors have 3 dimensions, expected dim=300"):
        word_vector_matrix(["cat"], _write(tmp_path, "ok.txt", GLOVE), dim=300)
    with pytest.raises(FileNotFoundError, match="no such word-vector file"):
        word_vector_matrix(["cat"], tmp_path / "absent.txt")
    with pytest.raises(DataFormatError, match="no vectors"):
        word_vector_matrix(["cat"], _write(tmp_path, "empty.txt", "\n\n"))


def test_npy_matrix_with_json_list_text_list_or_json_object(tmp_path: Path) -> None:
    matrix = np.arange(12, dtype=np.float64).reshape(4, 3)  # [4 words, 3]
    np.save(tmp_path / "vec.npy", matrix)
    (tmp_path / "vec.json").write_text(json.dumps(["a", "b", "C", "d"]))
    vectors, found, coverage = word_vector_matrix(["d", "c", "zz", "a"], tmp_path / "vec.npy", dim=3)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, [matrix[3], matrix[2], np.zeros(3), matrix[0]])
    assert found.tolist() == [True, True, False, True] and coverage.by_lowercase == 1

    (tmp_path / "words.txt").write_text("a\nb\nc\nd\n")
    vectors, *_ = word_vector_matrix(["b"], tmp_path / "vec.npy", words_path=tmp_path / "words.txt")
    np.testing.assert_array_equal(vectors, [matrix[1]])
    (tmp_path / "rows.json").write_text(json.dumps({"x": 2, "y": 0}))
    vectors, *_ = word_vector_matrix(["y", "x"], tmp_path / "vec.npy", words_path=tmp_path / "rows.json")
    np.testing.assert_array_equal(vectors, [matrix[0], matrix[2]])


def test_npy_errors_name_both_files(tmp_path: Path) -> None:
    np.save(tmp_path / "vec.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(FileNotFoundError, match=r"no word list next to it \(tried .*vec\.json"):
        word_vector_matrix(["a"], tmp_path / "vec.npy")
    (tmp_path / "vec.txt").write_text("a\nb\n")
    with pytest.raises(DataFormatError, match=r"vec\.npy: 3 rows but .*vec\.txt lists 2 words"):
        word_vector_matrix(["a"], tmp_path / "vec.npy")
    (tmp_path / "rows.json").write_text(json.dumps({"a": 5}))
    with pytest.raises(DataFormatError, match=r"word 'a': row 5 is outside the matrix's 3 rows"):
        word_vector_matrix(["a"], tmp_path / "vec.npy", words_path=tmp_path / "rows.json")
    np.save(tmp_path / "ints.npy", np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(DataFormatError, match="expected a 2-D float matrix"):
        word_vector_matrix(["a"], tmp_path / "ints.npy", words_path=tmp_path / "vec.txt")


def test_question_vocab_from_several_splits_counts_them_together() -> None:
    train = ["What is the cat?", "Is the cat black?"]
    val = ["What color is the dog?"]
    test = ["Where is the dog?", "Where?"]
    vocab = QuestionVocab.from_splits(train, val, test, min_count=2)
    # counts over all three: is 4, the 4, cat 2, dog 2, what 2, where 2; black / color once
    assert vocab.words == (PAD, UNK, "is", "the", "cat", "dog", "what", "where")
    assert QuestionVocab.from_splits(train).words == QuestionVocab.build(train).words
    assert "where" not in QuestionVocab.build(train).word2id
    with pytest.raises(ValueError, match="at least one set"):
        QuestionVocab.from_splits()
