# Reads an extracted cloud-init drive with cloud-init's own datasource code,
# the way a guest does, and prints what it understood as JSON.
# Usage: guestread.py nocloud|configdrive DIR
import json
import sys

from cloudinit import sources, util
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.sources.helpers import openstack


def main():
    kind, d = sys.argv[1], sys.argv[2]
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
            out["network"] = util.load_yaml(util.load_file(d + "/network-config"))
        except FileNotFoundError:
            pass
    if isinstance(ud, bytes):
        ud = ud.decode()
    out["instance-id"] = md.get("instance-id")
    out["local-hostname"] = md.get("local-hostname")
    out["public-keys"] = sources.normalize_pubkey_data(keys)
    out["userdata"] = ud
    if ud.startswith("#cloud-config"):
        # Raises on a schema violation; strict turns warnings into errors.
        validate_cloudconfig_schema(util.load_yaml(ud), get_schema(), strict=True)
        out["schema"] = "valid"
    print(json.dumps(out, sort_keys=True))


main()
