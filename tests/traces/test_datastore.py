"""The data registry, checksummed downloads and `shared:` resolution, against a loopback server.

A small HTTP server on 127.0.0.1 serves the files; no test touches the internet. The registry is
replaced by a few entries of our own (except where a real small file from ../shared/data is
served under the shipped registry's own hash).
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import json
import pickle
import socket
import threading
from pathlib import Path

import pytest

from orrery.experiments.cli import main
from orrery.traces import datastore
from orrery.traces.convert import DataIntegrityError, load_pickle_checked
from orrery.traces.paths import resolve_data_path

REPO = Path(__file__).resolve().parents[2]
SMALL = b"ms,kind,node\n0,add,node1\n"
ELIG = [[1], [], [1, 2], [1, 3], [1, 2, 3, 4]]
# Written out by hand (not by the converter): csv.writer's default dialect ends lines with CRLF.
ELIG_CSV = b"device_index,eligible_requirements\r\n0,1\r\n1,\r\n2,1;2\r\n3,1;3\r\n4,1;2;3;4\r\n"
AZURE = (b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
         b"2024-05-10 00:00:00.0095750+00:00,100,20\n2024-05-10 00:00:01.5+00:00,200,30\n"
         b"2024-05-10 00:00:03+00:00,50,10\n")


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Server:
    """Serves `files` (URL path -> bytes); paths in `truncate` send half the declared length."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in outer.truncate else body)
                if self.path in outer.truncate:
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def entry(name: str, url: str, data: bytes | None, **kw) -> datastore.DataEntry:
    fields = dict(name=name, repo="acme/data", commit="c0ffee", path=name.split("/", 1)[1], url=url,
                  sha256=sha(data) if data is not None else None, bytes=len(data) if data is not None else None,
                  upstream_sha256=sha(data) if data is not None else None,
                  upstream_bytes=len(data) if data is not None else None,
                  license="MIT", citation="Someone et al.")
    fields.update(kw)
    return datastore.DataEntry(**fields)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Isolated cache, no ../shared/data, no $ORRERY_DATA, a loopback server and a small registry."""
    srv = Server()
    for var in ("ORRERY_DATA", "ORRERY_SHARED_DATA", "ORRERY_DATA_MIRROR", "ORRERY_AUTO_FETCH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ORRERY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datastore, "SHARED_DIR", tmp_path / "no-shared")
    pkl = pickle.dumps(ELIG, protocol=5)
    srv.files = {"/acme/data/c0ffee/small.csv": SMALL, "/acme/data/c0ffee/elig.pkl": pkl,
                 "/acme/data/c0ffee/azure.csv": AZURE, "/acme/data/c0ffee/tofu.csv": AZURE}
    reg = {
        "t/small.csv": entry("t/small.csv", srv.base + "/acme/data/c0ffee/small.csv", SMALL),
        "t/elig.csv": entry("t/elig.csv", srv.base + "/acme/data/c0ffee/elig.pkl", ELIG_CSV,
                            path="elig.pkl", upstream_sha256=sha(pkl), upstream_bytes=len(pkl),
                            converter="venn_eligibility"),
        "t/azure.csv": entry("t/azure.csv", srv.base + "/acme/data/c0ffee/azure.csv", AZURE),
        "t/tofu.csv": entry("t/tofu.csv", srv.base + "/acme/data/c0ffee/tofu.csv", None,
                            trust_on_first_use=True, approx_bytes=200),
    }
    monkeypatch.setattr(datastore, "registry", lambda: reg)
    yield srv, tmp_path / "cache"
    srv.close()


def test_fetch_verifies_and_second_fetch_is_a_cache_hit(env):
    srv, cache = env
    p = datastore.fetch("t/small.csv")
    assert p == cache / "t" / "small.csv" and p.read_bytes() == SMALL
    assert srv.hits["/acme/data/c0ffee/small.csv"] == 1
    assert datastore.fetch("t/small.csv") == p
    assert srv.hits["/acme/data/c0ffee/small.csv"] == 1  # not downloaded again
    assert datastore.verify("t/small.csv").status == "ok"


def test_hash_mismatch_is_refused_and_nothing_cached(env):
    srv, cache = env
    srv.files["/acme/data/c0ffee/small.csv"] = SMALL + b"0,remove,node1\n"
    with pytest.raises(DataIntegrityError, match="do not match the recorded sha256"):
        datastore.fetch("t/small.csv")
    assert not (cache / "t" / "small.csv").exists()
    assert not [f for f in cache.rglob("*") if f.is_file()]  # no temporary file left either


@pytest.mark.parametrize("name", ["t/small.csv", "t/tofu.csv"])
def test_truncated_download_is_refused(env, name):
    srv, cache = env
    url_path = datastore.registry()[name].url.removeprefix(srv.base)
    srv.truncate.add(url_path)
    with pytest.raises((datastore.DataFetchError, DataIntegrityError)):
        datastore.fetch(name)
    assert not (cache / name).exists()
    assert not (cache / datastore.TOFU_FILE).exists()


def test_server_down_is_a_clear_error_with_exit_2(env, monkeypatch, capsys):
    srv, cache = env
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = dict(datastore.registry())
    reg["t/small.csv"] = entry("t/small.csv", f"http://127.0.0.1:{port}/small.csv", SMALL)
    monkeypatch.setattr(datastore, "registry", lambda: reg)
    assert main(["data", "fetch", "t/small.csv"]) == 2
    err = capsys.readouterr().err
    assert "cannot download" in err and f"127.0.0.1:{port}" in err and "ORRERY_DATA_MIRROR" in err
    assert "Traceback" not in err
    assert not (cache / "t" / "small.csv").exists()


def test_conversion_rebuilds_the_csv_and_refuses_a_tampered_pickle(env, tmp_path):
    srv, cache = env
    assert datastore.fetch("t/elig.csv").read_bytes() == ELIG_CSV
    # A pickle that would run code when loaded; its hash differs, so it is never unpickled.
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (cache / "t" / "elig.csv").unlink()
    for p in cache.rglob("elig.pkl"):
        p.unlink()
    srv.files["/acme/data/c0ffee/elig.pkl"] = pickle.dumps(Evil())
    with pytest.raises(DataIntegrityError):
        datastore.fetch("t/elig.csv")
    assert not marker.exists() and not (cache / "t" / "elig.csv").exists()


def test_unpickler_resolves_no_globals_even_when_the_hash_matches(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    data = pickle.dumps(Evil())
    with pytest.raises(DataIntegrityError, match="refusing to load"):
        load_pickle_checked(data, sha(data), "evil")
    assert not marker.exists()


def test_trust_on_first_use_records_then_checks(env):
    srv, cache = env
    datastore.fetch("t/tofu.csv")
    rec = json.loads((cache / datastore.TOFU_FILE).read_text())["t/tofu.csv"]
    assert rec["sha256"] == sha(AZURE) and rec["bytes"] == len(AZURE)
    assert datastore.verify("t/tofu.csv").status == "ok"
    (cache / "t" / "tofu.csv").write_bytes(AZURE + b"2024-05-10 00:00:04,1,1\n")
    assert datastore.verify("t/tofu.csv").status == "mismatch"
    (cache / "t" / "tofu.csv").unlink()
    srv.files["/acme/data/c0ffee/tofu.csv"] = AZURE.replace(b"100", b"101")  # upstream changed
    with pytest.raises(DataIntegrityError):
        datastore.fetch("t/tofu.csv")


def test_mirror_url_and_mirror_folder_replace_the_host(env, monkeypatch, tmp_path):
    srv, cache = env
    reg = dict(datastore.registry())
    reg["t/small.csv"] = entry("t/small.csv", "http://127.0.0.1:9/unreachable.csv", SMALL, path="small.csv")
    monkeypatch.setattr(datastore, "registry", lambda: reg)
    monkeypatch.setenv("ORRERY_DATA_MIRROR", srv.base)
    assert datastore.fetch("t/small.csv").read_bytes() == SMALL
    (cache / "t" / "small.csv").unlink()
    folder = tmp_path / "mirror"
    (folder / "acme/data/c0ffee").mkdir(parents=True)
    (folder / "acme/data/c0ffee/small.csv").write_bytes(SMALL)
    monkeypatch.setenv("ORRERY_DATA_MIRROR", str(folder))
    assert datastore.fetch("t/small.csv").read_bytes() == SMALL
    (cache / "t" / "small.csv").unlink()
    (folder / "acme/data/c0ffee/small.csv").write_bytes(b"tampered\n")
    with pytest.raises(DataIntegrityError):
        datastore.fetch("t/small.csv")
    assert not (cache / "t" / "small.csv").exists()


def test_resolution_order_missing_hint_and_auto_fetch(env, monkeypatch, tmp_path):
    srv, cache = env
    with pytest.raises(Exception, match=r"orrery data fetch t/small.csv"):
        resolve_data_path("shared:t/small.csv")
    monkeypatch.setenv("ORRERY_AUTO_FETCH", "1")
    assert resolve_data_path("shared:t/small.csv") == (cache / "t" / "small.csv").resolve()
    own = tmp_path / "own"
    (own / "t").mkdir(parents=True)
    (own / "t" / "small.csv").write_bytes(SMALL)
    monkeypatch.setenv("ORRERY_DATA", str(own))
    assert resolve_data_path("shared:t/small.csv") == (own / "t" / "small.csv").resolve()
    assert datastore.verify("t/small.csv").where == "$ORRERY_DATA"
    with pytest.raises(Exception, match="not a registered data file"):
        resolve_data_path("shared:t/unknown.csv")


def test_cli_list_verify_path(env, capsys):
    srv, cache = env
    assert main(["data", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"t/small.csv", "t/elig.csv", "t/azure.csv", "t/tofu.csv"}
    assert rows["t/small.csv"]["cached"] is False and rows["t/small.csv"]["license"] == "MIT"
    assert main(["data", "path", "t/small.csv"]) == 2
    assert "orrery data fetch t/small.csv" in capsys.readouterr().err
    assert main(["data", "fetch", "t"]) == 0  # a folder name selects all under it
    capsys.readouterr()
    assert main(["data", "path", "t/elig.csv"]) == 0
    assert capsys.readouterr().out.strip() == str(cache / "t" / "elig.csv")
    assert main(["data", "verify"]) == 0
    (cache / "t" / "small.csv").write_bytes(b"corrupt\n")
    assert main(["data", "verify"]) == 2
    assert "checksum mismatch: t/small.csv" in capsys.readouterr().err


STUDY = """
[study]
name = "fetch_me"
domain = "serving"
hypothesis = "x"
seeds = [0]
metrics = ["qoe_mean"]
control = {{ policy = "vllm_fcfs" }}

