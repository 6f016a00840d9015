#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10 (no "str | None" at runtime).
from __future__ import annotations

DOCUMENTATION = r"""
module: model_sync
short_description: Put verified model weights in a directory, resumable, atomic and idempotent
version_added: 1.0.0
description:
  - Syncs a model (every file of a Hugging Face repository, a directory, another host's copy or
    an HTTP mirror) into O(dest) and checks every file against a sha256 manifest.
  - B(Verification.) The source's manifest gives each file's size and sha256 - the Hub's LFS
    sha256 (files stored in git are checked against their git blob id, and their sha256 is
    computed), the manifest of a mirror or of another host, or, for a plain directory or an rsync
    source without a manifest, a sha256 computed while the file is copied. Hashing happens in the
    copy loop, while bytes stream, not in a second pass (except for rsync, which writes its own
    files; they are hashed from the page cache it just filled).
  - B(Atomic.) Bytes go to a partial file under C(<dest>/.llmops-partial/). A complete partial is
    checked (size and hash), fsync'ed, given its owner, mode C(0644) and mtime, and renamed onto
    its final name. No file ever has a final name before it verified. When every file is in
    place, the manifest C(<dest>/.llmops-manifest.json) is written, last and atomically.
  - B(Resumable.) A killed run, a lost connection or a full disk leaves partial files and a
    journal of the files already placed; the next run keeps the placed files and continues each
    partial from its length (its prefix is hashed again to rebuild the hash state, then the
    source continues from that offset - a Range request, a seek, rsync's C(--append-verify)).
    A partial is keyed by the content it is meant to become, so a partial of an older revision is
    never completed with newer bytes.
  - B(Fast when nothing changed.) With O(verify=fast) a file whose size and mtime still match the
    manifest is trusted without reading it, so an already synced model reports C(changed=false)
    in about the time of a stat() per file. O(verify=full) rehashes every file in parallel and
    repairs any that differ.
  - B(Existing files are adopted.) A file already in O(dest) without a manifest entry (a model
    downloaded by hand) is hashed; if it matches the source it is kept, not downloaded again.
  - B(Space.) Free space on the destination file system is checked against the bytes still to
    write (less what partial files already hold) plus O(min_free_bytes) before anything is
    written; the module fails otherwise.
  - Files that an earlier sync wrote and the source no longer lists are removed; files the
    module never wrote (not in its manifest) are left alone.
  - B(Progress.) Run as a task, the module's action plugin starts it asynchronously and prints
    bytes, rate and ETA on the controller every O(progress_interval) seconds while it runs. A
    dest that already holds a manifest is first synced by one plain module run (see
    O(defer_long_work)), so a model already in place costs what any task costs.
author:
  - llmops.gpu_serving contributors
options:
  dest:
    description:
      - Model directory on the host. Created (mode C(0755), owned by O(owner)/O(group)) when
        missing.
    type: path
    required: true
  state:
    description:
      - V(present) syncs the model into O(dest).
      - V(absent) removes what model_sync wrote there and nothing else - the files its manifest
        records (when they are still the files it placed, with the same size and mtime), its partial
        area and the manifest - then the directories that left empty, O(dest) included. Files it
        did not write stay, and are returned in RV(kept). O(source) is not needed.
    type: str
    choices: [present, absent]
    default: present
  base_dir:
    description:
      - The model base directory. When set, O(dest) must be inside it (after resolving symbolic
        links), or the module fails before it reads or writes anything; existing directories
        below it are given O(owner), O(group) and mode C(0755).
      - When empty, an existing O(dest) directory keeps its owner and mode (only directories the
        module creates get them), so that a dest such as C(/srv) is never re-owned.
      - A system directory (C(/), C(/etc), C(/home), C(/srv), C(/var/lib), anything under
        C(/usr), C(/etc), C(/boot) ...), or a link to one, is refused as O(base_dir).
      - Inside O(dest) no symbolic link is followed - a directory that is a link fails the sync
        naming it, a file that is a link is replaced by the real file - so a link planted by
        the owner of the model directory cannot lead a chmod, chown, write or removal out.
    type: path
  source:
    description:
      - Required with O(state=present).
      - Where the model comes from, one of
      - C(hf://<org>/<name>[@<revision>]), a Hugging Face Hub repository (through the
        huggingface_hub client, see notes); the revision may also be given in O(revision).
      - An absolute path on the host (a mounted share, a pre-staged disk, a Hub cache snapshot
        directory). If it holds a model_sync manifest, its sha256s are the expected values.
      - C(rsync://[user@]host[:port]/module/path) (an rsync daemon) or C([user@]host:/path)
        (rsync over SSH with keys, BatchMode).
      - C(https://mirror/base) or C(http://...), a web server that serves a synced model
        directory, manifest included.
    type: str
  revision:
    description:
      - Hub branch, tag or commit for C(hf://) sources. Empty follows the default branch. The
        commit actually synced is returned in RV(revision) and written to the manifest.
    type: str
    default: ""
  verify:
    description:
      - V(fast) trusts a file whose size and mtime match the manifest.
      - V(full) rehashes every file (in parallel, O(workers)) and repairs what differs.
    type: str
    choices: [fast, full]
    default: fast
  include:
    description:
      - Shell patterns of the paths to sync (fnmatch on the whole relative path, like
        huggingface_hub's allow_patterns). Empty syncs every file.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Shell patterns of the paths to leave out, for example C(original/*).
    type: list
    elements: str
    default: []
  owner:
    description:
      - User that owns the files and directories the module writes (name or uid). Files and
        directories in place are given this owner too. Empty keeps the user running the module.
    type: str
  group:
    description:
      - Group of the files and directories (name or gid). Empty keeps the default group.
    type: str
  min_free_bytes:
    description:
      - Bytes that must remain free on the destination file system after the missing bytes are
        written. The sync is refused, before writing anything, when they would not.
    type: int
    default: 0
  workers:
    description:
      - Files hashed or copied in parallel. V(0) uses the number of CPUs (and at least 8 for
        network sources, which are latency-bound).
    type: int
    default: 0
  timeout:
    description:
      - Seconds without progress after which a network read (Hub, HTTP, rsync I/O) fails.
    type: int
    default: 60
  hf_token:
    description:
      - Hugging Face token for gated or private repositories. Empty uses C(HF_TOKEN) from the
        module's environment (or the client's stored token), if any.
    type: str
  hf_endpoint:
    description:
      - Hub endpoint, for a mirror of the Hub (what C(HF_ENDPOINT) sets). Empty uses the public
        Hub or C(HF_ENDPOINT) from the environment.
    type: str
    default: ""
  rsync_password:
    description:
      - Password for an rsync daemon source (C(RSYNC_PASSWORD)).
    type: str
  http_token:
    description:
      - Token for an http(s) source, sent as an C(Authorization) header of type C(Bearer). The
        model_sync role's fan-out server on the source host answers only requests that carry
        the token it was started with.
    type: str
  source_manifest:
    description:
      - A manifest (the parsed content of another host's C(.llmops-manifest.json)) to use as the
        list of expected files instead of asking the source. Used by the model_sync role for
        fan-out, so that every host checks against the manifest the first host wrote after it
        verified the download; also means a host that is already in sync never contacts the
        source.
    type: dict
  progress_file:
    description:
      - File the module rewrites about once a second with its progress (JSON). The action plugin
        sets it; leave it unset when calling the module directly.
    type: path
  progress:
    description:
      - Action plugin. Run the module asynchronously and print its progress on the controller.
        V(false) runs it like any module. Ignored in check mode and when the task has C(async).
    type: bool
    default: true
  defer_long_work:
    description:
      - Action plugin (internal). Return RV(deferred=true) at once, having written nothing, when
        the sync has files to fetch or hash; otherwise sync as usual. The plugin runs a sync
        this way first, so a model already in place costs one plain module run, and only a sync
        with work to do is started asynchronously with progress.
    type: bool
    default: false
  progress_interval:
    description:
      - Action plugin. Seconds between two progress lines.
    type: int
    default: 10
  sync_timeout:
    description:
      - Action plugin. Seconds the asynchronous run may take before it is abandoned as failed.
    type: int
    default: 86400
attributes:
  action:
    support: full
    details:
      - The action plugin runs the module asynchronously to show progress; the module also runs
        on its own.
  async:
    support: full
  check_mode:
    support: full
    details:
      - Lists the source, compares, and hashes what O(verify) or adoption requires (read only),
        then reports what would be transferred or removed and the space check, writing nothing.
  diff_mode:
    support: full
    details:
      - One line per file added, replaced or removed.
  platform:
    platforms: posix
notes:
  - C(hf://) sources need the C(huggingface_hub) client importable by the Python that runs the
    module. The llmops.gpu_serving.model_sync role installs it into a virtualenv and sets
    C(ansible_python_interpreter) to that virtualenv for this task. Only the client's public API
    is used - C(HfApi.model_info(files_metadata=True)) resolves the revision (branch, tag or
    commit) to a commit and gives each file's sha256, C(HfApi.auth_check) refuses a gated
    repository with the Hub's own reason before anything is written, and files stream from
    C(hf_hub_url) of that commit through the client's session (C(get_session)), hashed as they
    arrive and resumed with a Range request. When C(hf_xet) is installed, Xet-backed files
    (C(HfApi.get_paths_info)) are downloaded by C(hf_hub_download), which uses it, and checked
    against the Hub's sha256 right after, before they get their final names.
  - O(timeout) bounds every Hub request too (seconds without an answer or a byte); a stalled
    response is resumed twice before the file fails.
  - A local source file that changes while it is copied (size, mtime, ctime or inode differ
    before and after) is copied again, up to 3 times, and never placed torn. A manifest read
    from a source (a mirror, another host, O(source_manifest)) must give every file a sha256.
  - Run as a task, the action plugin notices within a minute a job that died with its async
    wrapper (killed, out of memory, a reboot - the module's process is gone and no result was
    written) instead of waiting for O(sync_timeout).
  - rsync sources need C(rsync) on the host.
  - Run one sync per O(dest) at a time; a second run on the same directory fails instead of
    interleaving writes.
seealso:
  - name: huggingface_hub file download
    description: The client functions used for C(hf://) sources.
    link: https://huggingface.co/docs/huggingface_hub/package_reference/file_download
"""

