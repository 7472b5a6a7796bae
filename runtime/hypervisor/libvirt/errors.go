package libvirt

import (
	"errors"
	"fmt"
	"strings"

	"github.com/podvisor/podvisor/runtime/errdefs"
	"github.com/podvisor/podvisor/runtime/hypervisor"
	lv "libvirt.org/go/libvirt"
)

// opError is a libvirt failure with what podvisor was doing and, where one
// applies, the error kind callers test with errors.Is.
type opError struct {
	what string   // "starting domain \"x\""
	kind error    // hypervisor.ErrNotFound, ... or nil
	err  lv.Error // libvirt's own error, for errors.As
}

func (e *opError) Error() string {
	msg := strings.TrimSpace(e.err.Message)
	if e.kind != nil {
		return fmt.Sprintf("%s: %v: %s", e.what, e.kind, msg)
	}
	return fmt.Sprintf("%s: %s (libvirt error code %d)", e.what, msg, e.err.Code)
}

func (e *opError) Unwrap() []error {
	if e.kind != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.err}
}

// wrapErr names what failed and classifies libvirt's error code.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	// Only libvirt's own errors are classified; errors podvisor made
	// already carry their kind.
	le, ok := err.(lv.Error)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return &opError{what: what, kind: kindOf(le), err: le}
}

func kindOf(le lv.Error) error {
	switch le.Code {
	case lv.ERR_NO_DOMAIN:
		return hypervisor.ErrNotFound
	case lv.ERR_OPERATION_INVALID:
		return hypervisor.ErrInvalidState
	case lv.ERR_XML_ERROR, lv.ERR_XML_DETAIL, lv.ERR_CONFIG_UNSUPPORTED, lv.ERR_INVALID_ARG:
		return errdefs.ErrInvalidArgument
	case lv.ERR_AGENT_UNRESPONSIVE, lv.ERR_AGENT_UNSYNCED, lv.ERR_OPERATION_TIMEOUT:
		return errdefs.ErrUnavailable
	case lv.ERR_NO_CONNECT, lv.ERR_INVALID_CONN, lv.ERR_RPC:
		return errdefs.ErrUnavailable
	}
	return nil
}

// libvirtCode returns the libvirt error code in err's chain, or -1.
func libvirtCode(err error) lv.ErrorNumber {
	var le lv.Error
	if errors.As(err, &le) {
		return le.Code
	}
	return -1
}

// definitelyAlive reports errors that prove libvirtd answered, so the
// connection needs no check.
func definitelyAlive(err error) bool {
	switch libvirtCode(err) {
	case lv.ERR_NO_DOMAIN, lv.ERR_OPERATION_INVALID, lv.ERR_XML_ERROR, lv.ERR_XML_DETAIL,
		lv.ERR_CONFIG_UNSUPPORTED, lv.ERR_INVALID_ARG, lv.ERR_ARGUMENT_UNSUPPORTED,
		lv.ERR_AGENT_UNRESPONSIVE, lv.ERR_AGENT_UNSYNCED, lv.ERR_OPERATION_FAILED:
		return true
	}
	return false
}
