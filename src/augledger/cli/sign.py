"""``augledger keygen | sign``: Ed25519 keys and signed manifests (``verify --public-key`` checks them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from augledger.cli._app import app, console, handle_errors


@app.command("keygen")
@handle_errors
def keygen_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", metavar="KEY", help="Where to write the private key (mode 0600); the public key goes to KEY.pub (mode 0644).", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Replace KEY and KEY.pub if they exist.")] = False,
) -> None:
    """Write a new Ed25519 key pair for signing manifests: KEY (private, keep it secret) and KEY.pub (share it)."""
    from augledger.run.signing import generate_keypair, public_key_fingerprint

    private, public = generate_keypair(out, force=force)
    console.print(f"wrote {private} (private key, mode 0600: keep it secret) and {public} (public key: give it to "
                  f"those who verify); key {public_key_fingerprint(public)}", highlight=False)


@app.command("sign")
@handle_errors
def sign_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder of `augledger run`.", show_default=False)],
    key: Annotated[Path, typer.Option("--key", metavar="KEY", envvar="AUGLEDGER_SIGNING_KEY", help="The private key (from `augledger keygen`).", show_default=False)],
) -> None:
    """Sign OUT/manifest.json (which holds the ledger, shard and source digests) with an Ed25519 key; writes OUT/manifest.sig.

    run.json (the run's facts) is not signed. Run `augledger verify OUT` first: the signature vouches
    for the folder as it is now. Check it with `augledger verify OUT --public-key KEY.pub`.
    """
    import json

    from augledger.run.signing import sign_output

    path = sign_output(out, key)
    document = json.loads(path.read_text(encoding="utf-8"))
    console.print(f"signed {out / 'manifest.json'} ({document['manifest_sha256'][:19]}…) with key "
                  f"{document['public_key_sha256']}: wrote {path}", highlight=False)
