"""Signed manifests: an Ed25519 signature over an output folder's ``manifest.json``.

``manifest.json`` is the dataset's identity: it holds the ledger's digest (and through it every
output's digest), the shards' digests and the source digest. Signing its exact bytes therefore
vouches for the whole dataset; ``verify`` proves the rest of the folder matches the manifest. What
is *not* signed: ``run.json`` (the run's facts: times, host, paths), ``.augledger/`` (run state),
and ``manifest.sig`` itself.

The signature lives beside the manifest in ``manifest.sig``, a small JSON object::

    {
      "algorithm": "ed25519",
      "format": 1,
      "manifest": "manifest.json",
      "manifest_sha256": "sha256:<hex of the signed manifest.json bytes>",
      "public_key_sha256": "sha256:<hex of the signer's raw 32-byte public key>",
      "signature": "<base64 of the 64-byte Ed25519 signature>"
    }

The signed message is :data:`DOMAIN` (``b"augledger/manifest-signature/v1\\0"``) followed by the
manifest's bytes, so a signature made for something else with the same key never passes as a
manifest signature, nor the reverse. The two digests are there to make failures readable ("made by
another key", "the manifest changed since it was signed"); the check itself is the signature over
the current bytes with the key the verifier trusts, and a file whose digests disagree with what it
signs is refused as malformed.

A rerun of ``augledger run`` into a signed folder leaves ``manifest.sig`` alone: an identical rerun
writes the same manifest bytes, so the signature stays valid; a rerun that changes the dataset
writes another manifest, and verification then fails with "manifest.json changed since it was
signed" until someone checks the folder and signs it again. A stale signature can never vouch for
a changed dataset.

Keys are PEM files: the private key PKCS#8 (unencrypted, file mode 0600), the public key
SubjectPublicKeyInfo (``KEY.pub``, mode 0644). ``cryptography`` is imported inside the functions, so
``import augledger`` stays light.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from augledger._canonical import sha256_hex
from augledger.errors import SignatureError
from augledger.io.store import LocalStore
from augledger.run.folder import MANIFEST
from augledger.run.manifest import read_manifest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALGORITHM",
    "DOMAIN",
    "SIGNATURE",
    "SIGNATURE_FORMAT",
    "SignatureCheck",
    "generate_keypair",
    "public_key_fingerprint",
    "sign_output",
    "verify_signature",
]

log = logging.getLogger(__name__)

#: The signature file, beside ``manifest.json``.
SIGNATURE = "manifest.sig"
SIGNATURE_FORMAT = 1
ALGORITHM = "ed25519"
#: Prefixed to the manifest's bytes before signing (domain separation).
DOMAIN = b"augledger/manifest-signature/v1\0"
_SIGNATURE_BYTES = 64
_KEYGEN_HINT = "make a key pair with `augledger keygen -o KEY` (KEY is private, KEY.pub public)"


@dataclass(frozen=True)
class SignatureCheck:
    """A signature that verified: the file, the signer's key fingerprint and the manifest digest it covers."""

    path: Path
    public_key_sha256: str
    manifest_sha256: str


