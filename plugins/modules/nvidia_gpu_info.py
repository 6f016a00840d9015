#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Deferred annotations: targets may run a Python older than 3.10 (no "str | None" at runtime).
from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_gpu_info
short_description: Report the NVIDIA GPUs, driver and CUDA version that nvidia-smi sees
version_added: 1.0.0
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) for the GPUs and plain
    C(nvidia-smi) for the CUDA version its header prints, and returns both as facts under
    C(ansible_facts.nvidia_gpu_info).
  - Changes nothing on the host.
  - When nvidia-smi is missing or cannot talk to the driver the module fails, saying which case
    it is (RV(kind)), what nvidia-smi printed and what to do about it (RV(hint)). A
    C(Driver/library version mismatch) after a driver upgrade means the host needs a reboot.
  - With O(expected_driver_version) or O(expected_gpu_count) it also fails when the host
    differs, naming what was expected and what was found.
author:
  - llmops.gpu_serving contributors
options:
  nvidia_smi_path:
    description:
      - The nvidia-smi binary. By default C(nvidia-smi) is looked up in E(PATH) and the usual
        system directories.
    type: path
  expected_driver_version:
    description:
      - The full driver version every GPU must report, such as C(550.144.03). Any GPU with
        another version makes the module fail with both versions in the message.
    type: str
  expected_gpu_count:
    description:
      - How many GPUs nvidia-smi must list.
    type: int
  timeout:
    description:
      - Seconds each nvidia-smi call may take before it is killed and the module fails with
        C(kind=timeout). A hung driver or GPU makes nvidia-smi block forever.
    type: float
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.facts
  - llmops.gpu_serving.read_only
attributes:
  facts:
    support: full
notes:
  - Fields that a card does not support (for example C(mig.mode.current) on a GeForce card)
    are returned as null.
  - RV(gpus[].memory_total_mib) is what nvidia-smi prints; frameworks that ask CUDA for the
    total see somewhat less (a 22528 MiB card shows about 21.66 GiB in vLLM).
seealso:
  - name: nvidia-smi documentation
    description: The fields of C(--query-gpu) and the exit codes.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Read the GPUs
  llmops.gpu_serving.nvidia_gpu_info:
  register: gpu_info

- name: Check the driver the role installed, after the reboot
  llmops.gpu_serving.nvidia_gpu_info:
    expected_driver_version: "550.144.03"
    expected_gpu_count: 4

- name: Show the smallest card
  ansible.builtin.debug:
    msg: "{{ ansible_facts.nvidia_gpu_info.summary.memory_min_gib }} GiB"
"""

RETURN = r"""
driver_version:
  description: The driver version in the nvidia-smi header.
  returned: success
  type: str
  sample: "550.144.03"
cuda_version:
  description:
    - The newest CUDA version the driver supports, from the nvidia-smi header; null when the
      header has none.
  returned: success
  type: str
  sample: "12.4"
nvidia_smi_version:
  description:
    - The version of the nvidia-smi binary itself; it can differ from the driver's, for example
      inside a container.
  returned: success
  type: str
  sample: "550.144.03"
gpu_count:
  description: How many GPUs nvidia-smi lists.
  returned: success
  type: int
  sample: 4
gpus:
  description: One entry a GPU, in nvidia-smi's order.
  returned: success
  type: list
  elements: dict
  contains:
    index:
      description: nvidia-smi's index of the GPU.
      type: int
    name:
      description: Product name.
      type: str
      sample: NVIDIA GeForce RTX 2080 Ti
    uuid:
      description: GPU UUID.
      type: str
    pci_bus_id:
      description: PCI bus id as domain:bus:device.function.
      type: str
      sample: "00000000:01:00.0"
    driver_version:
      description: Driver version this GPU reports.
      type: str
    memory_total_mib:
      description: Total memory as nvidia-smi prints it, in MiB.
      type: int
      sample: 22528
    memory_total_gib:
      description: The same in GiB, two decimals.
      type: float
      sample: 22.0
    memory_used_mib:
      description: Memory in use, in MiB.
      type: int
    memory_used_gib:
      description: Memory in use, in GiB.
      type: float
    compute_capability:
      description: CUDA compute capability, as text.
      type: str
      sample: "7.5"
    persistence_mode:
      description: Whether persistence mode is on.
      type: bool
    mig_mode:
      description: Current MIG mode, C(Enabled) or C(Disabled); null on cards without MIG.
      type: str
