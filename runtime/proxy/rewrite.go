package proxy

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The proxy rewrites messages by field, through protobuf reflection, so
// that a field added to the CRI later is covered without a hand-written
// copy of every message. Two kinds of fields are rewritten:
//
//   - object IDs (sandbox and container IDs): prefixed with "<name>__" on
//     the way back from a non-primary runtime, stripped on the way in;
//   - image references: the runtime's image domain ("virtlet.cloud/") is
//     stripped on the way in and restored, when missing, on the way back.

// isIDField reports whether fd holds sandbox or container IDs.
func isIDField(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.StringKind || fd.IsMap() {
		return false
	}
	switch fd.Name() {
	case "pod_sandbox_id", "container_id", "container_ids", "target_id":
		return true
	case "id":
		// Image.id is an image ID, rewritten as an image reference.
		return fd.ContainingMessage().Name() != "Image"
	}
	return false
}

// imageFields are the fields holding image references.
var imageFields = map[string]bool{
	"Image.id":                       true,
	"Image.repo_tags":                true,
	"Image.repo_digests":             true,
	"ImageSpec.image":                true,
	"ImageSpec.user_specified_image": true,
	"ImageSpec.image_ref":            true,
	"Container.image_ref":            true,
	"Container.image_id":             true,
	"ContainerStatus.image_ref":      true,
	"ContainerStatus.image_id":       true,
	"PullImageResponse.image_ref":    true,
}

func isImageField(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.StringKind || fd.IsMap() {
		return false
	}
	return imageFields[string(fd.ContainingMessage().Name())+"."+string(fd.Name())]
}

// rewrite applies fn to every non-empty string field of m (recursively)
// for which sel is true.
func rewrite(m proto.Message, sel func(protoreflect.FieldDescriptor) bool, fn func(string) string) {
	if m == nil {
		return
	}
	rewriteMsg(m.ProtoReflect(), sel, fn)
}

func rewriteMsg(m protoreflect.Message, sel func(protoreflect.FieldDescriptor) bool, fn func(string) string) {
	if !m.IsValid() {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					rewriteMsg(mv.Message(), sel, fn)
					return true
				})
			}
		case fd.IsList():
			l := v.List()
			switch {
			case fd.Kind() == protoreflect.MessageKind:
				for i := 0; i < l.Len(); i++ {
					rewriteMsg(l.Get(i).Message(), sel, fn)
				}
			case sel(fd):
				for i := 0; i < l.Len(); i++ {
					if s := l.Get(i).String(); s != "" {
						l.Set(i, protoreflect.ValueOfString(fn(s)))
					}
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			rewriteMsg(v.Message(), sel, fn)
		case sel(fd):
			if s := v.String(); s != "" {
				m.Set(fd, protoreflect.ValueOfString(fn(s)))
			}
		}
		return true
	})
}

// outbound rewrites a response (or stream message) of runtime b for the
// caller: IDs prefixed, image domain restored.
func (b *backend) outbound(m proto.Message) {
	if b.primary {
		return
	}
	rewrite(m, isIDField, func(s string) string { return b.idPrefix + s })
	rewrite(m, isImageField, b.withImagePrefix)
}

// inbound rewrites a request bound for runtime b: its ID prefix and image
// domain stripped.
func (b *backend) inbound(m proto.Message) {
	if b.primary {
		return
	}
	rewrite(m, isIDField, func(s string) string { return strings.TrimPrefix(s, b.idPrefix) })
	if !b.keepDomain {
		rewrite(m, isImageField, func(s string) string { return strings.TrimPrefix(s, b.imagePrefix) })
	}
}

// withImagePrefix restores the image domain unless the runtime already
// reports it (podvisor reports "virtlet.cloud/<name>:latest" repo tags).
// A runtime that keeps the domain (podvisor) names its images as they
// are to be reported (OCI references as pulled): only its image IDs get
// the domain, so that kubelet's calls by ID come back to it.
func (b *backend) withImagePrefix(s string) string {
	if strings.HasPrefix(s, b.imagePrefix) {
		return s
	}
	if b.keepDomain && !isImageID(s) {
		return s
	}
	return b.imagePrefix + s
}

// isImageID reports whether s is an image ID, "sha256:<64 hex>".
func isImageID(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
