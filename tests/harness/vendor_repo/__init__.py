"""Build the simulated vendor apt repositories the role tests install from.

No GPU and no route to NVIDIA's or Docker's servers exist where this collection is tested, so
the harness builds signed apt repositories that hold packages with the real names, versions and
dependency shapes (facts: ../shared/facts/nvidia-stack.md) and small, honest payloads:

* NVIDIA CUDA network repo (flat, one per distro directory like NVIDIA's): the 550 driver family
  at 550.144.03 (the target), 550.127.05 (an older one to replace) and 550.163.01 (a newer one
  the pin must refuse), cuda-drivers-550, cuda-toolkit-12-4 only where NVIDIA ships it
  (ubuntu2204, debian12) and 12-5/12-6 elsewhere, cuda-keyring. debian13 is as NVIDIA publishes
  it: no 550 branch, signed with a key of its own (8793F200.pub). `nvidia-smi` answers from a GPU
  profile; the "kernel module" is a boot-time unit, so a driver change is only live after a
  reboot, as on a real host.
* NVIDIA Container Toolkit repo (flat, `stable/deb/amd64`): the four packages at 1.17.7-1
  (vulnerable), 1.17.8-1 and 1.18.0-1. `nvidia-container-runtime` execs runc, so Docker's
  `--runtime nvidia` really runs containers; `nvidia-ctk runtime configure --runtime=docker`
  writes daemon.json exactly as NVIDIA's does, and `nvidia-ctk system create-dev-char-symlinks`
  links /dev/char to the simulated driver's device nodes (payloads/nvidia-ctk).
* Docker CE repo (`linux/<distro>/dists/<codename>/stable`): docker-ce, docker-ce-cli and
  containerd.io (1.7 and 2.x) whose dependencies pull Debian's real docker.io and containerd,
  and the docker-compose-plugin and docker-buildx-plugin CLI plugins; suites bookworm, trixie
  and noble (Ubuntu 24.04, for the Ubuntu-facts test platform).
* A simulated distro extra: `linux-headers-<running kernel>`, which every real distro archive has
  for its own kernels but Debian's archive cannot have for this machine's kernel.
* A Debian mirror subset per release (`debian/<codename>`, flat): the packages the roles install
  from the distribution's archive (DEBIAN_MIRROR_GROUPS) and their dependencies, downloaded once
  from Debian and re-signed with the distro-extras key, so that test hosts need no network;
  `debian/noble` holds trixie's for the Ubuntu-facts platform, whose userland is Debian 13's.

Each repository is signed with its own throwaway key, generated at the first build and kept
under tests/output/cache/gpg for the next ones (Signer). The output
directory gets `vendor-vars.yml`: the file:// URLs, key URLs and fingerprints that scenarios pass
to the roles through the same variables a real user sets.

The build is skipped when the recipe (this package and its launcher, the payloads and the
profiles) is unchanged. One module per kind of repository:

* debs: the package model and the reproducible .deb build every repository uses;
* signing: the throwaway keys, Packages indexes and signed Release files (flat and dists);
* cuda: NVIDIA's CUDA directories and their keys, toolkit packages, the runfile, cuda-keyring;
* driver: the driver family, Fabric Manager, cuda-drivers and the driver local repositories;
* toolkit: the NVIDIA Container Toolkit packages;
* docker: Docker CE's suites, repackaged from Debian's docker.io and docker-cli;
* distro: the distro extras (kernel headers) and the Debian mirror subset;
* build: the whole tree, vendor-vars.yml, the recipe stamp and the command line.

Run `python tests/harness/vendor_repo.py` (the launcher `make harness` calls) or
`python -m vendor_repo` from tests/harness.
"""
