package apiclient

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// tokenMaxAge is how long a token read from a file is used without reading
// the file again even if it looks unchanged (client-go uses a minute too).
const tokenMaxAge = time.Minute

// tokenSource gives the bearer token: the content of a token file, read
// again when the file changed (another size, modification time or inode,
// as when the kubelet swaps a projected token's symlink) or tokenMaxAge
// after it was last read; the static token until a file was read, or when
// there is no file.
type tokenSource struct {
	static string
	path   string
	now    func() time.Time

	mu     sync.Mutex
	token  string      // last read from path
	info   os.FileInfo // of path when token was read
	readAt time.Time
}

func (s *tokenSource) get() (string, error) {
	if s.path == "" {
		return s.static, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Sub(s.readAt) < tokenMaxAge {
		if fi, err := os.Stat(s.path); err == nil && sameFile(fi, s.info) {
			return s.token, nil
		}
	}
	tok, fi, err := readToken(s.path)
	if err == nil {
		s.token, s.info, s.readAt = tok, fi, s.now()
		return tok, nil
	}
	// A token file that is briefly unreadable (being replaced) or gone:
	// keep using what we had, as client-go does.
	switch {
	case s.token != "":
		return s.token, nil
	case s.static != "":
		return s.static, nil
	}
	return "", err
}

func readToken(path string) (string, os.FileInfo, error) {
	data, fi, err := readFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("bearer token file: %w", err)
	}
	tok := string(bytes.TrimSpace(data))
	if tok == "" {
		return "", nil, fmt.Errorf("bearer token file %s is empty", path)
	}
	return tok, fi, nil
}

func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// certFiles gives the client certificate from a certificate and a key
// file, read again when either changed.
type certFiles struct {
	certPath, keyPath string

	mu                sync.Mutex
	cert              *tls.Certificate
	certInfo, keyInfo os.FileInfo // of the files cert was read from
}

func (f *certFiles) get() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cert != nil {
		ci, cerr := os.Stat(f.certPath)
		ki, kerr := os.Stat(f.keyPath)
		if cerr == nil && kerr == nil && sameFile(ci, f.certInfo) && sameFile(ki, f.keyInfo) {
			return f.cert, nil
		}
	}
	certPEM, ci, err := readFile(f.certPath)
	if err != nil {
		return f.keep(fmt.Errorf("client certificate: %w", err))
	}
	keyPEM, ki, err := readFile(f.keyPath)
	if err != nil {
		return f.keep(fmt.Errorf("client key: %w", err))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return f.keep(fmt.Errorf("client certificate %s and key %s: %w", f.certPath, f.keyPath, err))
	}
	f.cert, f.certInfo, f.keyInfo = &cert, ci, ki
	return f.cert, nil
}

// keep returns the certificate read before, if any, else err: while the
// files are being replaced (a new certificate next to the old key, say)
// the previous pair still works.
func (f *certFiles) keep(err error) (*tls.Certificate, error) {
	if f.cert != nil {
		return f.cert, nil
	}
	return nil, err
}

// readFile returns a file's content and the FileInfo of what was read.
func readFile(path string) ([]byte, os.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(fh); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return buf.Bytes(), fi, nil
}
