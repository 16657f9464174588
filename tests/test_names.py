"""Names are identifiers (#13): one rule for collection and person names, NFC, no path tricks."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faceledger.errors import FaceledgerError, InvalidArgument, NotFound
from faceledger.names import check_name
from tests.test_api import Server, start_server, stop_server

NFC = unicodedata.normalize("NFC", "José")
NFD = unicodedata.normalize("NFD", "José")

BAD = [
    "",
    ".",
    "..",
    "a/b",
    "amy?x",
    "amy#x",
    "50%",
    "nul\x00",
    "tab\tname",
    "evil\u202eexe.jpg",  # right-to-left override (Cf)
    "zero\u200bwidth",  # zero-width space (Cf)
    " outer",
    "x" * 257,
]


@pytest.mark.parametrize("name", BAD)
def test_rule_refuses(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_name(name, "person")


def test_rule_normalises_to_nfc() -> None:
    assert NFC != NFD
    assert check_name(NFD) == NFC
    assert check_name("Zoë O'Brien-Łukasz 王") == "Zoë O'Brien-Łukasz 王"
    assert check_name("a.b") == "a.b" and check_name("...") == "..."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("names") / "data"
    srv = start_server(data, FACELEDGER_RATE_LIMIT="0")
    yield srv
    stop_server(srv)


def test_client_encodes_dot_dot_and_query(server: Server) -> None:
    """``delete_person("t2", "..")`` once deleted collection t2; ``"amy?x"`` deleted amy."""
    with server.client() as c:
        c.create_collection("t2", require_consent=False)
        c.create_person("t2", "amy")
        with pytest.raises(FaceledgerError) as dots:
            c.delete_person("t2", "..")
        assert dots.value.detail["status"] in {400, 404, 422}
        with pytest.raises(FaceledgerError) as dot:
            c.delete_person("t2", ".")
        assert dot.value.detail["status"] in {400, 404, 422}
        with pytest.raises(NotFound):
            c.delete_person("t2", "amy?x")
        with pytest.raises(NotFound):
            c.delete_person("t2", "amy#x")
        with pytest.raises(NotFound):
            c.delete_person("t2", "a/my")
        assert c.get_collection("t2")["name"] == "t2"
        assert [p["name"] for p in c.list_persons("t2")] == ["amy"]


@pytest.mark.parametrize("name", [n for n in BAD if n])
def test_server_refuses_bad_names(server: Server, name: str) -> None:
    with server.client() as c:
        if "t3" not in {col["name"] for col in c.list_collections()}:
            c.create_collection("t3", require_consent=False)
        with pytest.raises(InvalidArgument):
            c.create_person("t3", name)
        with pytest.raises(InvalidArgument):
            c.create_collection(name, require_consent=False)
        c.create_person("t3", "ok-name")
        with pytest.raises(InvalidArgument):
            c.rename_person("t3", "ok-name", name)
        c.delete_person("t3", "ok-name")
        assert c.list_persons("t3") == []


def test_nfc_and_nfd_are_one_person(server: Server) -> None:
    with server.client() as c:
        c.create_collection("t4", require_consent=False)
        created = c.create_person("t4", NFD)
        assert created["name"] == NFC
        with pytest.raises(FaceledgerError) as dup:
            c.create_person("t4", NFC)
        assert dup.value.detail["status"] == 409
        assert c.get_person("t4", NFD)["name"] == NFC
        assert [p["name"] for p in c.list_persons("t4")] == [NFC]
        c.delete_person("t4", NFD)
        assert c.list_persons("t4") == []


def test_raw_http_dot_segments_do_not_reach_a_collection(server: Server) -> None:
    """A hand-written request with encoded dots names a person '..', never the collection."""
    with server.client() as c:
        c.create_collection("t5", require_consent=False)
    r = httpx.delete(
        f"{server.url}/v1/collections/t5/persons/%2E%2E",
        headers={"X-API-Key": server.admin_key},
    )
    assert r.status_code in {400, 404, 422}, r.text
    with server.client() as c:
        assert c.get_collection("t5")["name"] == "t5"


def test_cli_refuses_bad_names(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "faceledger", "--data", str(tmp_path / "data")]
    for name in ["..", "amy?x", "evil\u202eexe"]:
        bad = subprocess.run(
            [*run, "collection", "create", name, "--json"], capture_output=True, text=True
        )
        assert bad.returncode != 0 and "invalid collection name" in bad.stdout + bad.stderr
    ok = subprocess.run(
        [*run, "collection", "create", NFD, "--json"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["name"] == NFC
