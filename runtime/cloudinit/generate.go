package cloudinit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Annotation names, used in errors and warnings.
const (
	AnnotationImageType         = "VirtletCloudInitImageType"
	AnnotationMetaData          = "VirtletCloudInitMetaData"
	AnnotationUserData          = "VirtletCloudInitUserData"
	AnnotationUserDataOverwrite = "VirtletCloudInitUserDataOverwrite"
	AnnotationUserDataScript    = "VirtletCloudInitUserDataScript"
	AnnotationUserDataSource    = "VirtletCloudInitUserDataSource"
	AnnotationUserDataSourceKey = "VirtletCloudInitUserDataSourceKey"
	AnnotationUserDataSourceEnc = "VirtletCloudInitUserDataSourceEncoding"
	AnnotationSSHKeys           = "VirtletSSHKeys"
	AnnotationSSHKeySource      = "VirtletSSHKeySource"
	AnnotationFilesFrom         = "VirtletFilesFromDataSource"
	AnnotationForceDHCP         = "VirtletForceDHCPNetworkConfig"
)

const (
	// EnvFilePath is where the container environment lands in the guest.
	EnvFilePath = "/etc/cloud/environment"
	// SysctlConfPath is where the pod's sysctls are written in the guest,
	// in sysctl.conf format.
	SysctlConfPath = "/etc/sysctl.d/90-podvisor.conf"
	// MountScriptPlaceholder in a user-data script is replaced by Input.MountScript.
	MountScriptPlaceholder = "@virtlet-mount-script@"
	// defaultSSHKeyKey is the key VirtletSSHKeySource reads without /KEY.
	defaultSSHKeyKey  = "authorized_keys"
	cloudConfigHeader = "#cloud-config\n"
)

// Paths on the drive.
const (
	PathNoCloudMetaData     = "meta-data"
	PathNoCloudUserData     = "user-data"
	PathNoCloudNetwork      = "network-config"
	PathConfigDriveMetaData = "openstack/latest/meta_data.json"
	PathConfigDriveUserData = "openstack/latest/user_data"
	PathConfigDriveNetwork  = "openstack/latest/network_data.json"
)

// Generate computes the cloud-init drive for in. ds reads the ConfigMaps and
// Secrets named by data source annotations; it may be nil when none are
// used. The result is deterministic: the same input gives the same bytes.
func Generate(ctx context.Context, in Input, ds DataSource) (*Contents, error) {
	if in.PodName == "" || in.PodNamespace == "" {
		return nil, fmt.Errorf("cloud-init input needs the pod name and namespace, got name %q namespace %q", in.PodName, in.PodNamespace)
	}
	if in.Type == "" {
		in.Type = NoCloud
	}
	if in.Type != NoCloud && in.Type != ConfigDrive {
		return nil, fmt.Errorf("%s: annotation %s: bad value %q: accepted %q (default) or %q", in.podRef(), AnnotationImageType, in.Type, NoCloud, ConfigDrive)
	}
	switch in.NetworkConfigVersion {
	case 0:
		in.NetworkConfigVersion = 1
	case 1, 2:
	default:
		return nil, fmt.Errorf("%s: network config version %d: accepted 1 or 2", in.podRef(), in.NetworkConfigVersion)
	}
	if in.Hostname == "" {
		in.Hostname = in.PodName
	}

	g := &generator{in: &in, ds: ds}
	keys, err := g.sshKeys(ctx)
	if err != nil {
		return nil, err
	}
	metaData, err := g.metaData(keys)
	if err != nil {
		return nil, err
	}
	userData, err := g.userData(ctx)
	if err != nil {
		return nil, err
	}
	var network []byte
	if !in.ForceDHCP && in.Network != nil && len(in.Network.Interfaces) > 0 {
		switch {
		case in.Type == ConfigDrive:
			network, err = networkDataJSON(&in)
		case in.NetworkConfigVersion == 2:
			network, err = networkConfigV2(&in)
		default:
			network, err = networkConfigV1(&in)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: network config: %w", in.podRef(), err)
		}
	}

	c := &Contents{Warnings: g.warnings}
	if in.Type == ConfigDrive {
		c.Label = LabelConfigDrive
		c.Files = []DriveFile{
			{Path: PathConfigDriveMetaData, Data: metaData},
			{Path: PathConfigDriveUserData, Data: userData},
		}
		if network != nil {
			c.Files = append(c.Files, DriveFile{Path: PathConfigDriveNetwork, Data: network})
		}
	} else {
		c.Label = LabelNoCloud
		c.Files = []DriveFile{
			{Path: PathNoCloudMetaData, Data: metaData},
			{Path: PathNoCloudUserData, Data: userData},
		}
		if network != nil {
			c.Files = append(c.Files, DriveFile{Path: PathNoCloudNetwork, Data: network})
		}
	}
	sort.Slice(c.Files, func(i, j int) bool { return c.Files[i].Path < c.Files[j].Path })
	return c, nil
}

