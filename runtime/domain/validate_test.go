package domain

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// requireTool finds a binary from libvirt-clients, failing the test when it
// is missing unless PODVISOR_ALLOW_SKIP=1: CI must really validate.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("PODVISOR_ALLOW_SKIP") == "1" {
		t.Skipf("%s not installed (Debian package libvirt-clients, ci/deps-domain.txt); skipping because PODVISOR_ALLOW_SKIP=1", name)
	}
	t.Fatalf("%s not installed: install the Debian package libvirt-clients (ci/deps-domain.txt), or set PODVISOR_ALLOW_SKIP=1 to skip", name)
	return ""
}

func goldenFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("only %d golden domain files; the golden set must keep at least 40", len(files))
	}
	return files
}

// TestGoldenSchema checks every golden domain with libvirt's RelaxNG schema.
func TestGoldenSchema(t *testing.T) {
	validate := requireTool(t, "virt-xml-validate")
	for _, f := range goldenFiles(t) {
		out, err := exec.Command(validate, f, "domain").CombinedOutput()
		if err != nil {
			t.Errorf("virt-xml-validate %s: %v\n%s", f, err, out)
		}
	}
}

// TestGoldenLibvirtParser defines every golden domain on libvirt's test
// driver (a fresh in-memory connection each time): libvirt's own parser
// catches what the schema does not, such as a sysinfo UUID that differs
// from the domain's.
func TestGoldenLibvirtParser(t *testing.T) {
	virsh := requireTool(t, "virsh")
	for _, f := range goldenFiles(t) {
		out, err := exec.Command(virsh, "-q", "-c", "test:///default", "define", f).CombinedOutput()
		if err != nil {
			t.Errorf("virsh define %s: %v\n%s", f, err, out)
		}
	}
}

// The validators must be able to say no, or the tests above prove nothing.
func TestValidatorsRejectBrokenDomain(t *testing.T) {
	validate := requireTool(t, "virt-xml-validate")
	virsh := requireTool(t, "virsh")
	in := goldenCase{name: "broken", ci: "nocloud"}.input(t)
	d, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	// What Build itself never produces: an unknown domain type, and a
	// sysinfo UUID that differs from the domain UUID.
	schemaBroken := *d
	schemaBroken.Type = "bogus"
	parserBroken := *d
	vm := *in.VM
	vm.SystemUUID = "6ed9e1c2-8f3b-4a57-9c0d-2b1e3f4a5b6c"
	in.VM = &vm
	withSysinfo, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	parserBroken.SysInfo = withSysinfo.SysInfo
	parserBroken.OS = withSysinfo.OS

	dir := t.TempDir()
	schemaFile := filepath.Join(dir, "schema.xml")
	parserFile := filepath.Join(dir, "parser.xml")
	for _, w := range []struct {
		path string
		xml  func() (string, error)
	}{
		{schemaFile, func() (string, error) { return Marshal(&schemaBroken) }},
		{parserFile, func() (string, error) { return Marshal(&parserBroken) }},
	} {
		s, err := w.xml()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(w.path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(validate, schemaFile, "domain").CombinedOutput(); err == nil {
		t.Errorf("virt-xml-validate accepted a domain of type bogus:\n%s", out)
	}
	if out, err := exec.Command(virsh, "-q", "-c", "test:///default", "define", parserFile).CombinedOutput(); err == nil {
		t.Errorf("virsh define accepted a sysinfo UUID that differs from the domain UUID:\n%s", out)
	}
}
