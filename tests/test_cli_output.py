"""simulator.cli.output: an output folder that never mixes two runs, and output files checked
before any work — each case on a real folder, each refusal word for word.

A disk that fills up or a name the filesystem refuses is made real where it can be (a name
longer than the filesystem allows, ``/proc``, where not even root can write); a failure the
sandbox cannot produce (a full disk part-way) is injected into ``fileio.probe_folder``.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from simulator import fileio
from simulator.cli import output
from simulator.cli.output import MANIFEST, ResultFolder, output_file, probe_folder
from simulator.errors import UserError

MANIFEST_OF_A_RUN = {"scenario": {"name": "tiny"}, "policies": ["route", "fetch"]}


def write_result(target: Path, files: dict[str, str], *, overwrite: bool = False) -> Path:
    """One run's result written through a :class:`ResultFolder` into ``target``."""
    folder = ResultFolder.open(target, overwrite=overwrite)
    for name, text in files.items():
        (folder.path / name).write_text(text)
    return folder.commit(MANIFEST_OF_A_RUN)


def test_a_result_is_staged_beside_its_target_and_swapped_in_with_its_manifest(tmp_path):
    target = tmp_path / "out"
    folder = ResultFolder.open(target, overwrite=False)
    assert folder.path.parent == tmp_path and folder.path.name.startswith(".kvfabric-staging-")
    assert not target.exists()  # nothing at the target before the run is done
    (folder.path / "requests.parquet").write_text("r")
    assert folder.commit(MANIFEST_OF_A_RUN) == target
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left
    text = (target / MANIFEST).read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=2) + "\n"
    assert manifest["files"] == [MANIFEST, "requests.parquet"]
    assert manifest["kvfabric"] == dist_version("kvfabric")
    assert manifest["scenario"] == {"name": "tiny"} and manifest["policies"] == ["route", "fetch"]


def test_a_previous_result_is_replaced_whole_only_when_asked(tmp_path):
    target = tmp_path / "out"
    write_result(target, {"rounds.parquet": "old", "requests.parquet": "old"})
    created = json.loads((target / MANIFEST).read_text())["created_at"]
    with pytest.raises(UserError) as err:
        ResultFolder.open(target, overwrite=False)
    assert str(err.value) == (f"--out {target}: holds a previous result (scenario tiny, route, "
                              f"fetch, {created}); pass --overwrite to replace it, or choose "
                              "another folder")
    write_result(target, {"requests.parquet": "new"}, overwrite=True)
    # the old run's rounds.parquet does not survive beside the new requests.parquet
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "requests.parquet"]
    assert (target / "requests.parquet").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old one is gone


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_a_result_folder_and_its_files_honour_the_umask(tmp_path, umask, mode):
    # a staging folder made by tempfile.mkdtemp is 0700 whatever the umask; the result a user
    # shares (kvfabric_out/<scenario>, --out) gets the mode any folder they make would get
    previous = os.umask(umask)
    try:
        target = write_result(tmp_path / "out", {"requests.parquet": "r"})
        assert target.stat().st_mode & 0o777 == mode
        assert (target / MANIFEST).stat().st_mode & 0o777 == 0o666 & ~umask
        write_result(target, {"requests.parquet": "new"}, overwrite=True)  # replacing, too
        assert target.stat().st_mode & 0o777 == mode
    finally:
        os.umask(previous)


def test_an_empty_target_folder_is_used_and_a_folder_of_other_files_never(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_result(empty, {"a.parquet": "a"})
    assert sorted(p.name for p in empty.iterdir()) == ["a.parquet", MANIFEST]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError) as err:
        ResultFolder.open(mine, overwrite=True)
    assert str(err.value) == (f"--out {mine}: holds files that are not a kvfabric result; "
                              "choose a new or empty folder")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError) as err:
        ResultFolder.open(afile, overwrite=True, option="-d")
    assert str(err.value) == f"-d {afile}: exists and is not a folder; choose another path"


def test_a_manifest_that_cannot_be_read_is_described_by_its_name(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match=r"holds a previous result \(manifest.json\); pass"):
        ResultFolder.open(target, overwrite=False)


def test_a_discarded_run_leaves_no_folder_it_made(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    folder = ResultFolder.open(target, overwrite=False)
    assert (tmp_path / "a" / "b").is_dir()
    folder.discard()
    assert list(tmp_path.iterdir()) == []
    folder.discard()  # again (an error path may discard twice): nothing left to remove, no error


def test_a_target_name_the_filesystem_refuses_leaves_no_folder_it_made(tmp_path):
    target = tmp_path / "a" / "b" / ("x" * 300)  # past NAME_MAX (255)
    with pytest.raises(UserError, match=r"cannot create it \(File name too long\); choose "
                                        "another folder$"):
        ResultFolder.open(target, overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_a_probe_that_fails_after_making_the_parents_leaves_none_of_them(tmp_path, monkeypatch):
    def full_disk(folder):  # the parents made, then no room for the probe file
        Path(folder).mkdir(parents=True, exist_ok=True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "probe_folder", full_disk)
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(UserError) as err:
        ResultFolder.open(target, overwrite=False)
    # named by the nearest folder that is still there once the run's own are removed
    assert str(err.value) == (f"--out {target}: {tmp_path} cannot be written (No space left on "
                              "device); choose another folder")
    assert list(tmp_path.iterdir()) == []


def test_a_target_under_a_file_says_which_path_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "sub" / "out"
    with pytest.raises(UserError) as err:
        ResultFolder.open(target, overwrite=False)
    assert str(err.value) == (f"--out {target}: {tmp_path / 'f'} is a file, not a folder; "
                              "choose another folder")


def test_probe_folder_says_whether_it_made_the_folder_and_names_the_option(tmp_path):
    assert probe_folder(tmp_path / "new", "--out") is True
    assert probe_folder(tmp_path / "new", "--out") is False
    with pytest.raises(UserError) as err:
        probe_folder(Path("/proc"), "--out")  # not even root writes a file there
    assert str(err.value).startswith("--out /proc: cannot write there (")
    assert str(err.value).endswith("); choose a folder you can write")


def test_an_output_file_is_checked_before_any_work(tmp_path):
    good = tmp_path / "plot.PNG"
    assert output_file(good, "--plot", (".png", ".pdf")) == good  # suffixes in any case
    assert output_file(str(tmp_path / "t.parquet"), "-o") == tmp_path / "t.parquet"
    cases = [
        (tmp_path / "plot.jpg", "--plot {p}: give a file name ending in .png or .pdf"),
        (tmp_path, "--plot {p}: is a folder; give a file name"),
        (tmp_path / "missing" / "p.png", "--plot {p}: folder {f} does not exist; create it "
                                         "first"),
    ]
    (tmp_path / "afile").write_text("x")
    cases.append((tmp_path / "afile" / "p.png", "--plot {p}: {f} is a file, not a folder"))
    for path, message in cases:
        with pytest.raises(UserError) as err:
            output_file(path, "--plot", (".png", ".pdf") if path.suffix != "" else ())
        assert str(err.value) == message.format(p=path, f=path.parent)
    with pytest.raises(UserError, match=r"^-o /proc: cannot write there"):
        output_file("/proc/x.parquet", "-o")  # an existing folder nobody can write


def test_the_version_is_the_installed_distributions_or_unknown(monkeypatch):
    assert output.version() == dist_version("kvfabric")
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert output.version() == "unknown"  # run from a tree that was not installed