EXAMPLES = r"""
- name: Sync Qwen3-30B-A3B from the Hub, pinned to a commit
  llmops.gpu_serving.model_sync:
    source: hf://Qwen/Qwen3-30B-A3B
    revision: ad44e777bcd18fa416d9da3bd8f70d33ebb85d39
    dest: /home/llm/model/qwen/qwen3-30b-a3b
    owner: llm
    group: llm
    min_free_bytes: "{{ 50 * 1024 ** 3 }}"
  vars:
    ansible_python_interpreter: /opt/llmops/model-sync/bin/python

- name: Copy a pre-staged model from an NFS share, rehashing everything
  llmops.gpu_serving.model_sync:
    source: /mnt/models/qwen3-30b-a3b
    dest: /home/llm/model/qwen/qwen3-30b-a3b
    verify: full

- name: Pull from an internal mirror, safetensors and configs only
  llmops.gpu_serving.model_sync:
    source: https://models.example.internal/qwen/qwen3-30b-a3b
    dest: /home/llm/model/qwen/qwen3-30b-a3b
    include: ["*.safetensors", "*.json", "*.txt"]
  register: model_sync_result

- name: Show what a sync would transfer
  llmops.gpu_serving.model_sync:
    source: rsync://cache01/models/qwen/qwen3-30b-a3b
    dest: /home/llm/model/qwen/qwen3-30b-a3b
  check_mode: true
  diff: true
"""