type generator struct {
	in       *Input
	ds       DataSource
	warnings []string
}

func (g *generator) warn(format string, args ...any) {
	g.warnings = append(g.warnings, fmt.Sprintf(format, args...))
}

// sshKeys gives the keys of VirtletSSHKeySource followed by VirtletSSHKeys;
// as in Virtlet, VirtletCloudInitUserDataOverwrite makes VirtletSSHKeys
// replace the keys from the source.
func (g *generator) sshKeys(ctx context.Context) ([]string, error) {
	in := g.in
	var keys []string
	if ref := in.SSHKeySource; ref != nil {
		data, err := fetch(ctx, g.ds, in, AnnotationSSHKeySource, ref)
		if err != nil {
			return nil, err
		}
		key := ref.Key
		if key == "" {
			key = defaultSSHKeyKey
		}
		raw, ok := data[key]
		if !ok {
			return nil, fmt.Errorf("%s: annotation %s=%q: %s %s has no key %q (keys: %s)",
				in.podRef(), AnnotationSSHKeySource, ref.String(), ref.Kind, ref.Name, key, keyList(data))
		}
		keys = splitKeys(string(raw))
	}
	if len(in.SSHKeys) > 0 {
		if in.UserDataOverwrite {
			keys = nil
		}
		keys = append(keys, splitKeys(strings.Join(in.SSHKeys, "\n"))...)
	}
	// Drop duplicates, keep the first occurrence's position.
	seen := map[string]bool{}
	r := keys[:0]
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			r = append(r, k)
		}
	}
	return r, nil
}

// splitKeys splits authorized_keys-style text: one key a line, blank lines
// and # comments dropped.
func splitKeys(s string) []string {
	var r []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		r = append(r, l)
	}
	return r
}

func keyList(m map[string][]byte) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, strconv.Quote(k))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

func (g *generator) metaData(keys []string) ([]byte, error) {
	in := g.in
	instanceID := in.PodName + "." + in.PodNamespace
	m := map[string]any{
		"instance-id":    instanceID,
		"local-hostname": in.Hostname,
	}
	if in.Type == ConfigDrive {
		// cloud-init's ConfigDrive reader copies uuid -> instance-id and
		// hostname -> local-hostname, and reads keys from public_keys.
		m["uuid"] = instanceID
		m["hostname"] = in.Hostname
		m["name"] = in.PodName
		if len(keys) > 0 {
			pk := map[string]any{}
			for i, k := range keys {
				pk[fmt.Sprintf("key-%d", i)] = k
			}
			m["public_keys"] = pk
		}
	} else if len(keys) > 0 {
		l := make([]any, len(keys))
		for i, k := range keys {
			l[i] = k
		}
		m["public-keys"] = l
	}
	override, err := normalizeMap("annotation "+AnnotationMetaData, in.MetaData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.podRef(), err)
	}
	for k, v := range override {
		m[k] = v
	}
	if in.Type == ConfigDrive {
		// Keep the copies consistent, or cloud-init's copy would undo the override.
		if v, ok := override["instance-id"]; ok {
			if _, set := override["uuid"]; !set {
				m["uuid"] = v
			}
		}
		if v, ok := override["local-hostname"]; ok {
			if _, set := override["hostname"]; !set {
				m["hostname"] = v
			}
		}
		return marshalJSON("meta_data.json", m)
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: encoding meta-data: %w", in.podRef(), err)
	}
	return data, nil
}

