#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10 (no "str | None" at runtime).
from __future__ import annotations

DOCUMENTATION = r"""
module: docker_daemon_json
short_description: Merge keys into Docker's daemon.json without touching the others
version_added: 1.0.0
description:
  - Sets the keys given in O(config) in Docker's C(daemon.json) and deletes the paths given in
    O(remove), keeping every other key as it is. Objects are merged key by key at every depth,
    so setting C(runtimes.nvidia) keeps other runtimes and setting C(log-opts.max-size) keeps
    other log options. Lists and scalars in O(config) replace the value on disk.
  - Meant for several roles that share one file, each owning some keys (for example
    C(log-driver)/C(log-opts) from a Docker role and C(runtimes.nvidia) from an NVIDIA Container
    Toolkit role).
  - Reports a change only when the merged result differs in meaning from the file on disk; key
    order, indentation and whitespace are ignored. Only then is the file written, atomically,
    as JSON with 4-space indentation and sorted keys (the layout C(nvidia-ctk runtime configure)
    writes).
  - An existing file that is not valid JSON, or whose top level is not an object, makes the
    module fail with the parser's line and column; the file is left untouched.
  - A missing file is created (with mode C(0644) unless O(mode) says otherwise); a missing parent
    directory is created with mode C(0755). When the merged result is empty a missing file
    stays missing.
  - The module does not restart Docker. Register the result and notify a handler when
    RV(changed_keys) is not empty.
author:
  - llmops.gpu_serving contributors
options:
  path:
    description:
      - The daemon configuration file. A symbolic link is followed and its target is written.
    type: path
    default: /etc/docker/daemon.json
  config:
    description:
      - Keys to set, as they appear in C(daemon.json). Nested objects are merged into what is on
        disk; everything else replaces the value on disk.
      - An empty object merges nothing; use O(remove) to delete a key.
    type: dict
    default: {}
  remove:
    description:
      - Dotted paths to delete, such as C(runtimes.nvidia) or C(default-runtime). A path that is
        not present is ignored. Key names that contain dots are matched against the keys that
        exist, so C(runtimes.io.containerd.runsc.v1) finds that runtime.
      - An object left empty by a removal is deleted as well.
      - A path that is also set in O(config) (or lies inside or above one) makes the module fail.
    type: list
    elements: str
    default: []
  validate:
    description:
      - Before a changed file is written, run C(dockerd --validate --config-file) on the merged
        result (Docker 23 and later), in check mode too; a file dockerd refuses (a directive no
        option matches, a value of the wrong JSON type, a JSON syntax error) fails the module
        with dockerd's reason and the file on disk is left as it was.
      - When the host has no dockerd, its dockerd has no C(--validate) (Docker 20.10) or it does
        not answer within 30 s, the known rules alone check the keys the update changes (the
        JSON type of the keys dockerd decodes strictly, a plain C(tcp://) listener);
        RV(validated_by) says which.
    type: bool
    default: true
  dockerd_path:
    description:
      - The dockerd that validates the file. A bare name is looked up on the PATH, then in
        C(/usr/sbin) and C(/usr/bin).
    type: str
    default: dockerd
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.files
  - ansible.builtin.backup
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Both sides of the diff are rendered the same way, so it shows changes of meaning, not
        the reformatting of a hand-written file.
  platform:
    platforms: posix
  safe_file_operations:
    support: full
  vault:
    support: none
notes:
  - When C(default-runtime) in the result names a runtime that is neither in C(runtimes) nor
    built in (C(runc), C(io.containerd.runc.v2)), the module warns, because dockerd refuses to
    start with such a file; it does not fail, so a later task may add the runtime.
  - A key repeated inside one object of the existing file is refused like invalid JSON, because
    which value dockerd would use is a guess and rewriting the file would drop the other.
seealso:
  - name: Docker daemon configuration file
    description: The keys dockerd reads from daemon.json.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Rotate container logs
  llmops.gpu_serving.docker_daemon_json:
    config:
      log-driver: json-file
      log-opts:
        max-size: 100m
        max-file: "5"
  register: docker_daemon_json_logs
  notify: Restart docker

- name: Register the NVIDIA runtime as nvidia-ctk would
  llmops.gpu_serving.docker_daemon_json:
    config:
      runtimes:
        nvidia:
          args: []
          path: nvidia-container-runtime
    backup: true

- name: Stop making nvidia the default runtime
  llmops.gpu_serving.docker_daemon_json:
    remove:
      - default-runtime
"""

RETURN = r"""
changed_keys:
  description:
    - Dotted paths whose value was added, changed or removed, sorted. Empty when the file
      already meant the same.
  returned: always
  type: list
  elements: str
  sample: ["log-opts.max-file", "runtimes.nvidia"]
config:
  description:
    - The whole configuration after the merge (what the file holds, or would hold in check mode).
  returned: always
  type: dict
  sample:
    log-driver: json-file
    log-opts:
      max-size: 100m
    runtimes:
      nvidia:
        args: []
        path: nvidia-container-runtime
path:
  description: The file that was read and, on change, written (symbolic links resolved).
  returned: always
  type: str
  sample: /etc/docker/daemon.json
validated_by:
  description:
    - What checked the merged file before it was written; C(dockerd --validate) or
      C(known rules) (with the reason dockerd could not), null when nothing changed.
  returned: always
  type: str
  sample: dockerd --validate
backup_file:
  description: The backup copy of the previous file.
  returned: changed and O(backup) is true and the file existed
  type: str
  sample: /etc/docker/daemon.json.2716.2026-01-05@10:12:01~
"""

