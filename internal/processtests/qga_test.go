package processtests

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"time"
)

// qgaClient speaks the QEMU guest agent's protocol over the unix socket of
// a plain QEMU's chardev (the golden drives' VMs, which libvirt does not
// run): guest-sync to find the stream's start, guest-exec to run a command.
type qgaClient struct {
	conn net.Conn
	dec  *json.Decoder
}

type qgaReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// dialQGA connects and syncs, retrying until the agent answers or the
// deadline passes (the guest starts its agent late in boot).
func dialQGA(path string, deadline time.Time) (*qgaClient, error) {
	var last error
	for time.Now().Before(deadline) {
		conn, err := net.Dial("unix", path)
		if err != nil {
			last = err
			time.Sleep(time.Second)
			continue
		}
		c := &qgaClient{conn: conn, dec: json.NewDecoder(conn)}
		if last = c.sync(); last == nil {
			return c, nil
		}
		conn.Close()
		time.Sleep(2 * time.Second)
	}
	return nil, fmt.Errorf("guest agent at %s: %w", path, last)
}

func (c *qgaClient) Close() error { return c.conn.Close() }

// sync sends guest-sync with a random id and skips replies until its own:
// a reply to an earlier, timed-out request may still be in the stream.
func (c *qgaClient) sync() error {
	id := rand.Int63n(1 << 40)
	if err := c.send("guest-sync", map[string]any{"id": id}, 10*time.Second); err != nil {
		return err
	}
	for {
		var r qgaReply
		if err := c.dec.Decode(&r); err != nil {
			return fmt.Errorf("guest-sync: %w", err)
		}
		var got int64
		if json.Unmarshal(r.Return, &got) == nil && got == id {
			return nil
		}
	}
}

func (c *qgaClient) send(cmd string, args any, within time.Duration) error {
	if err := c.conn.SetDeadline(time.Now().Add(within)); err != nil {
		return err
	}
	return json.NewEncoder(c.conn).Encode(map[string]any{"execute": cmd, "arguments": args})
}

func (c *qgaClient) call(cmd string, args, out any) error {
	if err := c.send(cmd, args, 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	var r qgaReply
	if err := c.dec.Decode(&r); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if r.Error != nil {
		return fmt.Errorf("%s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
	}
	return json.Unmarshal(r.Return, out)
}

// sh runs script with /bin/sh -c in the guest and returns its stdout,
// stderr and exit code.
func (c *qgaClient) sh(script string) (stdout, stderr string, code int, err error) {
	var started struct {
		PID int `json:"pid"`
	}
	if err := c.call("guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", script}, "capture-output": true}, &started); err != nil {
		return "", "", 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var st struct {
			Exited   bool   `json:"exited"`
			ExitCode int    `json:"exitcode"`
			OutData  string `json:"out-data"`
			ErrData  string `json:"err-data"`
		}
		if err := c.call("guest-exec-status", map[string]any{"pid": started.PID}, &st); err != nil {
			return "", "", 0, err
		}
		if st.Exited {
			o, _ := base64.StdEncoding.DecodeString(st.OutData)
			e, _ := base64.StdEncoding.DecodeString(st.ErrData)
			return string(o), string(e), st.ExitCode, nil
		}
		if time.Now().After(deadline) {
			return "", "", 0, fmt.Errorf("guest-exec %q: still running after 2 minutes", script)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