func marshalJSON(what string, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", what, err)
	}
	return buf.Bytes(), nil
}

// userData builds user-data: a verbatim script, or #cloud-config from the
// source object, the VirtletCloudInitUserData overlay and the generated parts.
func (g *generator) userData(ctx context.Context) ([]byte, error) {
	in := g.in
	base, script, scriptFrom, err := g.userDataSource(ctx)
	if err != nil {
		return nil, err
	}
	if script == "" && in.UserDataScript != "" {
		script = in.UserDataScript
		scriptFrom = AnnotationUserDataScript
	} else if script != "" && in.UserDataScript != "" {
		g.warn("annotation %s is ignored: %s gives a user-data script", AnnotationUserDataScript, AnnotationUserDataSourceKey)
	}
	if script != "" {
		return g.scriptUserData(script, scriptFrom), nil
	}
	return g.cloudConfig(ctx, base)
}

// userDataSource reads VirtletCloudInitUserDataSource: with a key, that key
// is either a #cloud-config map or a script; without one, every key of the
// object is a top-level user-data key.
func (g *generator) userDataSource(ctx context.Context) (base map[string]any, script, scriptFrom string, err error) {
	in := g.in
	base = map[string]any{}
	ref := in.UserDataSource
	if ref == nil {
		return base, "", "", nil
	}
	data, err := fetch(ctx, g.ds, in, AnnotationUserDataSource, ref)
	if err != nil {
		return nil, "", "", err
	}
	if ref.Key == "" {
		base, err = g.userDataFromObject(ref, data)
		return base, "", "", err
	}
	raw, ok := data[ref.Key]
	if !ok {
		return nil, "", "", fmt.Errorf("%s: annotation %s=%q: %s %s has no key %q (keys: %s)",
			in.podRef(), AnnotationUserDataSourceKey, ref.Key, ref.Kind, ref.Name, ref.Key, keyList(data))
	}
	switch ref.Encoding {
	case "", EncodingPlain:
	case EncodingBase64:
		dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, "", "", fmt.Errorf("%s: annotation %s=base64: key %q of %s %s is not valid base64: %w",
				in.podRef(), AnnotationUserDataSourceEnc, ref.Key, ref.Kind, ref.Name, err)
		}
		raw = dec
	default:
		return nil, "", "", fmt.Errorf("%s: annotation %s: bad value %q: accepted %q (default) or %q",
			in.podRef(), AnnotationUserDataSourceEnc, ref.Encoding, EncodingPlain, EncodingBase64)
	}
	if !isCloudConfig(raw) {
		return base, string(raw), AnnotationUserDataSourceKey, nil
	}
	m, err := parseYAMLMap(raw)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: annotation %s=%q: key of %s %s starts with #cloud-config but is not a YAML map: %w",
			in.podRef(), AnnotationUserDataSourceKey, ref.Key, ref.Kind, ref.Name, err)
	}
	return m, "", "", nil
}

// userDataFromObject is Virtlet's rule for a source without a key: every
// key of the object is a top-level user-data key whose value is that entry
// parsed as YAML.
func (g *generator) userDataFromObject(ref *SourceRef, data map[string][]byte) (map[string]any, error) {
	if ref.Encoding != "" && ref.Encoding != EncodingPlain {
		g.warn("annotation %s=%q is ignored: it applies only with %s", AnnotationUserDataSourceEnc, ref.Encoding, AnnotationUserDataSourceKey)
	}
	names := make([]string, 0, len(data))
	for k := range data {
		names = append(names, k)
	}
	sort.Strings(names)
	base := map[string]any{}
	for _, k := range names {
		var v any
		if err := yaml.Unmarshal(data[k], &v); err != nil {
			return nil, fmt.Errorf("%s: annotation %s=%q: key %q is not valid YAML: %w",
				g.in.podRef(), AnnotationUserDataSource, ref.String(), k, err)
		}
		base[k] = v
	}
	return base, nil
}

