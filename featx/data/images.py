"""Image inputs: a folder, a .zip read in place, a table of paths, or arrays in memory.

A folder (or an archive, or a folder inside an archive: ``photos.zip:train``) with one
subfolder per class is labelled by the subfolder names, sorted; image files directly
inside it make an unlabelled input (the two are not mixed). Files are taken in sorted
order of their path relative to the root, which is also their id. Files without an
image suffix (README.txt, .DS_Store) are not rows. The input's sha256 covers every
row's name and bytes, so renaming, adding or changing one image makes a new input.

Records carry the encoded bytes (or the array / PIL image given in Python); decoding
is the featurizer's, in parallel, off the model's thread (featx.featurizers.image).
"""
from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from featx.atomic import file_sha256
from featx.data.base import TableFile
from featx.data.readers import detect_format, read_rows
from featx.data.source import InputSummary
from featx.errors import FeatxError, InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One image row: its id, its content (encoded bytes, an array or a PIL image), its label
    index (-1 when unlabelled) and where it came from (for messages)."""

    id: int | str
    data: Any
    label: int
    origin: str


def require_pillow() -> None:
    """Images are read with Pillow, which comes with the vision extra."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise FeatxError("reading images needs Pillow: pip install 'featx[vision]'") from None


def is_image_input(spec: str | Path) -> bool:
    """True for a folder, a .zip, or ``ARCHIVE.zip:FOLDER``: inputs read as images."""
    text = str(spec)
    archive, _, _ = text.partition(".zip:")
    return Path(text).expanduser().is_dir() or text.lower().endswith(".zip") or (".zip:" in text and bool(archive))


