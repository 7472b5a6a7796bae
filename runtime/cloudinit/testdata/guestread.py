# Reads an extracted cloud-init drive with cloud-init's own datasource code,
# the way a guest does, and prints what it understood as JSON.
# Usage: guestread.py nocloud|configdrive DIR
#        guestread.py --all ROOT OUT
# With --all every ROOT/<case> is a drive (ConfigDrive when it has an
# openstack/ directory). Each is read as above, and its network config is
# rendered by cloud-init's net-convert (its own argument parser and handler,
# in this process) into OUT/<case>/etc/systemd/network. It prints
# {case: view} where a drive cloud-init refuses has {"error": message}.
import json
import os
import sys

from cloudinit import helpers, sources, util
from cloudinit import user_data as ud_processor
from cloudinit.cmd.devel import net_convert
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.sources.helpers import openstack


def known_keys(schema):
    """The top-level keys some module's schema describes."""
    keys = set()
    for ref in schema["allOf"]:
        d = schema["$defs"][ref["$ref"].split("/")[-1]]
        keys |= set(d.get("properties", {}))
    return keys


SCHEMA = get_schema()
KNOWN = known_keys(SCHEMA)


def check_cloud_config(ud):
    cfg = util.load_yaml(ud)
    if not isinstance(cfg, dict):
        raise ValueError("cloud-config is not a mapping: %r" % (cfg,))
    # Raises on a schema violation; strict turns warnings into errors.
    validate_cloudconfig_schema(cfg, SCHEMA, strict=True)
    # cloud-init 22.4's schema allows any other top-level key, and
    # cloud-init ignores it: a misspelled module would pass unseen.
    unknown = sorted(set(cfg) - KNOWN)
    if unknown:
        raise ValueError(
            "cloud-config top-level keys not in cloud-init's schema "
            "(cloud-init ignores them): %s" % ", ".join(unknown))


def part_types(ud):
    """The content types cloud-init's user-data processor finds."""
    msg = ud_processor.UserDataProcessor(helpers.Paths({})).process(ud)
    return [p.get_content_type() for p in msg.walk()
            if not p.is_multipart()]


def read(kind, d):
    out = {}
    if kind == "configdrive":
        res = openstack.ConfigDriveReader(d).read_v2()
        md = res["metadata"]
        keys = md.get("public_keys")
        ud = res.get("userdata") or b""
        net = res.get("networkdata")
        if net is not None:
            out["network"] = openstack.convert_net_json(net, known_macs={})
    else:
        md, ud, _vd = util.read_seeded(d + "/", timeout=1, retries=0)
        keys = md.get("public-keys")
        try:
            out["network"] = util.load_yaml(
                util.load_file(d + "/network-config"))
        except FileNotFoundError:
            pass
    if isinstance(ud, bytes):
        ud = ud.decode()
    out["instance-id"] = md.get("instance-id")
    out["local-hostname"] = md.get("local-hostname")
    out["public-keys"] = sources.normalize_pubkey_data(keys)
    out["userdata"] = ud
    if ud:
        out["userdata-types"] = part_types(ud)
    if ud.startswith("#cloud-config"):
        check_cloud_config(ud)
        out["schema"] = "valid"
    return out


def convert(kind, d, out):
    """Renders the drive's network config as `cloud-init devel net-convert
    -O networkd` does; returns False when the drive has none."""
    if kind == "configdrive":
        src, fmt = d + "/openstack/latest/network_data.json", "network_data.json"
    else:
        src, fmt = d + "/network-config", "yaml"
    if not os.path.exists(src):
        return False
    args = net_convert.get_parser().parse_args(
        ["-p", src, "-k", fmt, "-D", "ubuntu", "-O", "networkd", "-d", out])
    net_convert.handle_args("net-convert", args)
    return True


def read_all(root, rendered):
    views = {}
    for case in sorted(os.listdir(root)):
        d = os.path.abspath(os.path.join(root, case))
        kind = "configdrive" if os.path.isdir(d + "/openstack") else "nocloud"
        try:
            v = read(kind, d)
            v["kind"] = kind
            v["net-convert"] = convert(kind, d, os.path.join(rendered, case))
        except Exception as e:  # reported per drive, as the test wants
            v = {"error": "%s: %s" % (type(e).__name__, e)}
        views[case] = v
    return views


def main():
    if sys.argv[1] == "--all":
        out = read_all(sys.argv[2], sys.argv[3])
    else:
        out = read(sys.argv[1], sys.argv[2])
    print(json.dumps(out, sort_keys=True))


main()