def _fingerprint(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    return sha256_hex(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte on (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # exactly this mode, whatever the umask
        f.write(data)


def generate_keypair(path: str | Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``path`` (private, PEM PKCS#8, mode 0600) and ``path.pub``
    (public, PEM SubjectPublicKeyInfo, mode 0644).

    Args:
        path: where the private key goes; the public key goes beside it with ``.pub`` appended.
        force: replace existing files (otherwise an existing one is refused, so a key in use is never lost).

    Returns:
        ``(private_path, public_path)``.

    Raises:
        SignatureError: a key file exists and ``force`` is false, or ``path`` is a folder.

    Example::

        private, public = generate_keypair("keys/release")   # keys/release, keys/release.pub
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path = Path(path)
    public_path = private_path.with_name(private_path.name + ".pub")
    for target in (private_path, public_path):
        if target.is_dir():
            raise SignatureError(f"key file {str(target)!r} is a folder; expected a file name to write the key to "
                                 "(e.g. -o keys/release)")
    existing = [str(p) for p in (private_path, public_path) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise SignatureError(
            f"{' and '.join(repr(p) for p in existing)} already {'exist' if len(existing) > 1 else 'exists'}; "
            "expected new file names, so that a key in use is never overwritten by accident. Choose another -o, "
            "or pass --force to replace the key pair (signatures made with the old key then verify only with "
            "the old KEY.pub)"
        )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for target in (private_path, public_path):
        if force:
            target.unlink(missing_ok=True)  # replaced, not rewritten in place: the new file gets the new mode
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    log.info("wrote key pair %s (private) and %s (public), key %s", private_path, public_path,
             _fingerprint(key.public_key()))
    return private_path, public_path


def _read_key_file(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise SignatureError(f"{what} {str(path)!r} does not exist or is not a file; expected a PEM key file; "
                             f"{_KEYGEN_HINT}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = cast("Ed25519PrivateKey", _load_key(Path(path), private=True))
    _warn_if_readable(Path(path))
    return key


def _load_public_key(path: str | Path) -> Ed25519PublicKey:
    return cast("Ed25519PublicKey", _load_key(Path(path), private=False))


def _load_key(path: Path, *, private: bool) -> object:
    """An Ed25519 key from a PEM file, or a SignatureError naming what the file holds instead and the fix."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    kind = "private" if private else "public"
    data = _read_key_file(path, f"{kind} key file")
    expected = (f"the private key file that `augledger keygen` wrote; {_KEYGEN_HINT}" if private else
                "the KEY.pub file that `augledger keygen` wrote (it starts with -----BEGIN PUBLIC KEY-----)")
    if private and b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise SignatureError(f"{str(path)!r} is a public key; signing needs the private key (the file without "
                             ".pub that `augledger keygen` wrote beside it)")
    if not private and b"PRIVATE KEY-----" in data:
        raise SignatureError(f"{str(path)!r} is a private key; verifying needs the public key (KEY.pub, written "
                             "beside it by `augledger keygen`). Never hand the private key to those who verify")
    try:
        key: object = (serialization.load_pem_private_key(data, password=None) if private
                       else serialization.load_pem_public_key(data))
    except TypeError:  # only the private loader: a password is needed
        raise SignatureError(f"the private key {str(path)!r} is encrypted; augledger reads unencrypted PKCS#8 keys "
                             "(protect the file with mode 0600 instead, or decrypt a copy with "
                             "`openssl pkey -in KEY -out KEY.plain`)") from None
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:  # not PEM, PEM of something else, exotic keys
        raise SignatureError(f"{str(path)!r} is not a PEM {kind} key ({_pem_problem(data, exc)}); expected {expected}") from None
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise SignatureError(f"{str(path)!r} holds a {kind} key of type {_key_kind(key)}; expected an Ed25519 key, "
                             f"i.e. {expected}")
    return key


def _pem_problem(data: bytes, exc: Exception) -> str:
    """What is wrong with a key file, in a few words (cryptography's own message points to its FAQ)."""
    if b"-----BEGIN " not in data:
        return "found no -----BEGIN line" if data.strip() else "found an empty file"
    first = data[data.index(b"-----BEGIN "):].split(b"\n", 1)[0].strip()
    return f"found {first.decode('ascii', 'replace')[:60]!r}, which cannot be loaded: {_reason(exc).split('. See ')[0]}"


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _key_kind(key: Any) -> str:
    return type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "") or "non-Ed25519"


def _warn_if_readable(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning("the private key %s can be read by other users (mode %04o); `chmod 600 %s` it", path, mode, path)


def public_key_fingerprint(public_key_path: str | Path) -> str:
    """``sha256:<hex>`` of the raw 32-byte Ed25519 public key in a PEM file: what ``manifest.sig`` names.

    Raises:
        SignatureError: the file is not an Ed25519 public key.
    """
    return _fingerprint(_load_public_key(public_key_path))


def _manifest_bytes(out: Path) -> bytes:
    read_manifest(out)  # LedgerError, with the fix, when there is none or it is not a JSON object
    return (out / MANIFEST).read_bytes()


def sign_output(out: str | Path, private_key_path: str | Path) -> Path:
    """Sign ``out/manifest.json`` with an Ed25519 private key; write ``out/manifest.sig`` (replacing one).

    Sign a folder you trust: run ``verify`` first; the signature vouches for the manifest's bytes,
    and through its digests for the ledger and every output.

    Args:
        out: the output folder of ``augledger run``.
        private_key_path: the private key (PEM PKCS#8, e.g. from :func:`generate_keypair`).

    Returns:
        The path of ``manifest.sig``.

    Raises:
        SignatureError: the key file cannot be read or is not an Ed25519 private key.
        LedgerError: ``out`` has no ``manifest.json`` (not an output folder, or its run did not finish).
    """
    out = Path(out)
    key = _load_private_key(private_key_path)
    manifest = _manifest_bytes(out)
    signature = key.sign(DOMAIN + manifest)
    document = {
        "algorithm": ALGORITHM,
        "format": SIGNATURE_FORMAT,
        "manifest": MANIFEST,
        "manifest_sha256": sha256_hex(manifest),
        "public_key_sha256": _fingerprint(key.public_key()),
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    LocalStore(out).write(SIGNATURE, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    log.info("signed %s (%s) with key %s", out / MANIFEST, document["manifest_sha256"], document["public_key_sha256"])
    return out / SIGNATURE


def _read_signature(path: Path) -> tuple[dict[str, Any], bytes]:
    """The signature document and the raw signature, or a SignatureError saying what is wrong with the file."""
    fix = f"sign the folder again with `augledger sign {path.parent} --key KEY`"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SignatureError(f"{str(path)!r} is malformed: expected a JSON object written by `augledger sign`, "
                             f"found unreadable content ({_reason(exc)}); {fix}") from None
    if not isinstance(document, dict):
        raise SignatureError(f"{str(path)!r} is malformed: expected a JSON object written by `augledger sign`, "
                             f"found a JSON {type(document).__name__}; {fix}")
    if document.get("format") != SIGNATURE_FORMAT or document.get("algorithm") != ALGORITHM:
        raise SignatureError(
            f"{str(path)!r} is malformed or of another kind: expected format {SIGNATURE_FORMAT} and algorithm "
            f"{ALGORITHM!r}, found format {document.get('format')!r} and algorithm {document.get('algorithm')!r}; "
            f"{fix} (or upgrade augledger, if a newer one wrote it)"
        )
    unknown = sorted(set(document) - {"format", "algorithm", "manifest", "manifest_sha256", "public_key_sha256", "signature"})
    if unknown or document.get("manifest") != MANIFEST:
        raise SignatureError(f"{str(path)!r} is malformed: expected the fields augledger writes, signing {MANIFEST!r}; "
                             f"found manifest {document.get('manifest')!r}" + (f" and unknown fields {unknown}" if unknown else "")
                             + f"; {fix}")
    for field in ("manifest_sha256", "public_key_sha256", "signature"):
        if not isinstance(document.get(field), str):
            raise SignatureError(f"{str(path)!r} is malformed: expected a string field {field!r}, "
                                 f"found {document.get(field)!r}; {fix}")
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != _SIGNATURE_BYTES:
        raise SignatureError(f"{str(path)!r} is malformed: expected 'signature' to be {_SIGNATURE_BYTES} bytes in "
                             f"base64, found {document['signature'][:40]!r}; {fix}")
    return document, signature


def verify_signature(out: str | Path, public_key_path: str | Path, *, required: bool = True) -> SignatureCheck | None:
    """Check ``out/manifest.sig`` against the exact bytes of ``out/manifest.json`` and a trusted public key.

    This checks the manifest only; :func:`augledger.run.verify.verify` checks that the ledger,
    shards and outputs match the manifest. Run both (``augledger verify OUT --public-key PUB`` does).

    Args:
        out: the output folder of ``augledger run``.
        public_key_path: the signer's public key (PEM, ``KEY.pub`` from :func:`generate_keypair`).
        required: when false, a folder without ``manifest.sig`` gives ``None`` instead of an error.

    Returns:
        What verified (the signer's key fingerprint and the manifest digest), or ``None`` (unsigned, not required).

    Raises:
        SignatureError: the signature is missing (and required), malformed, made by another key, or the
            manifest changed since it was signed; or the key file is not an Ed25519 public key.
        LedgerError: ``out`` has no ``manifest.json``.
    """
    from cryptography.exceptions import InvalidSignature

    out = Path(out)
    key = _load_public_key(public_key_path)
    expected_key = _fingerprint(key)
    manifest = _manifest_bytes(out)
    path = out / SIGNATURE
    if not path.is_file():
        if not required:
            return None
        raise SignatureError(
            f"{str(path)!r} is missing: expected a signature of manifest.json by key {expected_key}, found an "
            f"unsigned folder. Sign it with `augledger sign {out} --key KEY` (the private key of "
            f"{Path(public_key_path).name}), or verify without --public-key to skip the signature check"
        )
    document, signature = _read_signature(path)
    actual_manifest = sha256_hex(manifest)
    try:
        key.verify(signature, DOMAIN + manifest)
    except InvalidSignature:
        other_key = document["public_key_sha256"] != expected_key
        changed = document["manifest_sha256"] != actual_manifest
        if other_key:
            also = (f"; manifest.json has also changed since it was signed (signed {document['manifest_sha256']}, "
                    f"now {actual_manifest})") if changed else ""
            raise SignatureError(
                f"{str(path)!r} was made by another key: expected key {expected_key} (from "
                f"{str(public_key_path)!r}), found a signature by {document['public_key_sha256']}{also}. Verify with "
                "the signer's public key, or, if you trust this folder, sign it again with your key"
            ) from None
        if changed:
            raise SignatureError(
                f"manifest.json in {str(out)!r} changed since it was signed: the signature covers "
                f"{document['manifest_sha256']}, the file is now {actual_manifest} (a rerun that changed the "
                "dataset, or an edit). Check the folder with `augledger verify`, then sign it again with "
                f"`augledger sign {out} --key KEY`"
            ) from None
        raise SignatureError(
            f"{str(path)!r} does not verify: expected an Ed25519 signature of manifest.json ({actual_manifest}) "
            f"by key {expected_key}, found a signature that key did not make (damaged or forged). Do not trust "
            "the folder; sign it again only after `augledger verify` passes"
        ) from None
    if document["public_key_sha256"] != expected_key or document["manifest_sha256"] != actual_manifest:
        raise SignatureError(
            f"{str(path)!r} is malformed: its signature verifies, but its recorded digests (key "
            f"{document['public_key_sha256']}, manifest {document['manifest_sha256']}) are not those it signs "
            f"(key {expected_key}, manifest {actual_manifest}): the file was edited. Sign the folder again"
        )
    log.info("signature of %s verified: key %s, manifest %s", out / MANIFEST, expected_key, actual_manifest)
    return SignatureCheck(path, expected_key, actual_manifest)
