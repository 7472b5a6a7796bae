// Package rfb is the client side of the RFB (VNC) handshake, RFC 6143
// sections 7.1 to 7.3: enough to tell that a display answers and how large
// its framebuffer is. Tests and the e2e suite use it on podvisor's VM
// displays, which have no password (security type None).
package rfb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"time"
)

// ServerInit is what the server says about itself in the handshake.
type ServerInit struct {
	// Version is the server's ProtocolVersion, e.g. "RFB 003.008".
	Version string
	// Width and Height are the framebuffer's size in pixels.
	Width, Height uint16
	// BitsPerPixel and Depth are from the server's pixel format.
	BitsPerPixel, Depth uint8
	// Name is the desktop's name (QEMU: the VM's name).
	Name string
}

// securityNone is the security type without authentication.
const securityNone = 1

var versionRE = regexp.MustCompile(`^RFB (\d{3})\.(\d{3})\n$`)

// Handshake does the RFB handshake on conn as a shared client with
// security type None and returns the ServerInit. It leaves conn open, in
// the normal protocol phase. ctx bounds the handshake (a deadline on conn
// when conn is a net.Conn).
func Handshake(ctx context.Context, conn io.ReadWriter) (ServerInit, error) {
	if c, ok := conn.(net.Conn); ok {
		// Only once ctx is done, not at its deadline: a conn deadline of
		// the same instant can fire first, and the error would not be the
		// context's.
		stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
		defer c.SetDeadline(time.Time{})
		defer stop()
	}
	si, err := handshake(conn)
	if err != nil && ctx.Err() != nil {
		return si, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return si, err
}

func handshake(conn io.ReadWriter) (ServerInit, error) {
	var si ServerInit
	var v [12]byte
	if _, err := io.ReadFull(conn, v[:]); err != nil {
		return si, fmt.Errorf("rfb: reading the server's ProtocolVersion: %w", err)
	}
	m := versionRE.FindSubmatch(v[:])
	if m == nil {
		return si, fmt.Errorf("rfb: the server's ProtocolVersion is %q, not \"RFB xxx.yyy\\n\": not an RFB server", v[:])
	}
	si.Version = string(v[:11])
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major != 3 || minor < 3 {
		return si, fmt.Errorf("rfb: server version %s: this client speaks 3.3 to 3.8", si.Version)
	}
	// Answer with the highest version both speak; 3.4 to 3.6 are 3.3.
	switch {
	case minor >= 8:
		minor = 8
	case minor == 7:
	default:
		minor = 3
	}
	if _, err := fmt.Fprintf(conn, "RFB 003.%03d\n", minor); err != nil {
		return si, fmt.Errorf("rfb: sending the ProtocolVersion: %w", err)
	}
	if err := security(conn, minor); err != nil {
		return si, err
	}
	if _, err := conn.Write([]byte{1}); err != nil { // ClientInit: shared
		return si, fmt.Errorf("rfb: sending ClientInit: %w", err)
	}
	var init [20]byte // width, height, the 16-byte pixel format
	if _, err := io.ReadFull(conn, init[:]); err != nil {
		return si, fmt.Errorf("rfb: reading ServerInit: %w", err)
	}
	si.Width = binary.BigEndian.Uint16(init[0:])
	si.Height = binary.BigEndian.Uint16(init[2:])
	si.BitsPerPixel, si.Depth = init[4], init[5]
	name, err := readString(conn, 1<<16)
	if err != nil {
		return si, fmt.Errorf("rfb: reading the desktop name: %w", err)
	}
	si.Name = name
	return si, nil
}

// security negotiates security type None.
func security(conn io.ReadWriter, minor int) error {
	if minor == 3 { // the server decides: a u32
		var t [4]byte
		if _, err := io.ReadFull(conn, t[:]); err != nil {
			return fmt.Errorf("rfb: reading the security type: %w", err)
		}
		switch st := binary.BigEndian.Uint32(t[:]); st {
		case securityNone:
			return nil
		case 0:
			return failure(conn, "the server refused the connection")
		default:
			return fmt.Errorf("rfb: the server wants security type %d; this client does only None (1)", st)
		}
	}
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return fmt.Errorf("rfb: reading the security types: %w", err)
	}
	if n[0] == 0 {
		return failure(conn, "the server refused the connection")
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(conn, types); err != nil {
		return fmt.Errorf("rfb: reading the security types: %w", err)
	}
	found := false
	for _, t := range types {
		found = found || t == securityNone
	}
	if !found {
		return fmt.Errorf("rfb: the server offers security types %v, not None (1): the display wants a password", types)
	}
	if _, err := conn.Write([]byte{securityNone}); err != nil {
		return fmt.Errorf("rfb: choosing security type None: %w", err)
	}
	if minor == 7 { // no SecurityResult for None before 3.8
		return nil
	}
	var res [4]byte
	if _, err := io.ReadFull(conn, res[:]); err != nil {
		return fmt.Errorf("rfb: reading the SecurityResult: %w", err)
	}
	if binary.BigEndian.Uint32(res[:]) != 0 {
		return failure(conn, "security type None failed")
	}
	return nil
}

// failure reads the reason string that follows a refusal.
func failure(conn io.Reader, what string) error {
	reason, err := readString(conn, 1<<16)
	if err != nil {
		return fmt.Errorf("rfb: %s (no reason: %v)", what, err)
	}
	return fmt.Errorf("rfb: %s: %s", what, reason)
}

// readString reads a u32 length and that many bytes, at most max.
func readString(r io.Reader, max uint32) (string, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return "", err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > max {
		return "", errors.New("string of " + strconv.FormatUint(uint64(n), 10) + " bytes: too long")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}
