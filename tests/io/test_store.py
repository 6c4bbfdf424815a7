"""LocalStore: the one way to files, and the boundary no path crosses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from augledger.errors import UnsafePath
from augledger.io.store import LocalStore, check_relative


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("C:/Windows/win.ini", "is absolute"),
        ("../secret.png", "climbs out"),
        ("a/../../secret.png", "climbs out"),
        ("a\0.png", "NUL byte"),
        ("a\\..\\b.png", "backslashes"),
        ("", "non-empty"),
    ],
)
def test_unsafe_paths_are_refused_with_the_reason(path: str, why: str) -> None:
    with pytest.raises(UnsafePath, match=why):
        check_relative(path)


def test_reads_and_writes_stay_inside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    store = LocalStore(root)
    store.write("a/b/c.bin", b"data")
    assert store.read("a/b/c.bin") == b"data" and store.exists("a/b/c.bin")
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]  # atomic: no temporary left
    for bad in ("../outside/secret.png", str(outside / "secret.png")):
        with pytest.raises(UnsafePath):
            store.read(bad)
        with pytest.raises(UnsafePath):
            store.write(bad, b"x")
        assert not store.exists(bad)
    (root / "link.png").symlink_to(outside / "secret.png")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    for bad in ("link.png", "linkdir/secret.png"):
        with pytest.raises(UnsafePath, match="outside"):
            store.read(bad)
    with pytest.raises(UnsafePath, match="outside"):
        store.write("linkdir/new.bin", b"x")
    assert not (outside / "new.bin").exists()
    store.remove("a/b/c.bin")
    store.remove("a/b/c.bin")  # absent: no error
    assert not store.exists("a/b/c.bin")


def test_list_is_sorted_skips_hidden_and_names_every_escaping_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    for rel in ("b/2.png", "b/1.png", "a.png", ".hidden/x.png", "b/.y.png", "Z.png", "é.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "b" / "up").symlink_to("..", target_is_directory=True)  # a loop: read once
    (root / "again").symlink_to("b", target_is_directory=True)  # an alias inside: read once
    store = LocalStore(root)
    assert store.list() == ["Z.png", "a.png", "b/1.png", "b/2.png", "é.png"]
    outside.mkdir()
    (outside / "x.png").write_bytes(b"x")
    (root / "out1").symlink_to(outside, target_is_directory=True)
    (root / "out2.png").symlink_to(outside / "x.png")
    with pytest.raises(UnsafePath) as info:
        store.list()
    message = str(info.value)
    assert "2 symlink(s)" in message and "out1 ->" in message and "out2.png ->" in message


def test_a_root_reached_through_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    (real / "a" / "x.png").write_bytes(b"x")
    os.symlink(real, tmp_path / "alias", target_is_directory=True)
    store = LocalStore(tmp_path / "alias")
    assert store.list() == ["a/x.png"] and store.read("a/x.png") == b"x"


def test_colons_are_names_not_drives_and_a_planted_temporary_link_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    assert check_relative("1:2.png") == "1:2.png" and check_relative("a/b:c.png") == "a/b:c.png"
    store = LocalStore(root)
    (root / f".x.bin.tmp-{os.getpid()}").symlink_to(outside / "victim")
    store.write("x.bin", b"data")
    assert (root / "x.bin").read_bytes() == b"data" and not (outside / "victim").exists()
