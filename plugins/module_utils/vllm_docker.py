# Copyright: (c) 2026, llmops.gpu_serving contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker calls of vllm_container, behind a small client interface.

Private module_utils of llmops.gpu_serving: the API may change between releases. This is the
one file of the vllm_container module that imports the Docker SDK for Python. The run
(module_utils/vllm_container_run.py) sees a ``DockerClient`` that finds, creates and pulls,
and ``Container`` handles that start, stop, remove, rename and read logs; every SDK error
reaches it as ``DockerError`` (``ContainerGone`` for a container that no longer exists,
``StartRefused`` for an engine that would not start one), with the SDK's own text. Unit tests
hand the run a fake with the same methods instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.types import DeviceRequest, Ulimit

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as import_error:  # pragma: no cover - exercised where the SDK is missing
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = import_error

    class DockerException(Exception):  # type: ignore[no-redef]
        """Never raised: stands in for the SDK's base error so the except clauses resolve."""

    class NotFound(DockerException):  # type: ignore[no-redef]
        """Never raised, as DockerException."""

    class ImageNotFound(NotFound):  # type: ignore[no-redef]
        """Never raised, as DockerException."""

    class APIError(DockerException):  # type: ignore[no-redef]
        """Never raised, as DockerException."""


class DockerError(Exception):
    """A Docker SDK or engine error; ``str()`` is the SDK's own message."""


class ContainerGone(DockerError):
    """The container no longer exists (removed behind the module's back, or auto-removed)."""


class StartRefused(DockerError):
    """The engine refused to start a container; ``str()`` is its explanation."""


@contextlib.contextmanager
def _sdk() -> Iterator[None]:
    try:
        yield
    except NotFound as err:
        raise ContainerGone(str(err)) from err
    except DockerException as err:
        raise DockerError(str(err)) from err


class Image:
    """An image on the host: its id and its ``docker image inspect`` attributes."""

    def __init__(self, image_id: str, attrs: dict[str, Any]):
        self.id = image_id
        self.attrs = attrs


class Container:
    """One container, by handle: the calls vllm_container makes on it."""

    def __init__(self, sdk_container: Any):
        self._container = sdk_container

    @property
    def id(self) -> str:
        return self._container.id

    @property
    def name(self) -> str:
        return self._container.name

    @property
    def status(self) -> str:
        return self._container.status

    @property
    def attrs(self) -> dict[str, Any]:
        return self._container.attrs

    def reload(self) -> None:
        with _sdk():
            self._container.reload()

    def start(self) -> None:
        try:
            self._container.start()
        except APIError as err:
            raise StartRefused(str(err.explanation or err)) from err
        except DockerException as err:
            raise DockerError(str(err)) from err

    def stop(self, timeout: int) -> None:
        with _sdk():
            self._container.stop(timeout=timeout)

    def remove(self) -> None:
        """Remove it, running or not; one already gone is not an error."""
        with contextlib.suppress(ContainerGone), _sdk():
            self._container.remove(force=True)

    def rename(self, name: str) -> None:
        with _sdk():
            self._container.rename(name)

    def set_restart_policy(self, name: str, maximum_retry_count: int = 0) -> None:
        with _sdk():
            self._container.update(
                restart_policy={"Name": name, "MaximumRetryCount": maximum_retry_count}
            )

    def logs(self, since: int | None = None) -> str:
        """Its log (stdout and stderr) from ``since`` (epoch seconds), decoded."""
        with _sdk():
            data = self._container.logs(stdout=True, stderr=True, since=since)
        return data.decode("utf-8", errors="replace")

    def follow_logs(self, since: int | None) -> Iterable[bytes]:
        """A stream of its log from ``since`` that follows new lines (for LogFollower)."""
        with _sdk():
            return self._container.logs(
                stream=True, follow=True, stdout=True, stderr=True, since=since
            )

    def top_pids(self) -> list[int]:
        """The host PIDs of its processes (``docker top``); empty when it does not run."""
        with _sdk():
            listing = self._container.top()
        titles = listing.get("Titles") or []
        column = titles.index("PID") if "PID" in titles else 0
        pids = []
        for row in listing.get("Processes") or []:
            with contextlib.suppress(IndexError, ValueError):
                pids.append(int(row[column]))
        return pids


class DockerClient:
    """The engine, through the Docker SDK: containers by name, images, create."""

    def __init__(self, sdk_client: Any):
        self._client = sdk_client

    def find(self, name: str) -> Container | None:
        with _sdk():
            found = self._client.containers.list(all=True, filters={"name": f"^/{name}$"})
        return Container(found[0]) if found else None

    def image(self, ref: str) -> Image | None:
        """The image ``ref`` names on the host, None when it is not there."""
        try:
            image = self._client.images.get(ref)
        except ImageNotFound:
            return None
        except DockerException as err:
            raise DockerError(str(err)) from err
        return Image(image.id, image.attrs)

    def image_attrs(self, image_id: str | None) -> dict[str, Any]:
        """``docker image inspect`` of ``image_id``; {} when it cannot be read."""
        try:
            return self._client.images.get(image_id).attrs
        except DockerException:
            return {}

    def pull(self, ref: str) -> Image:
        with _sdk():
            repository, tag = docker.utils.parse_repository_tag(ref)
            image = self._client.images.pull(repository, tag=tag or "latest")
        return Image(image.id, image.attrs)

    def run_output(self, image_id: str, entrypoint: list[str], environment: dict[str, str]):
        """Run a throwaway container of ``image_id`` without network; its stdout."""
        with _sdk():
            return self._client.containers.run(
                image_id,
                entrypoint=entrypoint,
                command=[],
                remove=True,
                network_disabled=True,
                environment=environment,
                stdout=True,
                stderr=False,
            )

    def create(self, spec: dict[str, Any]) -> Container:
        """Create a container from ``containers.create()`` keyword arguments, except that
        ``gpus`` ({"count": n} or {"device_ids": [...]}) and ``ulimits`` ({name: (soft,
        hard)}) are plain data, turned into the SDK's DeviceRequest and Ulimit here."""
        kwargs = dict(spec)
        gpus = kwargs.pop("gpus", None)
        if gpus is not None:
            if "device_ids" in gpus:
                request = DeviceRequest(device_ids=gpus["device_ids"], capabilities=[["gpu"]])
            else:
                request = DeviceRequest(count=gpus["count"], capabilities=[["gpu"]])
            kwargs["device_requests"] = [request]
        ulimits = kwargs.pop("ulimits", None)
        if ulimits:
            kwargs["ulimits"] = [
                Ulimit(name=name, soft=soft, hard=hard) for name, (soft, hard) in ulimits.items()
            ]
        with _sdk():
            return Container(self._client.containers.create(**kwargs))


def connect(docker_host: str | None) -> DockerClient:
    """The engine at ``docker_host`` (else DOCKER_HOST, else the local socket), pinged."""
    with _sdk():
        client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
        client.ping()
    return DockerClient(client)