// scriptUserData is a script as the whole user-data (Virtlet's rule): only
// the mount script can be spliced in; whatever else the pod asked for is
// named in a warning.
func (g *generator) scriptUserData(script, scriptFrom string) []byte {
	in := g.in
	if in.UserData != nil {
		g.warn("annotation %s is ignored: user-data is a script from %s", AnnotationUserData, scriptFrom)
	}
	if in.UserDataSource != nil && in.UserDataSource.Key == "" {
		g.warn("annotation %s is ignored: user-data is a script from %s", AnnotationUserDataSource, scriptFrom)
	}
	if in.FilesFrom != nil {
		g.warn("annotation %s is ignored: files cannot be added to a user-data script from %s", AnnotationFilesFrom, scriptFrom)
	}
	if len(in.Files) > 0 {
		g.warn("%d secret/configmap files are not written into the guest: user-data is a script from %s", len(in.Files), scriptFrom)
	}
	if len(in.Sysctls) > 0 {
		g.warn("%d sysctls are not set in the guest: user-data is a script from %s", len(in.Sysctls), scriptFrom)
	}
	if in.DNS != nil && len(in.DNS.Options) > 0 {
		g.warn("DNS options %s are not set in the guest: user-data is a script from %s", strings.Join(in.DNS.Options, " "), scriptFrom)
	}
	if len(in.Mounts) > 0 && !strings.Contains(script, MountScriptPlaceholder) {
		g.warn("volume mounts are not set up in the guest: the user-data script from %s has no %s", scriptFrom, MountScriptPlaceholder)
	}
	if len(in.BootCmd) > 0 && !strings.Contains(script, MountScriptPlaceholder) {
		g.warn("podvisor's boot commands (block volumes' links at their device paths; under TCG, the vCPUs above the count taken offline) are not run in the guest: the user-data script from %s has no %s", scriptFrom, MountScriptPlaceholder)
	}
	return []byte(strings.ReplaceAll(script, MountScriptPlaceholder, in.MountScript))
}

// cloudConfig is #cloud-config: the source's map with the annotation's
// overlay merged (or put in its place), then the generated parts appended.
func (g *generator) cloudConfig(ctx context.Context, base map[string]any) ([]byte, error) {
	in := g.in
	overlay, err := normalizeMap("annotation "+AnnotationUserData, in.UserData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.podRef(), err)
	}
	if overlay != nil {
		if in.UserDataOverwrite {
			base = overlay
		} else {
			nb, err := normalizeMap("user-data source", base)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", in.podRef(), err)
			}
			base = Merge(nb, overlay).(map[string]any)
		}
	}
	extraFiles, err := g.generatedFiles(ctx)
	if err != nil {
		return nil, err
	}
	if len(in.Sysctls) > 0 {
		e, err := g.sysctlFile()
		if err != nil {
			return nil, err
		}
		extraFiles = append(extraFiles, e)
		// bootcmd runs early at every boot, before write_files and
		// runcmd; argv lists need no shell quoting.
		var bc []any
		for _, sc := range in.Sysctls {
			bc = append(bc, []any{"sysctl", "-w", sc.Name + "=" + sc.Value})
		}
		base["bootcmd"] = Merge(base["bootcmd"], bc)
	}
	if len(in.BootCmd) > 0 {
		var bc []any
		for _, c := range in.BootCmd {
			bc = append(bc, c)
		}
		base["bootcmd"] = Merge(base["bootcmd"], bc)
	}
	if bc, err := g.dnsOptionsCmd(); err != nil {
		return nil, err
	} else if bc != nil {
		base["bootcmd"] = Merge(base["bootcmd"], []any{bc})
	}
	if len(extraFiles) > 0 {
		base["write_files"] = Merge(base["write_files"], extraFiles)
	}
	if len(in.Mounts) > 0 {
		var ms []any
		for _, m := range in.Mounts {
			e := make([]any, len(m))
			for i, s := range m {
				e[i] = s
			}
			ms = append(ms, e)
		}
		base["mounts"] = Merge(base["mounts"], ms)
	}
	if len(in.RunCmd) > 0 {
		var rc []any
		for _, c := range in.RunCmd {
			rc = append(rc, c)
		}
		base["runcmd"] = Merge(base["runcmd"], rc)
	}
	// An empty base marshals as "{}": a header alone is a null document,
	// which cloud-init's schema check rejects.
	body, err := yaml.Marshal(base)
	if err != nil {
		return nil, fmt.Errorf("%s: encoding user-data: %w", in.podRef(), err)
	}
	return append([]byte(cloudConfigHeader), body...), nil
}

