"""``python -m faceledger``: the command line."""

from faceledger.cli.main import app

app(prog_name="faceledger")