summary:
  description: Totals over all GPUs.
  returned: success
  type: dict
  contains:
    count:
      description: Number of GPUs.
      type: int
    names:
      description: Distinct product names.
      type: list
      elements: str
    memory_total_mib:
      description: Sum of all cards' memory, MiB.
      type: int
    memory_total_gib:
      description: The same in GiB.
      type: float
    memory_min_mib:
      description: Memory of the smallest card, MiB (what tensor parallelism is bounded by).
      type: int
    memory_min_gib:
      description: The same in GiB.
      type: float
    compute_capabilities:
      description: Distinct compute capabilities, lowest first.
      type: list
      elements: str
    driver_versions:
      description: Distinct driver versions the GPUs report.
      type: list
      elements: str
ansible_facts:
  description: Everything above under C(nvidia_gpu_info).
  returned: success
  type: dict
  contains:
    nvidia_gpu_info:
      description: driver_version, cuda_version, nvidia_smi_version, gpu_count, gpus and summary.
      type: dict
kind:
  description:
    - Why nvidia-smi failed, C(not_installed), C(no_driver), C(version_mismatch), C(nvml_unknown),
      C(timeout) (it did not answer within O(timeout) seconds and was killed) or C(other).
  returned: failure
  type: str
  sample: version_mismatch
nvidia_smi_output:
  description: What nvidia-smi printed when it failed.
  returned: failure
  type: str
  sample: "Failed to initialize NVML: Driver/library version mismatch"
hint:
  description: What to do about the failure.
  returned: failure
  type: str
rc:
  description: nvidia-smi's exit code when it failed; null when it could not be run.
  returned: failure
  type: int
  sample: 18
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import (
    DEFAULT_TIMEOUT_S,
    NvidiaSmiError,
    classify_failure,
    gather_gpu_info,
    subprocess_runner,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "path"},
            "expected_driver_version": {"type": "str"},
            "expected_gpu_count": {"type": "int"},
            "timeout": {"type": "float", "default": DEFAULT_TIMEOUT_S},
        },
        supports_check_mode=True,
    )
    nvidia_smi = module.params["nvidia_smi_path"] or module.get_bin_path("nvidia-smi")
    if not nvidia_smi or not os.access(nvidia_smi, os.X_OK):
        failure = classify_failure(None, "", f"{nvidia_smi or 'nvidia-smi'}: not found")
        module.fail_json(
            msg=f"nvidia-smi: {failure['message']}. {failure['hint']}",
            kind=failure["kind"],
            rc=None,
            nvidia_smi_output="",
            hint=failure["hint"],
        )

    try:
        # LC_ALL=C: nvidia-smi's messages are matched by their English text.
        run = subprocess_runner(module.params["timeout"], {"LC_ALL": "C"})
    except ValueError as err:
        module.fail_json(msg=f"nvidia_gpu_info: {err}")

    try:
        info = gather_gpu_info(
            run,
            nvidia_smi,
            expected_driver_version=module.params["expected_driver_version"],
            expected_gpu_count=module.params["expected_gpu_count"],
        )
    except NvidiaSmiError as err:
        failure = err.failure
        module.fail_json(
            msg=f"nvidia-smi failed ({failure['kind']}): {failure['message']}. {failure['hint']}",
            kind=failure["kind"],
            rc=failure["rc"],
            nvidia_smi_output=failure["output"],
            nvml_library_version=failure["nvml_library_version"],
            hint=failure["hint"],
        )
    except ValueError as err:
        module.fail_json(msg=str(err))

    module.exit_json(changed=False, ansible_facts={"nvidia_gpu_info": info}, **info)


if __name__ == "__main__":
    main()
