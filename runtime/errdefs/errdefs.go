// Package errdefs holds the error kinds shared by podvisor's layers. The
// lifecycle code wraps these sentinels; the CRI layer maps them to gRPC codes,
// so business logic never imports gRPC.
package errdefs

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the request itself is wrong; retrying it as is
	// cannot succeed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the request is valid but the system is not in
	// a state that allows it.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrAlreadyExists: an object with the same identity exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrUnimplemented: the feature is not built.
	ErrUnimplemented = errors.New("unimplemented")
	// ErrUnavailable: a dependency is down; retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
)

// kindError carries a kind sentinel without putting the sentinel's text in
// the message users read; a %w in the format is still unwrappable.
type kindError struct {
	kind error
	msg  string
	err  error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool { return target == e.kind }

func (e *kindError) Unwrap() error { return e.err }

func newf(kind error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &kindError{kind: kind, msg: err.Error(), err: errors.Unwrap(err)}
}

// NotFoundf returns an error of kind ErrNotFound.
// Sentinel returns a package's sentinel error of a kind: errors.Is matches
// both the sentinel itself and the kind, so that other packages keep their
// own sentinels and runtime/cri still maps them without knowing them.
func Sentinel(kind error, msg string) error { return &kindError{kind: kind, msg: msg} }

func NotFoundf(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// InvalidArgumentf returns an error of kind ErrInvalidArgument.
func InvalidArgumentf(format string, args ...any) error {
	return newf(ErrInvalidArgument, format, args...)
}

// FailedPreconditionf returns an error of kind ErrFailedPrecondition.
func FailedPreconditionf(format string, args ...any) error {
	return newf(ErrFailedPrecondition, format, args...)
}

// AlreadyExistsf returns an error of kind ErrAlreadyExists.
func AlreadyExistsf(format string, args ...any) error {
	return newf(ErrAlreadyExists, format, args...)
}

// Unimplementedf returns an error of kind ErrUnimplemented.
func Unimplementedf(format string, args ...any) error {
	return newf(ErrUnimplemented, format, args...)
}

// Unavailablef returns an error of kind ErrUnavailable.
func Unavailablef(format string, args ...any) error {
	return newf(ErrUnavailable, format, args...)
}
