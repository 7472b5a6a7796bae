"""Runs Debian's cloud-init `mounts` module (cc_mounts.handle) on a
#cloud-config user-data file, as a guest's cloud-init would, without
touching the machine: /etc/fstab is a temporary file, commands and
directory creation are recorded. Prints JSON: the fstab lines, the
directories the module creates and the commands it runs.

    python3 ccmounts.py USER-DATA
"""
import json
import logging
import os
import sys
import tempfile

import yaml
from cloudinit import subp, util
from cloudinit.config import cc_mounts

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

with open(sys.argv[1]) as f:
    cfg = yaml.safe_load(f)

fd, fstab = tempfile.mkstemp(prefix="fstab.")
os.close(fd)
cc_mounts.FSTAB_PATH = fstab
commands, dirs = [], []


def fake_subp(args, *a, **k):
    commands.append(list(args))
    return ("", "")


cc_mounts.subp.subp = fake_subp
subp.subp = fake_subp
util.ensure_dir = lambda d, mode=None: dirs.append(d)
# The guest has no swap file to make and no mounts yet.
util.mounts = lambda: {}


class Distro:
    @staticmethod
    def uses_systemd():
        return True


class Cloud:
    distro = Distro()

    @staticmethod
    def device_name_to_device(name):
        return None


cfg.setdefault("swap", {})
cc_mounts.handle("mounts", cfg, Cloud(), logging.getLogger("cc_mounts"), [])
with open(fstab) as f:
    lines = [line for line in f.read().splitlines() if line.strip()]
os.unlink(fstab)
print(json.dumps({"fstab": lines, "dirs": dirs, "commands": commands}))
