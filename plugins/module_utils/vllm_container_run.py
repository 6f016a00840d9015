# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run of the vllm_container module: plan, compare, then the state's Docker steps.

Private module_utils of llmops.gpu_serving: the API may change between releases.

    plan (image, host facts, version, flags, desired container) -> compare with the existing
    container -> the state:
      started: unchanged and running -> judge it by its probes and startup log; otherwise
               (stop here in check mode) park the current one (stopped, renamed
               <name>-llmops-previous) -> create and start the new one without a restart
               policy -> wait until it serves -> verify its memory report -> commit (the
               previous one removed, or kept for state committed) or fail_new: the failed one
               removed, the parked one restored and waited for (rolled_back)
      present/stopped/absent/committed/rolled_back: create, stop, remove, restore

Docker is reached only through module_utils/vllm_docker.py's client interface, the host's
commands through ``run_command``/``get_bin_path`` and the API through ``probe``, so the state
machine is unit-tested with fakes (tests/unit/plugins/module_utils/test_vllm_container_run.py).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ansible_collections.llmops.gpu_serving.plugins.module_utils.nvidia_smi import (
    NvidiaSmiError,
    Runner,
    gather_gpu_info,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_cluster import (
    ClusterError,
    check_node_gpus,
    head_join_timeout,
    head_world_check,
    layout,
    member_failure,
    member_from_container,
    member_plan,
    rank_memory,
    served_names_from_args,
    wait_until_joined,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_container import (
    PREVIOUS_SUFFIX,
    actual_spec,
    check_chat_answer,
    check_tensor_parallel_size,
    compare_specs,
    compile_cache_mounts,
    desired_spec,
    display_spec,
    exposure_warning,
    image_env,
    memory_summary,
    parse_gpus,
    parse_ulimits,
    probe_address,
    published_endpoint,
    shutdown_timeout_of,
    smoke_proof,
    smoke_request,
    stop_timeout_for,
    verify_memory,
    visible_gpu_count,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_docker import (
    ContainerGone,
    DockerError,
    StartRefused,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_flags import (
    FlagError,
    build_vllm_args,
    check_block_size,
    detect_vllm_version,
    entrypoint_style,
    evaluate_cuda_requirement,
    mask_args,
    package_version_command,
    parse_package_version,
    parse_version,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_gpu_release import (
    wait_released,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_logs import (
    classify_message,
    parse_memory_report,
    startup_section,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_metrics import (
    RUNNING,
    live_load,
)
from ansible_collections.llmops.gpu_serving.plugins.module_utils.vllm_readiness import (
    LogFollower,
    failure_from_log,
    health_semantics,
    wait_until_ready,
)


class ModuleFailure(Exception):
    """Ends the run with fail_json(msg, **details) after the cleanup the caller does."""

    def __init__(self, msg: str, **details: Any):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def _epoch_seconds(stamp: str | None) -> int | None:
    """Docker's ``2026-11-25T04:39:33.454261614Z`` as whole epoch seconds (None if unreadable).

    Rounded down: the log API's ``since`` keeps the lines of that second.
    """
    if not stamp or stamp.startswith("0001-"):
        return None
    try:
        # timezone.utc, not datetime.UTC: targets may run a Python older than 3.11.
        moment = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=timezone.utc  # noqa: UP017
        )
    except ValueError:
        return None
    return int(moment.timestamp())


def _container_info(container) -> dict[str, Any] | None:
    if container is None:
        return None
    container.reload()
    return {"id": container.id, "name": container.name, "status": container.status}


# Seconds between two nvidia-smi queries while a failed container's GPU memory is released.
GPU_RELEASE_INTERVAL = 1.0
# Seconds between two reads of the old container's /metrics while it drains.
DRAIN_INTERVAL = 1.0
Probe = Callable[..., tuple[int | None, str]]


def _no_command(argv: list[str]) -> tuple[int, str, str]:
    raise OSError(f"no command runner was given to run {argv[0]}")


class VllmContainerRun:
    """One run of the module: the plan, the Docker steps, the wait and the verification.

    ``params`` are the module's (validated) options; ``client`` is a vllm_docker.DockerClient
    or a fake with its methods; ``run_command``/``get_bin_path`` run host commands as
    AnsibleModule's do; ``probe`` replaces the HTTP probe of the API (tests); ``clock`` and
    ``sleep`` drive every wait loop.
    """

    def __init__(
        self,
        params: dict[str, Any],
        check_mode: bool,
        client: Any,
        *,
        run_command: Runner = _no_command,
        get_bin_path: Callable[[str], str | None] = lambda name: None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.p = params
        self.check_mode = check_mode
        self.client = client
        self.run_command = run_command
        self.get_bin_path = get_bin_path
        if probe is not None:
            self._probe = probe  # type: ignore[method-assign]
        self.clock = clock
        self.sleep = sleep
        self.warnings: list[str] = []
        self.result: dict[str, Any] = {"changed": False, "rolled_back": False, "container": None}
        self.name = self.p["name"]
        self.previous_name = self.name + PREVIOUS_SUFFIX
        self.version: tuple[int, ...] | None = None
        # The cluster member this run plans (vllm_cluster.member_plan()), or None.
        self.cluster: dict[str, Any] | None = None
        self.served_override: list[str] | None = None

    # --- image and host facts ------------------------------------------------------------

    def _image(self):
        ref = self.p["image"]
        policy = self.p["pull"]
        image = self.client.image(ref)
        if policy == "never" and image is None:
            raise ModuleFailure(
                f"image {ref} is not on the host and pull is never", kind="docker_error"
            )
        if policy == "always" or image is None:
            if self.check_mode:
                self.result["image_pull"] = "would pull"
                if image is None:
                    self.result["changed"] = True
                return image
            try:
                image = self.client.pull(ref)
            except DockerError as err:
                raise ModuleFailure(f"cannot pull {ref}: {err}", kind="docker_error") from err
            self.result["image_pull"] = "pulled"
        return image

    def _host_facts(self) -> dict[str, Any]:
        facts = {
            "cuda_version": self.p["host_cuda_version"],
            "driver_version": self.p["host_driver_version"],
            "gpu_count": self.p["host_gpu_count"],
            "source": "options",
        }
        if facts["cuda_version"] and facts["driver_version"] and facts["gpu_count"] is not None:
            return facts
        smi = self._nvidia_smi()
        if not smi:
            return facts
        try:
            info = gather_gpu_info(self.run_command, smi)
        except (NvidiaSmiError, ValueError) as err:
            self.warnings.append(f"nvidia-smi could not report the host's GPUs: {err}")
            return facts
        facts["cuda_version"] = facts["cuda_version"] or info["cuda_version"]
        facts["driver_version"] = facts["driver_version"] or info["driver_version"]
        if facts["gpu_count"] is None:
            facts["gpu_count"] = info["gpu_count"]
        facts["source"] = "nvidia-smi"
        return facts

    def _nvidia_smi(self) -> str | None:
        return self.p["nvidia_smi_path"] or self.get_bin_path("nvidia-smi")

    def _package_version(self, image) -> str | None:
        """The vLLM package version inside ``image`` (a throwaway container, no network)."""
        try:
            output = self.client.run_output(
                image.id,
                package_version_command(),
                # No GPU: the NVIDIA runtime (a default runtime) then checks no CUDA floor.
                {"NVIDIA_VISIBLE_DEVICES": "void"},
            )
        except DockerError as err:
            self.warnings.append(f"could not read the vLLM package version of the image: {err}")
            return None
        return parse_package_version(output)

    # --- desired container ---------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        p = self.p
        image = self._image()
        attrs = image.attrs if image is not None else {}
        config = attrs.get("Config") or {}
        labels = config.get("Labels") or {}
        env_of_image = image_env(attrs)
        if p["vllm_version"]:
            version_text, version_source = p["vllm_version"], "option"
        else:
            version_text, version_source = detect_vllm_version(p["image"], labels, env_of_image)
            if version_text is None and image is not None:
                # A digest-only, :latest or private tag: ask the vLLM package inside the image.
                version_text = self._package_version(image)
                version_source = "vLLM package in the image" if version_text else None
        version = parse_version(version_text)
        self.version = version
        style = entrypoint_style(config.get("Entrypoint"), config.get("Cmd"))

        effective_env = dict(env_of_image)
        effective_env.update({str(k): str(v) for k, v in (p["env"] or {}).items()})
        host = self._host_facts()
        cuda = evaluate_cuda_requirement(
            effective_env, host["cuda_version"], host["driver_version"], p["host_gpu_brand"]
        )
        self.result["cuda"] = cuda
        if p["cuda_check"] and cuda["satisfied"] is False:
            raise ModuleFailure(
                f"image {p['image']} cannot run on this host: {cuda['reason']}",
                kind="cuda_driver",
                cuda=cuda,
            )
        if p["cuda_check"] and cuda["satisfied"] is None and cuda["requirement"]:
            self.warnings.append(f"CUDA floor not checked: {cuda['reason']}")

        errors = []
        if p["block_size"] is not None:
            errors.append(check_block_size(p["block_size"], version))
        visible = visible_gpu_count(parse_gpus(p["gpus"]), host["gpu_count"])
        if not p["gpus"] and visible == 0:
            visible = None  # no GPU requested: a CPU build or a test image; nothing to check
        if p["cluster"]:
            try:
                errors.append(
                    check_node_gpus(layout(p["cluster"], p["tensor_parallel_size"]), visible)
                )
            except ClusterError as err:
                errors.append(str(err))
        else:
            errors.append(check_tensor_parallel_size(p["tensor_parallel_size"], visible))
        errors = [error for error in errors if error]
        if errors:
            raise ModuleFailure("; ".join(errors), kind="bad_argument", errors=errors)

        options = dict(p)
        options["model"] = p["model"] or p["model_container_path"]
        try:
            built = build_vllm_args(options, version, style, p["on_unsupported_flag"])
        except FlagError as err:
            raise ModuleFailure(str(err), kind="bad_argument") from err
        self.warnings.extend(built["warnings"])
        exposed = exposure_warning(p["bind_address"], p["port"], p["api_key"], p["env"])
        if exposed:
            self.warnings.append(exposed)
        digests = attrs.get("RepoDigests") or []
        self.result["image"] = {
            "ref": p["image"],
            "id": image.id if image is not None else None,
            "digest": digests[0] if digests else None,
            "vllm_version": version_text,
            "vllm_version_source": version_source,
            "entrypoint_style": style,
        }
        args, entrypoint, env = built["args"], None, p["env"]
        if p["cluster"]:
            try:
                self.cluster = member_plan(
                    p["cluster"],
                    version,
                    p["tensor_parallel_size"],
                    built["args"],
                    image_entrypoint=config.get("Entrypoint"),
                    extra_args=p["extra_args"],
                    env=p["env"],
                )
            except ClusterError as err:
                raise ModuleFailure(str(err), kind="bad_argument") from err
            self.warnings.extend(self.cluster["warnings"])
            args, entrypoint, env = (self.cluster[key] for key in ("command", "entrypoint", "env"))
            self.result["cluster"] = {
                key: self.cluster[key] for key in ("layout", "backend", "entrypoint")
            }
        self.result["args"] = mask_args(args)
        self.result["dropped_flags"] = built["dropped"]
        image_id = image.id if image is not None else None
        desired = desired_spec(p, args, image_id, entrypoint=entrypoint, env=env)
        return {"desired": desired, "image": image, "image_env": env_of_image}

    def compare(self, container, plan: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        image_attrs: dict[str, Any] = {}
        image = plan["image"]
        if image is not None and container.attrs.get("Image") == image.id:
            image_attrs = image.attrs
        else:
            image_attrs = self.client.image_attrs(container.attrs.get("Image"))
        actual = actual_spec(container.attrs, image_attrs)
        return compare_specs(plan["desired"], actual, plan["image_env"])

    def _create(self, desired: dict[str, Any], *, restart_policy: str | None = None):
        """Create the container; ``restart_policy`` overrides the desired one for now."""
        p = self.p
        kwargs: dict[str, Any] = {
            "image": p["image"],
            "command": desired["command"],
            "name": self.name,
            "detach": True,
            "environment": desired["env"],
            "labels": desired["labels"],
        }
        volumes: dict[str, dict[str, str]] = {}
        if p["model_host_path"]:
            volumes[p["model_host_path"]] = {
                "bind": p["model_container_path"],
                "mode": "ro" if p["model_read_only"] else "rw",
            }
        for host, container in compile_cache_mounts(p).items():
            volumes[host] = {"bind": container, "mode": "rw"}
        if volumes:
            kwargs["volumes"] = volumes
        if desired["ports"]:
            kwargs["ports"] = {f"{p['container_port']}/tcp": (p["bind_address"], p["port"])}
        if desired["entrypoint"] is not None:
            kwargs["entrypoint"] = desired["entrypoint"]
        network = desired["network_mode"]
        if network in ("host", "bridge", "none") or str(network).startswith("container:"):
            kwargs["network_mode"] = network
        elif network:
            # A user-defined network: its DNS resolves the members by container name.
            kwargs["network"] = network
        if desired["runtime"]:
            kwargs["runtime"] = desired["runtime"]
        if desired["gpus"] is not None:
            kwargs["gpus"] = desired["gpus"]
        if desired["cpuset_cpus"]:
            kwargs["cpuset_cpus"] = desired["cpuset_cpus"]
        ulimits = parse_ulimits(p["ulimits"])
        if ulimits:
            kwargs["ulimits"] = ulimits
        if desired["ipc_mode"]:
            kwargs["ipc_mode"] = desired["ipc_mode"]
        if desired["shm_size"]:
            kwargs["shm_size"] = desired["shm_size"]
        policy = restart_policy or desired["restart_policy"]
        if policy != "no":
            kwargs["restart_policy"] = {"Name": policy, "MaximumRetryCount": 0}
        try:
            return self.client.create(kwargs)
        except DockerError as err:
            raise ModuleFailure(
                f"Docker refused to create {self.name}: {err}",
                kind=classify_message(str(err)) or "docker_error",
                proof=[str(err)],
            ) from err

    # --- readiness -----------------------------------------------------------------------

    def _probe(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = 3,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> tuple[int | None, str]:
        """GET ``path`` (POST ``body`` as JSON when given); (status or None, text).

        On the server this run plans, or on ``host``:``port`` (an old container's).
        """
        host = host or self.p["probe_host"] or probe_address(self.p["bind_address"])
        request = urllib.request.Request(
            f"http://{host}:{port or self._api_port()}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        if self.p["api_key"]:
            request.add_header("Authorization", f"Bearer {self.p['api_key']}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None, ""

    def _served_names(self) -> list[str]:
        """What /v1/models must list: the served names, else the model path as vLLM does."""
        if self.served_override:
            return self.served_override
        return self.p["served_model_name"] or [self.p["model"] or self.p["model_container_path"]]

    def _api_port(self) -> int:
        """Host networking publishes nothing: the server answers on its own port."""
        return self.p["container_port"] if self.p["network_mode"] == "host" else self.p["port"]

    def wait_ready(self, container, *, started_now: bool, own_image: bool = True) -> dict[str, Any]:
        """Wait for readiness, then read and verify the memory report.

        ``started_now``: this run started the container (its whole startup is to be judged);
        otherwise only the startup section of its log counts, and its probes. ``own_image``:
        the container runs the planned image, so its vLLM version's /health semantics apply.
        """
        container.reload()
        initial = container.attrs.get("State") or {}
        restarts = container.attrs.get("RestartCount", 0)
        started_at = initial.get("StartedAt")
        # Only this run's lines: an earlier run's failure (before a restart) is not this one's.
        since = _epoch_seconds(started_at)
        follower = LogFollower(container.follow_logs(since))
        follower.start()
        lines: list[str] = []

        def state() -> dict[str, Any]:
            try:
                container.reload()
            except ContainerGone:
                return {"running": False, "exit_code": None, "restarted": False}
            current = container.attrs.get("State") or {}
            restarted = bool(
                current.get("Restarting")
                or container.attrs.get("RestartCount", 0) != restarts
                or current.get("StartedAt") != started_at
            )
            return {
                "running": bool(current.get("Running")),
                "exit_code": current.get("ExitCode"),
                "oom_killed": current.get("OOMKilled"),
                "restarted": restarted,
            }

        member = self.cluster
        if member is not None and member["layout"]["role"] == "follower":
            joined = wait_until_joined(
                read_logs=follower.drain,
                container_state=state,
                lay=member["layout"],
                backend=member["backend"],
                timeout=self.p["ready_timeout"],
                log_lines=lines,
                full_log=lambda: self._full_log(container, since),
                settle=member["settle"],
                clock=self.clock,
                sleep=self.sleep,
            )
            follower.close()
            return self._joined_outcome(joined, lines)
        served = self._served_names()
        health = health_semantics(self.version if own_image else None)
        wait = wait_until_ready(
            read_logs=follower.drain,
            container_state=state,
            probe=self._probe,
            served_names=served,
            timeout=self.p["ready_timeout"],
            log_lines=lines,
            full_log=lambda: self._full_log(container, since),
            startup_only=not started_now,
            dead_health_statuses=health["dead_statuses"],
            clock=self.clock,
            sleep=self.sleep,
        )
        follower.close()
        self.result["timings"] = {
            "seconds": wait["seconds"],
            "health_ok_seconds": wait["health_ok_seconds"],
            "fatal_seconds": wait["fatal_seconds"],
        }
        if not wait["ready"] and member is not None and wait["reason"] == "timeout":
            stalled = head_join_timeout(lines, member["layout"])
            if stalled is not None:
                wait["kind"], wait["proof"] = "cluster_join_timeout", stalled
        if not wait["ready"] and member is not None and wait["kind"] in (None, "engine_failed"):
            # A member's engine that failed without its own cause: a vanished peer, a kill.
            wait["kind"], wait["proof"] = member_failure(
                lines, {"running": wait["reason"] != "exited", "exit_code": wait["exit_code"]}
            )
        if not wait["ready"]:
            kind = wait["kind"]
            if wait["reason"] == "timeout":
                message = f"{self.name} was not ready within {self.p['ready_timeout']} s"
                kind = kind or "ready_timeout"
            elif wait["reason"] == "exited":
                message = (
                    f"{self.name} exited (code {wait['exit_code']}) before it was ready: {kind}"
                )
            elif wait["reason"] == "unhealthy":
                message = (
                    f"{self.name} answers /health with HTTP {wait['health_status']}, "
                    f"its engine is dead: {kind}"
                )
            else:
                message = f"{self.name} failed to start: {kind}"
            if wait["proof"]:
                message += f": {wait['proof'][0]}"
            if kind == "engine_failed" and not wait["proof"]:
                message += " (no recognised error line; see log_tail)"
            return {
                "ok": False,
                "msg": message,
                "details": {
                    "kind": kind,
                    "reason": wait["reason"],
                    "proof": wait["proof"],
                    "log_tail": wait["log_tail"],
                    "exit_code": wait["exit_code"],
                },
            }
        self.result["ready_seconds"] = wait["seconds"]
        # The whole log: the wait may have started after the first lines (an unchanged container).
        text = container.logs(since)
        # Only the startup: what follows the ready line is serving (request logs, prompts).
        startup = "\n".join(startup_section(text.splitlines()))
        if health["proves_engine"] is False and not self.p["smoke_test"] and own_image:
            self.warnings.append(f"{health['note']}; without it the check is /health only")
        if member is not None:
            wrong = head_world_check(startup.splitlines(), member["layout"])
            if wrong is not None:
                return {
                    "ok": False,
                    "msg": f"{self.name} {wrong['msg']}",
                    "details": {"kind": wrong["kind"], "proof": wrong["proof"]},
                }
        outcome = self.verify(startup, started_now=started_now)
        if member is not None and "cluster" in self.result:
            self.result["cluster"]["memory"] = rank_memory(
                self.result.get("memory") or {}, member["layout"], None
            )
        return outcome

    def _joined_outcome(self, joined: dict[str, Any], lines: list[str]) -> dict[str, Any]:
        """A follower's wait as the outcome wait_ready() returns; its memory report per rank."""
        self.result["timings"] = {
            "seconds": joined["seconds"],
            "joined_seconds": joined["joined_seconds"],
        }
        if "cluster" in self.result:
            self.result["cluster"]["join"] = {"joined": joined["ready"], "proof": joined["proof"]}
        if not joined["ready"]:
            message = f"{self.name} (cluster follower) did not join: {joined['kind']}"
            if joined["proof"]:
                message += f": {joined['proof'][0]}"
            return {
                "ok": False,
                "msg": message,
                "details": {
                    "kind": joined["kind"],
                    "reason": joined["reason"],
                    "proof": joined["proof"],
                    "log_tail": joined["log_tail"],
                    "exit_code": joined["exit_code"],
                },
            }
        self.result["ready_seconds"] = joined["seconds"]
        report = parse_memory_report("\n".join(lines))
        self.result["memory"] = memory_summary(report)
        if "cluster" in self.result:
            self.result["cluster"]["memory"] = rank_memory(report, self.cluster["layout"], None)
        return {"ok": True}

    @staticmethod
    def _full_log(container, since: int | None) -> list[str]:
        try:
            return container.logs(since).splitlines()
        except DockerError:
            return []

    def verify(self, log_text: str, *, started_now: bool) -> dict[str, Any]:
        p = self.p
        status, metrics_text = self._probe("/metrics")
        checked = verify_memory(
            log_text,
            metrics_text=metrics_text if status == 200 else None,
            expect=p["expect"],
            plan=p["plan"],
            block_size=p["block_size"],
            gpu_memory_utilization=p["gpu_memory_utilization"],
            max_model_len=p["max_model_len"],
            startup_in_log=started_now,
            on_budget_violation=p["on_budget_violation"],
            unverifiable_floor=p["unverifiable_floor"],
        )
        self.warnings.extend(checked["warnings"])
        self.result["memory"] = checked["memory"]
        self.result["metrics"] = checked["metrics"]
        self.result["live"] = checked["live"]
        self.result["metrics_mismatches"] = checked["mismatches"]
        self.result["budget"] = checked["budget"]
        if checked["plan_comparison"] is not None:
            self.result["plan_comparison"] = checked["plan_comparison"]
        failure = checked["failure"]
        if failure:
            return {
                "ok": False,
                "msg": f"{self.name} {failure['msg']}",
                "details": {"kind": failure["kind"], "proof": failure["proof"]},
            }
        if p["smoke_test"]:
            return self.smoke_test()
        return {"ok": True}

    def smoke_test(self) -> dict[str, Any]:
        """One real chat completion: the server answers requests, not only its probes."""
        served = self._served_names()[0]
        started = self.clock()
        status, text = self._probe(
            "/v1/chat/completions", smoke_request(served), timeout=self.p["smoke_test_timeout"]
        )
        ok, said = check_chat_answer(status, text)
        self.result["smoke_test"] = {
            "passed": ok,
            "status": status,
            "seconds": round(self.clock() - started, 2),
            "reply": said if ok else None,
            "error": None if ok else said,
        }
        if ok:
            return {"ok": True}
        return {
            "ok": False,
            "msg": f"{self.name} is ready, but the smoke request failed: {said}",
            "details": {"kind": "smoke_test_failed", "proof": smoke_proof(served, said, text)},
        }

    # --- states --------------------------------------------------------------------------

    def _set_diff(self, diff: dict[str, Any]) -> None:
        self.result["diff"] = {"before": diff["before"], "after": diff["after"]}
        self.result["changes"] = diff["changed"]

    def _compare_existing(self, existing, plan: dict[str, Any]) -> bool:
        """Whether ``existing`` matches the plan; the diff (or the one to create) recorded."""
        if existing is None:
            self.result["diff"] = {"before": {}, "after": display_spec(plan["desired"])}
            return False
        match, diff = self.compare(existing, plan)
        if not match:
            self._set_diff(diff)
        return match

    def _remove(self, container) -> None:
        container.remove()

    def _remove_and_release(self, container) -> dict[str, Any]:
        """Remove a failed container, then wait (bounded) until its GPU memory is free.

        Its host PIDs are read first (``docker top``; none when it no longer runs); the wait
        polls ``nvidia-smi --query-compute-apps`` until none of them holds a CUDA context
        (module_utils/vllm_gpu_release.py). The report is the result's ``gpu_release``.
        """
        try:
            pids = container.top_pids()
        except DockerError:
            pids = []
        self._remove(container)
        report = wait_released(
            self.run_command,
            self._nvidia_smi(),
            pids,
            timeout=self.p["gpu_release_timeout"],
            interval=GPU_RELEASE_INTERVAL,
            sleep=self.sleep,
            clock=self.clock,
        )
        report["container"] = container.name
        self.result["gpu_release"] = report
        return report

    def absent(self) -> None:
        found = [c for c in (self.client.find(n) for n in (self.name, self.previous_name)) if c]
        if found:
            self.result["changed"] = True
            self.result["diff"] = {"before": {"containers": [c.name for c in found]}, "after": {}}
            if not self.check_mode:
                for container in found:
                    self._remove(container)

    def present(self, *, stop: bool) -> None:
        plan = self.plan()
        existing = self.client.find(self.name)
        match = self._compare_existing(existing, plan)
        container = existing
        if not match:
            self.result["changed"] = True
            if self.check_mode:
                return
            if existing is not None:
                self._remove(existing)
            container = self._create(plan["desired"])
        if stop and container is not None:
            container.reload()
            if container.status in ("running", "restarting"):
                self.result["changed"] = True
                if not self.check_mode:
                    container.stop(timeout=self.p["stop_timeout"])
        self.result["container"] = _container_info(container) if not self.check_mode else None

    def started(self) -> None:
        p = self.p
        plan = self.plan()
        self.result["endpoint"] = (
            f"http://{p['probe_host'] or probe_address(p['bind_address'])}:{self._api_port()}"
        )
        existing = self.client.find(self.name)
        leftover = self.client.find(self.previous_name)
        match = self._compare_existing(existing, plan)
        if existing is not None and match and p["recreate"]:
            match = False
            self.result["changes"] = ["recreate"]
            self.result["diff"] = {
                "before": {"container": existing.id},
                "after": {"recreate": True},
            }

        if existing is not None and match:
            existing.reload()
            if leftover is not None and not self.check_mode:
                # A previous container left behind by an interrupted run; this one is current.
                self._remove(leftover)
                self.result["changed"] = True
            if existing.status == "running":
                self.result["container"] = _container_info(existing)
                # Check mode verifies too: reading the log and the API changes nothing, and an
                # audit (playbooks/verify.yml) needs to know that the server still serves.
                self._judge(self.wait_ready(existing, started_now=False))
                return
            self.result["changed"] = True
            if self.check_mode:
                return
            self._start(existing)
            outcome = self.wait_ready(existing, started_now=True)
            self.result["container"] = _container_info(existing)
            self._judge(outcome)
            return

        self.result["changed"] = True
        if self.check_mode:
            return
        parked = self._park(existing, leftover)
        new = None
        try:
            # Without a restart policy until verified: a failing configuration must not be
            # restarted in a loop while the module reads why it failed.
            new = self._create(plan["desired"], restart_policy="no")
            self._start(new)
            outcome = self.wait_ready(new, started_now=True)
            if outcome["ok"] and plan["desired"]["restart_policy"] != "no":
                new.set_restart_policy(plan["desired"]["restart_policy"])
        except ModuleFailure as err:
            outcome = {"ok": False, "msg": err.msg, "details": err.details}
        if outcome["ok"]:
            if parked is not None and p["previous"] == "keep":
                self.result["previous_kept"] = parked["container"].id
            elif parked is not None:
                self._remove(parked["container"])
            self.result["container"] = _container_info(new)
            return
        self._fail_new(new, parked, outcome)

    @staticmethod
    def _judge(outcome: dict[str, Any]) -> None:
        """Fail the run with a wait's message and details when it did not end ready."""
        if not outcome["ok"]:
            raise ModuleFailure(outcome["msg"], **outcome["details"])

    def _start(self, container) -> None:
        try:
            container.start()
        except StartRefused as err:
            text = str(err)
            kind = classify_message(text) or "docker_error"
            raise ModuleFailure(
                f"Docker could not start {self.name}: {text}", kind=kind, proof=[text]
            ) from err

    def _park(self, existing, leftover) -> dict[str, Any] | None:
        """Stop the current container and rename it out of the way, kept for a rollback."""
        if existing is None:
            if leftover is None:
                return None
            leftover.reload()
            policy = (leftover.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
            return {"container": leftover, "was_running": True, "restart_policy": policy}
        existing.reload()
        policy = (existing.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        was_running = existing.status in ("running", "restarting")
        if leftover is not None:
            self._remove(leftover)
        # "always" would bring a stopped container back when dockerd restarts during the wait.
        existing.set_restart_policy("no")
        if was_running:
            drain = self._drain(existing)
            shutdown = shutdown_timeout_of((existing.attrs.get("Config") or {}).get("Cmd"))
            drain["shutdown_timeout"] = shutdown
            drain["stop_timeout"] = stop_timeout_for(self.p["stop_timeout"], shutdown)
            self.result["drain"] = drain
            existing.stop(timeout=drain["stop_timeout"])
        existing.rename(self.previous_name)
        return {"container": existing, "was_running": was_running, "restart_policy": policy}

    def _drain(self, container) -> dict[str, Any]:
        """Wait (bounded by drain_timeout) until ``container`` runs no request any more.

        Polls its /metrics ``vllm:num_requests_running`` (summed over engines,
        module_utils/vllm_metrics.py) once a second, on the port it publishes. A page that
        does not answer or lacks the figure is recorded in ``last_error`` and polled past;
        the bound ends the wait either way. Returns what was waited for (the result's
        ``drain``).
        """
        timeout = self.p["drain_timeout"]
        report: dict[str, Any] = {
            "container": container.name,
            "timeout": timeout,
            "drained": None,
            "polls": 0,
            "seconds": 0.0,
            "requests_running": None,
            "last_error": None,
            "reason": None,
        }
        if timeout <= 0:
            report["reason"] = "the drain is off (drain_timeout 0)"
            return report
        if self.cluster is not None and self.cluster["layout"]["role"] == "follower":
            report["reason"] = "a cluster follower serves no requests of its own"
            return report
        endpoint = published_endpoint(container.attrs)
        if endpoint is not None:
            host, port = probe_address(endpoint[0]), endpoint[1]
        elif (container.attrs.get("HostConfig") or {}).get("NetworkMode") == "host":
            host, port = self.p["probe_host"] or "127.0.0.1", self.p["container_port"]
        else:
            report["reason"] = "the container publishes no port to read /metrics on"
            return report
        start = self.clock()
        while True:
            report["polls"] += 1
            status, text = self._probe("/metrics", host=host, port=port)
            running = None
            if status == 200:
                running = live_load(text)["requests_running"]
                if running is None:
                    report["last_error"] = f"/metrics has no {RUNNING}"
            elif status is None:
                report["last_error"] = f"GET http://{host}:{port}/metrics: no answer"
            else:
                report["last_error"] = f"GET http://{host}:{port}/metrics answered HTTP {status}"
            report["requests_running"] = running
            if running == 0:
                report["drained"] = True
                break
            report["seconds"] = round(self.clock() - start, 3)
            if report["seconds"] >= timeout:
                if running is None:
                    report["reason"] = "/metrics gave no running-request count within the bound"
                else:
                    report["drained"] = False
                    report["reason"] = "the bound passed with requests still running"
                break
            self.sleep(min(DRAIN_INTERVAL, max(timeout - report["seconds"], 0)))
        report["seconds"] = round(self.clock() - start, 3)
        return report

    def _fail_new(self, new, parked: dict[str, Any] | None, outcome: dict[str, Any]) -> None:
        details = dict(outcome["details"])
        if new is not None and not details.get("log_tail"):
            try:
                text = new.logs()
                lines = text.splitlines()
                details["log_tail"] = lines[-30:]
                if not details.get("proof"):
                    kind, proof = failure_from_log(lines)
                    details["proof"] = proof
                    if kind and details.get("kind") in (None, "docker_error"):
                        details["kind"] = kind
            except DockerError:
                pass
        if self.p["rollback"]:
            if new is not None and parked is not None:
                # The previous engine needs the GPU memory the failed one holds.
                details["gpu_release"] = self._remove_and_release(new)
            elif new is not None:
                self._remove(new)
            if parked is not None and self.p["previous"] == "keep":
                # A cluster member: restored with the others (state rolled_back), not alone.
                self.result["previous_kept"] = parked["container"].id
                outcome["msg"] += (
                    f"; the new container was removed, the previous one stays parked as "
                    f"{self.previous_name} for state rolled_back"
                )
            elif parked is not None:
                details["rollback"] = self._restore(parked)
                details["rolled_back"] = True
                self.result["rolled_back"] = True
                self.result["container"] = _container_info(parked["container"])
                outcome["msg"] += f"; rolled back to the previous container {self.name}"
            else:
                outcome["msg"] += "; the new container was removed (no previous one to restore)"
        elif new is not None:
            with contextlib.suppress(DockerError):
                # Kept for inspection, without the restart policy it was created without.
                new.stop(timeout=self.p["stop_timeout"])
            self.result["container"] = _container_info(new)
            if parked is not None:
                self._remove(parked["container"])
            outcome["msg"] += "; rollback is off: the failed container is kept, stopped"
        if not self.p["rollback"] and parked is not None and new is None:
            # Nothing new was created: put the previous container back rather than lose it.
            details["rollback"] = self._restore(parked)
            details["rolled_back"] = True
            self.result["rolled_back"] = True
        raise ModuleFailure(outcome["msg"], **details)

    def _restore(self, parked: dict[str, Any]) -> dict[str, Any]:
        old = parked["container"]
        old.rename(self.name)
        policy = parked["restart_policy"] or {}
        if policy.get("Name"):
            old.set_restart_policy(policy["Name"], policy.get("MaximumRetryCount", 0))
        info: dict[str, Any] = {"container_id": old.id, "started": False, "ready": None}
        if parked["was_running"]:
            old.start()
            info["started"] = True
            # The result describes the failed new container; the restored one's readiness and
            # memory report go under rollback.
            keys = ("memory", "budget", "metrics", "metrics_mismatches", "plan_comparison")
            keys += ("ready_seconds", "timings", "smoke_test")
            saved = {key: self.result[key] for key in keys if key in self.result}
            outcome = self.wait_ready(old, started_now=False, own_image=False)
            info["ready"] = outcome["ok"]
            info["memory"] = self.result.get("memory")
            info["timings"] = self.result.get("timings")
            if not outcome["ok"]:
                info["error"] = outcome["msg"]
            for key in keys:
                self.result.pop(key, None)
            self.result.update(saved)
        return info

    def committed(self) -> None:
        """Remove the parked previous container of a verified change (previous=keep)."""
        parked = self.client.find(self.previous_name)
        if parked is None:
            return
        self.result["changed"] = True
        self.result["diff"] = {"before": {"containers": [parked.name]}, "after": {}}
        if not self.check_mode:
            self._remove(parked)

    def rolled_back(self) -> None:
        """Put the parked previous container back and wait until it serves (or joined)."""
        current = self.client.find(self.name)
        parked = self.client.find(self.previous_name)
        if current is None and parked is None:
            return
        self.result["changed"] = True
        before = [c.name for c in (current, parked) if c is not None]
        self.result["diff"] = {
            "before": {"containers": before},
            "after": {"containers": [self.name] if parked is not None else []},
        }
        if self.check_mode:
            return
        if current is not None and parked is not None:
            self._remove_and_release(current)
        elif current is not None:
            self._remove(current)
        if parked is None:
            return
        parked.rename(self.name)
        if self.p["restart_policy"] != "no":
            parked.set_restart_policy(self.p["restart_policy"])
        # The restored configuration's own layout and names: they may differ from the options.
        config = parked.attrs.get("Config") or {}
        self.cluster = member_from_container(config.get("Entrypoint"), config.get("Cmd"))
        self.served_override = served_names_from_args(config.get("Cmd") or []) or None
        # Probed where it publishes its server, which the options may no longer say.
        published = published_endpoint(parked.attrs)
        if published is not None:
            self.p["port"] = published[1]
            if published[0] and not self.p["probe_host"]:
                self.p["probe_host"] = probe_address(published[0])
        self._start(parked)
        self.result["rolled_back"] = True
        outcome = self.wait_ready(parked, started_now=True, own_image=False)
        self.result["container"] = _container_info(parked)
        if not outcome["ok"]:
            raise ModuleFailure(
                f"restored {self.name}, but it did not come back: {outcome['msg']}",
                **outcome["details"],
            )

    def run(self) -> None:
        state = self.p["state"]
        if state == "committed":
            self.committed()
        elif state == "rolled_back":
            self.rolled_back()
        elif state == "absent":
            self.absent()
        elif state == "started":
            self.started()
        else:
            self.present(stop=state == "stopped")