// generatedFiles are the write_files entries podvisor adds: the volumes'
// files, VirtletFilesFromDataSource's and the container's environment.
func (g *generator) generatedFiles(ctx context.Context) ([]any, error) {
	in := g.in
	var extraFiles []any
	for _, f := range in.Files {
		e, err := writeFileEntry(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.podRef(), err)
		}
		extraFiles = append(extraFiles, e)
	}
	if ref := in.FilesFrom; ref != nil {
		files, err := g.filesFrom(ctx, ref)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			e, err := writeFileEntry(f)
			if err != nil {
				return nil, fmt.Errorf("%s: annotation %s=%q: %w", in.podRef(), AnnotationFilesFrom, ref.String(), err)
			}
			extraFiles = append(extraFiles, e)
		}
	}
	if env := envFile(in.Env); env != "" {
		extraFiles = append(extraFiles, map[string]any{
			"path":        EnvFilePath,
			"content":     env,
			"permissions": "0644",
		})
	}
	return extraFiles, nil
}

// sysctlFile is /etc/sysctl.d's file for the pod's sysctls, base64 like the
// volumes' files: one token however long the values, which no YAML emitter
// folds.
func (g *generator) sysctlFile() (any, error) {
	conf, err := sysctlConf(g.in.Sysctls)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.in.podRef(), err)
	}
	e, err := writeFileEntry(GuestFile{Path: SysctlConfPath, Content: []byte(conf), Mode: 0o644})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", g.in.podRef(), err)
	}
	return e, nil
}

func isCloudConfig(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(bytes.TrimRight(line, " \t\r")) == "#cloud-config"
}

func parseYAMLMap(b []byte) (map[string]any, error) {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is %T, not a map", v)
	}
	return m, nil
}

func writeFileEntry(f GuestFile) (map[string]any, error) {
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
		return nil, fmt.Errorf("guest file path %q is not an absolute clean path", f.Path)
	}
	mode := f.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	return map[string]any{
		"path":        f.Path,
		"content":     base64.StdEncoding.EncodeToString(f.Content),
		"encoding":    "b64",
		"permissions": fmt.Sprintf("%#o", uint32(mode)),
	}, nil
}

