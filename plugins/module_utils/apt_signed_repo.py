# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to this collection: the logic of the apt_signed_repo module.

An apt repository signed by one key whose fingerprint the operator states: the key is read and
checked before anything is written, then the keyring and the source file are compared with what
is on disk. Everything here is plain data and an injected ``run`` (argv -> rc, stdout, stderr),
so the unit tests drive it with a real gpg and no Ansible.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

Runner = Callable[[list], "tuple[int, str, str]"]

ARMOR_HEADER = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
# OpenPGP v4 fingerprints are 40 hex digits (RFC 4880, 12.2), v6 ones 64 (RFC 9580, 5.5.4).
FINGERPRINT_LENGTHS = (40, 64)


class SignedRepoError(Exception):
    """A refusal: the message says what was found, what was expected and what to change."""


def normalize_fingerprint(value: str) -> str:
    """Fingerprints as operators paste them (spaces, lower case) in gpg's spelling."""
    return re.sub(r"\s+", "", value or "").upper()


def fingerprint_problem(value: str, name: str) -> str | None:
    """Why ``value`` (the variable ``name``) is no fingerprint, or None when it is one."""
    normalized = normalize_fingerprint(value)
    if re.fullmatch(r"[0-9A-F]+", normalized) and len(normalized) in FINGERPRINT_LENGTHS:
        return None
    return (
        f"{name} must be the full fingerprint of the repository key: 40 hexadecimal digits "
        f"(64 for an OpenPGP v6 key), spaces allowed; got {value!r}"
    )


def primary_fingerprints(colons: str) -> list[str]:
    """The fingerprint of each primary key in ``gpg --with-colons --show-keys`` output.

    gpg prints a key as a ``pub`` record followed by its ``fpr`` record, then each subkey as
    ``sub`` + ``fpr``; the fingerprint is field 10 (GnuPG's doc/DETAILS, "Field 10 - User-ID",
    which holds the fingerprint in fpr records). Subkeys do not count: apt trusts a file by its
    primary keys.
    """
    found: list[str] = []
    waiting = False
    for line in colons.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            waiting = True
        elif fields[0] == "fpr" and waiting and len(fields) > 9:
            found.append(fields[9].upper())
            waiting = False
        elif fields[0] in ("sub", "sec", "ssb"):
            waiting = False
    return found


def show_keys_argv(gpg: str, homedir: str, path: str) -> list[str]:
    # --no-options and a private homedir: neither the host's gpg.conf nor its keyrings count.
    return [gpg, "--batch", "--no-options", "--homedir", homedir, "--with-colons",
            "--show-keys", path]  # fmt: skip


def dearmor_argv(gpg: str, homedir: str, source: str, output: str) -> list[str]:
    return [gpg, "--batch", "--yes", "--no-options", "--homedir", homedir, "--dearmor",
            "--output", output, source]  # fmt: skip


def read_fingerprints(run: Runner, gpg: str, homedir: str, path: str) -> list[str]:
    """Primary fingerprints gpg reads in ``path``; none when gpg reads no OpenPGP key there."""
    rc, out, _err = run(show_keys_argv(gpg, homedir, path))
    # A file that is no key at all makes gpg exit non-zero: it holds no key, which the
    # fingerprint check then reports with both values named.
    return primary_fingerprints(out) if rc == 0 else []


def key_refusal(
    found: list[str],
    expected: str,
    key_url: str,
    fingerprint_name: str,
    key_url_name: str,
) -> str | None:
    """The refusal message when the key is not exactly one primary key with ``expected``."""
    if found == [expected]:
        return None
    if found:
        listed = " and ".join(found)
        if len(found) > 1:
            # A second key in the file would be trusted for this repository as well.
            listed += f" ({len(found)} keys, one expected)"
    else:
        listed = "none (gpg reads no OpenPGP key in it)"
    return (
        f"The repository key at {key_url} has the fingerprint {listed}, expected {expected} "
        f"({fingerprint_name}). Nothing was installed: the key is not trusted and the "
        f"repository not added. Check the key URL ({key_url_name}) and the fingerprint the "
        f"repository's publisher gives for its key."
    )


def is_armored(data: bytes) -> bool:
    return data.lstrip().startswith(ARMOR_HEADER)


def keyring_bytes(
    run: Runner,
    gpg: str,
    homedir: str,
    *,
    key_path: str,
    key: bytes,
    key_format: str,
    dearmored_path: str,
) -> bytes:
    """What the keyring file must hold: the key as served (armored) or in binary form."""
    if key_format == "armored":
        if not is_armored(key):
            raise SignedRepoError(
                "key_format armored keeps the key as served, and this key is not ASCII-armored "
                "(apt reads a .asc keyring only in armored form); use key_format binary"
            )
        return key
    if not is_armored(key):
        return key
    rc, _out, err = run(dearmor_argv(gpg, homedir, key_path, dearmored_path))
    if rc != 0:
        raise SignedRepoError(f"gpg --dearmor failed on the repository key: {err.strip()}")
    with open(dearmored_path, "rb") as handle:
        return handle.read()


def describe_keyring(data: bytes | None, fingerprints: list[str]) -> str:
    """One line for --diff: a keyring is binary, so the diff names its keys and its hash."""
    if data is None:
        return ""
    keys = ", ".join(fingerprints) or "no OpenPGP key"
    return f"{keys} (sha256 {hashlib.sha256(data).hexdigest()}, {len(data)} bytes)\n"
