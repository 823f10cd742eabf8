"""Rebuild the converted real data files from their upstream bytes (orrery's own converters).

Two files of the registry are published upstream as Python pickles (SymbioticLab/Venn). A
pickle can run arbitrary code when loaded, so a converter here loads one only after its sha256
equals the registry's upstream hash (it refuses otherwise), and even then through an unpickler
that resolves no global at all: the files hold builtin containers and numbers only, which
pickle encodes without globals. Output is byte-for-byte what `../shared/data` holds (the
registry's sha256 of the converted file is checked by the caller).
"""

from __future__ import annotations

import csv
import hashlib
import io
import pickle
from collections.abc import Callable

from orrery.core.errors import OrreryInputError


class DataIntegrityError(OrreryInputError):
    """Downloaded or cached data whose checksum differs from the recorded one."""


class _NoGlobals(pickle.Unpickler):
    """An unpickler for plain data: any class or function reference is refused."""

    def find_class(self, module: str, name: str):  # noqa: ARG002 - signature fixed by pickle
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: plain data expected")


def load_pickle_checked(data: bytes, sha256: str, what: str) -> object:
    """Unpickle `data` only if its sha256 is `sha256`; never resolves globals."""
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise DataIntegrityError(
            f"{what}: sha256 of the upstream bytes is {got}, expected {sha256}; refusing to "
            "unpickle them (delete the file and fetch again, or check ORRERY_DATA_MIRROR)"
        )
    try:
        return _NoGlobals(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataIntegrityError(f"{what}: cannot unpickle the upstream bytes: {err}") from None


def _csv_bytes(header: list[str], rows: list[list[object]]) -> bytes:
    """csv.writer in its default dialect (CRLF line ends, minimal quoting), UTF-8."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def venn_device_specs(obj: object, what: str) -> bytes:
    """Venn's `client_spec_speed` (dict id -> spec dict) as `fl/aibenchmark_device_specs.csv`."""
    if not isinstance(obj, dict):
        raise DataIntegrityError(f"{what}: expected a dict of device specs, got {type(obj).__name__}")
    keys = ("device", "cpu_f", "ram", "fp16_mem", "android_os", "speed")
    rows = []
    for dev_id in sorted(obj):
        spec = obj[dev_id]
        if not isinstance(spec, dict) or any(k not in spec for k in keys):
            raise DataIntegrityError(f"{what}: device {dev_id!r} lacks one of {keys}")
        rows.append([dev_id, *(spec[k] for k in keys)])
    header = ["device_id", "device", "cpu_score", "ram_gb", "fp16_mem_score", "android_os", "speed_ms"]
    return _csv_bytes(header, rows)


def venn_eligibility(obj: object, what: str) -> bytes:
    """Venn's `aibenchmark_eligibility_4` (list of requirement-id lists) as a CSV, in stored order."""
    if not isinstance(obj, list) or not all(isinstance(x, list) for x in obj):
        raise DataIntegrityError(f"{what}: expected a list of lists of requirement ids")
    rows = [[i, ";".join(str(int(r)) for r in reqs)] for i, reqs in enumerate(obj)]
    return _csv_bytes(["device_index", "eligible_requirements"], rows)


CONVERTERS: dict[str, Callable[[object, str], bytes]] = {
    "venn_device_specs": venn_device_specs,
    "venn_eligibility": venn_eligibility,
}


def convert(converter: str, upstream: bytes, upstream_sha256: str, what: str) -> bytes:
    """The converted file's bytes from the upstream pickle (checked before it is unpickled)."""
    if converter not in CONVERTERS:
        raise OrreryInputError(f"{what}: unknown converter {converter!r}; known: {sorted(CONVERTERS)}")
    return CONVERTERS[converter](load_pickle_checked(upstream, upstream_sha256, what), what)
