package annotations

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Error reports one pod annotation (or container field) whose value is not
// accepted. Parse returns every such error joined with errors.Join, so callers
// find each with errors.As and map them to codes.InvalidArgument.
type Error struct {
	// Annotation is the annotation key, or for values that come from the
	// container config one of the Field* names (for example FieldMemoryLimit).
	Annotation string
	// Value is the rejected value as given.
	Value string
	// Accepted says what would have been accepted, e.g. `"scsi" (default) or "virtio"`.
	Accepted string
	// Err is the underlying cause (a YAML syntax error, ...), or nil.
	Err error
}

// Names of the container-config inputs that Parse validates besides
// annotations; they appear in Error.Annotation.
const (
	FieldMemoryLimit = "resources memory_limit_in_bytes"
	FieldCPUShares   = "resources cpu_shares"
	FieldCPUPeriod   = "resources cpu_period"
	FieldCPUQuota    = "resources cpu_quota"
	FieldEnv         = "env"
)

var containerFields = map[string]bool{
	FieldMemoryLimit: true,
	FieldCPUShares:   true,
	FieldCPUPeriod:   true,
	FieldCPUQuota:    true,
	FieldEnv:         true,
}

// maxQuotedValue keeps messages readable when a multi-line YAML value is rejected.
const maxQuotedValue = 80

func (e *Error) Error() string {
	subject := "annotation " + e.Annotation
	if containerFields[e.Annotation] {
		subject = "container " + e.Annotation
	}
	msg := fmt.Sprintf("%s: invalid value %s", subject, quoteValue(e.Value))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Accepted != "" {
		msg += ": accepted values are " + e.Accepted
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// quoteValue quotes v, shortening long values to their first runes.
func quoteValue(v string) string {
	if utf8.RuneCountInString(v) <= maxQuotedValue {
		return strconv.Quote(v)
	}
	n, i := 0, 0
	for i = range v {
		if n == maxQuotedValue {
			break
		}
		n++
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(v[:i]), len(v))
}