// filesFrom reads VirtletFilesFromDataSource with Virtlet's layout: an entry
// KEY holds the content, KEY_path the absolute guest path, KEY_encoding
// "base64" (default) or "plain", and KEY_mode (podvisor) octal permissions.
func (g *generator) filesFrom(ctx context.Context, ref *SourceRef) ([]GuestFile, error) {
	in := g.in
	data, err := fetch(ctx, g.ds, in, AnnotationFilesFrom, ref)
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: annotation %s=%q: %s", in.podRef(), AnnotationFilesFrom, ref.String(), fmt.Sprintf(format, args...))
	}
	var names []string
	for k := range data {
		if strings.HasSuffix(k, "_path") || strings.HasSuffix(k, "_encoding") || strings.HasSuffix(k, "_mode") {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var r []GuestFile
	for _, k := range names {
		p, ok := data[k+"_path"]
		if !ok {
			return nil, bad("entry %q has no %q entry giving its guest path", k, k+"_path")
		}
		content := data[k]
		switch enc := string(data[k+"_encoding"]); enc {
		case "", EncodingBase64:
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(content)))
			if err != nil {
				return nil, bad("entry %q is not valid base64 (set %q to plain for plain text): %v", k, k+"_encoding", err)
			}
			content = dec
		case EncodingPlain:
		default:
			return nil, bad("entry %q: bad value %q: accepted base64 (default) or plain", k+"_encoding", enc)
		}
		var mode uint64 = 0o644
		if m, ok := data[k+"_mode"]; ok {
			mode, err = strconv.ParseUint(strings.TrimSpace(string(m)), 8, 32)
			if err != nil || mode > 0o777 {
				return nil, bad("entry %q: bad value %q: accepted octal permissions 0000 to 0777, e.g. 0644", k+"_mode", string(m))
			}
		}
		r = append(r, GuestFile{Path: strings.TrimSpace(string(p)), Content: content, Mode: os.FileMode(mode)})
	}
	sort.SliceStable(r, func(i, j int) bool { return r[i].Path < r[j].Path })
	return r, nil
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]*$`)

// envFile renders NAME=VALUE lines (Virtlet's format); values that a shell
// would split or expand are single-quoted so the file can be sourced.
func envFile(env []EnvVar) string {
	var b strings.Builder
	for _, e := range env {
		v := e.Value
		if !shellSafe.MatchString(v) {
			v = "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
		b.WriteString(e.Name + "=" + v + "\n")
	}
	return b.String()
}

// sysctlConf renders sysctls in sysctl.conf format, one "NAME = VALUE" a
// line. It refuses what would not survive that format or the command line:
// an empty name or value, a name with whitespace, "=" or a control
// character, a value with a newline.
func sysctlConf(sysctls []Sysctl) (string, error) {
	var b strings.Builder
	for _, sc := range sysctls {
		if sc.Name == "" || strings.ContainsFunc(sc.Name, func(r rune) bool { return r <= ' ' || r == '=' || r == 0x7f }) {
			return "", fmt.Errorf("sysctl name %q: accepted a name without spaces, \"=\" or control characters", sc.Name)
		}
		if sc.Value == "" || strings.ContainsAny(sc.Value, "\r\n") {
			return "", fmt.Errorf("sysctl %s: value %q: accepted a non-empty value on one line", sc.Name, sc.Value)
		}
		b.WriteString(sc.Name + " = " + sc.Value + "\n")
	}
	return b.String(), nil
}

// dnsOptionRE is one resolv.conf option as kubelet passes them ("ndots:5",
// "edns0", "timeout:2").
var dnsOptionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

// resolvOptionsScript puts "options ARGS" into resolv.conf at every boot.
// Network config (v1, v2, network_data.json) has no field for options, and
// cloud-init's resolv_conf module does not run on Debian or Ubuntu. With
// resolvconf (Debian's ifupdown images) the line goes to its tail file, so
// every regeneration keeps it; a plain file is edited in place; a file
// owned by another manager (systemd-resolved's stub) is left alone, with a
// line on the console. The options come as arguments, never inside the
// script.
const resolvOptionsScript = `opts="options $*"
if command -v resolvconf >/dev/null && [ -d /etc/resolvconf/resolv.conf.d ]; then
  printf '%s\n' "$opts" >/etc/resolvconf/resolv.conf.d/tail && resolvconf -u
elif [ -L /etc/resolv.conf ]; then
  echo "podvisor: /etc/resolv.conf -> $(readlink /etc/resolv.conf) is managed: DNS options $* not set" >/dev/console
else
  { grep -v '^options ' /etc/resolv.conf 2>/dev/null; printf '%s\n' "$opts"; } >/etc/resolv.conf.podvisor && mv /etc/resolv.conf.podvisor /etc/resolv.conf
fi`

// dnsOptionsCmd is the bootcmd entry that sets the pod's DNS options (CRI
// dns_config.options), or nil when it has none.
func (g *generator) dnsOptionsCmd() (any, error) {
	if g.in.DNS == nil || len(g.in.DNS.Options) == 0 {
		return nil, nil
	}
	cmd := []any{"sh", "-c", resolvOptionsScript, "podvisor-dns-options"}
	for _, o := range g.in.DNS.Options {
		if !dnsOptionRE.MatchString(o) {
			return nil, fmt.Errorf("%s: dns_config.options: %q: accepted resolv.conf options such as ndots:5 or edns0 (letters, digits, '_', '.', ':', '-')", g.in.podRef(), o)
		}
		cmd = append(cmd, o)
	}
	return cmd, nil
}
