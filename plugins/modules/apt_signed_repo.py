#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10 (no "str | None" at runtime).
from __future__ import annotations

DOCUMENTATION = r"""
module: apt_signed_repo
short_description: Add an apt repository whose signing key must have a given fingerprint
version_added: 1.0.0
description:
  - Downloads the repository's signing key from O(key_url) on the managed host, reads it with
    C(gpg --show-keys) in a private temporary home directory and refuses it unless it holds
    exactly one primary key whose fingerprint is O(fingerprint). A refused key writes
    nothing, neither the keyring nor the source file.
  - Only then writes the keyring O(keyring) (in O(key_format)) and the source file
    O(source_path) with O(source_content), each with mode C(0644) and only when its content
    differs from the file on disk; a missing parent directory is created with mode C(0755).
  - The key is downloaded and checked in check mode too, so C(--check) reports a wrong key
    exactly as a real run does; nothing is written then.
  - Error messages name the variables the caller passed in O(fingerprint_name) and
    O(key_url_name), so a role's user reads the name of the role's own variable.
  - The module does not update apt's cache; register the result and run C(apt update) when it
    changed.
author:
  - llmops.gpu_serving contributors
options:
  key_url:
    description:
      - Where the key is served, C(https://), C(http://) or C(file://). Read on the managed
        host.
    type: str
    required: true
  fingerprint:
    description:
      - The fingerprint the key must have, as its publisher gives it. Spaces and lower case are
        accepted; 40 hexadecimal digits (64 for an OpenPGP v6 key).
    type: str
    required: true
  keyring:
    description: The keyring file the source's C(Signed-By) names.
    type: path
    required: true
  key_format:
    description:
      - C(binary) writes the key in OpenPGP's binary form (C(gpg --dearmor) of an armored key,
        a binary key as served), for a C(.gpg) keyring.
      - C(armored) writes the key exactly as served, for a C(.asc) keyring; a key served in
        binary form is refused.
    type: str
    choices: [armored, binary]
    default: binary
  source_path:
    description: The apt source file, one-line C(.list) or deb822 C(.sources).
    type: path
    required: true
  source_content:
    description:
      - The whole content of O(source_path), written as given (render a template with the
        C(ansible.builtin.template) lookup).
    type: str
    required: true
  fingerprint_name:
    description: The name error messages give to O(fingerprint), such as a role's variable.
    type: str
    default: fingerprint
  key_url_name:
    description: The name error messages give to O(key_url), such as a role's variable.
    type: str
    default: key_url
  timeout:
    description: Seconds the key download may take.
    type: int
    default: 10
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.files
attributes:
  check_mode:
    support: full
    details:
      - The key is downloaded into a temporary directory and checked; nothing else is written.
  diff_mode:
    support: full
    details:
      - The source file as text; the keyring, which is binary, as its keys' fingerprints, its
        sha256 and its size.
  idempotent:
    support: full
  platform:
    platforms: debian
  safe_file_operations:
    support: full
  vault:
    support: none
requirements:
  - gpg (GnuPG 2.1.23 or later, for C(--show-keys)) on the managed host
notes:
  - Files are written by the user the module runs as (root under C(become)); an existing file
    keeps its owner.
seealso:
  - name: apt's SecureApt and Signed-By
    description: How apt trusts a keyring for one source only.
    link: https://wiki.debian.org/DebianRepository/UseThirdParty
"""

EXAMPLES = r"""
- name: Add Docker's repository (deb822, armored keyring)
  llmops.gpu_serving.apt_signed_repo:
    key_url: https://download.docker.com/linux/debian/gpg
    fingerprint: 9DC8 5822 9FC7 DD38 854A E2D8 8D81 803C 0EBF CD88
    keyring: /etc/apt/keyrings/docker.asc
    key_format: armored
    source_path: /etc/apt/sources.list.d/docker.sources
    source_content: |
      Types: deb
      URIs: https://download.docker.com/linux/debian
      Suites: bookworm
      Components: stable
      Signed-By: /etc/apt/keyrings/docker.asc
  register: docker_repo

- name: Read the new index
  ansible.builtin.apt:
    update_cache: true
  when: docker_repo is changed
"""