RETURN = r"""
dest:
  description: The model directory.
  returned: always
  type: str
  sample: /home/llm/model/qwen/qwen3-30b-a3b
source:
  description: The source as given.
  returned: always
  type: str
  sample: hf://Qwen/Qwen3-30B-A3B
revision:
  description:
    - The Hub commit that was synced (the resolved sha of a branch or tag), or the revision
      recorded in a mirror's or another host's manifest; empty for sources without one.
  returned: when the source was listed
  type: str
  sample: ad44e777bcd18fa416d9da3bd8f70d33ebb85d39
manifest:
  description: Path of the manifest the module writes in O(dest).
  returned: always
  type: str
  sample: /home/llm/model/qwen/qwen3-30b-a3b/.llmops-manifest.json
files_total:
  description: Files of the model (after O(include)/O(exclude)).
  returned: when the source was listed
  type: int
  sample: 25
bytes_total:
  description: Size of the model in bytes.
  returned: when the source was listed
  type: int
  sample: 61064590336
files_transferred:
  description: Files fetched, verified and placed by this run (in check mode, 0; see RV(transfer)).
  returned: when the source was listed
  type: int
  sample: 16
bytes_transferred:
  description: Bytes fetched by this run (bytes already in resumed partial files not counted).
  returned: when the source was listed
  type: int
  sample: 61064590336
bytes_resumed:
  description: Bytes of partial files left by an interrupted run that this run continued.
  returned: when the source was listed
  type: int
  sample: 2147483648
bytes_to_transfer:
  description: Bytes that had to be fetched, as planned before the transfer (also in check mode).
  returned: when the source was listed
  type: int
  sample: 61064590336
files_to_transfer:
  description: Number of files in RV(transfer).
  returned: when the source was listed
  type: int
  sample: 16
transfer:
  description: Paths that were (in check mode, would be) fetched.
  returned: when the source was listed
  type: list
  elements: str
  sample: ["model-00001-of-00016.safetensors"]
remove:
  description: Paths an earlier sync wrote that the source no longer lists, removed.
  returned: when the source was listed
  type: list
  elements: str
  sample: []
files_verified:
  description: Files hashed in place (all with O(verify=full); otherwise files to adopt).
  returned: when the source was listed
  type: int
  sample: 0
files_adopted:
  description: Files found in place without a manifest entry whose hash matched the source.
  returned: when the source was listed
  type: int
  sample: 0
files_repaired:
  description:
    - Files in place whose content no longer matched their hash (O(verify=full)), fetched again.
  returned: when the source was listed
  type: int
  sample: 0
deferred:
  description:
    - With O(defer_long_work), true when the sync had files to fetch or hash and did nothing.
  returned: when deferred
  type: bool
  sample: true
removed:
  description:
    - With O(state=absent), the files model_sync had written that were (in check mode, would
      be) removed.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["model-00001-of-00016.safetensors"]
kept:
  description:
    - With O(state=absent), recorded files that were left because they changed since model_sync
      placed them (another size or mtime, or no longer a regular file).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: []
seconds:
  description: Wall time of the module run.
  returned: when O(state=present)
  type: float
  sample: 143.2
throughput:
  description: Bytes per second of the transfer phase (0 when nothing was transferred).
  returned: when O(state=present)
  type: float
  sample: 426554321.0
"""