[scenario]
policy = "vllm_fcfs"

[scenario.hardware]
gpu = "a100"
model = "llama-2-13b"

[scenario.workload]
arrival = "trace"
trace_path = "{trace}"
lengths = "trace"

[variables]
policy = ["vllm_fcfs", "andes"]
"""


def test_validate_names_the_fetch_command_and_fetch_flag_downloads(env, tmp_path, capsys):
    srv, cache = env
    study = tmp_path / "s.toml"
    study.write_text(STUDY.format(trace="shared:t/azure.csv"))
    assert main(["validate", str(study)]) == 2
    assert "orrery data fetch t/azure.csv" in capsys.readouterr().err
    assert main(["validate", str(study), "--fetch"]) == 0
    assert (cache / "t" / "azure.csv").read_bytes() == AZURE


def test_real_registry_entry_served_from_a_copy(shared_data, tmp_path, monkeypatch):
    """The shipped registry's hash of a real small file matches the file (served by loopback)."""
    srv = Server()
    try:
        e = datastore.registry()["failures/spot_10m.csv"]
        srv.files[f"/{e.repo}/{e.commit}/{e.path}"] = (shared_data / "failures" / "spot_10m.csv").read_bytes()
        for var in ("ORRERY_DATA", "ORRERY_SHARED_DATA"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(datastore, "SHARED_DIR", tmp_path / "no-shared")
        monkeypatch.setenv("ORRERY_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("ORRERY_DATA_MIRROR", srv.base)
        p = datastore.fetch("failures/spot_10m.csv")
        assert p.read_bytes() == (shared_data / "failures" / "spot_10m.csv").read_bytes()
    finally:
        srv.close()


def test_converters_reproduce_the_shared_files(shared_data):
    """Pickles rebuilt from the shared CSVs convert back to the very same bytes."""
    from orrery.traces.convert import convert

    rows = (shared_data / "fl" / "aibenchmark_eligibility_4req.csv").read_text().splitlines()[1:]
    elig = [[int(x) for x in r.split(",")[1].split(";") if x] for r in rows]
    data = pickle.dumps(elig, protocol=5)
    out = convert("venn_eligibility", data, sha(data), "elig")
    assert out == (shared_data / "fl" / "aibenchmark_eligibility_4req.csv").read_bytes()

    import csv

    with (shared_data / "fl" / "aibenchmark_device_specs.csv").open(newline="") as f:
        recs = list(csv.reader(f))[1:]
    specs = {int(r[0]): {"device": r[1], "cpu_f": float(r[2]), "ram": float(r[3]), "fp16_mem": float(r[4]),
                         "android_os": float(r[5]), "speed": float(r[6])} for r in recs}
    data = pickle.dumps(specs, protocol=4)
    out = convert("venn_device_specs", data, sha(data), "specs")
    assert out == (shared_data / "fl" / "aibenchmark_device_specs.csv").read_bytes()


def test_shipped_registry_matches_upstream_toml(shared_data):
    spec = importlib.util.spec_from_file_location("build_reg", REPO / "scripts" / "build_data_registry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    built = mod.build(shared_data / "upstream.toml")
    shipped = json.loads(datastore.REGISTRY_FILE.read_text())
    assert built["files"] == shipped["files"]
    for name, e in shipped["files"].items():
        if not e.get("trust_on_first_use"):
            assert (shared_data / name).is_file(), name
