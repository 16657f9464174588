"""``faceledger audit``: verify, export, sign a checkpoint, print the public key.

``audit verify --public-key FILE`` is the outside auditor's check: it reads an export or
a data folder and needs no secret (neither the signing key nor ``ledger.key``), so it can
run as a user who cannot read them. Without ``--public-key`` it is the operator's check,
through the service, HMAC seals included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.common import emit, fail_cleanly
from faceledger.cli.context import data_dir, open_service
from faceledger.config import Settings
from faceledger.errors import InvalidArgument
from faceledger.ledger.notes import PublicKey
from faceledger.ledger.verify import verify_data_dir, verify_export

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

audit_app = typer.Typer(help="The audit ledger.", no_args_is_help=True)


def _read_public_key(path: Path) -> PublicKey:
    try:
        return PublicKey.parse(path.read_text())
    except OSError as exc:
        raise InvalidArgument(f"cannot read the public key {path}: {exc}") from exc


@audit_app.command("verify")
@fail_cleanly
def audit_verify(
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="The ledger's public key (PEM or note vkey): verify offline, with no secret. "
            "Repeat it for the keys of earlier checkpoints after a key change.",
        ),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint", help="A witness file or signed checkpoint to check against (repeat)."
        ),
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="A JSON Lines export to verify.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the ledger: chain, signed checkpoints and head; exit 1 on any problem.

    With --public-key it checks --export, or else the data folder (--data), read-only.
    """
    if not public_key:
        if export is not None or checkpoint:
            raise InvalidArgument("--export and --checkpoint need --public-key")
        with open_service() as svc:
            report = svc.ledger.verify()
    else:
        keys = [_read_public_key(p) for p in public_key]
        if export is not None:
            result = verify_export(export, public=keys, checkpoints=checkpoint or [])
        else:
            folder = data_dir() or Settings().data
            result = verify_data_dir(folder, public=keys, checkpoints=checkpoint or [])
        report = result.to_dict()
    if json_out:
        emit(report)
    elif report["ok"]:
        newer = report["uncovered"]
        typer.echo(
            f"ledger intact: {report['entries']} entries, {report['checkpoints']} signed "
            f"checkpoint(s) up to entry {report['latest_checkpoint']}"
            + (f", {newer} newer entries not signed yet" if newer else "")
        )
    else:
        typer.echo("LEDGER ALTERED:", err=True)
        for p in report["problems"]:
            where = f"entry {p['seq']}: " if p.get("seq") is not None else ""
            typer.echo(f"  {where}{p['problem']}", err=True)
    if not report["ok"]:
        raise typer.Exit(1)


@audit_app.command("export")
@fail_cleanly
def audit_export(
    out: Annotated[Path | None, typer.Option(help="File to write (default stdout).")] = None,
) -> None:
    """Export the ledger as JSON Lines."""
    with open_service() as svc:
        lines = (json.dumps(dict(e), default=str, sort_keys=True) for e in svc.ledger.iter_all())
        if out is None:
            for line in lines:
                typer.echo(line)
        else:
            with out.open("w") as fh:
                for line in lines:
                    fh.write(line + "\n")


@audit_app.command("public-key")
@fail_cleanly
def audit_public_key(
    vkey: Annotated[
        bool, typer.Option("--vkey", help="Print the signed-note verifier key instead of PEM.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Print the public key that verifies the ledger's checkpoints."""
    with open_service() as svc:
        key = svc.ledger.public_key
    if json_out:
        emit({"key_id": key.key_id, "origin": key.origin, "pem": key.pem, "vkey": key.vkey})
    else:
        typer.echo(key.vkey if vkey else key.pem.rstrip("\n"))


@audit_app.command("checkpoint")
@fail_cleanly
def audit_checkpoint(json_out: JsonOpt = False) -> None:
    """Sign a checkpoint of every entry now, deliver it to the witnesses and print it."""
    with open_service() as svc:
        record = svc.ledger.checkpoint()
        pending = sum(s.undelivered for s in svc.ledger.witness_status())
    cp = record.checkpoint
    if json_out:
        emit({"id": record.id, "size": cp.size, "root_hash": cp.root_hex, "note": cp.note})
    else:
        typer.echo(cp.note, nl=False)
    if pending:
        typer.echo(f"{pending} checkpoint(s) not yet delivered to a witness", err=True)
