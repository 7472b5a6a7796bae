package libvirt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// libvirt's QEMU save file starts with a header (src/qemu/qemu_saveimage.h,
// virQEMUSaveHeader): a 16-byte magic, then uint32 version, data_len,
// was_running, format, cookieOffset and 14 unused, in the host's byte
// order (little-endian here); then data_len bytes: the domain XML and its
// NUL, the cookie and its NUL (cookieOffset is where it starts; 0 without
// one), and zeros (libvirt reserves 64 KiB for edits) before QEMU's state.
const (
	saveMagic       = "LibvirtQemudSave"
	saveHeaderLen   = 16 + 4*19
	saveOffDataLen  = 16 + 4
	saveOffCookie   = 16 + 4*4
	maxSaveXMLBytes = 16 << 20
)

// retargetSaveFile gives the definition stored in the save file at path a
// new name and UUID, as virDomainSaveImageDefineXML rewrites it (which
// itself refuses another UUID). libvirt restores a save file only into a
// domain of the UUID it was saved from; a checkpoint restored as a new pod
// has a new one. QEMU's state after the data does not name the domain.
func retargetSaveFile(path, oldName, oldUUID, newName, newUUID string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("retargeting save file: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, saveHeaderLen)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[:16]) != saveMagic {
		return fmt.Errorf("retargeting save file %s: not a libvirt QEMU save file (%v)", path, err)
	}
	dataLen := binary.LittleEndian.Uint32(hdr[saveOffDataLen:])
	if dataLen == 0 || dataLen > maxSaveXMLBytes {
		return fmt.Errorf("retargeting save file %s: its data is %d bytes", path, dataLen)
	}
	data := make([]byte, dataLen)
	if _, err := f.ReadAt(data, saveHeaderLen); err != nil {
		return fmt.Errorf("retargeting save file %s: %w", path, err)
	}
	x, cookie, err := splitSaveData(data, binary.LittleEndian.Uint32(hdr[saveOffCookie:]))
	if err != nil {
		return fmt.Errorf("retargeting save file %s: %w", path, err)
	}
	if !strings.Contains(x, "<uuid>"+oldUUID+"</uuid>") || !strings.Contains(x, "<name>"+oldName+"</name>") {
		return fmt.Errorf("retargeting save file %s: its definition is not of domain %s (%s)", path, oldName, oldUUID)
	}
	x = strings.ReplaceAll(x, oldUUID, newUUID) // <uuid> and a SMBIOS copy
	x = strings.Replace(x, "<name>"+oldName+"</name>", "<name>"+newName+"</name>", 1)
	out := append([]byte(x), 0)
	if cookie != nil {
		binary.LittleEndian.PutUint32(hdr[saveOffCookie:], uint32(len(out)))
		out = append(append(out, cookie...), 0)
	}
	if uint32(len(out)) > dataLen {
		return fmt.Errorf("retargeting save file %s: the new definition does not fit the %d bytes reserved", path, dataLen)
	}
	out = append(out, make([]byte, int(dataLen)-len(out))...)
	if _, err := f.WriteAt(append(hdr, out...), 0); err != nil {
		return fmt.Errorf("retargeting save file %s: %w", path, err)
	}
	return f.Sync()
}

// splitSaveData returns the XML and the cookie (nil without one) of a save
// file's data.
func splitSaveData(data []byte, cookieOff uint32) (string, []byte, error) {
	n := bytes.IndexByte(data, 0)
	if n < 0 {
		return "", nil, errors.New("its definition is not NUL-terminated")
	}
	if cookieOff == 0 {
		return string(data[:n]), nil, nil
	}
	if cookieOff != uint32(n+1) || cookieOff >= uint32(len(data)) {
		return "", nil, fmt.Errorf("its cookie offset %d does not follow its definition (%d bytes)", cookieOff, n+1)
	}
	rest := data[cookieOff:]
	m := bytes.IndexByte(rest, 0)
	if m < 0 {
		return "", nil, errors.New("its cookie is not NUL-terminated")
	}
	return string(data[:n]), append([]byte(nil), rest[:m]...), nil
}