import os
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.llmops.gpu_serving.plugins.module_utils.docker_daemon_json import (
    DOCKERD_VALIDATE_TIMEOUT_S,
    DaemonJsonError,
    dockerd_validate_argv,
    dockerd_validation,
    plan_daemon_json_update,
)

NEW_FILE_MODE = "0644"
NEW_DIRECTORY_MODE = 0o755


def read_current_text(module: AnsibleModule, path: str) -> str | None:
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory, not a daemon.json file", path=path)
    try:
        with open(path, "rb") as handle:
            # utf-8-sig: files saved by some Windows editors start with a BOM that json refuses.
            return handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        module.fail_json(msg=f"{path}: not UTF-8 text: {err}", path=path)
    except OSError as err:
        module.fail_json(msg=f"cannot read {path}: {to_native(err)}", path=path)
    return None  # not reached: fail_json exits


def write_atomically(module: AnsibleModule, path: str, content: str) -> None:
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=NEW_DIRECTORY_MODE)
    # The temporary file lives beside the target so that the final rename stays on one
    # filesystem and dockerd never sees a half-written file.
    handle, temp_path = tempfile.mkstemp(prefix=".daemon.json.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(content.encode("utf-8"))
            temp_file.flush()
            os.fsync(temp_file.fileno())
        module.atomic_move(temp_path, path, unsafe_writes=module.params["unsafe_writes"])
    finally:
        module.cleanup(temp_path)


def validate_with_dockerd(module: AnsibleModule, content: str) -> dict[str, str]:
    """Run dockerd --validate on ``content`` in a private temporary file; classify the answer."""
    dockerd = module.params["dockerd_path"]
    if os.sep not in dockerd:
        found = module.get_bin_path(dockerd, opt_dirs=["/usr/sbin", "/usr/bin"])
        if not found:
            return {"verdict": "unavailable", "message": f"no {dockerd} on this host"}
        dockerd = found
    handle, temp_path = tempfile.mkstemp(prefix="daemon.json.", suffix=".json", dir=module.tmpdir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
            temp_file.write(content)
        try:
            done = subprocess.run(
                dockerd_validate_argv(dockerd, temp_path),
                capture_output=True,
                text=True,
                errors="replace",
                timeout=DOCKERD_VALIDATE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return dockerd_validation(None, "", "")
        except OSError as err:
            return {"verdict": "unavailable", "message": f"{dockerd}: {to_native(err)}"}
        return dockerd_validation(done.returncode, done.stdout, done.stderr)
    finally:
        module.cleanup(temp_path)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            config=dict(type="dict", default={}),
            remove=dict(type="list", elements="str", default=[]),
            backup=dict(type="bool", default=False),
            validate=dict(type="bool", default=True),
            dockerd_path=dict(type="str", default="dockerd"),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = os.path.realpath(module.params["path"])
    current_text = read_current_text(module, path)
    existed = current_text is not None

    try:
        plan = plan_daemon_json_update(
            current_text, module.params["config"], module.params["remove"], source=path
        )
    except DaemonJsonError as err:
        module.fail_json(msg=str(err), path=path)

    for warning in plan["warnings"]:
        module.warn(warning)

    result = dict(
        changed=plan["changed"],
        path=path,
        config=plan["after"],
        changed_keys=plan["changed_keys"],
        validated_by=None,
    )
    if plan["changed"]:
        result["validated_by"] = "known rules"
        if module.params["validate"]:
            checked = validate_with_dockerd(module, plan["content"])
            if checked["verdict"] == "refused":
                module.fail_json(
                    msg=f"{path}: not written, dockerd --validate refuses the merged file: "
                    f"{checked['message']}",
                    **result,
                )
            if checked["verdict"] == "ok":
                result["validated_by"] = "dockerd --validate"
            else:
                result["validated_by"] = f"known rules ({checked['message']})"
    content_diff = dict(
        plan["diff"],
        before_header=path if existed else f"{path} (absent)",
        after_header=path,
    )

    if plan["changed"] and not module.check_mode:
        if module.params["backup"] and existed:
            result["backup_file"] = module.backup_local(path)
        try:
            write_atomically(module, path, plan["content"])
        except Exception as err:  # atomic_move raises bare Exception on failure
            module.fail_json(msg=f"cannot write {path}: {to_native(err)}", path=path, **result)

    attribute_diff: dict = dict(before={}, after={})
    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params, path=path)
        if not existed and file_args["mode"] is None:
            file_args["mode"] = NEW_FILE_MODE
        result["changed"] = module.set_fs_attributes_if_different(
            file_args, result["changed"], attribute_diff
        )

    if module._diff:
        diffs = [content_diff]
        if attribute_diff["before"] or attribute_diff["after"]:
            diffs.append(attribute_diff)
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
