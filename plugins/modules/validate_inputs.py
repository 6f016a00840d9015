#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the action plugin of the same name does the work on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: validate_inputs
short_description: Check every role variable of the collection before any host is touched
version_added: 1.0.0
description:
  - Checks the variables the play defines for the collection's roles on the controller, without
    connecting to the host, so that bad input stops a run before anything changes.
  - Types and choices come from each role's C(meta/argument_specs.yml), all its entry points
    (so the C(vllm_server_benchmark_*) variables of C(playbooks/benchmark.yml) too; an option
    without a default may be null, which leaves it unset), and values are converted
    as the argument spec converts them (C(-e vllm_server_port=8080) and INI inventories give
    strings). Ranges, formats and rules across variables are added (ports, shares, versions,
    paths, model sources, daemon.json options, the container toolkit's CVE-2025-23266 floor,
    tensor parallel size against C(nvidia_driver_expected_gpus), and more).
  - All violations are reported at once, one line each, naming the variable, the value and what
    is accepted. A variable whose name is close to a known one gets a warning naming it.
author:
  - llmops.gpu_serving contributors
options:
  roles:
    description:
      - Roles whose variables are checked. Empty checks all six.
    type: list
    elements: str
    default: []
attributes:
  action:
    support: full
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: all
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
"""

EXAMPLES = r"""
- name: Validate the variables of every role before changing anything
  llmops.gpu_serving.validate_inputs:
"""

RETURN = r"""
msg:
  description: On failure, one line per variable that is not accepted, under a header.
  returned: always
  type: str
  sample: "vllm_server_port must be a TCP port 1-65535; got 0"
"""
