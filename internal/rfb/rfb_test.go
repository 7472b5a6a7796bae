package rfb

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// script is a server: what it sends, and how many bytes it then expects,
// in turn; it checks what the client sent.
type step struct {
	send   []byte
	expect string // what the client must send next ("" = nothing)
}

func serverInit(w, h uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = append(b, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	return append(b, name...)
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func reason(s string) []byte { return append(u32(uint32(len(s))), s...) }

func TestHandshake(t *testing.T) {
	tests := []struct {
		name    string
		steps   []step
		want    ServerInit
		wantErr string
	}{
		{"3.8, QEMU", []step{
			{[]byte("RFB 003.008\n"), "RFB 003.008\n"},
			{[]byte{1, 1}, "\x01"},
			{u32(0), "\x01"},
			{serverInit(720, 400, "vm"), ""},
		}, ServerInit{Version: "RFB 003.008", Width: 720, Height: 400, BitsPerPixel: 32, Depth: 24, Name: "vm"}, ""},
		{"3.8, None among others", []step{
			{[]byte("RFB 003.008\n"), "RFB 003.008\n"},
			{[]byte{3, 2, 16, 1}, "\x01"},
			{u32(0), "\x01"},
			{serverInit(1024, 768, "desk"), ""},
		}, ServerInit{Version: "RFB 003.008", Width: 1024, Height: 768, BitsPerPixel: 32, Depth: 24, Name: "desk"}, ""},
		{"a newer 3.x is answered with 3.8", []step{
			{[]byte("RFB 003.889\n"), "RFB 003.008\n"},
			{[]byte{1, 1}, "\x01"},
			{u32(0), "\x01"},
			{serverInit(640, 480, ""), ""},
		}, ServerInit{Version: "RFB 003.889", Width: 640, Height: 480, BitsPerPixel: 32, Depth: 24}, ""},
		{"3.7: no SecurityResult for None", []step{
			{[]byte("RFB 003.007\n"), "RFB 003.007\n"},
			{[]byte{1, 1}, "\x01\x01"},
			{serverInit(800, 600, "x"), ""},
		}, ServerInit{Version: "RFB 003.007", Width: 800, Height: 600, BitsPerPixel: 32, Depth: 24, Name: "x"}, ""},
		{"3.3: the server picks None", []step{
			{[]byte("RFB 003.003\n"), "RFB 003.003\n"},
			{u32(1), "\x01"},
			{serverInit(720, 400, "old"), ""},
		}, ServerInit{Version: "RFB 003.003", Width: 720, Height: 400, BitsPerPixel: 32, Depth: 24, Name: "old"}, ""},
		{"password only", []step{
			{[]byte("RFB 003.008\n"), "RFB 003.008\n"},
			{[]byte{1, 2}, ""},
		}, ServerInit{}, "offers security types [2], not None (1): the display wants a password"},
		{"refused with a reason", []step{
			{[]byte("RFB 003.008\n"), "RFB 003.008\n"},
			{append([]byte{0}, reason("too many clients")...), ""},
		}, ServerInit{}, "the server refused the connection: too many clients"},
		{"SecurityResult failed", []step{
			{[]byte("RFB 003.008\n"), "RFB 003.008\n"},
			{[]byte{1, 1}, "\x01"},
			{append(u32(1), reason("nope")...), ""},
		}, ServerInit{}, "security type None failed: nope"},
		{"3.3 wants VNC auth", []step{
			{[]byte("RFB 003.003\n"), "RFB 003.003\n"},
			{u32(2), ""},
		}, ServerInit{}, "wants security type 2"},
		{"not RFB", []step{{[]byte("SSH-2.0-Open"), ""}}, ServerInit{}, `not an RFB server`},
		{"version 4", []step{{[]byte("RFB 004.000\n"), ""}}, ServerInit{}, "this client speaks 3.3 to 3.8"},
		{"closed after the version", []step{{[]byte("RFB 003.008\n"), "RFB 003.008\n"}}, ServerInit{}, "reading the security types: EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			serr := make(chan string, 1)
			go func() {
				defer server.Close()
				for _, s := range tc.steps {
					if _, err := server.Write(s.send); err != nil {
						serr <- "server write: " + err.Error()
						return
					}
					got := make([]byte, len(s.expect))
					if _, err := io.ReadFull(server, got); err != nil {
						serr <- "server read: " + err.Error()
						return
					}
					if !bytes.Equal(got, []byte(s.expect)) {
						serr <- "client sent " + strings.ReplaceAll(string(got), "\n", `\n`) + ", want " + strings.ReplaceAll(s.expect, "\n", `\n`)
						return
					}
				}
				serr <- ""
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := Handshake(ctx, client)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if msg := <-serr; msg != "" {
				t.Error(msg)
			}
		})
	}
}

// TestHandshakeHonoursTheContext: a server that never speaks does not hang
// the client past its context.
func TestHandshakeHonoursTheContext(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Handshake(ctx, client); err == nil || ctx.Err() == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("error %v, want the context's", err)
	}
}
