"""Signed manifests: keygen, sign and ``verify --public-key``, run as a user would (the installed script).

Every way a signed folder can stop vouching for itself is tried and must fail with its own message:
no signature, another key, the manifest changed, the ledger or an output changed, a damaged
signature file, a key file that is not the public key. An unsigned folder still verifies without
``--public-key``, and reruns of ``augledger run`` neither break on ``manifest.sig`` nor let a stale
one vouch for a changed dataset.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

import augledger
from augledger.errors import SignatureError
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.signing import DOMAIN, SIGNATURE, generate_keypair, public_key_fingerprint, verify_signature
from helpers import SCRIPT, SPEC, make_source


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished, unsigned output folder of 4 real photo tiles (and its source): copy it before changing it."""
    root = tmp_path_factory.mktemp("signing")
    source = make_source(root / "src", 4)
    out = root / "o"
    materialize(augledger.compile(augledger.parse_spec(SPEC)), source, out, options=RunOptions(workers=0))
    return source, out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two key pairs, ``a`` and ``b`` (private) with ``a.pub`` and ``b.pub``."""
    root = tmp_path_factory.mktemp("keys")
    found: dict[str, Path] = {}
    for name in ("a", "b"):
        private, public = generate_keypair(root / name)
        found[name], found[f"{name}.pub"] = private, public
    return found


@pytest.fixture()
def out(made: tuple[Path, Path], tmp_path: Path) -> Path:
    """This test's own copy of the unsigned folder."""
    copy = tmp_path / "o"
    shutil.copytree(made[1], copy, symlinks=True)
    return copy


@pytest.fixture()
def signed(out: Path, keys: dict[str, Path]) -> Path:
    """This test's copy of the folder, signed with key ``a`` through the CLI."""
    result = cli("sign", out, "--key", keys["a"])
    assert result.returncode == 0, result.stderr
    return out


# --- keygen ---------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_0600_and_a_public_key_0644(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "release"
    result = cli("keygen", "-o", key)
    assert result.returncode == 0, result.stderr
    public = tmp_path / "keys" / "release.pub"
    assert mode_of(key) == 0o600 and mode_of(public) == 0o644
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")  # SubjectPublicKeyInfo
    assert public_key_fingerprint(public) in result.stdout and "keep it secret" in result.stdout


def test_key_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        private, public = generate_keypair(tmp_path / "k")
    finally:
        os.umask(old)
    assert (mode_of(private), mode_of(public)) == (0o600, 0o644)


def test_keygen_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    key, public = tmp_path / "k", tmp_path / "k.pub"
    assert cli("keygen", "-o", key).returncode == 0
    before = key.read_bytes(), public.read_bytes()
    again = cli("keygen", "-o", key)
    assert again.returncode == 1
    assert f"'{key}' and '{public}' already exist" in again.stderr and "--force" in again.stderr
    assert (key.read_bytes(), public.read_bytes()) == before
    # Only the public half left: still refused, naming that one file.
    key.unlink()
    lone = cli("keygen", "-o", key)
    assert lone.returncode == 1 and f"'{public}' already exists" in lone.stderr and not key.exists()
    # --force replaces both, and a private key made readable meanwhile is 0600 again.
    key.write_bytes(before[0])
    key.chmod(0o644)
    forced = cli("keygen", "-o", key, "--force")
    assert forced.returncode == 0, forced.stderr
    assert key.read_bytes() != before[0] and public.read_bytes() != before[1]
    assert (mode_of(key), mode_of(public)) == (0o600, 0o644)


# --- sign and verify ------------------------------------------------------------------------------


