"""Hostile File.name values become safe, unique relative paths."""

from __future__ import annotations

import posixpath

import pytest

from chunkfiles.safenames import MAX_COMPONENT_BYTES, UniqueNames, safe_relpath

#: Every hostile name of issue 9, and a few more.
HOSTILE = [
    "../../etc/passwd",
    "/abs/path",
    "a/../../b",
    "..",
    ".",
    "",
    "nul\x00byte",
    "ctrl\x01\x1f\x7fchars",
    "x" * 300,
    "y" * 300 + ".txt",
    "CON",
    "con.txt",
    "LPT1.log",
    "aux",
    "Report.PDF",
    "report.pdf",
    "REPORT.pdf",
    "C:\\Windows\\system32",
    "\\\\server\\share\\x",
    "trailing. ",
    "dir/",
    'a:b*c?d<e>f|g"h',
    "é",  # NFC
    "e\u0301",  # NFD of the same: must not overwrite it
]


class TestSafeRelpath:
    @pytest.mark.parametrize("name", HOSTILE)
    def test_stays_inside(self, name: str) -> None:
        path = safe_relpath(name, "file-1")
        assert path and not path.startswith("/")
        assert ".." not in path.split("/") and "." not in path.split("/")
        assert posixpath.normpath(path) == path
        assert "\x00" not in path and not any(ord(c) < 32 for c in path)
        assert all(len(part.encode()) <= MAX_COMPONENT_BYTES for part in path.split("/"))
        assert "\\" not in path and ":" not in path

    def test_examples(self) -> None:
        assert safe_relpath("../../etc/passwd", "f") == "etc/passwd"
        assert safe_relpath("/abs/path", "f") == "abs/path"
        assert safe_relpath("a/../../b", "f") == "a/b"
        assert safe_relpath("..", "file-7") == "file-7"
        assert safe_relpath("", "file-7") == "file-7"
        assert safe_relpath("CON", "f") == "_CON"
        assert safe_relpath("con.txt", "f") == "_con.txt"
        assert safe_relpath("nul\x00byte", "f") == "nul_byte"
        assert safe_relpath("C:\\Windows\\system32", "f") == "C_/Windows/system32"

    def test_long_name_keeps_extension(self) -> None:
        path = safe_relpath("y" * 300 + ".txt", "f")
        assert path.endswith(".txt") and len(path.encode()) == MAX_COMPONENT_BYTES

    def test_multibyte_truncation_is_valid_utf8(self) -> None:
        path = safe_relpath("é" * 300, "f")
        assert len(path.encode()) <= MAX_COMPONENT_BYTES
        path.encode().decode()  # no half character


class TestUniqueNames:
    def test_all_hostile_names_distinct(self) -> None:
        names = UniqueNames()
        paths = [names.claim(name, str(i)) for i, name in enumerate(HOSTILE)]
        folded = [p.casefold() for p in paths]
        assert len(set(folded)) == len(folded)

    def test_case_clash_gets_id_tag(self) -> None:
        names = UniqueNames()
        assert names.claim("Report.PDF", "1") == "Report.PDF"
        assert names.claim("report.pdf", "2") == "report~2.pdf"
        assert names.claim("REPORT.pdf", "3") == "REPORT~3.pdf"

    def test_file_and_directory_clash(self) -> None:
        names = UniqueNames()
        assert names.claim("a", "1") == "a"
        assert names.claim("a/b", "2") == "a~2/b"
        names2 = UniqueNames()
        assert names2.claim("a/b", "1") == "a/b"
        assert names2.claim("A", "2") == "A~2"

    def test_deterministic(self) -> None:
        sequence = [("x", "1"), ("X", "2"), ("x~2", "3"), ("", "4"), ("", "5")]
        first = [UniqueNames().claim(n, t) for n, t in sequence]
        names_a, names_b = UniqueNames(), UniqueNames()
        run_a = [names_a.claim(n, t) for n, t in sequence]
        run_b = [names_b.claim(n, t) for n, t in sequence]
        assert run_a == run_b
        assert len({p.casefold() for p in run_a}) == len(run_a)
        assert first[0] == "x"

    def test_crafted_collision_still_unique(self) -> None:
        names = UniqueNames()
        got = {names.claim("x.txt", "1"), names.claim("x~2.txt", "9"), names.claim("X.txt", "2")}
        assert len(got) == 3