import contextlib
import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_sync_run import (
    SyncError,
    remove_model,
    sync_model,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.model_transfer import Ownership


def resolve_owner(module: AnsibleModule) -> Ownership:
    uid = gid = -1
    owner, group = module.params["owner"], module.params["group"]
    try:
        if owner:
            uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        if module.check_mode:
            # A play that creates the user first has not created it in check mode.
            module.warn(f"owner {owner!r} or group {group!r} does not exist (yet) on the host")
            return Ownership()
        module.fail_json(msg=f"owner {owner!r} or group {group!r} does not exist on the host")
    return Ownership(uid, gid)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", default="present", choices=["present", "absent"]),
            base_dir=dict(type="path"),
            dest=dict(type="path", required=True),
            source=dict(type="str"),
            revision=dict(type="str", default=""),
            verify=dict(type="str", default="fast", choices=["fast", "full"]),
            include=dict(type="list", elements="str", default=[]),
            exclude=dict(type="list", elements="str", default=[]),
            owner=dict(type="str"),
            group=dict(type="str"),
            min_free_bytes=dict(type="int", default=0),
            workers=dict(type="int", default=0),
            timeout=dict(type="int", default=60),
            hf_token=dict(type="str", no_log=True),
            hf_endpoint=dict(type="str", default=""),
            rsync_password=dict(type="str", no_log=True),
            http_token=dict(type="str", no_log=True),
            source_manifest=dict(type="dict"),
            progress_file=dict(type="path"),
            progress=dict(type="bool", default=True),
            defer_long_work=dict(type="bool", default=False),
            progress_interval=dict(type="int", default=10),
            sync_timeout=dict(type="int", default=86400),
        ),
        required_if=[("state", "present", ["source"])],
        supports_check_mode=True,
    )
    params = module.params
    if not os.path.isabs(params["dest"]):
        module.fail_json(msg=f"dest must be an absolute path (got {params['dest']!r})")
    for name in ("min_free_bytes", "workers", "timeout"):
        if params[name] < 0:
            module.fail_json(msg=f"{name} must be 0 or more (got {params[name]})")
    if params["base_dir"] and not os.path.isabs(params["base_dir"]):
        module.fail_json(msg=f"base_dir must be an absolute path (got {params['base_dir']!r})")
    if params["state"] == "absent":
        try:
            module.exit_json(**remove_model(params, module.check_mode))
        except SyncError as err:
            module.fail_json(msg=str(err), **err.result)
    owner = resolve_owner(module)
    try:
        result = sync_model(params, module.check_mode, owner, log=module.log)
    except SyncError as err:
        module.fail_json(msg=str(err), **err.result)
    finally:
        if params["progress_file"]:
            with contextlib.suppress(OSError):
                os.unlink(params["progress_file"])
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