RETURN = r"""
fingerprint:
  description: The fingerprint of the key, checked against O(fingerprint).
  returned: success
  type: str
  sample: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88
keyring_changed:
  description: Whether the keyring was (or in check mode would be) written or its mode set.
  returned: success
  type: bool
source_changed:
  description: Whether the source file was (or in check mode would be) written or its mode set.
  returned: success
  type: bool
keyring:
  description: The keyring file.
  returned: always
  type: str
  sample: /etc/apt/keyrings/docker.asc
source_path:
  description: The source file.
  returned: always
  type: str
  sample: /etc/apt/sources.list.d/docker.sources
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.module_utils.urls import fetch_url

from ansible_collections.llmops.gpu_serving.plugins.module_utils.apt_signed_repo import (
    SignedRepoError,
    describe_keyring,
    fingerprint_problem,
    key_refusal,
    keyring_bytes,
    normalize_fingerprint,
    read_fingerprints,
)

FILE_MODE = "0644"
DIRECTORY_MODE = 0o755


def download(module: AnsibleModule, url: str, name: str) -> bytes:
    response, info = fetch_url(module, url, method="GET", timeout=module.params["timeout"])
    # file:// answers without an HTTP status (None); anything else must be a 200.
    if response is None or info.get("status") not in (200, None):
        module.fail_json(
            msg=f"Cannot download the repository key from {url} ({name}): "
            f"{info.get('msg', 'no answer')} (status {info.get('status')}). Nothing was installed."
        )
    return response.read()


def read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_file(module: AnsibleModule, path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=DIRECTORY_MODE)
    # Beside the target, so the rename stays on one filesystem and apt never reads half a file.
    handle, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
        module.atomic_move(temp_path, path)
    finally:
        module.cleanup(temp_path)


def ensure_file(module: AnsibleModule, path: str, data: bytes, before: bytes | None) -> bool:
    """Write ``data`` to ``path`` unless it holds it already; set the mode. True if changed."""
    changed = before != data
    if changed and not module.check_mode:
        try:
            write_file(module, path, data)
        except Exception as err:  # atomic_move raises bare Exception on failure
            module.fail_json(msg=f"Cannot write {path}: {to_native(err)}")
    if os.path.exists(path):
        changed = module.set_mode_if_different(path, FILE_MODE, changed)
    return changed


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            key_url=dict(type="str", required=True),
            fingerprint=dict(type="str", required=True),
            keyring=dict(type="path", required=True),
            key_format=dict(type="str", choices=["armored", "binary"], default="binary"),
            source_path=dict(type="path", required=True),
            source_content=dict(type="str", required=True),
            fingerprint_name=dict(type="str", default="fingerprint"),
            key_url_name=dict(type="str", default="key_url"),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    params = module.params
    keyring, source_path = params["keyring"], params["source_path"]
    result = dict(changed=False, keyring=keyring, source_path=source_path)

    problem = fingerprint_problem(params["fingerprint"], params["fingerprint_name"])
    if problem:
        module.fail_json(msg=problem, **result)
    expected = normalize_fingerprint(params["fingerprint"])
    gpg = module.get_bin_path("gpg", required=True)

    run = module.run_command
    key = download(module, params["key_url"], params["key_url_name"])
    # A private scratch directory: gpg's home (no host keyring is read or created) and the key.
    with tempfile.TemporaryDirectory(prefix="apt_signed_repo.", dir=module.tmpdir) as scratch:
        key_path = os.path.join(scratch, "key")
        with open(key_path, "wb") as handle:
            handle.write(key)
        refusal = key_refusal(
            read_fingerprints(run, gpg, scratch, key_path),
            expected,
            params["key_url"],
            params["fingerprint_name"],
            params["key_url_name"],
        )
        if refusal:
            module.fail_json(msg=refusal, **result)
        try:
            wanted = keyring_bytes(
                run,
                gpg,
                scratch,
                key_path=key_path,
                key=key,
                key_format=params["key_format"],
                dearmored_path=os.path.join(scratch, "keyring.gpg"),
            )
        except SignedRepoError as err:
            module.fail_json(msg=f"{keyring}: {err}", **result)

        keyring_before = read_file(keyring)
        if module._diff:
            before_keys = read_fingerprints(run, gpg, scratch, keyring) if keyring_before else []
            keyring_diff = dict(
                before_header=keyring if keyring_before is not None else f"{keyring} (absent)",
                after_header=keyring,
                before=describe_keyring(keyring_before, before_keys),
                after=describe_keyring(wanted, [expected]),
            )

    source = to_bytes(params["source_content"])
    source_before = read_file(source_path)
    result["keyring_changed"] = ensure_file(module, keyring, wanted, keyring_before)
    result["source_changed"] = ensure_file(module, source_path, source, source_before)
    result["changed"] = result["keyring_changed"] or result["source_changed"]
    result["fingerprint"] = expected
    if module._diff:
        result["diff"] = [
            keyring_diff,
            dict(
                before_header=f"{source_path} (absent)" if source_before is None else source_path,
                after_header=source_path,
                before=to_text(source_before or b""),
                after=params["source_content"],
            ),
        ]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