def test_sign_then_verify_with_the_public_key(signed: Path, keys: dict[str, Path]) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    document = json.loads((signed / SIGNATURE).read_text())
    manifest = (signed / "manifest.json").read_bytes()
    fingerprint = public_key_fingerprint(keys["a.pub"])
    assert set(document) == {"algorithm", "format", "manifest", "manifest_sha256", "public_key_sha256", "signature"}
    assert (document["format"], document["algorithm"], document["public_key_sha256"]) == (1, "ed25519", fingerprint)
    # The signature is over the domain-separated manifest bytes, not over the bare manifest.
    public = load_pem_public_key(keys["a.pub"].read_bytes())
    raw = base64.b64decode(document["signature"])
    public.verify(raw, DOMAIN + manifest)  # type: ignore[union-attr]
    with pytest.raises(InvalidSignature):
        public.verify(raw, manifest)  # type: ignore[union-attr]

    result = cli("verify", signed, "--public-key", keys["a.pub"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"signature: manifest.json signed by key {fingerprint}" in result.stdout
    assert "verified: 4 output(s) checked" in result.stdout
    as_json = json.loads(cli("verify", signed, "--public-key", keys["a.pub"], "--json").stdout)
    assert as_json["ok"] is True and as_json["signature"]["public_key_sha256"] == fingerprint
    # A signed folder verifies without the key too (the signature is then only mentioned, not checked).
    plain = cli("verify", signed)
    assert plain.returncode == 0 and f"note: {SIGNATURE} not checked" in plain.stdout


def test_an_unsigned_folder_verifies_without_a_public_key(out: Path) -> None:
    result = cli("verify", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified: 4 output(s)" in result.stdout and "signature" not in result.stdout
    assert json.loads(cli("verify", out, "--json").stdout)["signature"] is None
    with pytest.raises(SignatureError):
        verify_signature(out, out.parent / "no.pub", required=False)  # a bad key is an error even then


def test_verify_signature_api_optional_and_required(out: Path, keys: dict[str, Path]) -> None:
    assert verify_signature(out, keys["a.pub"], required=False) is None
    with pytest.raises(SignatureError, match=r"manifest\.sig' is missing"):
        verify_signature(out, keys["a.pub"])


# --- each failure, with its own message -----------------------------------------------------------


def test_a_missing_signature_fails_when_a_public_key_is_given(out: Path, keys: dict[str, Path]) -> None:
    result = cli("verify", out, "--public-key", keys["a.pub"])
    assert result.returncode == 1
    assert f"'{out / SIGNATURE}' is missing" in result.stderr
    assert f"augledger sign {out} --key KEY" in result.stderr
    assert "verified" not in result.stdout


def test_a_signature_by_another_key_fails(signed: Path, keys: dict[str, Path]) -> None:
    result = cli("verify", signed, "--public-key", keys["b.pub"])
    assert result.returncode == 1
    assert "was made by another key" in result.stderr
    assert f"expected key {public_key_fingerprint(keys['b.pub'])}" in result.stderr
    assert f"found a signature by {public_key_fingerprint(keys['a.pub'])}" in result.stderr


def test_a_manifest_changed_by_one_byte_fails(signed: Path, keys: dict[str, Path]) -> None:
    """Pointing the manifest at another ledger digest: one hex digit."""
    path = signed / "manifest.json"
    data = path.read_bytes()
    at = data.index(b'"sha256": "sha256:') + len(b'"sha256": "sha256:')
    path.write_bytes(data[:at] + (b"0" if data[at:at + 1] != b"0" else b"1") + data[at + 1:])
    result = cli("verify", signed, "--public-key", keys["a.pub"])
    assert result.returncode == 1
    assert f"manifest.json in '{signed}' changed since it was signed" in result.stderr
    assert "sign it again" in result.stderr


def test_a_changed_ledger_fails_even_with_its_digest_patched_into_the_manifest(signed: Path, keys: dict[str, Path]) -> None:
    """The attack signing exists for: a rewritten ledger whose new digest is written into the manifest."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    ledger = signed / "ledger.parquet"
    table = pq.read_table(ledger)
    notes = table.column("note").to_pylist()
    notes[0] = "edited by hand"
    table = table.set_column(table.schema.get_field_index("note"), table.schema.field("note"), pa.array(notes, pa.string()))
    pq.write_table(table, ledger)

    # The ledger alone: the signature still holds (the manifest is untouched), the existing check catches it.
    alone = cli("verify", signed, "--public-key", keys["a.pub"])
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "signature: manifest.json signed by key" in alone.stdout
    assert "ledger.parquet was changed since the run" in alone.stdout

    # The ledger and the manifest's digest of it: only the signature can tell.
    manifest = json.loads((signed / "manifest.json").read_text())
    manifest["ledger"]["sha256"] = "sha256:" + hashlib.sha256(ledger.read_bytes()).hexdigest()
    (signed / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    patched = cli("verify", signed, "--public-key", keys["a.pub"])
    assert patched.returncode == 1
    assert "changed since it was signed" in patched.stderr


def test_a_changed_output_fails(signed: Path, keys: dict[str, Path]) -> None:
    output = sorted((signed / "augmented").rglob("*.png"))[0]
    data = bytearray(output.read_bytes())
    data[-20] ^= 1
    output.write_bytes(bytes(data))
    result = cli("verify", signed, "--public-key", keys["a.pub"])
    assert result.returncode == 1
    assert "signature: manifest.json signed by key" in result.stdout  # the manifest is intact ...
    assert f"output {output.relative_to(signed).as_posix()} was modified since the run" in result.stdout  # ... the output is not


def _flip_signature(document: dict[str, object]) -> dict[str, object]:
    raw = bytearray(base64.b64decode(str(document["signature"])))
    raw[10] ^= 1
    return {**document, "signature": base64.b64encode(bytes(raw)).decode()}


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: b"\x00\xffnot json", "is malformed: expected a JSON object written by `augledger sign`, found unreadable content"),
    (lambda d: b"[1, 2]", "is malformed: expected a JSON object written by `augledger sign`, found a JSON list"),
    (lambda d: json.dumps({**d, "algorithm": "rsa"}).encode(), "expected format 1 and algorithm 'ed25519', found format 1 and algorithm 'rsa'"),
    (lambda d: json.dumps({**d, "signature": None}).encode(), "expected a string field 'signature', found None"),
    (lambda d: json.dumps({**d, "signature": "c2hvcnQ="}).encode(), "expected 'signature' to be 64 bytes in base64, found 'c2hvcnQ='"),
    (lambda d: json.dumps(_flip_signature(d)).encode(), "does not verify: expected an Ed25519 signature of manifest.json"),
    (lambda d: json.dumps({**d, "manifest_sha256": "sha256:" + "0" * 64}).encode(), "its signature verifies, but its recorded digests"),
    (lambda d: json.dumps({**d, "manifest": "../../etc/passwd"}).encode(), "signing 'manifest.json'; found manifest '../../etc/passwd'"),
    (lambda d: json.dumps({**d, "note": "trust me"}).encode(), "and unknown fields ['note']"),
], ids=["garbage", "not-an-object", "algorithm", "no-signature", "short-signature", "flipped-bit", "edited-digest",
        "other-manifest", "unknown-field"])
def test_a_damaged_signature_file_fails(signed: Path, keys: dict[str, Path], damage: object, message: str) -> None:
    path = signed / SIGNATURE
    path.write_bytes(damage(json.loads(path.read_text())))  # type: ignore[operator]
    result = cli("verify", signed, "--public-key", keys["a.pub"])
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("key_file", "message"), [
    ("garbage", "is not a PEM public key (found no -----BEGIN line)"),
    ("empty", "is not a PEM public key (found an empty file)"),
    ("broken-pem", "is not a PEM public key (found '-----BEGIN PUBLIC KEY-----', which cannot be loaded"),
    ("private", "is a private key; verifying needs the public key"),
    ("missing", "does not exist or is not a file"),
])
def test_a_bad_public_key_file_fails(signed: Path, keys: dict[str, Path], tmp_path: Path, key_file: str, message: str) -> None:
    contents = {"garbage": b"\x89PNG not a key", "empty": b"",
                "broken-pem": b"-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n"}
    if key_file == "private":
        path = keys["a"]
    else:
        path = tmp_path / f"{key_file}.pub"
        if key_file in contents:
            path.write_bytes(contents[key_file])
    result = cli("verify", signed, "--public-key", path)
    assert result.returncode == 1
    assert f"'{path}' {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_sign_refuses_a_public_key_and_a_folder_without_manifest(out: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    public = cli("sign", out, "--key", keys["a.pub"])
    assert public.returncode == 1 and "is a public key; signing needs the private key" in public.stderr
    assert not (out / SIGNATURE).exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    no_manifest = cli("sign", empty, "--key", keys["a"])
    assert no_manifest.returncode == 1 and "has no manifest.json" in no_manifest.stderr


# --- reruns into a signed folder -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["folder", "webdataset"])
def test_reruns_keep_a_valid_signature_and_expose_a_stale_one(made: tuple[Path, Path], keys: dict[str, Path],
                                                             tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "src"
    shutil.copytree(made[0], source)
    spec = tmp_path / "aug.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "o"
    run = ("run", spec, "--source", source, "--out", out, "--workers", "0", "--format", fmt)
    assert cli(*run).returncode == 0
    assert cli("sign", out, "--key", keys["a"]).returncode == 0
    manifest = (out / "manifest.json").read_bytes()
    # An identical rerun (a resume) does not trip over manifest.sig and writes the same manifest: still valid.
    again = cli(*run)
    assert again.returncode == 0, again.stderr
    assert (out / "manifest.json").read_bytes() == manifest
    assert cli("verify", out, "--public-key", keys["a.pub"]).returncode == 0
    # A rerun that changes the dataset (a new source image) leaves the old signature, which no longer holds.
    shutil.copy(source / "class0" / "0000.jpg", source / "class0" / "0099.jpg")
    assert cli(*run).returncode == 0
    stale = cli("verify", out, "--public-key", keys["a.pub"])
    assert stale.returncode == 1 and "changed since it was signed" in stale.stderr
    # The dataset itself is sound (verify without the key passes): signing it again vouches for it.
    assert cli("sign", out, "--key", keys["a"]).returncode == 0
    assert cli("verify", out, "--public-key", keys["a.pub"]).returncode == 0
