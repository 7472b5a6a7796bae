package libvirt

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// saveFile writes a save file as libvirt lays it out: header, the XML
// and its NUL, the cookie and its NUL, pad zeros, then QEMU's stream.
func saveFile(t *testing.T, xml string, pad uint32) (string, []byte) {
	t.Helper()
	hdr := make([]byte, saveHeaderLen)
	copy(hdr, saveMagic)
	data := append(append([]byte(xml), 0), "<qemuDomainSaveCookie/>\x00"...)
	binary.LittleEndian.PutUint32(hdr[16:], 2)
	binary.LittleEndian.PutUint32(hdr[saveOffDataLen:], uint32(len(data))+pad)
	binary.LittleEndian.PutUint32(hdr[saveOffCookie:], uint32(len(xml)+1))
	data = append(data, make([]byte, pad)...)
	stream := bytes.Repeat([]byte("QEVM state "), 100)
	b := append(append(hdr, data...), stream...)
	p := filepath.Join(t.TempDir(), "vm.save")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func TestRetargetSaveFile(t *testing.T) {
	const oldU, newU = "96c232be-607d-51e8-826e-b0234c8d57c1", "bdffd9e6-013f-4993-9b97-88d7a5b406e0"
	xml := "<domain type='qemu'><name>pv-0000000000000001</name><uuid>" + oldU + "</uuid><sysinfo><entry name='uuid'>" + oldU + "</entry></sysinfo></domain>"
	p, before := saveFile(t, xml, 1024)
	if err := retargetSaveFile(p, "pv-0000000000000001", oldU, "pv-a-longer-name-0002", newU); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(p)
	dataLen := binary.LittleEndian.Uint32(before[saveOffDataLen:])
	end := saveHeaderLen + int(dataLen)
	if len(after) != len(before) || !bytes.Equal(after[end:], before[end:]) || !bytes.Equal(after[:saveOffCookie], before[:saveOffCookie]) {
		t.Fatal("retargeting changed the header's fields, the data's size or the state")
	}
	got, cookie, err := splitSaveData(after[saveHeaderLen:end], binary.LittleEndian.Uint32(after[saveOffCookie:]))
	if err != nil || string(cookie) != "<qemuDomainSaveCookie/>" {
		t.Fatalf("after: cookie %q, %v", cookie, err)
	}
	if strings.Contains(got, oldU) || strings.Count(got, newU) != 2 || !strings.Contains(got, "<name>pv-a-longer-name-0002</name>") {
		t.Errorf("definition after: %s", got)
	}

	for name, tc := range map[string]struct {
		oldName, newName string
		reserve          uint32
		want             string
	}{
		"another domain's file": {"pv-other", "x", 1024, "is not of domain pv-other"},
		"no room":               {"pv-0000000000000001", strings.Repeat("n", 40), 4, "does not fit"},
	} {
		p, _ := saveFile(t, xml, tc.reserve)
		if err := retargetSaveFile(p, tc.oldName, oldU, tc.newName, newU); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, bytes.Repeat([]byte("x"), 200), 0o600)
	if err := retargetSaveFile(junk, "a", oldU, "b", newU); err == nil || !strings.Contains(err.Error(), "not a libvirt QEMU save file") {
		t.Errorf("junk: %v", err)
	}
}