@dataclass(frozen=True)
class ImageFilesSource:
    """Image files under a folder, or under a folder of a .zip archive (read without unpacking)."""

    path: Path  # the folder, or the archive
    prefix: str = ""  # inside an archive: the folder read ("" for its top)
    name: str = ""
    modality: str = "image"

    def describe(self) -> dict[str, Any]:
        return {"format": "image-zip" if self._is_zip else "image-folder", "prefix": self.prefix,
                "labels": "first folder"}

    @property
    def _is_zip(self) -> bool:
        return self.path.is_file()

    @property
    def _start(self) -> str:
        """The archive folder's name prefix ("train/"), or "" for the archive's top."""
        return self.prefix.strip("/") + "/" if self.prefix.strip("/") else ""

    def _members(self) -> list[str]:
        """Relative paths (posix) of the image files, sorted."""
        if self._is_zip:
            with _open_zip(self.path, self.name) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
            unsafe = next((n for n in names if not _safe_member(n)), None)
            if unsafe is not None:
                raise InputError(f"{self.name}: the archive holds a member named {unsafe!r}, an absolute path or "
                                 "one with '..': featx reads no archive with such names; repack it with relative "
                                 "paths")
            found = [n[len(self._start):] for n in names if n.startswith(self._start)]
            if self._start and not found:
                raise FeatxError(f"{self.name}: the archive has no folder {self.prefix.strip('/')!r}")
        else:
            found = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]
        return sorted(n for n in found if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
                      and not any(part.startswith(".") for part in PurePosixPath(n).parts))

    def scan(self) -> InputSummary:
        members = self._members()
        if not members:
            raise FeatxError(f"{self.name} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}): nothing "
                             "to extract (folders and zips are read as images; for texts, name the file)")
        nested = [len(PurePosixPath(m).parts) > 1 for m in members]
        if any(nested) and not all(nested):
            loose = members[nested.index(False)]
            raise FeatxError(f"{self.name} mixes images in class folders with images at its top ({loose}): "
                             "put every image in a class folder, or none")
        classes = tuple(sorted({PurePosixPath(m).parts[0] for m in members})) if all(nested) else None
        digest = hashlib.sha256()
        for member, data in self._read(members):
            digest.update(member.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
        return InputSummary(n_rows=len(members), classes=classes, id_kind="str", sha256=digest.hexdigest())

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[ImageRecord]:
        members = self._members()
        if len(members) != summary.n_rows:
            raise FeatxError(f"{self.name} changed while being read: {len(members)} images, not {summary.n_rows}")
        label_index = {c: i for i, c in enumerate(summary.classes or ())}
        for member, data in self._read(members[start:]):
            label = label_index[PurePosixPath(member).parts[0]] if label_index else -1
            yield ImageRecord(member, data, label, self._origin(member))

    def _origin(self, member: str) -> str:
        """How messages name one image: ``photos.zip:train/cat/1.jpg``, or its path in the folder."""
        if not self._is_zip:  # under the folder as the user named it, not its absolute path
            return str(Path(self.name) / member) if self.name else str(self.path / member)
        return f"{self.name}/{member}" if self.prefix else f"{self.name}:{member}"

    def _read(self, members: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        if self._is_zip:
            with _open_zip(self.path, self.name) as archive:
                for member in members:
                    try:
                        yield member, archive.read(self._start + member)
                    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
                        raise InputError(f"{self.name}: cannot read {member} from the archive ({e})") from None
        else:
            for member in members:
                try:
                    yield member, (self.path / member).read_bytes()
                except OSError as e:
                    raise InputError(f"cannot read {self._origin(member)}: {e.strerror or e}") from None


@dataclass(frozen=True)
class ImageTableSource(TableFile):
    """A CSV/TSV/JSONL/parquet whose `image_column` holds image paths relative to the table."""

    image_column: str
    label_column: str | None = None
    name: str = ""
    modality: str = "image"

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "image_column": self.image_column, "label_column": self.label_column}

    def _rows(self) -> Iterator[tuple[str, str | None]]:
        for number, row in enumerate(read_rows(self.path, self.format, True, "utf-8"), start=1):
            value = row.get(self.image_column)
            if value is None or not str(value).strip():
                raise InputError(f"{self.name} row {number}: no image path in column {self.image_column!r}")
            label = None if self.label_column is None else row.get(self.label_column)
            if self.label_column is not None and (label is None or not str(label).strip()):
                raise InputError(f"{self.name} row {number}: the label ({self.label_column!r}) is missing")
            yield str(value).strip(), None if label is None else str(label).strip()

    def scan(self) -> InputSummary:
        rows = list(self._rows())
        if not rows:
            raise FeatxError(f"{self.name} has no rows: nothing to extract")
        digest = hashlib.sha256(file_sha256(self.path).encode())
        for relative, _ in rows:
            digest.update(relative.encode("utf-8") + b"\0" + hashlib.sha256(self._bytes(relative)).digest())
        classes = tuple(sorted({label for _, label in rows if label is not None})) if self.label_column else None
        return InputSummary(n_rows=len(rows), classes=classes, id_kind="str", sha256=digest.hexdigest())

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[ImageRecord]:
        label_index = {c: i for i, c in enumerate(summary.classes or ())}
        for index, (relative, label) in enumerate(self._rows()):
            if index >= start:
                yield ImageRecord(relative, self._bytes(relative), label_index[label] if label is not None else -1,
                                  relative)

    def _bytes(self, relative: str) -> bytes:
        target = (self.path.parent / relative)
        try:
            return target.read_bytes()
        except OSError as e:
            raise InputError(f"{self.name}: cannot read image {relative} ({target}): {e.strerror or e}") from None


@dataclass(frozen=True)
class ArraySource:
    """Images already in memory (uint8 HxWx3 / HxW arrays or PIL images), for the Python API."""

    images: Sequence[Any]
    labels: Sequence[Any] | None = None
    name: str = "arrays"
    modality: str = "image"
    path: Path = field(default=Path("<memory>"))

    def describe(self) -> dict[str, Any]:
        return {"format": "arrays"}

    def scan(self) -> InputSummary:
        require_pillow()
        if not len(self.images):
            raise FeatxError("no images given: nothing to extract")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise FeatxError(f"{len(self.images)} images but {len(self.labels)} labels")
        digest = hashlib.sha256()
        for image in self.images:
            digest.update(array_sha256(image))
        classes = tuple(sorted({str(x) for x in self.labels})) if self.labels is not None else None
        return InputSummary(n_rows=len(self.images), classes=classes, id_kind="int", sha256=digest.hexdigest())

    def records(self, summary: InputSummary, start: int = 0) -> Iterator[ImageRecord]:
        label_index = {c: i for i, c in enumerate(summary.classes or ())}
        for i in range(start, len(self.images)):
            label = label_index[str(self.labels[i])] if self.labels is not None else -1
            yield ImageRecord(i, self.images[i], label, f"image {i}")


def array_sha256(image: Any) -> bytes:
    """sha256 of an in-memory image's pixels and shape (a PIL image is read as its array)."""
    pixels = np.ascontiguousarray(np.asarray(image))
    return hashlib.sha256(repr((pixels.shape, pixels.dtype.str)).encode() + pixels.tobytes()).digest()


def open_images(spec: str | Path, *, image_column: str | None = None,
                label_column: str | None = None) -> ImageFilesSource | ImageTableSource:
    """The image Source `spec` names: a folder, ``X.zip``, ``X.zip:FOLDER``, or a table with `image_column`."""
    require_pillow()
    text = str(spec)
    if image_column is not None:
        path = Path(text).expanduser()
        if not path.is_file():
            raise FeatxError(f"input {text} does not exist")
        fmt = detect_format(path)
        first = next(read_rows(path, fmt, True, "utf-8"), None)
        if first is None:
            raise FeatxError(f"{text} has no rows: nothing to extract")
        for role, column in (("image", image_column), ("label", label_column)):
            if column is not None and column not in first:
                raise FeatxError(f"{role} column {column!r} is not in {text}; its columns are: {', '.join(first)} "
                                 f"(choose with --{role}-column)")
        if label_column is None and "label" in first:
            label_column = "label"
        return ImageTableSource(path, fmt, image_column, label_column, name=text)
    if label_column is not None:
        raise FeatxError(f"{text} is read as images labelled by their folder: --label-column applies to tables "
                         "with --image-column")
    archive, _, prefix = text.partition(".zip:") if ".zip:" in text else (text, "", "")
    path = Path(archive + (".zip" if prefix or text.endswith(".zip:") else "")).expanduser()
    if not path.exists():
        raise FeatxError(f"input {path} does not exist")
    return ImageFilesSource(path.resolve(), prefix.strip("/"), name=text)


def _safe_member(name: str) -> bool:
    """False for a member name that is absolute (/x, \\x, C:x) or climbs out with '..': read as a path
    it would point outside the archive's tree, and its first folder would become a class."""
    parts = name.replace("\\", "/").split("/")
    return not (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts)


def _open_zip(path: Path, name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{name} is not a readable zip archive ({e})") from None
