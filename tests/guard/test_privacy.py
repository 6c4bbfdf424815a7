"""Privacy: augmented outputs carry no EXIF, GPS, XMP or ICC metadata of their sources, and the
ledger holds no pixel data."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from PIL import Image

import augledger
from guard._hostile import GEOMETRY_SPEC, guarded_run, photo

XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:xap="http://ns.adobe.com/xap/1.0/" xap:CreatorTool="secret-camera"/></rdf:RDF></x:xmpmeta>')
MARKERS = (b"Exif", b"GPS", b"http://ns.adobe.com/xap", b"secret-camera", b"ICC_PROFILE", b"acsp", b"iCCP", b"eXIf")


def gps_jpeg() -> bytes:
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 3.1), 0x1D: "2024:01:01"})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    Image.fromarray(photo(64, 64)).save(buf, "JPEG", exif=exif.tobytes(), icc_profile=icc, xmp=XMP, quality=95)
    data = buf.getvalue()
    assert all(m in data for m in (b"Exif", b"http://ns.adobe.com/xap", b"ICC_PROFILE"))
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the source really has GPS tags
    return data


def assert_clean(data: bytes, what: str) -> None:
    found = [m for m in MARKERS if m in data]
    assert not found, f"{what} carries {found}"
    with Image.open(io.BytesIO(data)) as im:
        assert not im.getexif() and not im.info.get("icc_profile") and not im.info.get("exif")
        assert not im.info.get("xmp") and "XML:com.adobe.xmp" not in im.info


@pytest.mark.parametrize(("fmt", "image_format"), [("folder", "jpg"), ("folder", "png"), ("folder", "webp"),
                                                   ("webdataset", "jpg")])
def test_outputs_carry_no_source_metadata(tmp_path: Path, fmt: str, image_format: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "holiday.jpg").write_bytes(gps_jpeg())
    pipe = augledger.compile(augledger.parse_spec(GEOMETRY_SPEC))
    out = tmp_path / "out"
    _, ledger = guarded_run(pipe, tmp_path, src, out, copies=2, format=fmt, image_format=image_format)
    assert all(row["status"] == "ok" for row in ledger.values())
    if fmt == "folder":
        files = sorted((out / "augmented").rglob("*.*"))
        assert len(files) == 2
        for path in files:
            assert_clean(path.read_bytes(), str(path))
    else:
        members = 0
        for shard in sorted((out / "shards").glob("*.tar")):
            with tarfile.open(shard) as tar:
                for member in tar.getmembers():
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    assert not [m for m in MARKERS if m in data], member.name
                    if member.name.endswith(f".{image_format}"):
                        assert_clean(data, member.name)
                        members += 1
        assert members == 2


def test_the_ledger_holds_no_pixel_data(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    src.mkdir()
    source = photo(256, 256)
    Image.fromarray(source).save(src / "a.png")
    noisy = {"schema": 1, "name": "noise", "seed": 1,
             "ops": [*GEOMETRY_SPEC["ops"], {"op": "GaussNoise", "p": 1.0}, {"op": "ElasticTransform", "p": 1.0}]}
    _, ledger = guarded_run(augledger.compile(augledger.parse_spec(noisy)), tmp_path, src, tmp_path / "out", copies=3)
    raw = (tmp_path / "out" / "ledger.parquet").read_bytes()
    table = pq.read_table(tmp_path / "out" / "ledger.parquet")
    for column in table.column_names:
        for value in table.column(column).to_pylist():
            assert len(repr(value)) < 8_000, f"{column} holds {len(repr(value))} characters in one row"
    # No run of the image's rows (as raw bytes) anywhere in the file; and the file is far smaller than the pixels.
    for row in (source[10].tobytes()[:48], source[40].tobytes()[:48]):
        assert row not in raw
    assert len(raw) < source.nbytes and len(ledger) == 3
