"""Turn stored ``File.name`` values into safe, unique relative output paths.

A name comes from whoever uploaded the file, so it is hostile until proven
otherwise: ``../../etc/passwd``, ``/abs/path``, NUL and control characters,
300-character components, ``CON.txt`` and names that differ only in case
must never write outside the export root nor onto each other. The rules are
the same for a directory and inside an archive (whose members are unpacked
into a directory later, maybe on Windows or macOS).

The result is deterministic for a given sequence of files, so a re-run
(``--skip-existing``) maps every file to the path it had the first time.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata

#: Bytes per path component: the limit of ext4, XFS, APFS and NTFS (255 UTF-16 units).
MAX_COMPONENT_BYTES = 240
#: Components kept per path; deeper names are cut (PATH_MAX is 4096 on Linux).
MAX_DEPTH = 32

# Device names Windows reserves in any directory and with any extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{dev}{n}" for dev in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")
}
# Control characters, and the characters Windows forbids in a name.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def _truncate(component: str, limit: int = MAX_COMPONENT_BYTES) -> str:
    """``component`` cut to ``limit`` UTF-8 bytes, keeping a short extension."""
    if len(component.encode()) <= limit:
        return component
    stem, dot, ext = component.rpartition(".")
    if not dot or not stem or len(ext.encode()) > 16:
        stem, ext = component, ""
    suffix = f".{ext}" if ext else ""
    budget = limit - len(suffix.encode())
    cut = stem.encode()[:budget].decode(errors="ignore")
    return cut + suffix


def safe_component(component: str) -> str:
    """One path component made portable; '' when nothing usable is left."""
    component = unicodedata.normalize("NFC", component)
    component = _UNSAFE.sub("_", component)
    # Windows drops trailing dots and spaces, which would merge "a." with "a".
    component = component.rstrip(". ")
    if component in ("", ".", ".."):
        return ""
    stem = component.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED:
        component = f"_{component}"
    return _truncate(component)


def safe_relpath(name: str, fallback: str) -> str:
    """A relative POSIX path for ``name``, never leaving its root.

    Both ``/`` and ``\\`` separate components; empty, ``.`` and ``..``
    components are dropped (never resolved upwards), so ``a/../../b`` becomes
    ``a/b``. ``fallback`` (e.g. ``file-42``) names a file that has nothing left.
    """
    parts = [safe_component(part) for part in re.split(r"[/\\]", name)]
    parts = [part for part in parts if part][:MAX_DEPTH]
    if not parts:
        parts = [safe_component(fallback) or "file"]
    return posixpath.join(*parts)


def _with_tag(component: str, tag: str) -> str:
    """``report.pdf`` -> ``report~42.pdf``: unique, and still opens with the right program."""
    stem, dot, ext = component.rpartition(".")
    if not dot or not stem:
        stem, ext = component, ""
    suffix = f"~{tag}" + (f".{ext}" if ext else "")
    return _truncate(stem, MAX_COMPONENT_BYTES - len(suffix.encode())) + suffix


class UniqueNames:
    """Hands out safe relative paths that no other file of the same run gets.

    Paths are compared case-insensitively (after NFC and casefold), because
    the export may be read on a case-insensitive filesystem; a path is also
    kept from being both a file and a directory (``a`` and ``a/b``). A
    clash is resolved by tagging the later file's name with its id
    (``report~42.pdf``), which stays the same on a re-run.

    Paths are remembered as 64-bit digests (about 60 bytes each), so a run
    over a million files holds some 60 MiB of them, not the names.
    """

    def __init__(self) -> None:
        self._files: set[int] = set()
        self._dirs: set[int] = set()

    @staticmethod
    def _key(path: str) -> int:
        folded = unicodedata.normalize("NFC", path).casefold().encode()
        return int.from_bytes(hashlib.blake2b(folded, digest_size=8).digest(), "big")

    def _free(self, parts: list[str]) -> bool:
        key = self._key(posixpath.join(*parts))
        if key in self._files or key in self._dirs:
            return False
        return all(
            self._key(posixpath.join(*parts[:n])) not in self._files for n in range(1, len(parts))
        )

    def claim(self, name: str, tag: str) -> str:
        """The output path for a file named ``name``; ``tag`` (its id) resolves clashes."""
        parts = safe_relpath(name, f"file-{tag}").split("/")
        if not self._free(parts):
            # A parent that is already a file moves this file into a tagged
            # directory; otherwise the file itself is tagged.
            for n in range(1, len(parts)):
                if self._key(posixpath.join(*parts[:n])) in self._files:
                    parts[n - 1] = _with_tag(parts[n - 1], tag)
                    break
            else:
                parts[-1] = _with_tag(parts[-1], tag)
            counter = 1
            base = parts[-1]
            while not self._free(parts):  # only if names were crafted to collide
                counter += 1
                parts[-1] = _with_tag(base, str(counter))
        path = posixpath.join(*parts)
        self._files.add(self._key(path))
        for n in range(1, len(parts)):
            self._dirs.add(self._key(posixpath.join(*parts[:n])))
        return path
