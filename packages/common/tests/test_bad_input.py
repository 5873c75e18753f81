"""Bad input a user brings: a clear error naming the file, the line and the fix, never a traceback."""

from __future__ import annotations

import json

import pytest

from ragdistill.common.data import load_retrieval
from ragdistill.common.errors import RagdistillError


def _beir(tmp_path, corpus_lines: list[bytes]):
    d = tmp_path / "mydata"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_bytes(b"".join(corpus_lines))
    (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what is a cafe"}) + "\n", encoding="utf-8")
    (d / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n", encoding="utf-8")
    return d


def test_a_byte_that_is_not_utf8_names_the_file_line_and_column(tmp_path):
    ok = json.dumps({"_id": "d1", "title": "Caf\u00e9", "text": "a coffee house"}).encode("utf-8") + b"\n"
    latin1 = b'{"_id": "d2", "title": "Caf\xe9", "text": "saved as latin-1"}\n'  # one byte a Windows editor wrote
    d = _beir(tmp_path, [ok, ok.replace(b"d1", b"d3"), latin1])
    with pytest.raises(RagdistillError, match=r"corpus\.jsonl:3: byte 0xe9 at column 28 is not UTF-8 text; save the file as UTF-8"):
        load_retrieval(str(d))
    (d / "corpus.jsonl").write_bytes(ok)
    (d / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xff1\td1\t1\n")
    with pytest.raises(RagdistillError, match=r"test\.tsv:3: byte 0xff at column 2 is not UTF-8"):
        load_retrieval(str(d))
